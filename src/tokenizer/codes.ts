// A tokenizer's code vectors as another model reads them (the super-res stage's low-res input): the
// vectors its decoder sees for each token — unit rows for the l2-normalised lookup, the raw EMA
// codebook otherwise — scaled to unit root-mean-square over the whole codebook, so a projection
// initialised like any other layer starts at a sensible scale.
import { quantizerKind, type TokenizerConfig } from './config.js';
import type { TokenizerParams } from './model.js';

export function codeVectors(config: TokenizerConfig, params: TokenizerParams): { data: Float32Array; dim: number } {
  const dim = config.codeDim;
  const data = Float32Array.from(params['quant.codebook'].dataSync() as Float32Array);
  if (quantizerKind(config) === 'l2') {
    for (let r = 0; r < data.length / dim; r++) {
      let norm = 0;
      for (let k = 0; k < dim; k++) norm += data[r * dim + k] ** 2;
      const scale = 1 / Math.max(Math.sqrt(norm), 1e-12);
      for (let k = 0; k < dim; k++) data[r * dim + k] *= scale;
    }
  }
  let square = 0;
  for (const v of data) square += v * v;
  const rms = Math.sqrt(square / data.length) || 1;
  for (let i = 0; i < data.length; i++) data[i] /= rms;
  return { data, dim };
}

/**
 * For each code t, a distribution over the other codes that favours its near neighbours:
 * q_t(k) ∝ exp(−‖e_k − e_t‖² / (temperature · d̄)), q_t(t) = 0, where d̄ is the mean squared distance
 * from a code to its nearest other code (so the temperature does not depend on the codebook's scale).
 * Row-major [K × K]. Used as label smoothing toward codes that decode alike (`--smooth-to-neighbours`).
 */
export function codeNeighbours(vectors: { data: Float32Array; dim: number }, temperature: number): Float32Array {
  if (!(temperature > 0)) throw new Error(`neighbour temperature must be > 0, got ${temperature}`);
  const { data, dim } = vectors;
  const k = data.length / dim;
  const dist = new Float64Array(k * k);
  // Each code's squared distance to its nearest other code: the mean sets the scale, and each row's
  // own shifts its exponentials (so the largest is 1).
  const nearest = new Float64Array(k);
  for (let a = 0; a < k; a++) {
    let best = Number.POSITIVE_INFINITY;
    for (let b = 0; b < k; b++) {
      if (a === b) continue;
      let d = 0;
      for (let i = 0; i < dim; i++) d += (data[a * dim + i] - data[b * dim + i]) ** 2;
      dist[a * k + b] = d;
      best = Math.min(best, d);
    }
    nearest[a] = best;
  }
  let meanNearest = 0;
  for (const d of nearest) meanNearest += Number.isFinite(d) ? d : 0;
  const scale = temperature * (meanNearest / k || 1);
  const out = new Float32Array(k * k);
  for (let a = 0; a < k; a++) {
    let sum = 0;
    const row = new Float64Array(k);
    for (let b = 0; b < k; b++) {
      if (b === a) continue;
      row[b] = Math.exp(-(dist[a * k + b] - nearest[a]) / scale);
      sum += row[b];
    }
    for (let b = 0; b < k; b++) out[a * k + b] = sum > 0 ? row[b] / sum : 0;
  }
  return out;
}
