// Inpainting masks at pixel and token level, and the feathered composite of generated pixels into the
// original image (only inside the mask; every pixel outside it stays the original's).
import type { PixelMask, RgbImage } from '../image/image.js';
import { MuseError } from '../util/errors.js';

/**
 * White (luminance ≥ 128) regenerates, black keeps. Any image mode is fine (it arrives as RGB on
 * white, so transparent areas count as white); the mask must select something and keep something.
 */
export function maskFromImage(img: RgbImage, name: string): PixelMask {
  const data = new Uint8Array(img.width * img.height);
  let selected = 0;
  for (let i = 0; i < data.length; i++) {
    const y = 0.299 * img.data[3 * i] + 0.587 * img.data[3 * i + 1] + 0.114 * img.data[3 * i + 2];
    data[i] = y >= 128 ? 1 : 0;
    selected += data[i];
  }
  if (selected === 0)
    throw new MuseError(`${name}: the mask is all black, so nothing would be inpainted (white = regenerate)`);
  return { width: img.width, height: img.height, data };
}

/** Nearest-neighbour resize of a mask (for a mask drawn at another size than the image). */
export function resizeMask(m: PixelMask, width: number, height: number): PixelMask {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(m.height - 1, Math.floor(((y + 0.5) * m.height) / height));
    for (let x = 0; x < width; x++) {
      const sx = Math.min(m.width - 1, Math.floor(((x + 0.5) * m.width) / width));
      data[y * width + x] = m.data[sy * m.width + sx];
    }
  }
  return { width, height, data };
}

/** Token mask [h·w] for a tokenizer of downsampling f: a token is regenerated if any of its pixels is. */
export function tokenMask(m: PixelMask, f: number): Uint8Array {
  if (m.width % f || m.height % f)
    throw new MuseError(`mask of ${m.width}×${m.height} px: sides must be multiples of ${f}`);
  const w = m.width / f;
  const out = new Uint8Array((m.height / f) * w);
  for (let y = 0; y < m.height; y++) {
    for (let x = 0; x < m.width; x++) if (m.data[y * m.width + x]) out[Math.floor(y / f) * w + Math.floor(x / f)] = 1;
  }
  return out;
}

/**
 * Chessboard distance from each masked pixel to the nearest kept pixel (0 outside the mask), by the
 * two-pass chamfer transform.
 */
export function distanceInsideMask(m: PixelMask): Float32Array {
  const { width: W, height: H } = m;
  const d = new Float32Array(W * H);
  const far = W + H;
  for (let i = 0; i < d.length; i++) d[i] = m.data[i] ? far : 0;
  const at = (x: number, y: number) => (x < 0 || y < 0 || x >= W || y >= H ? far : d[y * W + x]);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = y * W + x;
      if (d[i] > 0)
        d[i] = Math.min(d[i], at(x - 1, y) + 1, at(x - 1, y - 1) + 1, at(x, y - 1) + 1, at(x + 1, y - 1) + 1);
    }
  }
  for (let y = H - 1; y >= 0; y--) {
    for (let x = W - 1; x >= 0; x--) {
      const i = y * W + x;
      if (d[i] > 0)
        d[i] = Math.min(d[i], at(x + 1, y) + 1, at(x + 1, y + 1) + 1, at(x, y + 1) + 1, at(x - 1, y + 1) + 1);
    }
  }
  return d;
}

/**
 * original outside the mask; inside, generated blended in with weight min(1, d/(feather + 1)), d the
 * distance to the nearest kept pixel, so the seam fades over `feather` pixels (0: a hard edge).
 */
export function featherComposite(original: RgbImage, generated: RgbImage, m: PixelMask, feather: number): RgbImage {
  if (
    generated.width !== original.width ||
    generated.height !== original.height ||
    m.width !== original.width ||
    m.height !== original.height
  )
    throw new MuseError('composite: the image, the generated image and the mask must share a size');
  if (!(feather >= 0)) throw new MuseError(`feather must be ≥ 0 pixels, got ${feather}`);
  const d = distanceInsideMask(m);
  const data = new Uint8Array(original.data.length);
  for (let i = 0; i < d.length; i++) {
    const a = m.data[i] ? Math.min(1, d[i] / (feather + 1)) : 0;
    for (let c = 0; c < 3; c++) {
      const j = 3 * i + c;
      data[j] = Math.round((1 - a) * original.data[j] + a * generated.data[j]);
    }
  }
  return { width: original.width, height: original.height, data };
}
