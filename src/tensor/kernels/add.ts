// Add on the native path for the two forms a transformer step is made of: two tensors of one shape
// (residual adds) and a tensor plus one broadcast over its leading axes (bias adds: [B, S, D] + [D]).
// One pass on the addon's threads (native addCyclic); tfjs-wasm's Add runs on one thread. Anything
// else (other broadcasts, other dtypes) goes to the stock kernel.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { NativeAddon } from '../native.js';
import { f32, type KernelArgs, run, size, stockKernel } from './heap.js';

/** Whether `small` (leading 1s aside) is `big`'s last axes, so it repeats along `big` with no new axes. */
function repeatsAlong(big: number[], small: number[]): boolean {
  if (small.length > big.length) return false;
  const s = small.slice(small.findIndex((d) => d !== 1) === -1 ? small.length : small.findIndex((d) => d !== 1));
  const tail = big.slice(big.length - s.length);
  return s.every((d, i) => d === tail[i]);
}

export function addKernel(native: NativeAddon) {
  return ({ inputs, backend, attrs }: KernelArgs): TensorInfo => {
    const { a, b } = inputs;
    const float = a.dtype === 'float32' && b.dtype === 'float32';
    const na = size(a.shape);
    const nb = size(b.shape);
    // The bigger operand sets the output shape; the other must repeat along it.
    const [big, small] = na >= nb ? [a, b] : [b, a];
    const fits = float && native.addCyclic && size(small.shape) > 0 && repeatsAlong(big.shape, small.shape);
    if (!fits) return run(stockKernel('Add'), backend, inputs, attrs);
    const out = backend.makeOutput([...big.shape], 'float32');
    const n = size(big.shape);
    if (n > 0) native.addCyclic?.(f32(backend, big), f32(backend, small), f32(backend, out), n, size(small.shape));
    return out;
  };
}
