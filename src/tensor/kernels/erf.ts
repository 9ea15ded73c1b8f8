// Erf on the native path: the C library's erf on the addon's threads. tfjs-wasm's runs on one thread
// (as accurate: within half an ulp here); aMUSEd's exact GELU spent 0.55 s of a 7.9 s guided pass
// there (docs/PERFORMANCE.md).
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { NativeAddon } from '../native.js';
import { f32, type KernelArgs, run, size, stockKernel } from './heap.js';

export function erfKernel(native: NativeAddon) {
  return ({ inputs, backend, attrs }: KernelArgs): TensorInfo => {
    const x = inputs.x;
    if (x.dtype !== 'float32' || !native.erfForward) return run(stockKernel('Erf'), backend, inputs, attrs);
    const out = backend.makeOutput(x.shape, 'float32');
    const n = size(x.shape);
    if (n > 0) native.erfForward(f32(backend, x), f32(backend, out), n);
    return out;
  };
}
