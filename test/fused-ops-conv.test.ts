// Fused group norm and SiLU (the VQGAN tokenizer's conv-block ops) against their composite tfjs
// formulations (tfjs ops and tfjs autodiff) on the cpu backend, forward and every input gradient,
// plus hand-worked values. Run with and without the native addon (MUSE_NATIVE=0).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { loadNative } from '../src/tensor/native.js';
import { groupNorm, groupNormComposite } from '../src/tensor/ops/group-norm.js';
import { silu, siluComposite } from '../src/tensor/ops/silu.js';
import { Rng } from '../src/tensor/random.js';
import { assertMatchesCpu } from './helpers/compare.js';

after(() => shutdownBackend());

function groupNormCase(shape: [number, number, number, number], groups: number, epsilon = 1e-6) {
  const c = shape[3];
  return assertMatchesCpu(
    (x, g, b) => groupNorm(x as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, groups, epsilon),
    [{ shape }, { shape: [c] }, { shape: [c] }],
    {
      reference: (x, g, b) => groupNormComposite(x as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, groups, epsilon),
    },
  );
}

test('group norm [2,5,3,8], 4 groups, matches moments over [H,W,C/G], forward and all three gradients', () =>
  groupNormCase([2, 5, 3, 8], 4));

test('group norm [1,4,4,6], 3 groups', () => groupNormCase([1, 4, 4, 6], 3));

test('group norm with 1 group (normalise each item over H, W and C)', () => groupNormCase([3, 2, 5, 7], 1));

test('group norm with groups = C (instance norm)', () => groupNormCase([2, 3, 4, 5], 5, 1e-5));

test('group norm of one batch item split into several blocks of groups, odd sizes', () =>
  groupNormCase([1, 7, 9, 96], 32));

test('group norm with groups = 1 equals layer norm over everything of each item', async () => {
  await initBackend();
  const x = tf.tensor4d(new Rng(5).normals(2 * 3 * 3 * 4), [2, 3, 3, 4]);
  const y = groupNorm(x, tf.ones([4]), tf.zeros([4]), 1, 0).dataSync();
  const xs = x.dataSync();
  for (let b = 0; b < 2; b++) {
    const row = Array.from(xs.subarray(b * 36, (b + 1) * 36));
    const m = row.reduce((a, v) => a + v, 0) / 36;
    const v = row.reduce((a, u) => a + (u - m) ** 2, 0) / 36;
    row.forEach((u, i) => assert.ok(Math.abs(y[b * 36 + i] - (u - m) / Math.sqrt(v)) < 1e-5));
  }
});

test('group norm of a hand-worked case, with its gradients', async () => {
  await initBackend();
  // x [1,1,2,4] (two pixels, four channels), two groups of two channels:
  //   pixel 0: 1 2 3 4, pixel 1: 5 6 7 8
  //   group 0 = {1,2,5,6}: mean 3.5; group 1 = {3,4,7,8}: mean 5.5; both variance 4.25
  const x = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8], [1, 1, 2, 4]);
  const gamma = tf.tensor1d([1, 2, 1, 0.5]);
  const beta = tf.tensor1d([0, 0, 1, -1]);
  const s = Math.sqrt(4.25);
  const xh = [-2.5, -1.5, -2.5, -1.5, 1.5, 2.5, 1.5, 2.5].map((d) => d / s);
  const want = xh.map((v, i) => v * [1, 2, 1, 0.5][i % 4] + [0, 0, 1, -1][i % 4]);
  const y = groupNorm(x, gamma, beta, 2, 0).dataSync();
  want.forEach((w, i) => assert.ok(Math.abs(y[i] - w) < 1e-6, `y[${i}]: ${y[i]} vs ${w}`));

  // Loss Σ y: dy = 1, so dβ_c = 2 (two pixels), dγ_c = Σ_pixels x̂, and with h = γ_c,
  // dx = r·(γ_c − mean_group(h) − x̂·mean_group(h·x̂)).
  const [dx, dg, db] = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
    tf.sum(groupNorm(a as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, 2, 0)),
  )([x, gamma, beta]);
  assert.deepEqual(Array.from(db.dataSync()), [2, 2, 2, 2]);
  const wantDg = [0, 1, 2, 3].map((c) => xh[c] + xh[c + 4]);
  dg.dataSync().forEach((v, c) => assert.ok(Math.abs(v - wantDg[c]) < 1e-6, `dγ[${c}]: ${v} vs ${wantDg[c]}`));
  // group 0: γ = (1, 2), mean(h) = 1.5, mean(h·x̂) = (1·(x̂0 + x̂4) + 2·(x̂1 + x̂5))/4 = (−1/s + 2/s)/4;
  // group 1: γ = (1, 0.5), mean(h) = 0.75, mean(h·x̂) = (1·(−1/s) + 0.5·(1/s))/4.
  const mhx = [1 / (4 * s), (1 * (-1 / s) + 0.5 * (1 / s)) / 4];
  const mh = [1.5, 0.75];
  const wantDx = xh.map((v, i) => {
    const c = i % 4;
    const g = c < 2 ? 0 : 1;
    return (1 / s) * ([1, 2, 1, 0.5][c] - mh[g] - v * mhx[g]);
  });
  dx.dataSync().forEach((v, i) => assert.ok(Math.abs(v - wantDx[i]) < 1e-6, `dx[${i}]: ${v} vs ${wantDx[i]}`));
});

test('group norm keeps precision on a large offset (double sums) against a float64 reference', async () => {
  await initBackend();
  const [B, H, W, C, G] = [2, 16, 16, 32, 8];
  const data = new Rng(3).normals(B * H * W * C).map((v) => 1000 + 0.5 * v);
  const y = groupNorm(tf.tensor4d(data, [B, H, W, C]), tf.ones([C]), tf.zeros([C]), G).dataSync();
  const cg = C / G;
  let err = 0;
  for (let b = 0; b < B; b++)
    for (let g = 0; g < G; g++) {
      const idx: number[] = [];
      for (let p = 0; p < H * W; p++) for (let j = 0; j < cg; j++) idx.push(b * H * W * C + p * C + g * cg + j);
      const m = idx.reduce((a, i) => a + data[i], 0) / idx.length;
      const v = idx.reduce((a, i) => a + (data[i] - m) ** 2, 0) / idx.length;
      for (const i of idx) err = Math.max(err, Math.abs(y[i] - (data[i] - m) / Math.sqrt(v + 1e-6)));
    }
  // x is stored to ~6e-5 absolute at 1000, i.e. ~1e-4 of σ = 0.5: the output cannot do better.
  assert.ok(err < 2e-3, `max error ${err}`);
});

test('group norm rejects channels not divisible by groups, and bad shapes', async () => {
  await initBackend();
  const x = tf.zeros([1, 2, 2, 6]) as tf.Tensor4D;
  const g = tf.ones([6]) as tf.Tensor1D;
  assert.throws(() => groupNorm(x, g, g, 4), /6 channels are not divisible into 4 groups/);
  assert.throws(() => groupNormComposite(x, g, g, 4), /not divisible/);
  assert.throws(() => groupNorm(x, g, g, 0), /positive integer/);
  assert.throws(() => groupNorm(x, tf.ones([4]) as tf.Tensor1D, g, 2), /gamma must have shape \[6\]/);
  assert.throws(() => groupNorm(tf.zeros([2, 6]) as unknown as tf.Tensor4D, g, g, 2), /NHWC/);
});

test('SiLU matches x·sigmoid(x), forward and gradient', () =>
  assertMatchesCpu((x) => silu(x), [{ shape: [3, 5, 17] }], { reference: siluComposite }));

test('SiLU on a wide range of inputs, forward and gradient', () =>
  assertMatchesCpu((x) => silu(x), [{ shape: [64], values: Array.from({ length: 64 }, (_, i) => (i - 32) * 1.7) }], {
    reference: siluComposite,
  }));

test('SiLU at hand-worked points, and its gradient stays finite at large |x|', async () => {
  await initBackend();
  const xs = [0, 1, -1, 20, -20, 100, -100, 1000, -1000];
  const x = tf.tensor1d(xs);
  const y = silu(x).dataSync();
  // x/(1 + e^{−x}): silu(1) = 0.7310586, silu(−1) = −0.2689414, silu(±20) = 20 − 4e-8, −4.1e-8
  const want = [0, 0.7310586, -0.2689414, 20, -4.1e-8, 100, 0, 1000, 0];
  want.forEach((w, i) => assert.ok(Math.abs(y[i] - w) < 1e-6, `silu(${xs[i]}): ${y[i]} vs ${w}`));
  const dx = tf
    .grad((t: tf.Tensor) => tf.sum(silu(t)))(x)
    .dataSync();
  // σ(x)(1 + x(1 − σ(x))): 0.5 at 0, 0.9276705 at 1, 0.0723295 at −1, → 1 and → 0 at ±∞
  const wantDx = [0.5, 0.9276705, 0.0723295, 1, 0, 1, 0, 1, 0];
  wantDx.forEach((w, i) => assert.ok(Math.abs(dx[i] - w) < 1e-6, `silu'(${xs[i]}): ${dx[i]} vs ${w}`));
});

test('native group norm and SiLU kernels check their arguments', {
  skip: !loadNative() && 'native addon not loaded',
}, () => {
  const addon = loadNative()!;
  const f = (n: number) => new Float32Array(n);
  // x [2, hw 3, 6 channels], 3 groups: mean/rstd [6]
  assert.throws(
    () => addon.groupNormForward(f(36), f(6), f(6), f(36), f(6), f(6), 2, 3, 6, 4, 1e-6),
    (e: Error) => e instanceof RangeError && /divisible/.test(e.message),
  );
  assert.throws(() => addon.groupNormForward(f(35), f(6), f(6), f(36), f(6), f(6), 2, 3, 6, 3, 1e-6), /x is too small/);
  assert.throws(() => addon.groupNormForward(f(36), f(6), f(6), f(36), f(5), f(6), 2, 3, 6, 3, 1e-6), /mean/);
  assert.throws(() => addon.groupNormForward(f(36), f(6), f(6), f(36), f(6), f(6), 2, 3, 6, 0, 1e-6), /groups/);
  assert.throws(
    () => addon.groupNormBackward(f(36), f(36), f(6), f(6), f(6), f(36), f(5), f(6), 2, 3, 6, 3),
    /dgamma is too small/,
  );
  assert.throws(
    () => addon.groupNormForward(f(1), f(1), f(1), f(1), f(1), f(1), 2 ** 40, 2 ** 20, 2 ** 10, 1, 1e-6),
    RangeError,
  );
  assert.throws(() => addon.siluForward(f(3), f(2), 3), /y is too small/);
  assert.throws(() => addon.siluBackward(f(3), f(3), f(3), -1), RangeError);
  assert.throws(() => addon.siluForward([1, 2] as never, f(2), 2), TypeError);
});
