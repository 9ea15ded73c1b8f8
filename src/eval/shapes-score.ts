// Scores an image against a shapes claim (src/data/shapes.ts) from its pixels alone, GenEval style:
// find the objects (connected components of one palette colour), classify each one's shape from
// its geometry, then check presence, exact counts, colours and relations.
//
// Pixels are classified by the antialiasing line they lie on: a pixel that is a fraction α of
// palette colour c over white is white − α·(white − c). Each pixel gets the colour whose line fits
// best; pixels with α ≥ CORE_ALPHA form components, components smaller than MIN_AREA of the image
// are edge debris and are ignored. Shape features use soft coverage (α) over the component and a
// one-pixel ring around it, so they are sub-pixel accurate even at 32 px.

import {
  CATEGORIES,
  COLORS,
  type Color,
  PALETTE,
  type Shape,
  type ShapeCategory,
  type ShapeSpec,
  specFailure,
} from '../data/shapes.js';
import type { RgbImage } from '../image/image.js';
import { MuseError } from '../util/errors.js';

export interface DetectedObject {
  shape: Shape | 'unknown';
  color: Color;
  /** Centre of mass, canvas fractions (0..1, y down). */
  x: number;
  y: number;
  /** Soft coverage of the widest row and the tallest column, and the area (canvas fractions). */
  width: number;
  height: number;
  area: number;
  /** area / (width × height): square ≈ 1, circle ≈ 0.79, cross ≈ 0.59, triangle ≈ 0.5–0.65. */
  fill: number;
  /** Vertical skewness of the mass (an apex-up triangle ≈ −0.57, symmetric shapes ≈ 0). */
  skew: number;
}

export interface ShapeScore {
  ok: boolean;
  found: DetectedObject[];
  reason?: string;
}

/** Pixels at least this fraction of a palette colour start components. */
export const CORE_ALPHA = 0.5;
/** Components with fewer core pixels than this fraction of the image are ignored. */
export const MIN_AREA = 0.012;

const DIRS = COLORS.map((c) => PALETTE[c].map((v) => 255 - v));
const DIR_NORM2 = DIRS.map((d) => d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);

/** α of pixel ink (white − rgb) along colour k, and the distance from that colour's line. */
function fit(d0: number, d1: number, d2: number, k: number): [number, number] {
  const D = DIRS[k];
  const alpha = Math.max(0, (d0 * D[0] + d1 * D[1] + d2 * D[2]) / DIR_NORM2[k]);
  const r0 = d0 - alpha * D[0];
  const r1 = d1 - alpha * D[1];
  const r2 = d2 - alpha * D[2];
  return [alpha, Math.sqrt(r0 * r0 + r1 * r1 + r2 * r2)];
}

/** The pixel's ink projected on colour k's line (its coverage; not clamped, so noise stays zero-mean). */
function project(d0: number, d1: number, d2: number, k: number): number {
  const D = DIRS[k];
  return Math.max(-0.5, Math.min(1.5, (d0 * D[0] + d1 * D[1] + d2 * D[2]) / DIR_NORM2[k]));
}

/** A pixel's fit is accepted when it lies this close to the colour's line. */
const fits = (alpha: number, residual: number, k: number) => residual <= 20 + 0.4 * alpha * Math.sqrt(DIR_NORM2[k]);

/**
 * Shape from fill and vertical skew. Rendered ground truth at 32 px (1%–99% of 3,700 objects):
 * square fill 1.00; circle 0.79–0.80; cross 0.59; triangle 0.55–0.65 with skew −0.60 to −0.52
 * (others within ±0.012). At 64 px the ranges are tighter still.
 */
function classify(fill: number, skew: number, aspect: number): Shape | 'unknown' {
  if (aspect > 1.6 || aspect < 1 / 1.6 || fill < 0.35) return 'unknown';
  if (skew < -0.3) return 'triangle';
  if (fill >= 0.9) return 'square';
  if (fill >= 0.69) return 'circle';
  return 'cross';
}

/** Every object in an image: colour, shape, centre of mass and features. */
export function detectShapes(image: RgbImage): DetectedObject[] {
  const { width: W, height: H, data } = image;
  if (data.length !== W * H * 3) throw new MuseError(`image data has ${data.length} bytes, expected ${W * H * 3}`);
  const n = W * H;
  const label = new Int8Array(n).fill(-1);
  for (let i = 0; i < n; i++) {
    const d0 = 255 - data[i * 3];
    const d1 = 255 - data[i * 3 + 1];
    const d2 = 255 - data[i * 3 + 2];
    if (d0 + d1 + d2 < 60) continue;
    let best = -1;
    let bestRes = Number.POSITIVE_INFINITY;
    let bestAlpha = 0;
    for (let k = 0; k < DIRS.length; k++) {
      const [alpha, res] = fit(d0, d1, d2, k);
      if (res < bestRes) {
        bestRes = res;
        best = k;
        bestAlpha = alpha;
      }
    }
    if (bestAlpha >= CORE_ALPHA && fits(bestAlpha, bestRes, best)) label[i] = best;
  }

  const comp = new Int32Array(n).fill(-1);
  const components: { k: number; pixels: number[] }[] = [];
  const stack: number[] = [];
  for (let i = 0; i < n; i++) {
    if (label[i] < 0 || comp[i] >= 0) continue;
    const k = label[i];
    const id = components.length;
    const pixels: number[] = [];
    comp[i] = id;
    stack.push(i);
    while (stack.length) {
      const p = stack.pop()!;
      pixels.push(p);
      const px = p % W;
      const py = (p - px) / W;
      for (let dy = -1; dy <= 1; dy++) {
        const y = py + dy;
        if (y < 0 || y >= H) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const x = px + dx;
          if (x < 0 || x >= W) continue;
          const q = y * W + x;
          if (label[q] === k && comp[q] < 0) {
            comp[q] = id;
            stack.push(q);
          }
        }
      }
    }
    components.push({ k, pixels });
  }

  const minPixels = Math.max(3, MIN_AREA * n);
  const found: DetectedObject[] = [];
  const weight = new Float32Array(n);
  for (const [id, { k, pixels }] of components.entries()) {
    if (pixels.length < minPixels) continue;
    // Soft coverage over the component and its one-pixel ring (not other components' pixels).
    const region = new Set<number>();
    for (const p of pixels) {
      const px = p % W;
      const py = (p - px) / W;
      for (let dy = -1; dy <= 1; dy++) {
        const y = py + dy;
        if (y < 0 || y >= H) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const x = px + dx;
          if (x < 0 || x >= W) continue;
          const q = y * W + x;
          if (comp[q] === id || comp[q] < 0) region.add(q);
        }
      }
    }
    // Weights are the unclamped projection, so noise on white averages out instead of adding area.
    let x0 = W;
    let x1 = -1;
    let y0 = H;
    let y1 = -1;
    let area = 0;
    let sx = 0;
    let sy = 0;
    for (const q of region) {
      const d0 = 255 - data[q * 3];
      const d1 = 255 - data[q * 3 + 1];
      const d2 = 255 - data[q * 3 + 2];
      const [alpha, res] = fit(d0, d1, d2, k);
      const w = comp[q] === id || fits(alpha, res, k) ? project(d0, d1, d2, k) : 0;
      weight[q] = w;
      const qx = q % W;
      const qy = (q - qx) / W;
      x0 = Math.min(x0, qx);
      x1 = Math.max(x1, qx);
      y0 = Math.min(y0, qy);
      y1 = Math.max(y1, qy);
      area += w;
      sx += w * (qx + 0.5);
      sy += w * (qy + 0.5);
    }
    const cx = sx / area;
    const cy = sy / area;
    // Extents from the heaviest column and row: sums over many pixels, so robust to noise.
    const colSum = new Float64Array(x1 - x0 + 1);
    const rowSum = new Float64Array(y1 - y0 + 1);
    let m2 = 0;
    let m3 = 0;
    for (const q of region) {
      const w = weight[q];
      weight[q] = 0;
      const qx = q % W;
      const qy = (q - qx) / W;
      colSum[qx - x0] += w;
      rowSum[qy - y0] += w;
      const dy = qy + 0.5 - cy;
      m2 += w * dy * dy;
      m3 += w * dy * dy * dy;
    }
    const width = Math.max(...rowSum);
    const height = Math.max(...colSum);
    const fill = area / (width * height);
    m2 /= area;
    m3 /= area;
    const skew = m2 > 0 ? m3 / m2 ** 1.5 : 0;
    found.push({
      shape: classify(fill, skew, width / height),
      color: COLORS[k],
      x: cx / W,
      y: cy / H,
      width: width / W,
      height: height / H,
      area: area / n,
      fill,
      skew,
    });
  }
  return found;
}

const listFound = (found: DetectedObject[]) =>
  found.length ? found.map((o) => `${o.color} ${o.shape}`).join(', ') : 'nothing';

/**
 * Checks a claim against the image's pixels: the objects found are checked with the same rule as
 * the ground truth (`specFailure` in data/shapes.ts, relations between centres of mass).
 */
export function scoreShapes(image: RgbImage, spec: ShapeSpec): ShapeScore {
  const found = detectShapes(image);
  const reason = specFailure(found, spec);
  return reason === undefined
    ? { ok: true, found }
    : { ok: false, found, reason: `${reason} (found: ${listFound(found)})` };
}

export interface Tally {
  correct: number;
  total: number;
  /** correct / total; NaN when total is 0. */
  accuracy: number;
}

export interface ShapesReport {
  /** All items together. */
  overall: Tally;
  /** Mean of the per-category accuracies over categories with items (GenEval's overall score). */
  categoryMean: number;
  byCategory: Record<ShapeCategory, Tally>;
}

const tally = (correct: number, total: number): Tally => ({
  correct,
  total,
  accuracy: total ? correct / total : Number.NaN,
});

/** Scores many images and aggregates accuracy per category (the spec's kind). */
export function scoreMany(items: Iterable<{ image: RgbImage; spec: ShapeSpec }>): ShapesReport {
  return tallyScores(Array.from(items, ({ image, spec }) => ({ spec, ok: scoreShapes(image, spec).ok })));
}

/** Accuracy per category (the spec's kind) of claims already judged. */
export function tallyScores(items: Iterable<{ spec: ShapeSpec; ok: boolean }>): ShapesReport {
  const counts = Object.fromEntries(CATEGORIES.map((c) => [c, [0, 0]])) as Record<ShapeCategory, [number, number]>;
  for (const { spec, ok } of items) {
    const c = counts[spec.kind];
    if (ok) c[0]++;
    c[1]++;
  }
  const byCategory = Object.fromEntries(CATEGORIES.map((c) => [c, tally(...counts[c])])) as Record<
    ShapeCategory,
    Tally
  >;
  const all = Object.values(counts).reduce(([a, b], [c, d]) => [a + c, b + d], [0, 0]);
  const present = CATEGORIES.filter((c) => byCategory[c].total > 0);
  return {
    overall: tally(all[0], all[1]),
    categoryMean: present.length
      ? present.reduce((s, c) => s + byCategory[c].accuracy, 0) / present.length
      : Number.NaN,
    byCategory,
  };
}
