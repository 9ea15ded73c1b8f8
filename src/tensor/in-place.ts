// Writing into a tensor's memory in place (the optimizer's parameter update), safely on every backend.
//
// tfjs-wasm caches XNNPACK operators (matmul, convolution) keyed by the id of the weight tensor, with
// the weights *packed into the operator when it is created*. A later write into that tensor's memory
// is therefore invisible to the next matmul or convolution: it keeps multiplying by the old packed
// weights. (Measured: after writing 2·I into an identity matrix in place, tf.matMul still returned
// x·I; this made every training run on the pure-wasm path follow wrong gradients.) Re-registering
// the id on the wasm side drops the operators cached for it; the memory itself stays where it is.
import * as tf from '@tensorflow/tfjs-core';

interface BackendMemory {
  typedArrayFromHeap?(t: tf.TensorInfo): Float32Array;
  data?: { get(id: tf.DataId): { values?: Float32Array } };
  refCount(id: tf.DataId): number;
  dataIdMap?: { get(id: tf.DataId): { id: number; memoryOffset: number; shape: number[]; dtype: string } | undefined };
  wasm?: { tfjs: { disposeData(id: number): void; registerTensor(id: number, size: number, offset: number): void } };
}

function activeBackend(): BackendMemory {
  return tf.backend() as unknown as BackendMemory;
}

/** A Float32Array over the tensor's own memory, when the backend keeps it in JS-visible memory. */
export function memoryOf(t: tf.Tensor): Float32Array | undefined {
  if (t.dtype !== 'float32') return undefined;
  const backend = activeBackend();
  const info = { dataId: t.dataId, shape: t.shape, dtype: t.dtype };
  if (backend.typedArrayFromHeap) return backend.typedArrayFromHeap(info);
  const values = backend.data?.get(t.dataId)?.values;
  return values instanceof Float32Array ? values : undefined;
}

/** Memory of t that may be written in place: only when no other tensor shares it. */
export function writableMemoryOf(t: tf.Tensor): Float32Array | undefined {
  return activeBackend().refCount(t.dataId) === 1 ? memoryOf(t) : undefined;
}

/** Call after writing into writableMemoryOf(t): later kernels then see the new values. */
export function afterInPlaceWrite(t: tf.Tensor): void {
  const backend = activeBackend();
  const entry = backend.dataIdMap?.get(t.dataId);
  if (!backend.wasm || !entry) return;
  backend.wasm.tfjs.disposeData(entry.id);
  backend.wasm.tfjs.registerTensor(entry.id, t.size, entry.memoryOffset);
}
