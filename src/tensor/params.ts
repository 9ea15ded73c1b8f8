// Named model weights ↔ safetensors tensors. A model is a Record of tf.Variables keyed by the
// safetensors names; loading checks every expected name and shape.
import * as tf from '@tensorflow/tfjs-core';
import { MuseError } from '../util/errors.js';
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

/** Names and shapes of a freshly initialised model (the layout a file must match). */
export function expectedShapes(init: () => Params): Record<string, number[]> {
  return tf.tidy(() => {
    const fresh = init();
    const shapes = Object.fromEntries(Object.entries(fresh).map(([k, v]) => [k, v.shape]));
    tf.dispose(Object.values(fresh));
    return shapes as never;
  }) as unknown as Record<string, number[]>;
}

/** Variables for every expected tensor; a clear error naming the file for a missing or misshapen one. */
export function paramsFromTensors(
  path: string,
  tensors: Record<string, NamedTensor>,
  expected: Record<string, number[]>,
): Params {
  const params: Params = {};
  for (const [name, shape] of Object.entries(expected)) {
    const t = tensors[name];
    if (!t) throw new MuseError(`${path}: tensor "${name}" is missing`);
    if (t.shape.join() !== shape.join())
      throw new MuseError(`${path}: tensor "${name}" has shape [${t.shape}], expected [${shape}]`);
    params[name] = newVariable(Float32Array.from(t.data), t.shape);
  }
  return params;
}
