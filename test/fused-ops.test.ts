// Fused layer norm and GELU against their composite tfjs formulations (independent code: tfjs ops
// and tfjs autodiff) on the cpu backend, forward and backward; AdamW against the formula.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { gelu, geluComposite } from '../src/tensor/ops/gelu.js';
import { layerNorm, layerNormComposite } from '../src/tensor/ops/layer-norm.js';
import { newVariable } from '../src/tensor/params.js';
import { AdamW, clipByGlobalNorm } from '../src/train/adamw.js';
import { assertMatchesCpu } from './helpers/compare.js';

after(() => shutdownBackend());

test('GELU matches the composite tanh formula, forward and gradient', () =>
  assertMatchesCpu((x) => gelu(x), [{ shape: [3, 5, 17] }], { reference: geluComposite }));

test('GELU at hand-worked points', async () => {
  await initBackend();
  const y = gelu(tf.tensor1d([0, 1, -1, 10, -10, 100, -100])).dataSync();
  // 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) at x = 1: 0.8411920
  const want = [0, 0.841192, -0.158808, 10, 0, 100, 0];
  want.forEach((w, i) => assert.ok(Math.abs(y[i] - w) < 1e-5, `gelu at index ${i}: ${y[i]} vs ${w}`));
});

test('layer norm matches moments-based layer norm, forward and all three gradients', () =>
  assertMatchesCpu((x, g, b) => layerNorm(x, g, b), [{ shape: [2, 7, 33] }, { shape: [33] }, { shape: [33] }], {
    reference: (x, g, b) => layerNormComposite(x, g, b),
  }));

test('layer norm of a hand-worked row', async () => {
  await initBackend();
  const y = layerNorm(tf.tensor2d([[1, 2, 3, 4]]), tf.ones([4]), tf.zeros([4]), 0).dataSync();
  // mean 2.5, variance 1.25 → (x − 2.5)/√1.25
  [-1.5, -0.5, 0.5, 1.5].forEach((d, i) => assert.ok(Math.abs(y[i] - d / Math.sqrt(1.25)) < 1e-6));
});

test('AdamW step equals the formula, in place, with decoupled weight decay', async () => {
  await initBackend();
  const p = tf.variable(
    tf.tensor2d([
      [1, -2],
      [3, 0.5],
    ]),
  );
  const bias = tf.variable(tf.tensor1d([0.25, -0.25]));
  const opt = new AdamW({ beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0.1 });
  const g1 = tf.tensor2d([
    [0.1, -0.2],
    [0.3, 0.0],
  ]);
  const gb = tf.tensor1d([1, -1]);
  const lr = 0.01;
  opt.apply({ p, bias }, { p: g1, bias: gb }, lr);
  opt.apply({ p, bias }, { p: g1, bias: gb }, lr);
  const ref = (x: number, g: number, decay: number) => {
    let m = 0,
      v = 0;
    for (let t = 1; t <= 2; t++) {
      m = 0.9 * m + 0.1 * g;
      v = 0.99 * v + 0.01 * g * g;
      x -= lr * (m / (1 - 0.9 ** t) / (Math.sqrt(v / (1 - 0.99 ** t)) + 1e-8) + decay * x);
    }
    return x;
  };
  const got = p.dataSync();
  [1, -2, 3, 0.5].forEach((x0, i) => assert.ok(Math.abs(got[i] - ref(x0, [0.1, -0.2, 0.3, 0][i], 0.1)) < 1e-6));
  const gotB = bias.dataSync();
  [0.25, -0.25].forEach((x0, i) =>
    assert.ok(Math.abs(gotB[i] - ref(x0, [1, -1][i], 0)) < 1e-6, 'biases are not decayed'),
  );
  assert.equal(opt.step, 2);
});

test('AdamW never writes into memory another tensor shares', async () => {
  await initBackend();
  const p = tf.variable(tf.tensor1d([1, 2, 3]));
  const alias = tf.clone(p);
  new AdamW().apply({ p }, { p: tf.tensor1d([1, 1, 1]) }, 0.1);
  assert.deepEqual(Array.from(alias.dataSync()), [1, 2, 3]);
  assert.ok(p.dataSync()[0] < 1);
});

test('AdamW state round-trips and resumes the same trajectory', async () => {
  await initBackend();
  const run = (resume: boolean) => {
    const p = tf.variable(tf.tensor1d([1, 2, 3]));
    let opt = new AdamW({ weightDecay: 0.01 });
    for (let i = 0; i < 4; i++) {
      if (resume && i === 2) {
        const saved = opt.saveState();
        opt = new AdamW({ weightDecay: 0.01 });
        opt.loadState(saved);
      }
      opt.apply({ p }, { p: tf.tensor1d([0.5 * i, -1, 2]) }, 0.05);
    }
    return Array.from(p.dataSync());
  };
  assert.deepEqual(run(true), run(false));
});

test('clipByGlobalNorm scales to the maximum norm and reports the norm', async () => {
  await initBackend();
  const { norm, grads } = clipByGlobalNorm({ a: tf.tensor1d([3, 0]), b: tf.tensor1d([4]) }, 1);
  assert.ok(Math.abs(norm - 5) < 1e-6);
  assert.deepEqual(
    Array.from(grads.a.dataSync()).map((x) => +x.toFixed(6)),
    [0.6, 0],
  );
  assert.deepEqual(
    Array.from(grads.b.dataSync()).map((x) => +x.toFixed(6)),
    [0.8],
  );
});

test('AdamW rejects bad options and mismatched gradients', async () => {
  await initBackend();
  assert.throws(() => new AdamW({ beta1: 1 }), /beta1/);
  const p = tf.variable(tf.zeros([2]));
  assert.throws(() => new AdamW().apply({ p }, { p: tf.zeros([3]) }, 0.1), /shape/);
  assert.throws(() => new AdamW().apply({ p }, { p: tf.zeros([2]) }, Number.NaN), /learning rate/);
});

test('AdamW updates a variable that owns its memory in place, and leaks nothing', async () => {
  await initBackend();
  const p = newVariable(Float32Array.from([1, 2, 3]), [3]);
  const opt = new AdamW();
  const g = tf.tensor1d([1, 1, 1]);
  opt.apply({ p }, { p: g }, 0.1);
  const id = p.dataId;
  const tensors = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) opt.apply({ p }, { p: g }, 0.1);
  assert.equal(p.dataId, id, 'same buffer: updated in place');
  assert.equal(tf.memory().numTensors, tensors);
});

// The wasm backend packs matmul and convolution weights into cached XNNPACK operators keyed by the
// tensor's id; an in-place update must reach the next forward pass (it did not, and every training
// run on the pure-wasm path followed stale weights).
test('after an in-place AdamW step, matmuls and convolutions use the new weights', async () => {
  await initBackend();
  const w = newVariable(Float32Array.from([1, 0, 0, 1, 0.5, -0.5]), [2, 3]);
  const f = newVariable(Float32Array.from([1, -1, 0.5, 2, 0.25, -2, 1, 1]), [2, 2, 2, 1]);
  const x = tf.tensor2d([[1, 2]]);
  const x3 = tf.tensor3d([[[1, 2]], [[3, -1]]]);
  const img = tf.tensor4d(
    Float32Array.from({ length: 18 }, (_, i) => (i % 5) - 2),
    [1, 3, 3, 2],
  );
  const forward = () => [tf.matMul(x, w), tf.matMul(x3, w), tf.conv2d(img, f as tf.Tensor4D, 1, 'same')];
  tf.dispose(forward()); // creates (and caches) the operators for w and f
  const opt = new AdamW();
  opt.apply({ w, f }, { w: tf.onesLike(w), f: tf.onesLike(f) }, 0.5);
  const got = forward();
  // Reference: the same ops on the cpu backend from the updated values read back.
  const wNow = w.dataSync().slice();
  const fNow = f.dataSync().slice();
  assert.ok(Math.abs(wNow[0] - 0.5) < 1e-6, 'the step moved the weights');
  const xs = [x.dataSync(), x3.dataSync(), img.dataSync()].map((a) => a.slice());
  tf.setBackend('cpu');
  const want = tf.tidy(() => {
    const wc = tf.tensor2d(wNow, [2, 3]);
    const fc = tf.tensor4d(fNow, [2, 2, 2, 1]);
    return [
      tf.matMul(tf.tensor2d(xs[0], [1, 2]), wc),
      tf.matMul(tf.tensor3d(xs[1], [2, 1, 2]), wc),
      tf.conv2d(tf.tensor4d(xs[2], [1, 3, 3, 2]), fc, 1, 'same'),
    ].map((t) => t.dataSync().slice());
  });
  tf.setBackend('wasm');
  got.forEach((t, i) => {
    const a = t.dataSync();
    for (let j = 0; j < a.length; j++) {
      assert.ok(Math.abs(a[j] - want[i][j]) < 1e-5, `op ${i} element ${j}: ${a[j]} vs ${want[i][j]} (stale weights)`);
    }
  });
});
