// UnsortedSegmentSum (the gradient of gather, i.e. of every embedding lookup): missing from
// tfjs-wasm 4.22. out[ids[i], ...] += x[i, ...]; ids outside [0, numSegments) are dropped, as in TF.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { i32, type KernelArgs, size } from './heap.js';

export function unsortedSegmentSum({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const { x, segmentIds } = inputs;
  const numSegments = attrs.numSegments as number;
  const inner = size(x.shape.slice(segmentIds.shape.length));
  const out = backend.makeOutput([numSegments, ...x.shape.slice(segmentIds.shape.length)], x.dtype);
  const o = backend.typedArrayFromHeap(out) as Float32Array | Int32Array;
  const v = backend.typedArrayFromHeap(x) as Float32Array | Int32Array;
  const ids = i32(backend, segmentIds);
  o.fill(0);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) o[dst + j] += v[src + j];
  }
  return out;
}
