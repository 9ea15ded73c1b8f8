// MuseHalfWeightMatMul: x [M, K] (on the wasm heap) times a weight [K, N] kept as 16-bit host memory
// outside the heap (F16 or BF16, passed as the `weight` attribute), on the native path. It lets a model
// too large for the 4 GB heap in float32 (aMUSEd's U-ViT) run without widening and uploading its
// weights on every pass. Inference only: no gradient is registered.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { matmulPolicy, type NativeAddon } from '../native.js';
import { f32, type KernelArgs } from './heap.js';

export const HALF_WEIGHT_MATMUL = 'MuseHalfWeightMatMul';

/** A [K, N] weight as 16-bit patterns, row-major. */
export interface HalfWeight {
  bits: Uint16Array;
  kind: 'F16' | 'BF16';
  shape: [number, number];
}

let products = 0;

/** How many products this kernel has run in the process (to check that a model reads its host copies in place). */
export function halfWeightProducts(): number {
  return products;
}

export function halfWeightMatMulKernel(native: NativeAddon) {
  return ({ inputs, backend, attrs }: KernelArgs): TensorInfo => {
    const x = inputs.x;
    const w = attrs.weight as HalfWeight;
    const [k, n] = w.shape;
    if (x.shape.length !== 2 || x.shape[1] !== k || x.dtype !== 'float32' || !native.matmulHalfWeights) {
      throw new Error(`${HALF_WEIGHT_MATMUL}: x must be float32 [M, ${k}], got ${x.dtype} [${x.shape}]`);
    }
    const m = x.shape[0];
    products++;
    const out = backend.makeOutput([m, n], 'float32');
    if (m * n > 0) {
      const policy = matmulPolicy(native);
      native.matmulHalfWeights(
        f32(backend, x),
        m,
        k,
        w.bits,
        w.kind === 'BF16' ? 1 : 0,
        n,
        f32(backend, out),
        policy.mode,
        policy.allowBf16,
      );
    }
    return out;
  };
}
