// Softmax over the last axis as one pass each way: the forward replaces tfjs-wasm's Softmax on the
// native path (src/tensor/kernels/index.ts), and the gradient — tfjs's is four kernels and three
// temporaries of the full [B, H, Sq, Sk] attention scores (mul, sum, mul, sub) — is registered here
// in its place for every backend that has the fused kernel (wasm and cpu; elsewhere tfjs's own
// formula runs). dx = y·(dy − Σ dy·y) per row.
import * as tf from '@tensorflow/tfjs-core';
import { hasKernel, registerJsKernel, runKernel } from './js-kernel.js';

function rowsOf(shape: number[]): [number, number] {
  const d = shape[shape.length - 1] ?? 1;
  return [d === 0 ? 0 : shape.reduce((a, b) => a * b, 1) / d, d];
}

registerJsKernel({
  name: 'MuseSoftmaxGrad',
  outputs: (s) => [s[1]],
  compute: ([dy, y], [dx], shapes) => {
    const [rows, d] = rowsOf(shapes[1]);
    for (let r = 0; r < rows; r++) {
      const o = r * d;
      let dot = 0;
      for (let i = o; i < o + d; i++) dot += dy[i] * y[i];
      for (let i = o; i < o + d; i++) dx[i] = y[i] * (dy[i] - dot);
    }
  },
  computeNative: (addon, [dy, y], [dx], shapes) => {
    const [rows, d] = rowsOf(shapes[1]);
    if (addon.softmaxBackward) addon.softmaxBackward(dy, y, dx, rows, d);
    else {
      for (let r = 0; r < rows; r++) {
        const o = r * d;
        let dot = 0;
        for (let i = o; i < o + d; i++) dot += dy[i] * y[i];
        for (let i = o; i < o + d; i++) dx[i] = y[i] * (dy[i] - dot);
      }
    }
  },
});

function lastAxis(dim: unknown, rank: number): boolean {
  const d = Array.isArray(dim) ? dim[0] : dim;
  return d === undefined || d === -1 || d === rank - 1;
}

/**
 * Replaces tfjs-core's Softmax gradient (same formula, one kernel where the backend has it). Call
 * after tfjs-core's gradients are registered (they load lazily, src/tensor/gradients.ts), or they
 * would replace this one: the kernel pack does.
 */
export function registerFusedSoftmaxGradient(): void {
  tf.registerGradient({
    kernelName: 'Softmax',
    outputsToSave: [true],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const [y] = saved;
      const g = dy as tf.Tensor;
      if (hasKernel('MuseSoftmaxGrad') && lastAxis(attrs.dim, y.rank)) {
        return { logits: () => runKernel('MuseSoftmaxGrad', { dy: g, y })[0] };
      }
      const dim = (Array.isArray(attrs.dim) ? attrs.dim[0] : attrs.dim) as number;
      return {
        logits: () => {
          const dyTimesY = tf.mul(g, y);
          return tf.sub(dyTimesY, tf.mul(tf.sum(dyTimesY, [dim], true), y));
        },
      };
    },
  });
}
