// Cross-entropy against soft targets, mean over rows of −Σ_c q[r, c]·log softmax(x[r])_c: the
// transformers' masked-token loss with label smoothing (src/transformer/loss.ts). On the native path
// one kernel each way (native softCrossEntropyForward/Backward: softmax with its log-sum-exp in one
// vectorised pass, the row's loss from it in double; dx = dloss·(p·Σq − q)), where tfjs ran
// logSoftmax's six kernels, a multiply, a sum and their gradients over the whole [rows, codes]
// block. Elsewhere (pure wasm, cpu, webgpu) the composite tfjs form, which plain loops would not beat.
import * as tf from '@tensorflow/tfjs-core';
import { activeNative } from '../kernels/active-native.js';
import { registerJsKernel, runKernel } from './js-kernel.js';

registerJsKernel({
  name: 'MuseSoftCrossEntropy',
  outputs: ([x]) => [[x[0]], x],
  compute: ([x, q], [loss, p], [[rows, d]]) => {
    for (let r = 0; r < rows; r++) {
      const o = r * d;
      let m = Number.NEGATIVE_INFINITY;
      for (let c = 0; c < d; c++) m = Math.max(m, x[o + c]);
      let sum = 0;
      for (let c = 0; c < d; c++) sum += Math.exp(x[o + c] - m);
      const lse = m + Math.log(sum);
      let acc = 0;
      for (let c = 0; c < d; c++) {
        p[o + c] = Math.exp(x[o + c] - lse);
        if (q[o + c] !== 0) acc += q[o + c] * (lse - x[o + c]);
      }
      loss[r] = acc;
    }
  },
  computeNative: (addon, [x, q], [loss, p], [[rows, d]]) => addon.softCrossEntropyForward?.(x, q, p, loss, rows, d),
});

registerJsKernel({
  name: 'MuseSoftCrossEntropyGrad',
  outputs: (s) => [s[1]],
  compute: ([dloss, p, q], [dx], [, [rows, d]]) => {
    for (let r = 0; r < rows; r++) {
      let mass = 0;
      for (let c = 0; c < d; c++) mass += q[r * d + c];
      for (let c = 0; c < d; c++) dx[r * d + c] = dloss[r] * (p[r * d + c] * mass - q[r * d + c]);
    }
  },
  computeNative: (addon, [dloss, p, q], [dx], [, [rows, d]]) =>
    addon.softCrossEntropyBackward?.(dloss, p, q, dx, rows, d),
});

/** The composite form (every backend): tfjs's logSoftmax and its gradients. */
export function softCrossEntropyComposite(logits: tf.Tensor2D, q: tf.Tensor2D): tf.Scalar {
  return tf.div(tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), q))), logits.shape[0]) as tf.Scalar;
}

/** Whether `softCrossEntropy` runs as the fused native kernels here. */
export function fusedCrossEntropyActive(): boolean {
  return tf.getBackend() === 'wasm' && typeof activeNative()?.softCrossEntropyForward === 'function';
}

/** Per-row losses through the fused kernels (any backend that has them; `softCrossEntropy` picks when to). */
export function softCrossEntropyRows(logits: tf.Tensor2D, q: tf.Tensor2D): tf.Tensor1D {
  const f = tf.customGrad(((x: tf.Tensor, t: tf.Tensor, save: tf.GradSaveFunc) => {
    const [loss, p] = runKernel('MuseSoftCrossEntropy', { x, q: t });
    save([p, t]);
    return {
      value: loss,
      // The targets are constants: their gradient is zero.
      gradFunc: (dy: tf.Tensor, [sp, st]: tf.Tensor[]) => [
        runKernel('MuseSoftCrossEntropyGrad', { dloss: dy, p: sp, q: st })[0],
        tf.zerosLike(st),
      ],
    };
  }) as never) as (x: tf.Tensor, t: tf.Tensor) => tf.Tensor1D;
  return f(logits, q);
}

/**
 * Mean over the m rows of the cross-entropy of softmax(logits) against the soft targets q (both
 * [m, k]; q's rows are distributions, or any non-negative weights). No gradient flows to q.
 */
export function softCrossEntropy(logits: tf.Tensor2D, q: tf.Tensor2D): tf.Scalar {
  if (logits.rank !== 2 || q.shape.join() !== logits.shape.join())
    throw new Error(`softCrossEntropy: logits [${logits.shape}] and targets [${q.shape}] must be the same [m, k]`);
  return tf.tidy(() => {
    const t = q.dtype === 'float32' ? q : (tf.cast(q, 'float32') as tf.Tensor2D);
    if (!fusedCrossEntropyActive() || logits.dtype !== 'float32') return softCrossEntropyComposite(logits, t);
    return tf.mean(softCrossEntropyRows(logits, t)) as tf.Scalar;
  });
}
