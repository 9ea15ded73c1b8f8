// Drawing tokens from logits, one position at a time, on plain arrays (decoding runs this between
// forward passes).
import type { Rng } from '../tensor/random.js';
import { MuseError } from '../util/errors.js';

export interface SamplingOptions {
  /** Softmax temperature; 0 takes the most likely token. Default 1. */
  temperature?: number;
  /** Draw only among the k most likely tokens (0: all). Default 0. */
  topK?: number;
}

export function validateSampling(o: SamplingOptions, codebookSize: number): Required<SamplingOptions> {
  const temperature = o.temperature ?? 1;
  const topK = o.topK ?? 0;
  if (!(temperature >= 0) || !Number.isFinite(temperature))
    throw new MuseError(`temperature must be a finite number ≥ 0, got ${o.temperature}`);
  if (!Number.isInteger(topK) || topK < 0 || topK > codebookSize)
    throw new MuseError(`top-k must be an integer from 0 (off) to ${codebookSize}, got ${o.topK}`);
  return { temperature, topK };
}

/** A standard Gumbel draw, −log(−log u). */
export function gumbel(rng: Rng): number {
  return -Math.log(-Math.log(Math.max(rng.uniform(), 1e-20)));
}

/** The k-th largest of values (k ≥ 1). */
function kthLargest(values: Float32Array, k: number): number {
  return Float32Array.from(values).sort().reverse()[k - 1];
}

let scratch = new Float64Array(0);

/**
 * One token drawn from the logits of one position, and its log-probability under softmax(logits)
 * (the model's own probability, unaffected by temperature or top-k: MaskGIT's confidence).
 * Inverse-CDF sampling: one uniform per draw instead of one Gumbel per code.
 */
export function sampleToken(
  logits: Float32Array,
  o: Required<SamplingOptions>,
  rng: Rng,
): { token: number; logProb: number } {
  const K = logits.length;
  let max = Number.NEGATIVE_INFINITY;
  let argmax = 0;
  for (let k = 0; k < K; k++) {
    if (logits[k] > max) {
      max = logits[k];
      argmax = k;
    }
  }
  let sum = 0;
  for (let k = 0; k < K; k++) sum += Math.exp(logits[k] - max);
  const logZ = max + Math.log(sum);
  if (o.temperature === 0) return { token: argmax, logProb: max - logZ };
  const floor = o.topK > 0 && o.topK < K ? kthLargest(logits, o.topK) : Number.NEGATIVE_INFINITY;
  if (scratch.length < K) scratch = new Float64Array(K);
  let total = 0;
  for (let k = 0; k < K; k++) {
    scratch[k] = logits[k] < floor ? 0 : Math.exp((logits[k] - max) / o.temperature);
    total += scratch[k];
  }
  let r = rng.uniform() * total;
  let token = argmax;
  for (let k = 0; k < K; k++) {
    if (scratch[k] === 0) continue;
    token = k;
    r -= scratch[k];
    if (r < 0) break;
  }
  return { token, logProb: logits[token] - logZ };
}

/** A tokenizer's code vectors, row-major [K × dim] (src/tokenizer/codes.ts codeVectors). */
export interface CodeSpace {
  data: Float32Array;
  dim: number;
}

let meanScratch = new Float64Array(0);

/**
 * The code nearest the mean code vector of one position's distribution p = softmax(logits/temperature),
 * μ = Σ_k p_k·e_k: of all codes, the one with the least expected squared distance to the code the
 * model believes in, E_p‖e_token − e_j‖² = ‖e_token − μ‖² + Σ_j p_j‖e_j‖² − ‖μ‖² (minimum Bayes risk
 * under the tokenizer's latent distance). Where the model spreads its mass over near neighbours, this
 * takes their middle rather than one of them; where it splits between far codes, a code between.
 * Deterministic. `confidence` is minus that expected distance, so positions whose distribution is
 * tight in latent space commit first.
 */
export function meanCodeToken(
  logits: Float32Array,
  temperature: number,
  space: CodeSpace,
): { token: number; confidence: number } {
  const K = logits.length;
  const { data, dim } = space;
  if (data.length !== K * dim) throw new Error(`code space of ${data.length / dim} codes for ${K} logits`);
  if (!(temperature > 0)) throw new MuseError(`the mean-code choice needs a temperature > 0, got ${temperature}`);
  let max = Number.NEGATIVE_INFINITY;
  for (let k = 0; k < K; k++) max = Math.max(max, logits[k]);
  if (meanScratch.length < dim) meanScratch = new Float64Array(dim);
  const mu = meanScratch;
  mu.fill(0, 0, dim);
  let total = 0;
  let spread = 0; // Σ p_k‖e_k‖² (unnormalised until the end)
  for (let k = 0; k < K; k++) {
    const w = Math.exp((logits[k] - max) / temperature);
    if (w < 1e-12) continue;
    total += w;
    let norm = 0;
    for (let c = 0; c < dim; c++) {
      const e = data[k * dim + c];
      mu[c] += w * e;
      norm += e * e;
    }
    spread += w * norm;
  }
  let muNorm = 0;
  for (let c = 0; c < dim; c++) {
    mu[c] /= total;
    muNorm += mu[c] * mu[c];
  }
  let token = 0;
  let best = Number.POSITIVE_INFINITY;
  for (let k = 0; k < K; k++) {
    let d = 0;
    for (let c = 0; c < dim; c++) {
      const diff = data[k * dim + c] - mu[c];
      d += diff * diff;
    }
    if (d < best) {
      best = d;
      token = k;
    }
  }
  return { token, confidence: -(best + spread / total - muNorm) };
}
