// The masked-token loss of MaskGIT/Muse: cross-entropy over the MASKED positions only (an unmasked
// position is given in the input, so predicting it teaches nothing), with label smoothing ε:
//   loss = mean over masked rows of  (1 − ε)·(−log p[target]) + ε·mean_k(−log p[k])
// i.e. cross-entropy against the soft target q = (1 − ε)·onehot(target) + ε/K. With a neighbour
// table N (src/tokenizer/codes.ts codeNeighbours) the smoothing mass goes to the target's near codes
// instead: q = (1 − ε)·onehot(target) + ε·N[target].
import * as tf from '@tensorflow/tfjs-core';
import { softCrossEntropy } from '../tensor/ops/cross-entropy.js';
import { MuseError } from '../util/errors.js';

export interface MaskedLoss {
  loss: tf.Scalar;
  /** Fraction of masked positions whose argmax logit is the target. */
  accuracy: number;
}

/**
 * logits [B, N, K]; targets [B·N] (codes in [0, K) at masked positions, anything elsewhere);
 * mask [B·N] (1 = masked). The masked rows are gathered first, so the other rows get zero gradient.
 */
export function maskedCrossEntropy(
  logits: tf.Tensor3D,
  targets: Int32Array,
  mask: Uint8Array,
  labelSmoothing = 0.1,
  neighbours?: Float32Array,
): MaskedLoss {
  const [b, n, k] = logits.shape;
  if (targets.length !== b * n || mask.length !== b * n)
    throw new MuseError(`targets (${targets.length}) and mask (${mask.length}) must have B·N = ${b * n} entries`);
  if (!(labelSmoothing >= 0 && labelSmoothing < 1))
    throw new MuseError(`label smoothing must be in [0, 1), got ${labelSmoothing}`);
  const rows: number[] = [];
  for (let i = 0; i < mask.length; i++) if (mask[i]) rows.push(i);
  if (rows.length === 0) throw new MuseError('masked cross-entropy: no position is masked');
  if (neighbours && neighbours.length !== k * k)
    throw new MuseError(`neighbour table of ${neighbours.length} values, expected ${k}×${k}`);
  const m = rows.length;
  const eps = labelSmoothing;
  const soft = new Float32Array(m * k).fill(neighbours ? 0 : eps / k);
  const wanted = new Int32Array(m);
  rows.forEach((row, j) => {
    const t = targets[row];
    if (!Number.isInteger(t) || t < 0 || t >= k)
      throw new MuseError(`target ${t} at masked position ${row} is not a code in [0, ${k})`);
    if (neighbours) for (let c = 0; c < k; c++) soft[j * k + c] = eps * neighbours[t * k + c];
    soft[j * k + t] += 1 - eps;
    wanted[j] = t;
  });
  return tf.tidy(() => {
    const picked = tf.gather(tf.reshape(logits, [b * n, k]), tf.tensor1d(rows, 'int32'));
    const loss = softCrossEntropy(picked as tf.Tensor2D, tf.tensor2d(soft, [m, k]));
    const predicted = tf.argMax(picked, 1).dataSync();
    let correct = 0;
    for (let j = 0; j < m; j++) if (predicted[j] === wanted[j]) correct++;
    return { loss, accuracy: correct / m };
  });
}
