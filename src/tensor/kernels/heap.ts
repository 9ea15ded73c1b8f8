// Access to tensors that live on the tfjs-wasm heap, for kernels written in TypeScript (and the
// native addon) that read and write that memory in place.
import type { DataId, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';

export interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array; tfjs: { disposeData(id: number): void } };
  dataIdMap: { get(dataId: DataId): { memoryOffset: number; id: number }; delete(dataId: DataId): void };
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
  disposeData(dataId: DataId, force?: boolean): boolean;
}

export type Attrs = Record<string, unknown>;
export type KernelArgs = { inputs: Record<string, TensorInfo>; backend: WasmBackendLike; attrs: Attrs };

/** A float32 view of a tensor's heap memory. Take views after every allocation: the heap may grow. */
export function f32(backend: WasmBackendLike, t: TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(t) as Float32Array;
}

export function i32(backend: WasmBackendLike, t: TensorInfo): Int32Array {
  return backend.typedArrayFromHeap(t) as Int32Array;
}

export function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const stock = new Map<string, KernelFunc>();

/** Remembers the kernel tfjs-wasm ships for `name` before this project replaces it. */
export function keepStockKernel(name: string): void {
  const config = tf.getKernel(name, 'wasm');
  if (config && !stock.has(name)) stock.set(name, config.kernelFunc);
}

/** The kernel tfjs-wasm ships for `name` (the replaced one where this project replaced it). */
export function stockKernel(name: string): KernelFunc {
  const kept = stock.get(name) ?? tf.getKernel(name, 'wasm')?.kernelFunc;
  if (!kept) throw new Error(`tfjs-wasm has no ${name} kernel to build on`);
  return kept;
}

/** Calls a kernel function and returns its single output. */
export function run(
  kernel: KernelFunc,
  backend: WasmBackendLike,
  inputs: Record<string, TensorInfo>,
  attrs: Attrs = {},
): TensorInfo {
  return kernel({ inputs, backend: backend as never, attrs: attrs as never }) as TensorInfo;
}

export function dispose(backend: WasmBackendLike, ...ts: TensorInfo[]): void {
  for (const t of ts) backend.disposeData(t.dataId);
}

/**
 * A tensor over floats [start, start + size(shape)) of t's memory, without a copy. It does not own
 * that memory: release it with releaseAlias (dispose would free memory inside t).
 */
export function alias(backend: WasmBackendLike, t: TensorInfo, start: number, shape: number[]): TensorInfo {
  return backend.makeOutput(shape, 'float32', backend.dataIdMap.get(t.dataId).memoryOffset + 4 * start);
}

export function releaseAlias(backend: WasmBackendLike, t: TensorInfo): void {
  // Unregisters the id on the C++ side (which also drops operators cached for it), frees nothing.
  backend.wasm.tfjs.disposeData(backend.dataIdMap.get(t.dataId).id);
  backend.dataIdMap.delete(t.dataId);
}
