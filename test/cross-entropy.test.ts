// Cross-entropy against soft targets (src/tensor/ops/cross-entropy.ts; native softCrossEntropyForward
// and Backward on the native path, plain loops on the cpu backend, tfjs's logSoftmax elsewhere):
// - a hand-worked case: logits [ln 3, 0] against [½, ½] is −½·ln ¾ − ½·ln ¼;
// - values against float64 and gradients against central finite differences of that float64 loss
//   (independent of the backward formula), with targets that are one-hot, uniformly smoothed, spread
//   over neighbours and not summing to one (so a gradient that assumed Σq = 1 fails);
// - logits 1e4 apart: the loss stays finite and exact (a form through log p = log 0 is ∞);
// - at a training shape, fused against composite (value and gradient, relative 1e-5).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { loadNative } from '../src/tensor/native.js';
import {
  fusedCrossEntropyActive,
  softCrossEntropy,
  softCrossEntropyComposite,
  softCrossEntropyRows,
} from '../src/tensor/ops/cross-entropy.js';
import { maxAbsDiff, seededValues } from './helpers/values.js';

after(() => shutdownBackend());

const M = 5;
const K = 7;
const logits = seededValues(M * K, 1, 3);
// Row 0 one-hot, row 1 uniform smoothing, rows 2–3 neighbour-like spreads, row 4 weights summing to 0.6.
const targets = new Float32Array(M * K);
targets[3] = 1;
for (let c = 0; c < K; c++) targets[K + c] = 0.1 / K + (c === 5 ? 0.9 : 0);
targets.set([0, 0.05, 0.8, 0.1, 0.05, 0, 0], 2 * K);
targets.set([0.2, 0, 0, 0, 0, 0.3, 0.5], 3 * K);
targets.set([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0], 4 * K);

function loss64(x: ArrayLike<number>): number {
  let total = 0;
  for (let r = 0; r < M; r++) {
    const row = Array.from({ length: K }, (_, c) => x[r * K + c]);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    for (let c = 0; c < K; c++) total += targets[r * K + c] * (lse - row[c]);
  }
  return total / M;
}

function numericGrad(): Float64Array {
  const x = Float64Array.from(logits);
  const g = new Float64Array(x.length);
  const h = 1e-6;
  for (let i = 0; i < x.length; i++) {
    const keep = x[i];
    x[i] = keep + h;
    const up = loss64(x);
    x[i] = keep - h;
    const down = loss64(x);
    x[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

type Loss = (x: tf.Tensor2D, q: tf.Tensor2D) => tf.Scalar;
const meanOfRows: Loss = (x, q) => tf.mean(softCrossEntropyRows(x, q)) as tf.Scalar;

function run(fn: Loss, x: Float32Array, q: Float32Array, m: number, k: number) {
  return tf.tidy(() => {
    const qt = tf.tensor2d(q, [m, k]);
    const { value, grad } = tf.valueAndGrad((t: tf.Tensor) => fn(t as tf.Tensor2D, qt))(tf.tensor2d(x, [m, k]));
    return { loss: value.dataSync()[0], grad: grad.dataSync() as Float32Array };
  });
}

function check(label: string, fn: Loss): void {
  const got = run(fn, logits, targets, M, K);
  const want = loss64(logits);
  assert.ok(Math.abs(got.loss - want) < 1e-6, `${label}: loss ${got.loss} vs ${want}`);
  const err = maxAbsDiff(got.grad, numericGrad());
  assert.ok(err < 1e-6, `${label}: gradient off by ${err}`);

  const hand = run(fn, Float32Array.from([Math.log(3), 0]), Float32Array.from([0.5, 0.5]), 1, 2);
  assert.ok(Math.abs(hand.loss - (-0.5 * Math.log(0.75) - 0.5 * Math.log(0.25))) < 1e-6, `${label}: hand case`);
  // d/dx = p·Σq − q = [¾ − ½, ¼ − ½]
  assert.ok(maxAbsDiff(hand.grad, [0.25, -0.25]) < 1e-6, `${label}: hand gradient ${hand.grad}`);

  // Logits 1e4 apart: p of the losing code underflows; the loss is 1e4·q_lose exactly.
  const far = run(fn, Float32Array.from([1e4, 0]), Float32Array.from([0.9, 0.1]), 1, 2);
  assert.ok(Number.isFinite(far.loss) && Math.abs(far.loss - 1e3) < 1e-2, `${label}: far logits loss ${far.loss}`);
  assert.ok(maxAbsDiff(far.grad, [0.1, -0.1]) < 1e-6, `${label}: far logits gradient ${far.grad}`);
}

test('soft cross-entropy on this path: hand case, float64 values, finite-difference gradients, far logits', async () => {
  await initBackend();
  if (process.env.MUSE_NATIVE !== '0' && loadNative()?.softCrossEntropyForward)
    assert.ok(fusedCrossEntropyActive(), 'fused on the native path');
  check(fusedCrossEntropyActive() ? 'fused (native)' : 'composite', softCrossEntropy);
  check('composite', softCrossEntropyComposite);
});

test('the fused kernels on the cpu backend (plain loops) give the same values and gradients', async () => {
  await initBackend();
  const previous = tf.getBackend();
  await tf.setBackend('cpu');
  try {
    check('fused (cpu loops)', meanOfRows);
  } finally {
    await tf.setBackend(previous);
  }
});

test('at a training shape, the fused kernels match float64 (value 1e-6, gradient 1e-5 relative)', async (t) => {
  await initBackend();
  if (!fusedCrossEntropyActive()) {
    t.skip('fused cross-entropy runs on the native path only');
    return;
  }
  const [m, k] = [301, 1024];
  const x = seededValues(m * k, 9, 8);
  const q = new Float32Array(m * k).fill(0.1 / k);
  for (let r = 0; r < m; r++) q[r * k + ((r * 37) % k)] += 0.9;
  // Float64: loss and its gradient (p·Σq − q)/m, row by row.
  let want = 0;
  const wantGrad = new Float64Array(m * k);
  for (let r = 0; r < m; r++) {
    const row = Array.from(x.subarray(r * k, (r + 1) * k));
    const top = Math.max(...row);
    const lse = top + Math.log(row.reduce((s, v) => s + Math.exp(v - top), 0));
    let mass = 0;
    for (let c = 0; c < k; c++) mass += q[r * k + c];
    for (let c = 0; c < k; c++) {
      want += q[r * k + c] * (lse - row[c]);
      wantGrad[r * k + c] = (Math.exp(row[c] - lse) * mass - q[r * k + c]) / m;
    }
  }
  want /= m;
  const fused = run(softCrossEntropy, x, q, m, k);
  // (tfjs's composite form, summing 300k float32 terms in one pass, is ~1e-4 off here.)
  assert.ok(Math.abs(fused.loss - want) / want < 1e-6, `loss ${fused.loss} vs ${want}`);
  const scale = wantGrad.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
  const err = maxAbsDiff(fused.grad, wantGrad) / scale;
  assert.ok(err < 1e-5, `gradient: relative error ${err}`);
});
