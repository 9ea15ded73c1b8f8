// Kernels written as TypeScript loops over Float32Arrays, registered for the wasm backend (reading
// and writing the wasm heap in place) and the cpu backend. Used for fused ops whose unfused tfjs
// form costs many small kernels and temporaries (docs/ARCHITECTURE.md profile: layer norm, GELU, softmax).
import * as tf from '@tensorflow/tfjs-core';
import { activeNative } from '../kernels/active-native.js';
import type { NativeAddon } from '../native.js';

export interface JsKernel {
  name: string;
  /** Output shapes from input shapes and attributes. */
  outputs(shapes: number[][], attrs: tf.NamedAttrMap): number[][];
  /** Reads inputs, writes every element of every output. */
  compute(ins: Float32Array[], outs: Float32Array[], shapes: number[][], attrs: tf.NamedAttrMap): void;
  /** The same through the native addon, used on wasm when the native path is active. */
  computeNative?(
    addon: NativeAddon,
    ins: Float32Array[],
    outs: Float32Array[],
    shapes: number[][],
    attrs: tf.NamedAttrMap,
  ): void;
}

interface WasmLike {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
}

interface CpuLike {
  data: { get(id: tf.DataId): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo;
}

type Args = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function wasmKernel(k: JsKernel) {
  return ({ inputs, backend, attrs = {} }: Args): tf.TensorInfo[] => {
    const b = backend as WasmLike;
    const ins = Object.values(inputs) as tf.TensorInfo[];
    const shapes = ins.map((t) => t.shape);
    const outs = k.outputs(shapes, attrs).map((s) => b.makeOutput(s, 'float32'));
    // Views only after every allocation: the heap may have grown.
    const inViews = ins.map((t) => b.typedArrayFromHeap(t));
    const outViews = outs.map((t) => b.typedArrayFromHeap(t));
    const addon = activeNative();
    if (addon && k.computeNative) k.computeNative(addon, inViews, outViews, shapes, attrs);
    else k.compute(inViews, outViews, shapes, attrs);
    return outs;
  };
}

function cpuKernel(k: JsKernel) {
  return ({ inputs, backend, attrs = {} }: Args): tf.TensorInfo[] => {
    const b = backend as CpuLike;
    const ins = Object.values(inputs) as tf.TensorInfo[];
    const shapes = ins.map((t) => t.shape);
    const outShapes = k.outputs(shapes, attrs);
    const outs = outShapes.map((s) => new Float32Array(s.reduce((x, y) => x * y, 1)));
    k.compute(
      ins.map((t) => b.data.get(t.dataId).values),
      outs,
      shapes,
      attrs,
    );
    return outs.map((v, i) => b.makeTensorInfo(outShapes[i], 'float32', v));
  };
}

/** Registers k for wasm and cpu (once). */
export function registerJsKernel(k: JsKernel): void {
  if (!tf.getKernel(k.name, 'wasm'))
    tf.registerKernel({ kernelName: k.name, backendName: 'wasm', kernelFunc: wasmKernel(k) as never });
  if (!tf.getKernel(k.name, 'cpu'))
    tf.registerKernel({ kernelName: k.name, backendName: 'cpu', kernelFunc: cpuKernel(k) as never });
}

/** Whether the active backend runs k (otherwise ops fall back to composite tfjs ops). */
export function hasKernel(name: string): boolean {
  return !!tf.getKernel(name, tf.getBackend());
}

export function runKernel(name: string, inputs: Record<string, tf.Tensor>, attrs: tf.NamedAttrMap = {}): tf.Tensor[] {
  const out = tf.engine().runKernel(name, inputs as never, attrs as never);
  return (Array.isArray(out) ? out : [out]) as tf.Tensor[];
}
