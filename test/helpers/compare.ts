// Runs the same computation on the wasm backend (this project's kernels) and on the tfjs cpu
// backend, and compares every output and every input gradient; then checks each input gradient on
// wasm against central finite differences of the forward pass (forward kernels only, so a wrong
// backward kernel cannot agree with itself).
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
  options: { tolerance?: number; grad?: boolean; seed?: number; reference?: Fn; fdTolerance?: number } = {},
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
  if (grad) assertMatchesFiniteDifferences(fn, inputs, data, got, options.fdTolerance ?? 1e-3);
}

/** Σ fn(xs)·dy in float64, with dy the fixed random cotangent `evaluate` uses. */
function projectedOutput(fn: Fn, inputs: Input[], data: Array<Float32Array | Int32Array>): number {
  return tf.tidy(() => {
    const y = fn(...inputs.map((inp, i) => tf.tensor(data[i], inp.shape, inp.dtype ?? 'float32')));
    const dy = new Rng(99).normals(y.size);
    const v = y.dataSync();
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i] * dy[i];
    return s;
  });
}

/**
 * For each float input i and a random direction u: (L(x + εu) − L(x − εu)) / 2ε must equal
 * ⟨∂L/∂xᵢ, u⟩ from the backward kernels, with L = Σ fn(x)·dy (the gradients in `got`).
 */
function assertMatchesFiniteDifferences(
  fn: Fn,
  inputs: Input[],
  data: Array<Float32Array | Int32Array>,
  got: Array<{ name: string; values: Float32Array | Int32Array | Uint8Array }>,
  tolerance: number,
): void {
  const floatIdx = inputs.map((inp, i) => (inp.dtype === 'int32' ? -1 : i)).filter((i) => i >= 0);
  const rng = new Rng(7);
  const eps = 1e-2;
  floatIdx.forEach((i, j) => {
    const grad = got[1 + j].values;
    const u = rng.normals(grad.length);
    let analytic = 0;
    let scale = 0;
    for (let k = 0; k < u.length; k++) {
      analytic += grad[k] * u[k];
      scale += (grad[k] * u[k]) ** 2;
    }
    const shifted = (sign: number) =>
      data.map((d, k) => (k === i ? Float32Array.from(d, (x, e) => x + sign * eps * u[e]) : d));
    const numeric = (projectedOutput(fn, inputs, shifted(1)) - projectedOutput(fn, inputs, shifted(-1))) / (2 * eps);
    const err = Math.abs(numeric - analytic) / Math.max(Math.sqrt(scale), 1e-6);
    assert.ok(
      err <= tolerance,
      `${got[1 + j].name}: directional derivative ${analytic.toPrecision(6)} (backward kernels) vs ` +
        `${numeric.toPrecision(6)} (finite differences), relative error ${err.toExponential(2)}`,
    );
  });
}
