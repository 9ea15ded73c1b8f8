// Softmax over the last axis on the native path: one pass per row on the addon's threads
// (tfjs-wasm's runs single-threaded). Other axes go to the stock kernel. Its gradient is
// src/tensor/ops/softmax.ts.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { NativeAddon } from '../native.js';
import { f32, type KernelArgs, run, size, stockKernel } from './heap.js';

export function softmaxKernel(native: NativeAddon) {
  return ({ inputs, backend, attrs }: KernelArgs): TensorInfo => {
    const x = inputs.logits;
    const rank = x.shape.length;
    const dim = Array.isArray(attrs.dim) ? attrs.dim[0] : attrs.dim;
    const last = dim === undefined || dim === -1 || dim === rank - 1;
    if (!last || x.dtype !== 'float32' || !native.softmaxForward) {
      return run(stockKernel('Softmax'), backend, inputs, attrs);
    }
    const out = backend.makeOutput(x.shape, 'float32');
    const d = x.shape[rank - 1] ?? 1;
    const n = size(x.shape);
    if (n > 0) native.softmaxForward(f32(backend, x), f32(backend, out), n / d, d);
    return out;
  };
}
