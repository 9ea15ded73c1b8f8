// Named model weights ↔ safetensors tensors. A model is a Record of tf.Variables keyed by the
// safetensors names; loading checks every expected name and shape.
import * as tf from '@tensorflow/tfjs-core';
import { MuseError } from '../util/errors.js';
import type { Rng } from './random.js';
import type { NamedTensor } from './safetensors.js';

export type Params = Record<string, tf.Variable>;

/**
 * A variable owning its own memory. tf.variable(t) shares t's buffer and leaves t alive; the
 * buffer's reference count then stays above 1, which makes every assign keep a copy and stops
 * in-place optimizer updates (src/train/adamw.ts). Disposing t here avoids both.
 */
export function newVariable(values: tf.Tensor | Float32Array, shape?: number[], trainable = true): tf.Variable {
  const t = values instanceof Float32Array ? tf.tensor(values, shape) : values;
  const v = tf.variable(t, trainable);
  t.dispose();
  return v;
}

/** Replaces a variable's value with new data (the temporary tensor is released). */
export function assignValues(v: tf.Variable, values: Float32Array): void {
  const t = tf.tensor(values, v.shape);
  v.assign(t);
  t.dispose();
}

export function paramsToTensors(p: Params): Record<string, NamedTensor> {
  return Object.fromEntries(
    Object.entries(p).map(([k, v]) => [k, { shape: v.shape, data: v.dataSync() as Float32Array }]),
  );
}

/**
 * Called once per tensor of a model, in a fixed order: its name, shape, and how to make its initial
 * values (only called when a model is built; listing shapes allocates nothing).
 */
export type LayoutVisitor = (name: string, shape: number[], values: (rng: Rng) => Float32Array) => void;

/** The most parameters muse-ts loads into one model (tfjs-wasm memory is 4 GiB in all). */
export const MAX_MODEL_PARAMS = 500_000_000;

function numel(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/**
 * The names and shapes a model config lays out, checked one by one against the tensors a file holds
 * (derived from its header) while they are listed, before anything is allocated: the first missing or
 * misshapen tensor stops the listing, so a config asking for more than the file holds (an absurd
 * width, a billion layers) fails at once, and so does one over MAX_MODEL_PARAMS. Names matching
 * `optional` (tensors older files may lack) may be absent.
 */
export function checkedShapes(
  path: string,
  layout: (visit: LayoutVisitor) => void,
  tensors: Record<string, NamedTensor>,
  optional?: RegExp,
): Record<string, number[]> {
  const shapes = Object.create(null) as Record<string, number[]>;
  let params = 0;
  layout((name, shape) => {
    params += numel(shape);
    if (params > MAX_MODEL_PARAMS)
      throw new MuseError(
        `${path}: its config needs over ${MAX_MODEL_PARAMS.toLocaleString('en-US')} parameters, more than muse-ts loads`,
      );
    const t = tensors[name];
    if (!t && !optional?.test(name)) throw new MuseError(`${path}: tensor "${name}" is missing`);
    if (t && t.shape.join() !== shape.join())
      throw new MuseError(`${path}: tensor "${name}" has shape [${t.shape}], expected [${shape}]`);
    shapes[name] = shape;
  });
  return shapes;
}

/** The first NaN or infinite value of a tensor: its index, or -1. */
function firstNonFinite(data: Float32Array | Int32Array): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return i;
  return -1;
}

/**
 * Variables for every expected tensor. Every tensor is checked (present, its shape, finite values)
 * before any variable is made; a clear error names the file and the tensor.
 */
export function paramsFromTensors(
  path: string,
  tensors: Record<string, NamedTensor>,
  expected: Record<string, number[]>,
): Params {
  for (const [name, shape] of Object.entries(expected)) {
    const t = tensors[name];
    if (!t) throw new MuseError(`${path}: tensor "${name}" is missing`);
    if (t.shape.join() !== shape.join())
      throw new MuseError(`${path}: tensor "${name}" has shape [${t.shape}], expected [${shape}]`);
    const bad = firstNonFinite(t.data);
    if (bad >= 0)
      throw new MuseError(
        `${path}: tensor "${name}" holds ${t.data[bad]} (element ${bad}); the weights are broken (a diverged training run?)`,
      );
  }
  const params: Params = {};
  for (const [name, shape] of Object.entries(expected)) {
    params[name] = newVariable(Float32Array.from(tensors[name].data), shape);
  }
  return params;
}
