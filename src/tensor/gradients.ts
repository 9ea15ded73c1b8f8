// Gradient definitions: tfjs-core's (loaded per platform, see platform.ts) and this project's fixes.
import * as tf from '@tensorflow/tfjs-core';

/** Registers tfjs-core's gradient definitions once (how depends on the platform: platform.ts). */
export async function registerGradients(): Promise<void> {
  if (tf.getGradient('Concat')) return;
  const { loadGradientDefinitions } = await import('./platform.js');
  await loadGradientDefinitions();
}

// tfjs-core's BatchMatMul gradient does not reduce over broadcast batch dimensions, so
// `[B, S, D] @ [D, E]` (every linear layer on a sequence) fails in backprop. This one sums the
// gradient of a broadcast operand over the batch; for the shared right operand of an untransposed
// left operand (the linear-layer case) it folds the batch into one matmul instead.
function reduceTo(g: tf.Tensor, shape: number[]): tf.Tensor {
  if (g.shape.join() === shape.join()) return g;
  const axes = tf.backend_util.getReductionAxes(shape, g.shape);
  return tf.reshape(axes.length ? tf.sum(g, axes) : g, shape);
}

function batchMatMulGrad(dy: tf.Tensor, saved: tf.Tensor[], attrs: tf.NamedAttrMap) {
  const [a, b] = saved;
  const ta = !!attrs.transposeA;
  const tb = !!attrs.transposeB;
  const folded = !ta && b.rank === 2 && a.rank > 2;
  const grads = {
    a: () => reduceTo(ta ? tf.matMul(b, dy, tb, true) : tf.matMul(dy, b, false, !tb), a.shape),
    b: () => {
      if (folded) {
        const a2 = tf.reshape(a, [-1, a.shape[a.rank - 1]]);
        const dy2 = tf.reshape(dy, [-1, dy.shape[dy.rank - 1]]);
        return tb ? tf.matMul(dy2, a2, true, false) : tf.matMul(a2, dy2, true, false);
      }
      return reduceTo(tb ? tf.matMul(dy, a, true, ta) : tf.matMul(a, dy, !ta, false), b.shape);
    },
  };
  return grads;
}

/** Replaces gradients of tfjs-core that are wrong or missing for this project's models. */
export function registerGradientFixes(): void {
  tf.unregisterGradient('BatchMatMul');
  tf.registerGradient({ kernelName: 'BatchMatMul', inputsToSave: ['a', 'b'], gradFunc: batchMatMulGrad as never });
}
