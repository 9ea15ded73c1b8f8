// Random views of an image for training a classifier that must name emoji in styles it never saw
// for them: a small shift and zoom (on the white background every render has), a blur now and then
// (generated images are softer than renders), and brightness/contrast jitter. No mirroring: some
// emoji (arrows, hands, flags) change meaning when flipped.
import type { RgbImage } from './rgb.js';

export interface AugmentOptions {
  /** Largest shift, as a fraction of the side (default 0.08). */
  shift?: number;
  /** Zoom range (default [0.85, 1.1]). */
  zoom?: [number, number];
  /** Probability of a [1 2 1] blur (default 0.3). */
  blur?: number;
  /** Largest brightness and contrast change, as a fraction (default 0.15). */
  jitter?: number;
}

/** One random view of `img` in [-1, 1], height × width × 3, row-major. `random` gives U[0, 1). */
export function augmentedView(img: RgbImage, random: () => number, o: AugmentOptions = {}): Float32Array {
  const { width: w, height: h, data } = img;
  const shift = o.shift ?? 0.08;
  const [zLo, zHi] = o.zoom ?? [0.85, 1.1];
  const zoom = zLo + (zHi - zLo) * random();
  const tx = (2 * random() - 1) * shift * w;
  const ty = (2 * random() - 1) * shift * h;
  const cx = (w - 1) / 2;
  const cy = (h - 1) / 2;
  let out: Float32Array = new Float32Array(w * h * 3);
  const at = (x: number, y: number, c: number) =>
    x < 0 || y < 0 || x >= w || y >= h ? 255 : data[(y * w + x) * 3 + c];
  for (let y = 0; y < h; y++) {
    // Inverse map: where in the source this output pixel comes from (bilinear, white outside).
    const sy = (y - cy - ty) / zoom + cy;
    const y0 = Math.floor(sy);
    const fy = sy - y0;
    for (let x = 0; x < w; x++) {
      const sx = (x - cx - tx) / zoom + cx;
      const x0 = Math.floor(sx);
      const fx = sx - x0;
      for (let c = 0; c < 3; c++) {
        const v =
          (1 - fy) * ((1 - fx) * at(x0, y0, c) + fx * at(x0 + 1, y0, c)) +
          fy * ((1 - fx) * at(x0, y0 + 1, c) + fx * at(x0 + 1, y0 + 1, c));
        out[(y * w + x) * 3 + c] = v / 127.5 - 1;
      }
    }
  }
  if (random() < (o.blur ?? 0.3)) out = blur121(out, w, h);
  const jitter = o.jitter ?? 0.15;
  const contrast = 1 + (2 * random() - 1) * jitter;
  const brightness = (2 * random() - 1) * jitter;
  for (let i = 0; i < out.length; i++) out[i] = Math.max(-1, Math.min(1, out[i] * contrast + brightness));
  return out;
}

/** Separable [1 2 1]/4 blur with edge pixels repeated. */
function blur121(src: Float32Array, w: number, h: number): Float32Array {
  const tmp = new Float32Array(src.length);
  const out = new Float32Array(src.length);
  const clamp = (v: number, n: number) => (v < 0 ? 0 : v >= n ? n - 1 : v);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++) {
        const p = (xx: number) => src[(y * w + clamp(xx, w)) * 3 + c];
        tmp[(y * w + x) * 3 + c] = (p(x - 1) + 2 * p(x) + p(x + 1)) / 4;
      }
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++) {
        const p = (yy: number) => tmp[(clamp(yy, h) * w + x) * 3 + c];
        out[(y * w + x) * 3 + c] = (p(y - 1) + 2 * p(y) + p(y + 1)) / 4;
      }
  return out;
}
