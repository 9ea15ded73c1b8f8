// x · W with W kept as 16-bit host memory (see kernels/half-weight-matmul.ts): available on the wasm
// backend with the native addon; callers fall back to widening W themselves elsewhere.
import * as tf from '@tensorflow/tfjs-core';
import { HALF_WEIGHT_MATMUL, type HalfWeight, halfWeightProducts } from '../kernels/half-weight-matmul.js';

export { type HalfWeight, halfWeightProducts };

/** Whether matMulHalfWeights runs on the active backend. */
export function canMatMulHalfWeights(): boolean {
  return !!tf.getKernel(HALF_WEIGHT_MATMUL, tf.getBackend());
}

/** x [M, K] · W [K, N] → [M, N] float32, reading W's 16-bit patterns directly (no gradient). */
export function matMulHalfWeights(x: tf.Tensor, w: HalfWeight): tf.Tensor {
  return tf.engine().runKernel(HALF_WEIGHT_MATMUL, { x } as never, { weight: w } as never) as tf.Tensor;
}
