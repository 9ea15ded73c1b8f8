// This project's kernels for tfjs-wasm 4.22: the ones it lacks (conv filter gradient, gather's
// gradient), the ones it runs as scalar loops (transposed/batched matmul, conv input gradient), and
// slices that copy only what they return. With the native addon, matmuls and convolutions go to
// OpenBLAS in place on the wasm heap.
import * as tf from '@tensorflow/tfjs-core';
import { loadNative } from '../native.js';
import { registerFusedSoftmaxGradient } from '../ops/softmax.js';
import { setActiveNative } from './active-native.js';
import { addKernel } from './add.js';
import { batchMatMulKernel } from './batch-matmul.js';
import { conv2dBackpropFilterKernel, conv2dBackpropInputKernel, conv2dKernel } from './conv2d.js';
import { erfKernel } from './erf.js';
import { gatherV2, identity } from './gather.js';
import { HALF_WEIGHT_MATMUL, halfWeightMatMulKernel } from './half-weight-matmul.js';
import { type KernelArgs, keepStockKernel } from './heap.js';
import { unsortedSegmentSum } from './segment-sum.js';
import { slice, splitV } from './slice.js';
import { softmaxKernel } from './softmax.js';
import { sumKernel } from './sum.js';

export interface KernelPackInfo {
  /** True when the native BLAS addon serves matmuls and convolutions. */
  native: boolean;
  /** Description of the BLAS library, when native. */
  blas?: string;
  /** Kernels this project registered for the wasm backend. */
  kernels: string[];
}

type Kernel = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

function replace(name: string, kernel: Kernel): void {
  keepStockKernel(name);
  if (tf.getKernel(name, 'wasm')) tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: kernel as never });
}

let registered: KernelPackInfo | undefined;

/** Registers the kernel pack on the wasm backend (once per process). */
export async function registerKernelPack(options: { native: boolean }): Promise<KernelPackInfo> {
  if (registered) return registered;
  const native = options.native ? loadNative() : undefined;
  setActiveNative(native);
  const kernels: Record<string, Kernel> = {
    BatchMatMul: batchMatMulKernel(native),
    Conv2DBackpropFilter: conv2dBackpropFilterKernel(native),
    Conv2DBackpropInput: conv2dBackpropInputKernel(native),
    UnsortedSegmentSum: unsortedSegmentSum,
    Slice: slice,
    SplitV: splitV,
    GatherV2: gatherV2,
    Identity: identity,
  };
  if (native) kernels.Conv2D = conv2dKernel(native);
  if (native?.softmaxForward) kernels.Softmax = softmaxKernel(native);
  if (native?.sumRows) kernels.Sum = sumKernel(native);
  if (native?.addCyclic) kernels.Add = addKernel(native);
  if (native?.erfForward) kernels.Erf = erfKernel(native);
  if (native?.matmulHalfWeights) kernels[HALF_WEIGHT_MATMUL] = halfWeightMatMulKernel(native);
  for (const [name, kernel] of Object.entries(kernels)) replace(name, kernel);
  // After tfjs-core's gradients (initBackend registers those first).
  registerFusedSoftmaxGradient();
  registered = { native: !!native, blas: native?.info().blas, kernels: Object.keys(kernels) };
  return registered;
}
