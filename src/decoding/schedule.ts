// Decoding schedules (MaskGIT, Chang et al. 2022, §3.2; Muse §2.6) as small pure functions.
//   masked after step t of N:   m_t = floor(m_0 · r(t/N)), r the mask schedule (cosine by default),
//                               clamped so every step commits at least one token, m_N = 0.
//   confidence noise at step t: τ_t = τ·(1 − t/N) (Gumbel noise annealed to zero; maskgit).
import { type MaskSchedule, maskRatio } from '../transformer/masking.js';
import { MuseError } from '../util/errors.js';

/**
 * Tokens still masked after each step: counts[t] for t = 0..steps (counts[0] = masked,
 * counts[steps] = 0), strictly decreasing, so step t commits counts[t−1] − counts[t] ≥ 1 tokens.
 * Needs 1 ≤ steps ≤ masked (see decodingSteps).
 */
export function maskedCounts(masked: number, steps: number, schedule: MaskSchedule = 'cosine'): Int32Array {
  if (!Number.isInteger(masked) || masked < 1) throw new MuseError(`nothing to decode: ${masked} masked tokens`);
  if (!Number.isInteger(steps) || steps < 1 || steps > masked)
    throw new MuseError(`decoding steps must be an integer from 1 to ${masked} (the masked tokens), got ${steps}`);
  const counts = new Int32Array(steps + 1);
  counts[0] = masked;
  for (let t = 1; t <= steps; t++) {
    const scheduled = Math.floor(masked * maskRatio(t / steps, schedule) + 1e-9);
    counts[t] = Math.max(steps - t, Math.min(counts[t - 1] - 1, scheduled));
  }
  return counts;
}

/**
 * The number of steps to decode `masked` tokens with: the requested number, or all of them one per
 * step when fewer tokens are masked than steps were asked for (inpainting a small region).
 */
export function decodingSteps(requested: number, masked: number): { steps: number; note?: string } {
  if (!Number.isInteger(requested) || requested < 1)
    throw new MuseError(`steps must be a positive integer, got ${requested}`);
  if (requested <= masked) return { steps: requested };
  return {
    steps: masked,
    note: `${requested} steps asked for ${masked} masked tokens: decoding in ${masked} steps (one token per step)`,
  };
}

/** Scale of the Gumbel noise on confidences at step t (1-based) of N: τ·(1 − t/N), 0 at the last step. */
export function confidenceNoise(tau: number, step: number, steps: number): number {
  return tau * (1 - step / steps);
}
