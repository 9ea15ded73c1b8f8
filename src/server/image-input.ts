// Images that arrive over HTTP (base64 in JSON, or multipart files): their size is checked from the
// file header before any pixel is decoded, so a small file claiming 20000×20000 px (a decompression
// bomb) is refused without allocating its pixels.
import sharp, { type Metadata } from 'sharp';
import { decodeImage, type PixelMask, type RgbImage, resizeCenterCrop } from '../image/image.js';
import { maskFromImage, resizeMask } from '../pipeline/masks.js';
import { HttpError } from './errors.js';

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Width and height from a PNG's IHDR chunk (the first chunk), or undefined for bytes that are not PNG. */
export function pngDimensions(bytes: Uint8Array): { width: number; height: number } | undefined {
  if (bytes.length < 24 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = String.fromCharCode(bytes[12], bytes[13], bytes[14], bytes[15]);
  if (type !== 'IHDR') throw new HttpError(400, `${'PNG'}: the first chunk is ${type}, not IHDR`);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

/** Base64 (optionally a data: URL) to bytes; one clear message when it is not base64. */
export function fromBase64(value: unknown, what: string, maxBytes: number): Buffer {
  if (typeof value !== 'string' || value.length === 0)
    throw new HttpError(400, `${what} must be a base64 PNG string (or a data: URL)`);
  const b64 = value.startsWith('data:') ? value.slice(value.indexOf(',') + 1) : value;
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(b64.replace(/\s+/g, '')))
    throw new HttpError(400, `${what} is not valid base64`);
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length > maxBytes)
    throw new HttpError(413, `${what} is ${bytes.length} bytes, more than the ${maxBytes} this server accepts`);
  return bytes;
}

/**
 * Checks an uploaded image's dimensions from its header (PNG: IHDR, read here; other formats: sharp's
 * metadata, which reads the header only) against maxSide; returns them.
 */
export async function checkedDimensions(
  bytes: Uint8Array,
  what: string,
  maxSide: number,
): Promise<{ width: number; height: number; hasAlpha: boolean }> {
  const png = pngDimensions(bytes);
  if (png) checkSides(png, what, maxSide);
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: maxSide * maxSide }).metadata();
  } catch (err) {
    throw new HttpError(400, `${what}: not a readable image (${(err as Error).message})`);
  }
  const dims = { width: meta.width ?? 0, height: meta.height ?? 0 };
  checkSides(dims, what, maxSide);
  return { ...dims, hasAlpha: meta.hasAlpha === true };
}

function checkSides(d: { width: number; height: number }, what: string, maxSide: number): void {
  if (!(d.width >= 1 && d.height >= 1))
    throw new HttpError(400, `${what}: the image header gives no size (${d.width}×${d.height})`);
  if (d.width > maxSide || d.height > maxSide)
    throw new HttpError(
      413,
      `${what} is ${d.width}×${d.height} px; this server takes images up to ${maxSide}×${maxSide} px`,
    );
}

/**
 * An input image at one of the model's sizes: kept if it already is one, otherwise resized (centre
 * crop) to the largest.
 */
export async function readUpload(bytes: Uint8Array, what: string, sizes: number[], maxSide: number): Promise<RgbImage> {
  await checkedDimensions(bytes, what, maxSide);
  const img = await decodeImage(bytes, what);
  if (img.width === img.height && sizes.includes(img.width)) return img;
  return resizeCenterCrop(bytes, sizes[sizes.length - 1], what);
}

/**
 * A mask (white = regenerate). With `alphaMeansEdit` (OpenAI's convention) a mask image that has an
 * alpha channel marks the area to edit by transparency instead. Resized to the image if needed.
 */
export async function readMask(
  bytes: Uint8Array,
  what: string,
  image: RgbImage,
  maxSide: number,
  alphaMeansEdit = false,
): Promise<PixelMask> {
  const { hasAlpha } = await checkedDimensions(bytes, what, maxSide);
  let mask: PixelMask;
  if (alphaMeansEdit && hasAlpha) {
    const { data, info } = await sharp(bytes)
      .ensureAlpha()
      .extractChannel(3)
      .raw()
      .toBuffer({ resolveWithObject: true });
    const m = new Uint8Array(info.width * info.height);
    let any = 0;
    for (let i = 0; i < m.length; i++) {
      m[i] = data[i] < 128 ? 1 : 0;
      any += m[i];
    }
    if (!any) throw new HttpError(400, `${what}: no transparent pixel, so nothing would be edited`);
    mask = { width: info.width, height: info.height, data: m };
  } else {
    mask = maskFromImage(await decodeImage(bytes, what), what);
  }
  if (mask.width !== image.width || mask.height !== image.height) mask = resizeMask(mask, image.width, image.height);
  return mask;
}
