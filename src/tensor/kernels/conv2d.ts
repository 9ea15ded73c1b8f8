// 2-D convolution (NHWC) through im2col + one matmul per chunk of images. tfjs-wasm 4.22 has no
// Conv2DBackpropFilter at all and a scalar-loop Conv2DBackpropInput (docs/ARCHITECTURE.md, ~2.4 GFLOP/s).
//   forward:        y[b·OH·OW, Co]        = cols[b·OH·OW, KH·KW·Ci] · W[KH·KW·Ci, Co]
//   filter grad:    dW[KH·KW·Ci, Co]      = Σ_chunks colsᵀ · dy
//   input grad:     dcols[b·OH·OW, KH·KW·Ci] = dy · Wᵀ, then col2im (scatter-add) into dx
// Filter layout [KH, KW, Ci, Co] is already the row-major [KH·KW·Ci, Co] matrix.
import { backend_util, type TensorInfo } from '@tensorflow/tfjs-core';
import type { NativeAddon } from '../native.js';
import { matmul } from './batch-matmul.js';
import { dispose, f32, type KernelArgs, size, type WasmBackendLike } from './heap.js';

type ConvInfo = backend_util.Conv2DInfo;

// Caps the im2col buffer of one chunk (floats): 16M floats = 64 MB.
let maxCols = 16 * 1024 * 1024;

/** Sets the im2col chunk limit in floats (tests use a small one to exercise chunking); returns the old one. */
export function setConvChunkLimit(floats: number): number {
  const old = maxCols;
  maxCols = floats;
  return old;
}

function convInfo(xShape: number[], filterShape: number[], attrs: KernelArgs['attrs']): ConvInfo {
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC') {
    throw new Error(`conv2d: only NHWC is supported, got ${String(attrs.dataFormat)}`);
  }
  return backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides as number | [number, number],
    (attrs.dilations ?? 1) as number | [number, number],
    attrs.pad as 'same' | 'valid' | number,
    attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
    false,
    'channelsLast',
  );
}

function imagesPerChunk(c: ConvInfo): number {
  const perImage = c.outHeight * c.outWidth * c.filterHeight * c.filterWidth * c.inChannels;
  return Math.max(1, Math.min(c.batchSize, Math.floor(maxCols / Math.max(1, perImage))));
}

function isPointwise(c: ConvInfo): boolean {
  return (
    c.filterHeight === 1 &&
    c.filterWidth === 1 &&
    c.strideHeight === 1 &&
    c.strideWidth === 1 &&
    c.padInfo.top === 0 &&
    c.padInfo.left === 0
  );
}

/**
 * Walks every (output pixel, tap) pair of images [b0, b0+nb) and calls visit(colOffset, xOffset)
 * for taps inside the image (xOffset = -1 for taps in the padding), offsets in floats.
 */
function forEachTap(c: ConvInfo, b0: number, nb: number, visit: (col: number, x: number) => void): void {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = c;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = c;
  const { dilationHeight: dh, dilationWidth: dw } = c;
  const top = c.padInfo.top;
  const left = c.padInfo.left;
  let col = 0;
  for (let b = b0; b < b0 + nb; b++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        for (let kh = 0; kh < KH; kh++) {
          const ih = oh * sh + kh * dh - top;
          for (let kw = 0; kw < KW; kw++) {
            const iw = ow * sw + kw * dw - left;
            const inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
            visit(col, inside ? ((b * H + ih) * W + iw) * C : -1);
            col += C;
          }
        }
      }
    }
  }
}

function geometry(c: ConvInfo, b0: number, nb: number): Int32Array {
  return Int32Array.from([
    b0,
    nb,
    c.inHeight,
    c.inWidth,
    c.inChannels,
    c.filterHeight,
    c.filterWidth,
    c.strideHeight,
    c.strideWidth,
    c.dilationHeight,
    c.dilationWidth,
    c.padInfo.top,
    c.padInfo.left,
    c.outHeight,
    c.outWidth,
  ]);
}

function im2col(
  backend: WasmBackendLike,
  native: NativeAddon | undefined,
  x: TensorInfo,
  c: ConvInfo,
  b0: number,
  nb: number,
): TensorInfo {
  const K = c.filterHeight * c.filterWidth * c.inChannels;
  const cols = backend.makeOutput([nb * c.outHeight * c.outWidth, K], 'float32');
  if (native) {
    native.im2col(f32(backend, x), f32(backend, cols), geometry(c, b0, nb));
    return cols;
  }
  const heap = f32(backend, cols);
  const base = heap.byteOffset / 4;
  // One Float32Array over the whole heap, so copies are copyWithin calls with no allocation.
  const all = new Float32Array(heap.buffer);
  const xBase = f32(backend, x).byteOffset / 4;
  const C = c.inChannels;
  forEachTap(c, b0, nb, (col, xo) => {
    if (xo < 0) all.fill(0, base + col, base + col + C);
    else all.copyWithin(base + col, xBase + xo, xBase + xo + C);
  });
  return cols;
}

function col2imAdd(
  backend: WasmBackendLike,
  native: NativeAddon | undefined,
  dcols: TensorInfo,
  dx: TensorInfo,
  c: ConvInfo,
  b0: number,
  nb: number,
): void {
  if (native) {
    native.col2imAdd(f32(backend, dx), f32(backend, dcols), geometry(c, b0, nb));
    return;
  }
  const cols = f32(backend, dcols);
  const out = f32(backend, dx);
  const C = c.inChannels;
  forEachTap(c, b0, nb, (col, xo) => {
    if (xo < 0) return;
    for (let i = 0; i < C; i++) out[xo + i] += cols[col + i];
  });
}

function copyImages(backend: WasmBackendLike, t: TensorInfo, b0: number, nb: number): TensorInfo {
  if (b0 === 0 && nb === t.shape[0]) return t; // all images: no copy
  const per = size(t.shape.slice(1));
  const out = backend.makeOutput([nb, ...t.shape.slice(1)], 'float32');
  f32(backend, out).set(f32(backend, t).subarray(b0 * per, (b0 + nb) * per));
  return out;
}

/** Calls body(b0, nb) for consecutive chunks of images sized so one chunk's im2col fits the limit. */
function forEachChunk(c: ConvInfo, body: (b0: number, nb: number) => void): void {
  const chunk = imagesPerChunk(c);
  for (let b0 = 0; b0 < c.batchSize; b0 += chunk) body(b0, Math.min(chunk, c.batchSize - b0));
}

/** The im2col matrix of images [b0, b0+nb) (x itself, as a matrix, for a pointwise conv). */
function columns(
  backend: WasmBackendLike,
  native: NativeAddon | undefined,
  x: TensorInfo,
  c: ConvInfo,
  b0: number,
  nb: number,
): TensorInfo {
  if (!isPointwise(c)) return im2col(backend, native, x, c, b0, nb);
  return asMatrix(copyImages(backend, x, b0, nb), nb * c.outHeight * c.outWidth);
}

/** Disposes a temporary unless it is (a view of) the kernel's input. */
function disposeTemp(backend: WasmBackendLike, t: TensorInfo, input: TensorInfo): void {
  if (t.dataId !== input.dataId) dispose(backend, t);
}

function asMatrix(t: TensorInfo, rows: number): TensorInfo {
  return { dataId: t.dataId, dtype: t.dtype, shape: [rows, size(t.shape) / rows] };
}

export function conv2dKernel(native: NativeAddon) {
  return ({ inputs, backend, attrs }: KernelArgs): TensorInfo => {
    const { x, filter } = inputs;
    const c = convInfo(x.shape, filter.shape, attrs);
    const K = c.filterHeight * c.filterWidth * c.inChannels;
    const w = asMatrix(filter, K);
    const out = backend.makeOutput(c.outShape, 'float32');
    if (size(c.outShape) === 0) return out;
    forEachChunk(c, (b0, nb) => {
      const cols = columns(backend, native, x, c, b0, nb);
      const y = matmul(backend, native, cols, w, false, false);
      f32(backend, out).set(f32(backend, y), b0 * c.outHeight * c.outWidth * c.outChannels);
      dispose(backend, y);
      disposeTemp(backend, cols, x);
    });
    return out;
  };
}

export function conv2dBackpropFilterKernel(native: NativeAddon | undefined) {
  return ({ inputs, backend, attrs }: KernelArgs): TensorInfo => {
    const { x, dy } = inputs;
    const filterShape = attrs.filterShape as number[];
    const c = convInfo(x.shape, filterShape, attrs);
    const dw = backend.makeOutput(filterShape, 'float32');
    f32(backend, dw).fill(0);
    forEachChunk(c, (b0, nb) => {
      const cols = columns(backend, native, x, c, b0, nb);
      const dyChunk = copyImages(backend, dy, b0, nb);
      const part = matmul(backend, native, cols, asMatrix(dyChunk, nb * c.outHeight * c.outWidth), true, false);
      const acc = f32(backend, dw);
      const p = f32(backend, part);
      for (let i = 0; i < acc.length; i++) acc[i] += p[i];
      dispose(backend, part);
      disposeTemp(backend, cols, x);
      disposeTemp(backend, dyChunk, dy);
    });
    return dw;
  };
}

export function conv2dBackpropInputKernel(native: NativeAddon | undefined) {
  return ({ inputs, backend, attrs }: KernelArgs): TensorInfo => {
    const { dy, filter } = inputs;
    const inputShape = attrs.inputShape as number[];
    const c = convInfo(inputShape, filter.shape, attrs);
    const K = c.filterHeight * c.filterWidth * c.inChannels;
    const w = asMatrix(filter, K);
    const dx = backend.makeOutput(inputShape, 'float32');
    f32(backend, dx).fill(0);
    forEachChunk(c, (b0, nb) => {
      const dyChunk = copyImages(backend, dy, b0, nb);
      const dcols = matmul(backend, native, asMatrix(dyChunk, nb * c.outHeight * c.outWidth), w, false, true);
      if (isPointwise(c)) f32(backend, dx).set(f32(backend, dcols), b0 * size(inputShape.slice(1)));
      else col2imAdd(backend, native, dcols, dx, c, b0, nb);
      dispose(backend, dcols);
      disposeTemp(backend, dyChunk, dy);
    });
    return dx;
  };
}
