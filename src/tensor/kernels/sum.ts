// Sum on the native path when it reduces the leading axes of a float32 tensor (the bias gradients of
// every linear layer: [B, S, D] → [D]): one streaming pass on the addon's threads. tfjs-wasm
// transposes the reduced axes to the end first, a full copy of the tensor. Anything else goes to
// the stock kernel.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { NativeAddon } from '../native.js';
import { f32, type KernelArgs, run, size, stockKernel } from './heap.js';

/** The number of leading axes `axis` names (all of them, in any order), or 0 if it names others. */
export function leadingAxes(axis: unknown, rank: number): number {
  const list = (Array.isArray(axis) ? axis : [axis]).map((a) => (typeof a === 'number' && a < 0 ? a + rank : a));
  const sorted = [...new Set(list)].sort((a, b) => (a as number) - (b as number));
  if (sorted.length === 0 || sorted.length >= rank) return 0;
  return sorted.every((a, i) => a === i) ? sorted.length : 0;
}

export function sumKernel(native: NativeAddon) {
  return ({ inputs, backend, attrs }: KernelArgs): TensorInfo => {
    const x = inputs.x;
    const rank = x.shape.length;
    const k = leadingAxes(attrs.axis, rank);
    if (k === 0 || x.dtype !== 'float32' || !native.sumRows || size(x.shape) === 0) {
      return run(stockKernel('Sum'), backend, inputs, attrs);
    }
    const rest = x.shape.slice(k);
    const out = backend.makeOutput(attrs.keepDims ? [...Array(k).fill(1), ...rest] : rest, 'float32');
    const d = size(rest);
    native.sumRows(f32(backend, x), f32(backend, out), size(x.shape) / d, d);
    return out;
  };
}
