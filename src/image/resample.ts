// Moving images and masks between the two stages' sizes (integer ratios): area-average downsampling
// of pixels, max-pooling of masks (a low-res pixel is regenerated if any pixel it covers is).

import { MuseError } from '../util/errors.js';
import type { PixelMask, RgbImage } from './image.js';

function ratio(from: number, to: number): number {
  const r = from / to;
  if (!Number.isInteger(r) || r < 1)
    throw new MuseError(`cannot resample ${from} px to ${to} px (not an integer ratio)`);
  return r;
}

export function downsampleImage(img: RgbImage, size: number): RgbImage {
  const r = ratio(img.width, size);
  if (img.height / r !== size) throw new MuseError(`only square images resample to ${size}×${size}`);
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let dy = 0; dy < r; dy++)
          for (let dx = 0; dx < r; dx++) sum += img.data[((y * r + dy) * img.width + x * r + dx) * 3 + c];
        data[(y * size + x) * 3 + c] = Math.round(sum / (r * r));
      }
    }
  }
  return { width: size, height: size, data };
}

export function downsampleMask(m: PixelMask, size: number): PixelMask {
  const r = ratio(m.width, size);
  const data = new Uint8Array(size * size);
  for (let y = 0; y < m.height; y++)
    for (let x = 0; x < m.width; x++)
      if (m.data[y * m.width + x]) data[Math.floor(y / r) * size + Math.floor(x / r)] = 1;
  return { width: size, height: size, data };
}
