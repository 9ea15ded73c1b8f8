// Registers tfjs-core's gradient definitions. Its Node bundle registers none, and the ESM files that
// hold them cannot be loaded by Node directly; scripts/bundle-gradients.mjs packs them into
// vendor/tfjs-gradients.cjs at build time (see there for why one extra copy of core code is safe).
import * as tf from '@tensorflow/tfjs-core';

export async function registerGradients(): Promise<void> {
  if (tf.getGradient('Concat')) return;
  const isNode = typeof process !== 'undefined' && !!process.versions?.node;
  if (!isNode) {
    // Bundlers resolve tfjs-core's ESM build, where this module exists as a side-effect import.
    const path = '@tensorflow/tfjs-core/dist/register_all_gradients';
    await import(/* @vite-ignore */ path);
    return;
  }
  const { createRequire } = await import('node:module');
  const { join } = await import('node:path');
  const { packageRoot } = await import('../util/package-root.js');
  const file = join(packageRoot(), 'vendor', 'tfjs-gradients.cjs');
  try {
    createRequire(import.meta.url)(file);
  } catch (err) {
    throw new Error(`cannot load ${file} (run "npm run build" to make it): ${(err as Error).message}`);
  }
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
