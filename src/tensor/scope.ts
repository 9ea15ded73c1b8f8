import * as tf from '@tensorflow/tfjs-core';

/** tf.tidy for functions that return plain values (numbers, typed arrays, images). */
export function scoped<T>(fn: () => T): T {
  return tf.tidy(fn as unknown as () => tf.TensorContainer) as unknown as T;
}
