// Slice and SplitV that copy only the slice: stock tfjs-wasm 4.22 reads the whole input out of the
// heap (readSync) for every slice, so splitting a tensor in n parts copied it n times.
import { backend_util, slice_util, type TensorInfo, util } from '@tensorflow/tfjs-core';
import type { KernelArgs, WasmBackendLike } from './heap.js';

function sliceTo(backend: WasmBackendLike, x: TensorInfo, begin: number[], sizes: number[]): TensorInfo {
  const out = backend.makeOutput(sizes, x.dtype);
  const o = backend.typedArrayFromHeap(out);
  const v = backend.typedArrayFromHeap(x);
  const rank = x.shape.length;
  if (rank === 0) {
    o.set(v.subarray(0, 1));
    return out;
  }
  const strides = [...util.computeStrides(x.shape), 1];
  // Dimensions after d are taken whole, so each slice row is one contiguous run starting in dim d.
  let d = rank - 1;
  while (d > 0 && begin[d] === 0 && sizes[d] === x.shape[d]) d--;
  const run = sizes[d] * strides[d];
  const count = sizes.slice(0, d).reduce((a, b) => a * b, 1);
  const idx = new Array(d).fill(0);
  for (let n = 0; n < count; n++) {
    let src = begin[d] * strides[d];
    for (let e = 0; e < d; e++) src += (begin[e] + idx[e]) * strides[e];
    o.set(v.subarray(src, src + run), n * run);
    for (let e = d - 1; e >= 0; e--) {
      if (++idx[e] < sizes[e]) break;
      idx[e] = 0;
    }
  }
  return out;
}

export function slice({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const { x } = inputs;
  const [begin, sizes] = slice_util.parseSliceParams(x as never, attrs.begin as number[], attrs.size as number[]);
  return sliceTo(backend, x, begin, sizes);
}

export function splitV({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const { x } = inputs;
  const axis = util.parseAxisParam(attrs.axis as number, x.shape)[0];
  const splits = backend_util.prepareSplitSize(x as never, attrs.numOrSizeSplits as number[], axis);
  const begin = new Array(x.shape.length).fill(0);
  return splits.map((s) => {
    const sizes = [...x.shape];
    sizes[axis] = s;
    const part = sliceTo(backend, x, [...begin], sizes);
    begin[axis] += s;
    return part;
  });
}
