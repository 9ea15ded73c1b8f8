// Mask-free editing (Muse §3.3): from the tokens of an image and a new prompt, repeatedly mask a random
// fraction of the tokens and resample them under the prompt (paper: 8% per iteration, 100 iterations,
// guidance 4, top-k 3). The image drifts toward the prompt while most of its layout survives.
import type { Rng } from '../tensor/random.js';
import { MuseError } from '../util/errors.js';
import type { DecodeProblem, LogitsFn } from './parallel-decode.js';
import { sampleToken, validateSampling } from './sampling.js';

/** The paper's settings (§3.3), used where an option is not given. */
export const MASK_FREE_EDIT_DEFAULTS = { iterations: 100, fraction: 0.08, topK: 3, temperature: 1 } as const;

export interface MaskFreeEditOptions {
  /** Resampling rounds. Default 100. */
  iterations?: number;
  /** Fraction of tokens resampled per round. Default 0.08. */
  fraction?: number;
  /** Default 3. */
  topK?: number;
  /** Default 1. */
  temperature?: number;
  rng: Rng;
  onIteration?: (iteration: number, iterations: number, tokens: Int32Array) => void | Promise<void>;
}

export async function maskFreeEdit(
  logits: LogitsFn,
  problem: DecodeProblem,
  o: MaskFreeEditOptions,
): Promise<Int32Array> {
  const { batch, codebookSize: K, maskId } = problem;
  const n = problem.tokens.length / batch;
  const iterations = o.iterations ?? MASK_FREE_EDIT_DEFAULTS.iterations;
  const fraction = o.fraction ?? MASK_FREE_EDIT_DEFAULTS.fraction;
  if (!Number.isInteger(iterations) || iterations < 1)
    throw new MuseError(`edit iterations must be a positive integer, got ${o.iterations}`);
  if (!(fraction > 0 && fraction <= 1)) throw new MuseError(`edit fraction must be in (0, 1], got ${o.fraction}`);
  const sampling = validateSampling(
    { topK: o.topK ?? MASK_FREE_EDIT_DEFAULTS.topK, temperature: o.temperature ?? MASK_FREE_EDIT_DEFAULTS.temperature },
    K,
  );
  const tokens = Int32Array.from(problem.tokens);
  if (tokens.some((t) => !(t >= 0 && t < K)))
    throw new MuseError('mask-free editing starts from a complete token grid');
  const count = Math.max(1, Math.round(fraction * n));
  const order = new Int32Array(n);
  const row = new Float32Array(K);
  for (let it = 0; it < iterations; it++) {
    const chosen: number[] = [];
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < n; i++) order[i] = i;
      for (let i = 0; i < count; i++) {
        const j = i + o.rng.int(n - i);
        [order[i], order[j]] = [order[j], order[i]];
        chosen.push(b * n + order[i]);
      }
    }
    const input = Int32Array.from(tokens);
    for (const i of chosen) input[i] = maskId;
    const all = await logits(input, batch, it, iterations);
    for (const i of chosen) {
      row.set(all.subarray(i * K, (i + 1) * K));
      tokens[i] = sampleToken(row, sampling, o.rng).token;
    }
    await o.onIteration?.(it + 1, iterations, tokens);
  }
  return tokens;
}
