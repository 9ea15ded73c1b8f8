// Gradients keyed by parameter name. tf.variableGrads keys them by each variable's engine name,
// which must be unique per process; parameters here are named by their dictionary keys instead
// (the safetensors names), so several models with the same layout can coexist.
import * as tf from '@tensorflow/tfjs-core';

export function namedGrads(
  f: () => tf.Scalar,
  params: Record<string, tf.Variable>,
): { value: tf.Scalar; grads: Record<string, tf.Tensor> } {
  const { value, grads } = tf.variableGrads(f, Object.values(params));
  const out: Record<string, tf.Tensor> = {};
  for (const [key, v] of Object.entries(params)) {
    const g = grads[v.name];
    if (g) out[key] = g;
  }
  return { value, grads: out };
}

/**
 * namedGrads of a loss that comes with auxiliary tensors (quantizer indices, parts of the loss, ...):
 * they are kept past the gradient's scope, to be read once the step's gradients are computed. The
 * caller disposes them.
 */
export function namedGradsWithAux<A extends Record<string, tf.Tensor | undefined>>(
  f: () => { loss: tf.Scalar; aux: A },
  params: Record<string, tf.Variable>,
): { value: tf.Scalar; grads: Record<string, tf.Tensor>; aux: A } {
  let aux: A | undefined;
  const r = namedGrads(() => {
    const out = f();
    for (const t of Object.values(out.aux)) if (t) tf.keep(t);
    aux = out.aux;
    return out.loss;
  }, params);
  return { ...r, aux: aux as A };
}
