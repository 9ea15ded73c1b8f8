// Runs the same computation on the wasm backend (this project's kernels) and on the tfjs cpu
// backend, and compares every output and every input gradient.
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/tensor/backend.js';
import { Rng } from '../../src/tensor/random.js';

export interface Input {
  shape: number[];
  dtype?: 'float32' | 'int32';
  values?: number[];
}

type Fn = (...xs: tf.Tensor[]) => tf.Tensor;

/** ‖a − b‖∞ / ‖b‖∞: the error relative to the result's scale. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'lengths differ');
  let diff = 0;
  let scale = 1e-30;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

function materialise(inputs: Input[], seed: number): Array<Float32Array | Int32Array> {
  const rng = new Rng(seed);
  return inputs.map((inp) => {
    const n = inp.shape.reduce((a, b) => a * b, 1);
    if (inp.values) return inp.dtype === 'int32' ? Int32Array.from(inp.values) : Float32Array.from(inp.values);
    return rng.normals(n);
  });
}

function evaluate(backend: string, fn: Fn, inputs: Input[], data: Array<Float32Array | Int32Array>, grad: boolean) {
  tf.setBackend(backend);
  return tf.tidy(() => {
    const xs = inputs.map((inp, i) => tf.tensor(data[i], inp.shape, inp.dtype ?? 'float32'));
    const y = fn(...xs);
    const out: Array<{ name: string; values: Float32Array | Int32Array | Uint8Array }> = [
      { name: 'output', values: y.dataSync() as Float32Array },
    ];
    if (grad) {
      const rng = new Rng(99);
      const dy = tf.tensor(rng.normals(y.size), y.shape);
      const floatIdx = inputs.map((inp, i) => (inp.dtype === 'int32' ? -1 : i)).filter((i) => i >= 0);
      const g = tf.grads((...fx: tf.Tensor[]) => {
        const all = xs.map((x, i) => (floatIdx.includes(i) ? fx[floatIdx.indexOf(i)] : x));
        return fn(...all);
      });
      const grads = g(
        floatIdx.map((i) => xs[i]),
        dy,
      );
      grads.forEach((gr, j) =>
        out.push({ name: `grad of input ${floatIdx[j]}`, values: gr.dataSync() as Float32Array }),
      );
    }
    return out;
  });
}

/**
 * Asserts fn on wasm agrees with fn (or an independent `reference` formulation) on the tfjs cpu
 * backend, forward and (unless grad = false) backward.
 */
export async function assertMatchesCpu(
  fn: Fn,
  inputs: Input[],
  options: { tolerance?: number; grad?: boolean; seed?: number; reference?: Fn } = {},
): Promise<void> {
  await initBackend();
  const data = materialise(inputs, options.seed ?? 1);
  const grad = options.grad ?? true;
  const got = evaluate('wasm', fn, inputs, data, grad);
  const want = evaluate('cpu', options.reference ?? fn, inputs, data, grad);
  tf.setBackend('wasm');
  for (let i = 0; i < want.length; i++) {
    const err = relativeError(got[i].values, want[i].values);
    assert.ok(
      err <= (options.tolerance ?? 1e-5),
      `${want[i].name}: relative error ${err.toExponential(2)} exceeds ${(options.tolerance ?? 1e-5).toExponential(0)}`,
    );
  }
}
