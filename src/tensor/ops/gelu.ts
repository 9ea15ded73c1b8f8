// GELU, tanh form (Hendrycks & Gimpel 2016): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), as one
// kernel forward and one backward instead of ~10 tfjs kernels each way.
import * as tf from '@tensorflow/tfjs-core';
import { hasKernel, registerJsKernel, runKernel } from './js-kernel.js';

const C = Math.sqrt(2 / Math.PI);
const A = 0.044715;

// tanh through one exp: Math.tanh measured ~3× slower here in these loops. Exact limits at ±∞.
function tanh(z: number): number {
  return 1 - 2 / (Math.exp(2 * z) + 1);
}

registerJsKernel({
  name: 'MuseGelu',
  outputs: (s) => [s[0]],
  compute: ([x], [y]) => {
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      y[i] = 0.5 * v * (1 + tanh(C * (v + A * v * v * v)));
    }
  },
  computeNative: (addon, [x], [y]) => addon.geluForward(x, y, x.length),
});

registerJsKernel({
  name: 'MuseGeluGrad',
  outputs: (s) => [s[1]],
  // d/dx = 0.5·(1 + t) + 0.5·x·(1 − t²)·C·(1 + 3A·x²), t = tanh(C·(x + A·x³))
  compute: ([dy, x], [dx]) => {
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      const t = tanh(C * (v + A * v * v * v));
      dx[i] = dy[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * C * (1 + 3 * A * v * v));
    }
  },
  computeNative: (addon, [dy, x], [dx]) => addon.geluBackward(dy, x, dx, x.length),
});

function geluComposite(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(tf.add(x, tf.mul(tf.mul(tf.mul(x, x), x), A)), C);
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

const geluFused = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x]);
  return {
    value: runKernel('MuseGelu', { x })[0],
    gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => runKernel('MuseGeluGrad', { dy, x: saved })[0],
  };
}) as never);

/** GELU (tanh approximation); fused kernels on wasm and cpu, composite ops elsewhere. */
export function gelu(x: tf.Tensor): tf.Tensor {
  return hasKernel('MuseGelu') ? (geluFused as unknown as (t: tf.Tensor) => tf.Tensor)(x) : geluComposite(x);
}

export { geluComposite };
