// Images in a browser: decoding any format the browser reads (createImageBitmap) to RGB on white
// through an OffscreenCanvas (or a canvas element), and ImageData for drawing results.
import { MuseError } from '../util/errors.js';
import type { RgbImage } from './rgb.js';

type Canvas2D = OffscreenCanvasRenderingContext2D | CanvasRenderingContext2D;

function canvas2d(width: number, height: number): Canvas2D {
  if (typeof OffscreenCanvas !== 'undefined') {
    const ctx = new OffscreenCanvas(width, height).getContext('2d');
    if (ctx) return ctx;
  }
  const el = document.createElement('canvas');
  el.width = width;
  el.height = height;
  const ctx = el.getContext('2d');
  if (!ctx) throw new MuseError('this browser has no 2D canvas');
  return ctx;
}

/** Decodes image bytes (PNG, JPEG, WebP, GIF, ...) to RGB on white; `maxPixels` is checked before drawing. */
export async function decodeImageInBrowser(
  bytes: Uint8Array | Blob,
  name: string,
  maxPixels = 2048 * 2048,
): Promise<RgbImage> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(bytes instanceof Blob ? bytes : new Blob([bytes as BlobPart]));
  } catch (err) {
    throw new MuseError(`${name}: not a readable image (${(err as Error).message})`);
  }
  const { width, height } = bitmap;
  if (width * height > maxPixels) {
    bitmap.close();
    throw new MuseError(`${name}: ${width}×${height} px is more than ${maxPixels} pixels`);
  }
  const ctx = canvas2d(width, height);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return fromImageData(ctx.getImageData(0, 0, width, height));
}

/** RGBA ImageData (alpha composited on white) to an RGB image. */
export function fromImageData(d: ImageData): RgbImage {
  const data = new Uint8Array(d.width * d.height * 3);
  for (let i = 0, j = 0; i < data.length; i += 3, j += 4) {
    const a = d.data[j + 3] / 255;
    for (let c = 0; c < 3; c++) data[i + c] = Math.round(d.data[j + c] * a + 255 * (1 - a));
  }
  return { width: d.width, height: d.height, data };
}

/** An RGB image as opaque RGBA ImageData (for putImageData). */
export function toImageData(img: RgbImage): ImageData {
  const rgba = new Uint8ClampedArray(img.width * img.height * 4);
  for (let i = 0, j = 0; i < img.data.length; i += 3, j += 4) {
    rgba[j] = img.data[i];
    rgba[j + 1] = img.data[i + 1];
    rgba[j + 2] = img.data[i + 2];
    rgba[j + 3] = 255;
  }
  return new ImageData(rgba, img.width, img.height);
}
