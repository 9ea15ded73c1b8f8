// Mask schedules and training masks (MaskGIT, Chang et al. 2022; Muse §2.4), as small pure functions.
//   mask ratio at progress u ∈ [0, 1]:  cosine r = cos(π/2·u)   linear r = 1 − u   square r = 1 − u²
//   training: u ~ U(0, 1), r = cos(π/2·u) (the truncated arccos distribution, mean 2/π ≈ 0.637),
//             ceil(r·n) of the n positions masked (at least 1), chosen uniformly without replacement.
import type { Rng } from '../tensor/random.js';
import { MuseError } from '../util/errors.js';

export type MaskSchedule = 'cosine' | 'linear' | 'square';

/** Fraction of tokens masked at progress u ∈ [0, 1] (1 at u = 0, 0 at u = 1). */
export function maskRatio(u: number, schedule: MaskSchedule = 'cosine'): number {
  if (!(u >= 0 && u <= 1)) throw new MuseError(`mask schedule: u must be in [0, 1], got ${u}`);
  switch (schedule) {
    case 'cosine':
      return Math.cos((Math.PI / 2) * u);
    case 'linear':
      return 1 - u;
    case 'square':
      return 1 - u * u;
    default:
      throw new MuseError(`unknown mask schedule "${schedule}": choose cosine, linear or square`);
  }
}

/** A training mask over n tokens (1 = masked): ceil(cos(π/2·u)·n) positions, u ~ U(0, 1), at least 1. */
export function sampleTrainingMask(n: number, rng: Rng): Uint8Array {
  if (!Number.isInteger(n) || n < 1) throw new MuseError(`a training mask needs n ≥ 1 tokens, got ${n}`);
  const r = maskRatio(rng.uniform());
  const count = Math.min(n, Math.max(1, Math.ceil(r * n)));
  // Partial Fisher–Yates: the first `count` entries of a uniform random permutation.
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const mask = new Uint8Array(n);
  for (let i = 0; i < count; i++) {
    const j = i + rng.int(n - i);
    [order[i], order[j]] = [order[j], order[i]];
    mask[order[i]] = 1;
  }
  return mask;
}

/** Training masks for a batch of B grids of n tokens each, concatenated ([B·n]); one ratio per grid. */
export function sampleTrainingMasks(batch: number, n: number, rng: Rng): Uint8Array {
  const out = new Uint8Array(batch * n);
  for (let b = 0; b < batch; b++) out.set(sampleTrainingMask(n, rng), b * n);
  return out;
}

/** tokens with every masked position replaced by maskId. */
export function applyMask(tokens: Int32Array, mask: Uint8Array, maskId: number): Int32Array {
  if (mask.length !== tokens.length) throw new MuseError(`mask has ${mask.length} entries for ${tokens.length} tokens`);
  return tokens.map((t, i) => (mask[i] ? maskId : t));
}
