// Softmax over the last axis as one kernel each way (src/tensor/ops/softmax.ts, the native
// softmaxForward/softmaxBackward and the kernel pack's Softmax): values and gradients against a
// float64 reference, on whichever path this pass runs (native, or pure wasm with MUSE_NATIVE=0).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { loadNative } from '../src/tensor/native.js';

after(() => shutdownBackend());

function inputs(n: number, seed: number, scale = 4): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * scale;
  });
}

/** Float64 softmax rows and dx = y·(dy − Σ dy·y). */
function reference(x: Float32Array, dy: Float32Array, d: number): { y: Float64Array; dx: Float64Array } {
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  for (let o = 0; o < x.length; o += d) {
    let m = -Infinity;
    for (let i = o; i < o + d; i++) m = Math.max(m, x[i]);
    let s = 0;
    for (let i = o; i < o + d; i++) s += Math.exp(x[i] - m);
    for (let i = o; i < o + d; i++) y[i] = Math.exp(x[i] - m) / s;
    let dot = 0;
    for (let i = o; i < o + d; i++) dot += dy[i] * y[i];
    for (let i = o; i < o + d; i++) dx[i] = y[i] * (dy[i] - dot);
  }
  return { y, dx };
}

function maxError(got: Float32Array, want: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  return worst;
}

test('softmax and its gradient over the last axis match float64 (attention-shaped and odd rows)', async () => {
  await initBackend();
  for (const shape of [
    [2, 3, 17, 33],
    [4, 64],
    [1, 1, 1],
    [3, 1000],
  ]) {
    const n = shape.reduce((a, b) => a * b, 1);
    const d = shape[shape.length - 1];
    const x = inputs(n, n + 1);
    const dy = inputs(n, n + 2, 1);
    const want = reference(x, dy, d);
    const [y, dx] = tf.tidy(() => {
      const xt = tf.tensor(x, shape);
      const dyt = tf.tensor(dy, shape);
      const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.softmax(t), dyt)))(xt);
      return [tf.softmax(xt).dataSync() as Float32Array, g.dataSync() as Float32Array];
    });
    assert.ok(maxError(y, want.y) < 1e-6, `softmax [${shape}]: ${maxError(y, want.y)}`);
    assert.ok(maxError(dx, want.dx) < 1e-6, `gradient [${shape}]: ${maxError(dx, want.dx)}`);
  }
});

test('the gradient runs as one fused kernel (not tfjs mul/sum/mul/sub)', async () => {
  await initBackend();
  const x = tf.tensor(inputs(64, 3), [4, 16]);
  const profile = await tf.profile(() => {
    tf.tidy(
      () =>
        void tf
          .grad((t: tf.Tensor) => tf.sum(tf.mul(tf.softmax(t), t)))(x)
          .dataSync(),
    );
  });
  x.dispose();
  assert.ok(profile.kernelNames.includes('MuseSoftmaxGrad'), `kernels: ${profile.kernelNames.join(', ')}`);
});

test('softmax over a non-last axis still works (stock kernel, tfjs gradient)', async () => {
  await initBackend();
  const x = inputs(24, 5);
  const got = tf.tidy(() => tf.softmax(tf.tensor(x, [4, 6])).dataSync() as Float32Array);
  assert.ok(maxError(got, reference(x, new Float32Array(24), 6).y) < 1e-6);
});

test('native softmaxForward/softmaxBackward check their lengths', (t) => {
  const m = loadNative();
  if (!m?.softmaxForward || !m.softmaxBackward) return t.skip('no native softmax in this addon / path');
  const x = new Float32Array(6);
  assert.throws(() => m.softmaxForward?.(x, new Float32Array(5), 2, 3), RangeError);
  assert.throws(() => m.softmaxBackward?.(x, x, new Float32Array(5), 2, 3), RangeError);
  const y = new Float32Array(6);
  m.softmaxForward(Float32Array.from([0, 0, 0, 1, 1, 1]), y, 2, 3);
  for (const v of y) assert.ok(Math.abs(v - 1 / 3) < 1e-7);
});
