// Sum over leading axes on the native path (src/tensor/kernels/sum.ts over the addon's sumRows):
// against a float64 reference for the bias-gradient shapes, keepDims, negative and unordered axes,
// and the cases that must stay on the stock kernel (other axes, int32).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { leadingAxes } from '../src/tensor/kernels/sum.js';
import { seededValues } from './helpers/values.js';

after(() => shutdownBackend());

test('leadingAxes names the leading axes only', () => {
  assert.equal(leadingAxes([0, 1], 3), 2);
  assert.equal(leadingAxes([1, 0], 3), 2);
  assert.equal(leadingAxes([0, -2], 3), 2);
  assert.equal(leadingAxes(0, 2), 1);
  assert.equal(leadingAxes([1], 3), 0);
  assert.equal(leadingAxes([0, 2], 3), 0);
  assert.equal(leadingAxes([0, 1, 2], 3), 0); // a full reduction stays stock
});

test('sum over leading axes matches float64 (bias-gradient shapes, keepDims, odd widths)', async () => {
  await initBackend();
  for (const [shape, axis, keepDims] of [
    [[8, 256, 300], [0, 1], false],
    [[4, 7, 5], [1, 0], true],
    [[2048, 1024], 0, false],
    [[3, 2, 4, 5], [0, -3], false],
  ] as Array<[number[], number | number[], boolean]>) {
    const n = shape.reduce((a, b) => a * b, 1);
    const x = seededValues(n, n, 0.5);
    const k = leadingAxes(axis, shape.length);
    const d = n / shape.slice(0, k).reduce((a, b) => a * b, 1);
    const want = new Float64Array(d);
    for (let i = 0; i < n; i++) want[i % d] += x[i];
    const t = tf.tensor(x, shape);
    const y = tf.sum(t, axis, keepDims);
    assert.deepEqual(y.shape, keepDims ? [...Array(k).fill(1), ...shape.slice(k)] : shape.slice(k));
    const got = y.dataSync();
    // float32 accumulation (the stock kernel on the pure-wasm pass) errs by up to ~terms·2^-24·|partial sums|.
    for (let c = 0; c < d; c++)
      assert.ok(Math.abs(got[c] - want[c]) < 1e-6 * (n / d) + 1e-6, `[${shape}] ${axis}: ${got[c]} vs ${want[c]}`);
    tf.dispose([t, y]);
  }
});

test('other sums are unchanged: trailing axes, all axes, int32', async () => {
  await initBackend();
  const t = tf.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  assert.deepEqual(Array.from(tf.sum(t, 1).dataSync()), [6, 15]);
  assert.deepEqual(Array.from(tf.sum(t).dataSync()), [21]);
  assert.deepEqual(Array.from(tf.sum(tf.tensor([1, 2, 3, 4], [2, 2], 'int32'), 0).dataSync()), [4, 6]);
  t.dispose();
});
