// Classifier-free guidance (Ho & Salimans 2022; Muse §2.7): ℓ = (1 + t)·ℓ_cond − t·ℓ_uncond, where
// ℓ_uncond comes from the empty prompt or, for negative prompting, from the negative prompt. The paper
// ramps t linearly over the decoding steps; a constant t is the other common choice.
import { MuseError } from '../util/errors.js';

export type GuidanceSchedule = 'linear' | 'constant';

/** The guidance scale at step s (0-based) of N: linear reaches `scale` at the last step. */
export function guidanceScale(
  scale: number,
  step: number,
  steps: number,
  schedule: GuidanceSchedule = 'linear',
): number {
  if (!(scale >= 0) || !Number.isFinite(scale))
    throw new MuseError(`guidance must be a finite number ≥ 0, got ${scale}`);
  if (schedule === 'constant') return scale;
  if (schedule === 'linear') return (scale * (step + 1)) / steps;
  throw new MuseError(`unknown guidance schedule "${schedule}": choose linear or constant`);
}

/** (1 + t)·cond − t·uncond, elementwise (t = 0 gives cond exactly). */
export function guideLogits(cond: Float32Array, uncond: Float32Array, t: number): Float32Array {
  if (cond.length !== uncond.length) throw new Error('guidance: logits of different sizes');
  if (t === 0) return cond;
  const out = new Float32Array(cond.length);
  for (let i = 0; i < cond.length; i++) out[i] = (1 + t) * cond[i] - t * uncond[i];
  return out;
}
