// tfjs-core has no stop-gradient. Identity forward, zero gradient.
import * as tf from '@tensorflow/tfjs-core';

const stop = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
  void save;
  return { value: tf.clone(x), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) };
}) as never) as unknown as (x: tf.Tensor) => tf.Tensor;

export function stopGradient<T extends tf.Tensor>(x: T): T {
  return stop(x) as T;
}

/**
 * The straight-through estimator (van den Oord et al. 2017): forward value `quantized`, gradient
 * passed to `continuous` unchanged, nothing to `quantized`.
 */
export function straightThrough<T extends tf.Tensor>(continuous: T, quantized: T): T {
  return tf.add(continuous, stopGradient(tf.sub(quantized, continuous))) as T;
}
