// Each kernel of the wasm kernel pack, forward and backward, against the tfjs cpu backend on
// awkward shapes. Runs with the native path when it is built (MUSE_NATIVE=0 tests the wasm path).
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { setConvChunkLimit } from '../src/tensor/kernels/conv2d.js';
import { assertMatchesCpu, relativeError } from './helpers/compare.js';

after(() => shutdownBackend());

const flat = (t: tf.Tensor) => tf.reshape(t, [-1]);

test('the kernel pack is registered on wasm', async () => {
  const info = await initBackend();
  assert.equal(info.backend, 'wasm');
  for (const k of [
    'BatchMatMul',
    'Conv2DBackpropFilter',
    'Conv2DBackpropInput',
    'UnsortedSegmentSum',
    'Slice',
    'SplitV',
  ]) {
    assert.ok(info.kernels.kernels.includes(k), `${k} missing`);
  }
  if (process.env.MUSE_REQUIRE_NATIVE === '1' && process.env.MUSE_NATIVE !== '0') {
    assert.ok(info.kernels.native, 'native path required but not active');
  }
});

describe('BatchMatMul', () => {
  const cases: Array<[string, number[], number[], boolean, boolean]> = [
    ['2-D', [7, 5], [5, 3], false, false],
    ['2-D transposeA', [5, 7], [5, 3], true, false],
    ['2-D transposeB', [7, 5], [3, 5], false, true],
    ['2-D both transposed', [5, 7], [3, 5], true, true],
    ['odd sizes', [33, 65], [65, 17], false, false],
    ['batched', [3, 7, 5], [3, 5, 4], false, false],
    ['batched transposeB', [3, 7, 5], [3, 4, 5], false, true],
    ['batched transposeA', [3, 5, 7], [3, 5, 4], true, false],
    ['broadcast right operand', [3, 7, 5], [5, 4], false, false],
    ['broadcast right operand transposed', [2, 3, 7, 5], [4, 5], false, true],
    ['broadcast left operand', [7, 5], [3, 5, 4], false, false],
    ['batch of one against batch 3, transposeA', [1, 5, 7], [3, 5, 4], true, false],
    ['rank 4', [2, 3, 4, 5], [2, 3, 5, 6], false, false],
    ['rank 4 attention-like', [2, 4, 9, 8], [2, 4, 9, 8], false, true],
  ];
  for (const [name, a, b, ta, tb] of cases) {
    test(name, () => assertMatchesCpu((x, y) => tf.matMul(x, y, ta, tb), [{ shape: a }, { shape: b }]));
  }
  test('empty batch dimension of size 1 both sides', () =>
    assertMatchesCpu((x, y) => tf.matMul(x, y), [{ shape: [1, 6, 2] }, { shape: [1, 2, 3] }]));
});

describe('Conv2D and its gradients', () => {
  const cases: Array<[string, number[], number[], number, 'same' | 'valid', number]> = [
    ['3×3 same stride 1', [2, 9, 7, 3], [3, 3, 3, 5], 1, 'same', 1],
    ['3×3 valid stride 1', [2, 9, 7, 3], [3, 3, 3, 5], 1, 'valid', 1],
    ['3×3 same stride 2', [2, 9, 7, 3], [3, 3, 3, 5], 2, 'same', 1],
    ['3×3 valid stride 2', [2, 9, 8, 4], [3, 3, 4, 6], 2, 'valid', 1],
    ['4×4 same stride 2 (even kernel)', [3, 8, 8, 2], [4, 4, 2, 3], 2, 'same', 1],
    ['1×1 pointwise', [2, 5, 6, 7], [1, 1, 7, 4], 1, 'valid', 1],
    ['1×1 stride 2', [2, 5, 6, 7], [1, 1, 7, 4], 2, 'same', 1],
    ['3×3 dilation 2', [1, 11, 9, 3], [3, 3, 3, 2], 1, 'same', 2],
    ['non-square kernel', [2, 7, 9, 3], [2, 5, 3, 4], 1, 'same', 1],
  ];
  for (const [name, x, w, stride, pad, dil] of cases) {
    // tfjs-core has no gradient for dilated convolutions (on any backend): forward only there.
    test(name, () =>
      assertMatchesCpu(
        (a, f) => tf.conv2d(a as tf.Tensor4D, f as tf.Tensor4D, stride, pad, 'NHWC', dil),
        [{ shape: x }, { shape: w }],
        { grad: dil === 1 },
      ),
    );
  }
  test('images processed in chunks give the same result', async () => {
    const old = setConvChunkLimit(1);
    try {
      await assertMatchesCpu(
        (a, f) => tf.conv2d(a as tf.Tensor4D, f as tf.Tensor4D, 2, 'same'),
        [{ shape: [3, 7, 6, 3] }, { shape: [3, 3, 3, 4] }],
      );
      await assertMatchesCpu(
        (a, f) => tf.conv2d(a as tf.Tensor4D, f as tf.Tensor4D, 1, 'valid'),
        [{ shape: [3, 4, 5, 6] }, { shape: [1, 1, 6, 2] }],
      );
    } finally {
      setConvChunkLimit(old);
    }
  });
  test('explicit padding', () =>
    assertMatchesCpu(
      (a, f) =>
        tf.conv2d(a as tf.Tensor4D, f as tf.Tensor4D, 1, [
          [0, 0],
          [1, 2],
          [2, 0],
          [0, 0],
        ]),
      [{ shape: [2, 6, 5, 3] }, { shape: [3, 3, 3, 4] }],
    ));
  test('conv2dTranspose (input gradient as an op)', () =>
    assertMatchesCpu(
      (a, f) => tf.conv2dTranspose(a as tf.Tensor4D, f as tf.Tensor4D, [2, 10, 10, 3], 2, 'same'),
      [{ shape: [2, 5, 5, 4] }, { shape: [3, 3, 3, 4] }],
    ));
});

describe('gather and UnsortedSegmentSum', () => {
  test('embedding lookup with repeated ids, forward and gradient', () =>
    assertMatchesCpu(
      (table, ids) => tf.gather(table, ids as tf.Tensor1D),
      [{ shape: [11, 4] }, { shape: [2, 5], dtype: 'int32', values: [0, 3, 3, 10, 1, 3, 0, 7, 7, 2] }],
    ));
  test('gather along axis 1', () =>
    assertMatchesCpu(
      (x, ids) => tf.gather(x, ids as tf.Tensor1D, 1),
      [{ shape: [3, 6, 2] }, { shape: [4], dtype: 'int32', values: [5, 0, 5, 2] }],
    ));
  test('unsortedSegmentSum drops out-of-range ids', () =>
    assertMatchesCpu(
      (x, ids) => tf.unsortedSegmentSum(x, ids as tf.Tensor1D, 4),
      [{ shape: [6, 3] }, { shape: [6], dtype: 'int32', values: [0, 3, -1, 3, 5, 1] }],
      { grad: false },
    ));
  test('unsortedSegmentSum of int32 values', () =>
    assertMatchesCpu(
      (x, ids) => tf.unsortedSegmentSum(x, ids as tf.Tensor1D, 3),
      [
        { shape: [4, 2], dtype: 'int32', values: [1, 2, 3, 4, 5, 6, 7, 8] },
        { shape: [4], dtype: 'int32', values: [2, 0, 2, 7] },
      ],
      { grad: false },
    ));
});

describe('Add (native for same shapes and leading-axis broadcasts, stock otherwise)', () => {
  const cases: Array<[string, number[], number[]]> = [
    ['same shape (residual)', [2, 5, 7], [2, 5, 7]],
    ['bias over leading axes', [2, 5, 7], [7]],
    ['bias first', [7], [3, 7]],
    ['bias with leading 1s', [3, 4, 6], [1, 1, 6]],
    ['trailing block', [3, 4, 6], [4, 6]],
    ['middle broadcast (stock)', [3, 1, 6], [3, 4, 6]],
    ['scalar', [4, 5], [1]],
    ['more axes on the small side (stock)', [5], [1, 1, 5]],
  ];
  for (const [name, a, b] of cases)
    test(name, () => assertMatchesCpu((x, y) => tf.add(x, y), [{ shape: a }, { shape: b }]));
  test('int32 goes to the stock kernel', () =>
    assertMatchesCpu(
      (x, y) => tf.add(x, y),
      [
        { shape: [2, 3], dtype: 'int32', values: [1, 2, 3, 4, 5, 6] },
        { shape: [3], dtype: 'int32', values: [10, 20, 30] },
      ],
      { grad: false },
    ));
});

describe('Slice and SplitV', () => {
  test('slice inner, middle and outer ranges', () =>
    assertMatchesCpu(
      (x) =>
        tf.concat([
          flat(tf.slice(x, [1, 0, 0], [2, 5, 6])),
          flat(tf.slice(x, [0, 2, 1], [4, 2, 3])),
          flat(tf.slice(x, [3, 4, 5], [1, 1, 1])),
          flat(tf.slice(x, [0, 0, 2], [-1, -1, 2])),
        ]),
      [{ shape: [4, 5, 6] }],
    ));
  for (const axis of [0, 1, 2]) {
    test(`split along axis ${axis}`, () =>
      assertMatchesCpu(
        (x) => {
          const parts = tf.split(x, [1, x.shape[axis]! - 3, 2], axis);
          return tf.concat(parts.map((p, i) => flat(tf.mul(p, i + 1))));
        },
        [{ shape: [5, 6, 7] }],
      ));
  }
  test('split of a 1-D tensor and a scalar slice', () =>
    assertMatchesCpu((x) => tf.concat([...tf.split(x, 3), tf.slice(x, [4], [1])]), [{ shape: [9] }]));
});

test('broadcast matmul gradient equals the gradient through an explicit tile', async () => {
  await initBackend();
  const a = tf.randomNormal([3, 7, 5], 0, 1, 'float32', 1);
  const b = tf.randomNormal([5, 4], 0, 1, 'float32', 2);
  const dy = tf.randomNormal([3, 7, 4], 0, 1, 'float32', 3);
  const [gaBroadcast, gbBroadcast] = tf.grads((x, y) => tf.matMul(x, y))([a, b], dy);
  const [gaTiled, gbTiled] = tf.grads((x, y) => tf.matMul(x, tf.tile(tf.expandDims(y, 0), [3, 1, 1])))([a, b], dy);
  assert.ok(relativeError(gbBroadcast.dataSync(), gbTiled.dataSync()) < 1e-5);
  assert.ok(relativeError(gaBroadcast.dataSync(), gaTiled.dataSync()) < 1e-5);
  assert.deepEqual(gbBroadcast.shape, [5, 4]);
});

test('kernels leave no tensors or backend data behind', async () => {
  await initBackend();
  const backend = tf.backend() as unknown as { numDataIds(): number };
  const a = tf.randomNormal([4, 6, 5]);
  const b = tf.randomNormal([4, 5, 3]);
  const x = tf.randomNormal([2, 8, 8, 3]);
  const w = tf.randomNormal([3, 3, 3, 4]);
  const run = () =>
    tf.tidy(() => {
      tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.matMul(p, q, true, false))([tf.transpose(a, [0, 2, 1]), b]);
      tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.conv2d(p as tf.Tensor4D, q as tf.Tensor4D, 2, 'same'))([x, w]);
      tf.split(a, [2, 2], 0);
    });
  run();
  const tensors = tf.memory().numTensors;
  const ids = backend.numDataIds();
  run();
  assert.equal(tf.memory().numTensors, tensors);
  assert.equal(backend.numDataIds(), ids);
});

test('gather rejects an out-of-range index; a clone outlives its source', async () => {
  await initBackend();
  assert.throws(() => tf.gather(tf.zeros([3, 2]), tf.tensor1d([0, 3], 'int32')), /index 3 is not in \[0, 2\]/);
  const a = tf.tensor1d([1, 2, 3]);
  const b = tf.clone(a);
  a.dispose();
  assert.deepEqual(Array.from(b.dataSync()), [1, 2, 3]);
});
