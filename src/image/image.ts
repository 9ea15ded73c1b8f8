// Images as the data pipeline sees them: 8-bit RGB on a white background, decoded, resized and
// encoded with sharp (prebuilt libvips from npm; renders SVG with librsvg).
import sharp, { type Sharp } from 'sharp';
import { MuseError } from '../util/errors.js';
import type { RgbImage } from './rgb.js';

export { fromUnitRange, type PixelMask, type RgbImage, toUnitRange } from './rgb.js';

const WHITE = { r: 255, g: 255, b: 255 };

async function toRgb(pipeline: Sharp): Promise<RgbImage> {
  const { data, info } = await pipeline
    .flatten({ background: WHITE })
    .toColourspace('srgb')
    .removeAlpha()
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`expected 3 channels after conversion, got ${info.channels}`);
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

/**
 * Decodes any image sharp reads (PNG, JPEG, WebP, GIF, TIFF, AVIF, SVG; grey, CMYK, alpha, 16-bit)
 * to RGB on white. Throws MuseError naming `name` when the bytes are not a readable image.
 */
export async function decodeImage(bytes: Uint8Array, name: string): Promise<RgbImage> {
  try {
    return await toRgb(sharp(bytes, { failOn: 'error' }));
  } catch (err) {
    throw new MuseError(`${name}: not a readable image (${(err as Error).message})`);
  }
}

/** Resizes so the shorter side is `size`, then takes the centre size×size square (lanczos3). */
export async function resizeCenterCrop(bytes: Uint8Array, size: number, name: string): Promise<RgbImage> {
  try {
    return await toRgb(
      sharp(bytes, { failOn: 'error' })
        .flatten({ background: WHITE })
        .resize(size, size, { fit: 'cover', position: 'centre', kernel: 'lanczos3' }),
    );
  } catch (err) {
    throw new MuseError(`${name}: not a readable image (${(err as Error).message})`);
  }
}

/** Renders an SVG document to size×size on white (the whole viewBox, aspect kept, centred). */
export async function renderSvg(svg: string, size: number, name = 'svg'): Promise<RgbImage> {
  try {
    // A density high enough that librsvg rasterises at or above the target size, then downsample.
    return await toRgb(
      sharp(Buffer.from(svg), { density: Math.max(72, Math.ceil((72 * size * 2) / 32)) }).resize(size, size, {
        fit: 'contain',
        background: WHITE,
        kernel: 'lanczos3',
      }),
    );
  } catch (err) {
    throw new MuseError(`${name}: SVG could not be rendered (${(err as Error).message})`);
  }
}

/** A decoded image resized to size×size (centre crop of non-square ones); the same image if it already is. */
export async function resizeRgb(
  img: RgbImage,
  size: number,
  kernel: 'lanczos3' | 'cubic' = 'lanczos3',
): Promise<RgbImage> {
  if (img.width === size && img.height === size) return img;
  const { data, info } = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(size, size, { fit: 'cover', kernel })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

/** PNG bytes of an image. */
export async function encodePng(img: RgbImage): Promise<Buffer> {
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .png({ compressionLevel: 9 })
    .toBuffer();
}
