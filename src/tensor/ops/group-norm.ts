// Group normalisation (Wu & He 2018) of NHWC tensors, one fused kernel each way. Statistics per
// (batch, group) over H, W and the C/G channels of the group; y = (x − μ)/√(σ² + ε)·γ_c + β_c.
// Backward, with x̂ = (x − μ)·r, r = 1/√(σ² + ε), h = dy·γ_c, over the group's N = H·W·C/G elements:
//   dx = r·(h − mean(h) − x̂·mean(h·x̂)),  dγ_c = Σ_{b,h,w} dy·x̂,  dβ_c = Σ_{b,h,w} dy
// Both kernels walk each batch item's pixels in memory order, summing per channel (double), and
// reduce channels to groups afterwards: Σ_group h = Σ_c γ_c·Σ_p dy, Σ_group h·x̂ = Σ_c γ_c·Σ_p dy·x̂.
import * as tf from '@tensorflow/tfjs-core';
import { MuseError } from '../../util/errors.js';
import { hasKernel, registerJsKernel, runKernel } from './js-kernel.js';

interface Dims {
  batch: number;
  hw: number;
  channels: number;
  groups: number;
  /** Channels per group. */
  cg: number;
}

function dims(xShape: number[], attrs: tf.NamedAttrMap): Dims {
  const [batch, h, w, channels] = xShape;
  const groups = attrs.groups as number;
  return { batch, hw: h * w, channels, groups, cg: channels / groups };
}

type Compute = (ins: Float32Array[], outs: Float32Array[], shapes: number[][], attrs: tf.NamedAttrMap) => void;

const forwardJs: Compute = ([x, gamma, beta], [y, mean, rstd], s, attrs) => {
  const { batch, hw, channels: C, groups: G, cg } = dims(s[0], attrs);
  const eps = attrs.epsilon as number;
  const n = hw * cg;
  const sum = new Float64Array(C);
  const cMean = new Float32Array(C); // the group's mean, per channel
  const cScale = new Float32Array(C); // r·γ_c
  for (let b = 0; b < batch; b++) {
    const o = b * hw * C;
    const end = o + hw * C;
    sum.fill(0);
    for (let q = o; q < end; q += C) for (let c = 0; c < C; c++) sum[c] += x[q + c];
    for (let g = 0; g < G; g++) {
      let m = 0;
      for (let c = g * cg; c < (g + 1) * cg; c++) m += sum[c];
      mean[b * G + g] = m / n;
      cMean.fill(mean[b * G + g], g * cg, (g + 1) * cg);
    }
    sum.fill(0);
    for (let q = o; q < end; q += C)
      for (let c = 0; c < C; c++) {
        const d = x[q + c] - cMean[c];
        sum[c] += d * d;
      }
    for (let g = 0; g < G; g++) {
      let v = 0;
      for (let c = g * cg; c < (g + 1) * cg; c++) v += sum[c];
      const r = 1 / Math.sqrt(v / n + eps);
      rstd[b * G + g] = r;
      for (let c = g * cg; c < (g + 1) * cg; c++) cScale[c] = r * gamma[c];
    }
    for (let q = o; q < end; q += C) for (let c = 0; c < C; c++) y[q + c] = (x[q + c] - cMean[c]) * cScale[c] + beta[c];
  }
};

const backwardJs: Compute = ([dy, x, gamma, mean, rstd], [dx, dgamma, dbeta], s, attrs) => {
  const { batch, hw, channels: C, groups: G, cg } = dims(s[1], attrs);
  const n = hw * cg;
  const sumDy = new Float64Array(C); // Σ_p dy, this batch item
  const sumDyXh = new Float64Array(C); // Σ_p dy·x̂
  const totDy = new Float64Array(C); // over the whole batch
  const totDyXh = new Float64Array(C);
  const cMean = new Float32Array(C);
  const cR = new Float32Array(C);
  const cH = new Float64Array(C); // mean(h) of the channel's group
  const cHX = new Float64Array(C); // mean(h·x̂)
  for (let b = 0; b < batch; b++) {
    const o = b * hw * C;
    const end = o + hw * C;
    for (let g = 0; g < G; g++) {
      cMean.fill(mean[b * G + g], g * cg, (g + 1) * cg);
      cR.fill(rstd[b * G + g], g * cg, (g + 1) * cg);
    }
    sumDy.fill(0);
    sumDyXh.fill(0);
    for (let q = o; q < end; q += C)
      for (let c = 0; c < C; c++) {
        const d = dy[q + c];
        sumDy[c] += d;
        sumDyXh[c] += d * (x[q + c] - cMean[c]) * cR[c];
      }
    for (let g = 0; g < G; g++) {
      let h = 0;
      let hx = 0;
      for (let c = g * cg; c < (g + 1) * cg; c++) {
        h += gamma[c] * sumDy[c];
        hx += gamma[c] * sumDyXh[c];
      }
      cH.fill(h / n, g * cg, (g + 1) * cg);
      cHX.fill(hx / n, g * cg, (g + 1) * cg);
    }
    for (let c = 0; c < C; c++) {
      totDy[c] += sumDy[c];
      totDyXh[c] += sumDyXh[c];
    }
    for (let q = o; q < end; q += C)
      for (let c = 0; c < C; c++) {
        const xh = (x[q + c] - cMean[c]) * cR[c];
        dx[q + c] = cR[c] * (dy[q + c] * gamma[c] - cH[c] - xh * cHX[c]);
      }
  }
  dgamma.set(totDyXh);
  dbeta.set(totDy);
};

// An addon built before these kernels existed lacks them: fall back to the TypeScript loops.
registerJsKernel({
  name: 'MuseGroupNorm',
  outputs: (s, attrs) => {
    const n = s[0][0] * (attrs.groups as number);
    return [s[0], [n], [n]];
  },
  compute: forwardJs,
  computeNative: (addon, ins, outs, s, attrs) => {
    if (!addon.groupNormForward) return forwardJs(ins, outs, s, attrs);
    const [x, gamma, beta] = ins;
    const [y, mean, rstd] = outs;
    const { batch, hw, channels, groups } = dims(s[0], attrs);
    addon.groupNormForward(x, gamma, beta, y, mean, rstd, batch, hw, channels, groups, attrs.epsilon as number);
  },
});

registerJsKernel({
  name: 'MuseGroupNormGrad',
  outputs: (s) => [s[1], s[2], s[2]],
  compute: backwardJs,
  computeNative: (addon, ins, outs, s, attrs) => {
    if (!addon.groupNormBackward) return backwardJs(ins, outs, s, attrs);
    const [dy, x, gamma, mean, rstd] = ins;
    const [dx, dgamma, dbeta] = outs;
    const { batch, hw, channels, groups } = dims(s[1], attrs);
    addon.groupNormBackward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, batch, hw, channels, groups);
  },
});

function check(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, groups: number): void {
  if (x.rank !== 4) throw new MuseError(`groupNorm: x must be [B,H,W,C] (NHWC), got shape [${x.shape}]`);
  const c = (x.shape as number[])[3];
  if (!Number.isInteger(groups) || groups < 1)
    throw new MuseError(`groupNorm: groups must be a positive integer, got ${groups}`);
  if (c % groups !== 0) throw new MuseError(`groupNorm: ${c} channels are not divisible into ${groups} groups`);
  for (const [name, t] of [
    ['gamma', gamma],
    ['beta', beta],
  ] as const) {
    if (t.rank !== 1 || t.shape[0] !== c)
      throw new MuseError(`groupNorm: ${name} must have shape [${c}], got [${t.shape}]`);
  }
}

/** Group norm from tfjs ops: reshape to [B,H,W,G,C/G] and tf.moments over axes [1,2,4]. */
export function groupNormComposite(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  groups: number,
  epsilon = 1e-6,
): tf.Tensor4D {
  check(x, gamma, beta, groups);
  const [b, h, w, c] = x.shape;
  return tf.tidy(() => {
    const xg = tf.reshape(x, [b, h, w, groups, c / groups]);
    const { mean, variance } = tf.moments(xg, [1, 2, 4], true);
    const xh = tf.reshape(tf.mul(tf.sub(xg, mean), tf.rsqrt(tf.add(variance, epsilon))), [b, h, w, c]);
    return tf.add(tf.mul(xh, gamma), beta) as tf.Tensor4D;
  });
}

function fused(groups: number, epsilon: number) {
  return tf.customGrad(((x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, save: tf.GradSaveFunc) => {
    const [y, mean, rstd] = runKernel('MuseGroupNorm', { x, gamma, beta }, { groups, epsilon });
    save([x, gamma, mean, rstd]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [sx, sg, sm, sr]: tf.Tensor[]) =>
        runKernel('MuseGroupNormGrad', { dy, x: sx, gamma: sg, mean: sm, rstd: sr }, { groups }),
    };
  }) as never);
}

const fusedByAttrs = new Map<string, ReturnType<typeof fused>>();

/**
 * Group norm of an NHWC tensor x ([B,H,W,C]) with per-channel gain gamma and bias beta ([C]):
 * statistics per (batch item, group of C/groups consecutive channels) over H, W and the group's
 * channels. groups = 1 normalises each item over everything; groups = C is instance norm.
 * Fused kernels on wasm and cpu, composite tfjs ops elsewhere. Throws if C % groups ≠ 0.
 */
export function groupNorm(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  groups: number,
  epsilon = 1e-6,
): tf.Tensor4D {
  check(x, gamma, beta, groups);
  if (!hasKernel('MuseGroupNorm')) return groupNormComposite(x, gamma, beta, groups, epsilon);
  const key = `${groups}:${epsilon}`;
  let f = fusedByAttrs.get(key);
  if (!f) {
    f = fused(groups, epsilon);
    fusedByAttrs.set(key, f);
  }
  return (f as unknown as (...t: tf.Tensor[]) => tf.Tensor4D)(x, gamma, beta);
}
