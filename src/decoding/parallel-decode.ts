// MaskGIT parallel decoding (Chang et al. 2022, §3.2; Muse §2.6). Start from grids where some (or all)
// tokens are [MASK]; at each step t of N:
//   1. one forward pass gives logits for every position;
//   2. every masked position draws a token from softmax(logits/temperature) (optionally top-k);
//   3. its confidence is log p(token) + τ_t·g, g ~ Gumbel, τ_t = τ·(1 − t/N);
//   4. the most confident draws are committed so that m_t = schedule(t) tokens stay masked; the rest
//      go back to [MASK]. Committed (and given) tokens never change again.

import type { Rng } from '../tensor/random.js';
import type { MaskSchedule } from '../transformer/masking.js';
import { MuseError } from '../util/errors.js';
import {
  type CodeSpace,
  gumbel,
  meanCodeToken,
  type SamplingOptions,
  sampleToken,
  validateSampling,
} from './sampling.js';
import { confidenceNoise, maskedCounts } from './schedule.js';

/**
 * Logits [batch, n, K] for token grids [batch, n] (the mask id marks unknown positions) at decoding
 * step `step` (0-based) of `steps`; guidance may depend on the step.
 */
export type LogitsFn = (tokens: Int32Array, batch: number, step: number, steps: number) => Promise<Float32Array>;

export interface ParallelDecodeOptions extends SamplingOptions {
  /** Decoding steps N (1 ≤ N ≤ the fewest masked tokens of any grid). */
  steps: number;
  /** How many tokens stay masked after each step. Default cosine. */
  schedule?: MaskSchedule;
  /** τ: scale of the Gumbel noise on confidences, annealed to 0 (maskgit: 4.5). Default 4.5. */
  choiceTemperature?: number;
  rng: Rng;
  /**
   * One generator per grid (row b draws from rngs[b]): a grid's tokens then do not depend on the
   * other grids of the batch, so a batch split into chunks decodes the same images. Default: `rng`
   * for every grid, in turn.
   */
  rngs?: Rng[];
  /**
   * Choose each position's token as the code nearest its mean code vector under
   * softmax(logits/temperature) (`meanCodeToken`; temperature 0 counts as 1; top-k unused), committing
   * the positions with the least expected latent error first, instead of drawing tokens: the
   * deterministic choice that minimises the expected squared error of the decoded latents, for a
   * stage judged by pixel fidelity (super-res). The choice temperature still adds its noise.
   */
  meanCode?: CodeSpace;
  /** After each step: the grids so far (still-masked positions hold the mask id). */
  onStep?: (step: number, steps: number, tokens: Int32Array) => void | Promise<void>;
}

export interface DecodeProblem {
  /** Grids [batch, n]; positions equal to maskId are decoded, the others are kept. */
  tokens: Int32Array;
  batch: number;
  codebookSize: number;
  maskId: number;
}

export async function parallelDecode(
  logits: LogitsFn,
  problem: DecodeProblem,
  o: ParallelDecodeOptions,
): Promise<Int32Array> {
  const { batch, codebookSize: K, maskId } = problem;
  const n = problem.tokens.length / batch;
  if (!Number.isInteger(n) || n < 1) throw new MuseError(`${problem.tokens.length} tokens do not make ${batch} grids`);
  const sampling = validateSampling(o, K);
  const tau = o.choiceTemperature ?? 4.5;
  if (!(tau >= 0)) throw new MuseError(`choice temperature must be ≥ 0, got ${o.choiceTemperature}`);
  const tokens = Int32Array.from(problem.tokens);
  const schedules: Int32Array[] = [];
  for (let b = 0; b < batch; b++) {
    let masked = 0;
    for (let i = b * n; i < (b + 1) * n; i++) {
      if (tokens[i] === maskId) masked++;
      else if (!(tokens[i] >= 0 && tokens[i] < K)) throw new MuseError(`token ${tokens[i]} is not a code or the mask`);
    }
    schedules.push(masked > 0 ? maskedCounts(masked, o.steps, o.schedule) : new Int32Array(o.steps + 1));
  }
  if (o.rngs && o.rngs.length !== batch) throw new Error(`${o.rngs.length} generators for ${batch} grids`);
  const row = new Float32Array(K);
  for (let step = 0; step < o.steps; step++) {
    const all = await logits(tokens, batch, step, o.steps);
    if (all.length !== batch * n * K)
      throw new Error(`logits function returned ${all.length} values, not ${batch * n * K}`);
    // NaN or infinite logits (broken or overflowing weights) would draw the same tokens for every
    // prompt and seed: stop with one clear error instead of making an image.
    for (let i = 0; i < all.length; i++) {
      if (!Number.isFinite(all[i]))
        throw new MuseError(
          `decoding step ${step + 1} of ${o.steps}: the model's logits hold ${all[i]} (its weights are broken or overflow)`,
        );
    }
    const noise = confidenceNoise(tau, step + 1, o.steps);
    for (let b = 0; b < batch; b++) {
      const rng = o.rngs?.[b] ?? o.rng;
      const drawn: Array<{ i: number; token: number; confidence: number }> = [];
      for (let i = b * n; i < (b + 1) * n; i++) {
        if (tokens[i] !== maskId) continue;
        row.set(all.subarray(i * K, (i + 1) * K));
        const { token, confidence } = o.meanCode
          ? meanCodeToken(row, sampling.temperature || 1, o.meanCode)
          : (({ token: t, logProb }) => ({ token: t, confidence: logProb }))(sampleToken(row, sampling, rng));
        drawn.push({ i, token, confidence: confidence + (noise > 0 ? noise * gumbel(rng) : 0) });
      }
      const commit = drawn.length - schedules[b][step + 1];
      drawn.sort((x, y) => y.confidence - x.confidence || x.i - y.i);
      for (let j = 0; j < commit; j++) tokens[drawn[j].i] = drawn[j].token;
    }
    await o.onStep?.(step + 1, o.steps, tokens);
  }
  return tokens;
}
