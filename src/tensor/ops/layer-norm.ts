// Layer normalisation over the last axis (Ba et al. 2016): y = (x − μ)/√(σ² + ε)·g + b, one fused
// kernel each way. Backward, with x̂ = (x − μ)·r, r = 1/√(σ² + ε), h = dy·g, over D features:
//   dx = r·(h − mean(h) − x̂·mean(h·x̂)),  dg = Σ_rows dy·x̂,  db = Σ_rows dy
import * as tf from '@tensorflow/tfjs-core';
import { hasKernel, registerJsKernel, runKernel } from './js-kernel.js';

const last = (s: number[]) => s[s.length - 1];
const rows = (s: number[]) => s.slice(0, -1).reduce((a, b) => a * b, 1);

registerJsKernel({
  name: 'MuseLayerNorm',
  outputs: (s) => [s[0], [rows(s[0])], [rows(s[0])]],
  compute: ([x, g, b], [y, mean, rstd], s, attrs) => {
    const d = last(s[0]);
    const eps = attrs.epsilon as number;
    for (let r = 0; r < mean.length; r++) {
      const o = r * d;
      let m = 0;
      for (let i = 0; i < d; i++) m += x[o + i];
      m /= d;
      let v = 0;
      for (let i = 0; i < d; i++) v += (x[o + i] - m) ** 2;
      const inv = 1 / Math.sqrt(v / d + eps);
      for (let i = 0; i < d; i++) y[o + i] = (x[o + i] - m) * inv * g[i] + b[i];
      mean[r] = m;
      rstd[r] = inv;
    }
  },
  computeNative: (addon, [x, g, b], [y, mean, rstd], s, attrs) =>
    addon.layerNormForward(x, g, b, y, mean, rstd, mean.length, last(s[0]), attrs.epsilon as number),
});

registerJsKernel({
  name: 'MuseLayerNormGrad',
  outputs: (s) => [s[1], s[2], s[2]],
  compute: ([dy, x, g, mean, rstd], [dx, dg, db], s) => {
    const d = last(s[1]);
    dg.fill(0);
    db.fill(0);
    for (let r = 0; r < mean.length; r++) {
      const o = r * d;
      const m = mean[r];
      const inv = rstd[r];
      let sumH = 0;
      let sumHX = 0;
      for (let i = 0; i < d; i++) {
        const xh = (x[o + i] - m) * inv;
        const h = dy[o + i] * g[i];
        sumH += h;
        sumHX += h * xh;
        dg[i] += dy[o + i] * xh;
        db[i] += dy[o + i];
      }
      sumH /= d;
      sumHX /= d;
      for (let i = 0; i < d; i++) {
        const xh = (x[o + i] - m) * inv;
        dx[o + i] = inv * (dy[o + i] * g[i] - sumH - xh * sumHX);
      }
    }
  },
  computeNative: (addon, [dy, x, g, mean, rstd], [dx, dg, db], s) =>
    addon.layerNormBackward(dy, x, g, mean, rstd, dx, dg, db, mean.length, last(s[1])),
});

export function layerNormComposite(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, epsilon = 1e-5): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, epsilon))), g), b);
}

function fused(epsilon: number) {
  return tf.customGrad(((x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    const [y, mean, rstd] = runKernel('MuseLayerNorm', { x, g, b }, { epsilon });
    save([x, g, mean, rstd]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [sx, sg, sm, sr]: tf.Tensor[]) =>
        runKernel('MuseLayerNormGrad', { dy, x: sx, g: sg, mean: sm, rstd: sr }),
    };
  }) as never);
}

const fusedByEps = new Map<number, ReturnType<typeof fused>>();

/** Layer norm over the last axis with gain g and bias b (both [D]). */
export function layerNorm(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, epsilon = 1e-5): tf.Tensor {
  if (!hasKernel('MuseLayerNorm')) return layerNormComposite(x, g, b, epsilon);
  let f = fusedByEps.get(epsilon);
  if (!f) {
    f = fused(epsilon);
    fusedByEps.set(epsilon, f);
  }
  return (f as unknown as (...t: tf.Tensor[]) => tf.Tensor)(x, g, b);
}
