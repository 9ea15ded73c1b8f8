// Named model weights ↔ safetensors tensors. A model is a Record of tf.Variables keyed by the
// safetensors names; loading checks every expected name and shape.
import * as tf from '@tensorflow/tfjs-core';
import { MuseError } from '../util/errors.js';
import type { NamedTensor } from './safetensors.js';

export type Params = Record<string, tf.Variable>;

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
    params[name] = tf.variable(tf.tensor(t.data, t.shape, 'float32'), true);
  }
  return params;
}
