// Image quality metrics for the VQ tokenizer's reconstructions: PSNR and SSIM.
//
// Both work on 8-bit RGB (RgbImage) and on float HWC images in [-1, 1] (the tokenizer's range,
// converted to the 0–255 scale with v ↦ (v + 1)·127.5, no rounding), always with peak 255, in
// float64.
//
// SSIM follows Wang, Bovik, Sheikh & Simoncelli (2004), "Image quality assessment: from error
// visibility to structural similarity", exactly as scikit-image computes
// `structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
// data_range=255, channel_axis=-1)`:
//   - local statistics under an 11×11 Gaussian window, σ = 1.5 (weights exp(−d²/2σ²) over
//     d = −5..5 per axis, normalised to sum 1; separable, applied as two 1-D passes);
//   - population (not sample) variances and covariance: σx² = E[x²] − E[x]²;
//   - K1 = 0.01, K2 = 0.03, L = 255, C1 = (K1·L)², C2 = (K2·L)²;
//   - SSIM map (2μxμy + C1)(2σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)), averaged over the
//     "valid" positions only (windows entirely inside the image, no padding: an image W×H gives
//     (W − 10)×(H − 10) positions);
//   - computed on each of R, G, B separately, and the three means averaged.
// Images smaller than 11 px on a side (where scikit-image refuses) use the largest odd window that
// fits, min(W, H) rounded down to odd, with the same σ = 1.5 Gaussian truncated to that window and
// renormalised.
import type { RgbImage } from './image.js';

/** Peak value of the 0–255 scale all metrics use. */
export const DATA_RANGE = 255;
const K1 = 0.01;
const K2 = 0.03;
const C1 = (K1 * DATA_RANGE) ** 2;
const C2 = (K2 * DATA_RANGE) ** 2;
/** SSIM's Gaussian window: side and σ. */
export const SSIM_WINDOW = 11;
export const SSIM_SIGMA = 1.5;

/** A pair (reference, reconstruction) of images of the same size. */
export type ImagePair = readonly [RgbImage, RgbImage];

export interface FloatImageOptions {
  /** Clamp values to [-1, 1] before measuring (as the decoded image would be shown). Default false. */
  clamp?: boolean;
}

function checkRgb(img: RgbImage, what: string): void {
  if (
    !Number.isInteger(img.width) ||
    !Number.isInteger(img.height) ||
    img.width <= 0 ||
    img.height <= 0 ||
    img.data.length !== img.width * img.height * 3
  ) {
    throw new Error(
      `${what}: ${img.width}×${img.height} RGB image needs ${img.width * img.height * 3} bytes, got ${img.data.length}`,
    );
  }
}

function checkSameSize(a: RgbImage, b: RgbImage): void {
  if (a.width !== b.width || a.height !== b.height) {
    throw new Error(`image sizes differ: ${a.width}×${a.height} vs ${b.width}×${b.height}`);
  }
  checkRgb(a, 'first image');
  checkRgb(b, 'second image');
}

function checkFloat(a: Float32Array, b: Float32Array, width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`invalid image size ${width}×${height}`);
  }
  const n = width * height * 3;
  if (a.length !== n || b.length !== n) {
    throw new Error(
      `image sizes differ: expected ${width}×${height}×3 = ${n} values each, got ${a.length} and ${b.length}`,
    );
  }
}

/** Float HWC in [-1, 1] to float64 on the 0–255 scale. */
function toByteScale(values: Float32Array, clamp: boolean): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = clamp ? Math.max(-1, Math.min(1, values[i])) : values[i];
    out[i] = (v + 1) * 127.5;
  }
  return out;
}

type Pixels = ArrayLike<number>;

function mseOf(a: Pixels, b: Pixels): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    sum += d * d;
  }
  return sum / a.length;
}

/** PSNR in dB of a mean squared error on the 0–255 scale: 10·log10(255² / mse); Infinity for mse 0. */
export function psnrFromMse(mse: number): number {
  return mse === 0 ? Number.POSITIVE_INFINITY : 10 * Math.log10((DATA_RANGE * DATA_RANGE) / mse);
}

/** Mean squared error over all pixels and all three channels, 0–255 scale. */
export function mse(a: RgbImage, b: RgbImage): number {
  checkSameSize(a, b);
  return mseOf(a.data, b.data);
}

/** PSNR in dB over all RGB values, peak 255. Identical images give Infinity. */
export function psnr(a: RgbImage, b: RgbImage): number {
  return psnrFromMse(mse(a, b));
}

function checkPairs(pairs: readonly ImagePair[], what: string): void {
  if (pairs.length === 0) throw new Error(`${what}: no image pairs`);
}

/**
 * Mean of the per-image PSNRs (the usual convention for reporting reconstruction PSNR, as in
 * VQGAN/MaskGIT-style tokenizer evaluations). One identical pair makes the mean Infinity; see
 * psnrOfMeanMse for the other convention. Throws on an empty list.
 */
export function meanPsnr(pairs: readonly ImagePair[]): number {
  checkPairs(pairs, 'meanPsnr');
  let sum = 0;
  for (const [a, b] of pairs) sum += psnr(a, b);
  return sum / pairs.length;
}

/**
 * PSNR of the MSE averaged over all images (every image weighted by its pixel count), i.e. the PSNR
 * of the whole set seen as one image. Always ≤ meanPsnr (Jensen); finite unless every pair is
 * identical. Throws on an empty list.
 */
export function psnrOfMeanMse(pairs: readonly ImagePair[]): number {
  checkPairs(pairs, 'psnrOfMeanMse');
  let sum = 0;
  let count = 0;
  for (const [a, b] of pairs) {
    const m = mse(a, b);
    sum += m * a.data.length;
    count += a.data.length;
  }
  return psnrFromMse(sum / count);
}

/** PSNR of float HWC images in [-1, 1], measured on the 0–255 scale (peak 255). */
export function psnrFloat(
  a: Float32Array,
  b: Float32Array,
  width: number,
  height: number,
  options: FloatImageOptions = {},
): number {
  checkFloat(a, b, width, height);
  const clamp = options.clamp ?? false;
  return psnrFromMse(mseOf(toByteScale(a, clamp), toByteScale(b, clamp)));
}

// ---- SSIM ----

const windowCache = new Map<number, Float64Array>();

/** The normalised 1-D Gaussian (σ = 1.5) of odd length `size` that SSIM filters with. */
export function ssimWindow(size: number): Float64Array {
  let w = windowCache.get(size);
  if (w) return w;
  if (!Number.isInteger(size) || size < 1 || size % 2 === 0) throw new Error(`SSIM window must be odd, got ${size}`);
  const r = (size - 1) / 2;
  w = new Float64Array(size);
  let sum = 0;
  for (let i = 0; i < size; i++) {
    const d = i - r;
    w[i] = Math.exp((-0.5 * d * d) / (SSIM_SIGMA * SSIM_SIGMA));
    sum += w[i];
  }
  for (let i = 0; i < size; i++) w[i] /= sum;
  windowCache.set(size, w);
  return w;
}

/** The SSIM window side used for a width×height image: 11, or the largest odd size that fits. */
export function ssimWindowSize(width: number, height: number): number {
  const fit = Math.min(width, height);
  return Math.min(SSIM_WINDOW, fit % 2 === 1 ? fit : fit - 1);
}

// Mean SSIM of one channel (`c` of 3, interleaved) over the valid region. Horizontal pass first:
// five sums (x, y, x², y², xy) for every row and valid column, then the vertical pass per output.
function ssimChannel(a: Pixels, b: Pixels, width: number, height: number, c: number, scratch: Float64Array): number {
  const size = ssimWindowSize(width, height);
  const w = ssimWindow(size);
  const ow = width - size + 1;
  const oh = height - size + 1;
  // scratch layout: 5 planes of height × ow
  const plane = height * ow;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < ow; x++) {
      let sx = 0;
      let sy = 0;
      let sxx = 0;
      let syy = 0;
      let sxy = 0;
      for (let k = 0; k < size; k++) {
        const idx = (row + x + k) * 3 + c;
        const va = a[idx];
        const vb = b[idx];
        const wk = w[k];
        const wa = wk * va;
        const wb = wk * vb;
        sx += wa;
        sy += wb;
        sxx += wa * va;
        syy += wb * vb;
        sxy += wa * vb;
      }
      const o = y * ow + x;
      scratch[o] = sx;
      scratch[plane + o] = sy;
      scratch[2 * plane + o] = sxx;
      scratch[3 * plane + o] = syy;
      scratch[4 * plane + o] = sxy;
    }
  }
  let total = 0;
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let mx = 0;
      let my = 0;
      let exx = 0;
      let eyy = 0;
      let exy = 0;
      for (let k = 0; k < size; k++) {
        const o = (y + k) * ow + x;
        const wk = w[k];
        mx += wk * scratch[o];
        my += wk * scratch[plane + o];
        exx += wk * scratch[2 * plane + o];
        eyy += wk * scratch[3 * plane + o];
        exy += wk * scratch[4 * plane + o];
      }
      const vx = exx - mx * mx;
      const vy = eyy - my * my;
      const cxy = exy - mx * my;
      total += ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2));
    }
  }
  return total / (ow * oh);
}

function ssimPixels(a: Pixels, b: Pixels, width: number, height: number): number {
  const size = ssimWindowSize(width, height);
  const scratch = new Float64Array(5 * height * (width - size + 1));
  let sum = 0;
  for (let c = 0; c < 3; c++) sum += ssimChannel(a, b, width, height, c, scratch);
  return sum / 3;
}

/**
 * Mean SSIM (Wang et al. 2004) of two RGB images: Gaussian window 11×11, σ = 1.5, K1 = 0.01,
 * K2 = 0.03, L = 255, population covariances, valid region only, mean of the per-channel means.
 * Matches scikit-image's structural_similarity(gaussian_weights=True, sigma=1.5,
 * use_sample_covariance=False, data_range=255, channel_axis=-1). Images under 11 px on a side use
 * the largest odd window that fits. Identical images give 1.
 */
export function ssim(a: RgbImage, b: RgbImage): number {
  checkSameSize(a, b);
  return ssimPixels(a.data, b.data, a.width, a.height);
}

/** Mean of the per-image SSIMs. Throws on an empty list. */
export function meanSsim(pairs: readonly ImagePair[]): number {
  checkPairs(pairs, 'meanSsim');
  let sum = 0;
  for (const [a, b] of pairs) sum += ssim(a, b);
  return sum / pairs.length;
}

/** SSIM (as `ssim`) of float HWC images in [-1, 1], measured on the 0–255 scale with L = 255. */
export function ssimFloat(
  a: Float32Array,
  b: Float32Array,
  width: number,
  height: number,
  options: FloatImageOptions = {},
): number {
  checkFloat(a, b, width, height);
  const clamp = options.clamp ?? false;
  return ssimPixels(toByteScale(a, clamp), toByteScale(b, clamp), width, height);
}
