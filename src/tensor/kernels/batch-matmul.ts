// BatchMatMul for tfjs-wasm. Stock 4.22 runs XNNPACK only for untransposed operands with batch 1 on
// both sides and a scalar loop otherwise (docs/ARCHITECTURE.md: 0.4–2.4 GFLOP/s); every matmul gradient is a
// transposed matmul. Native path: one OpenBLAS call over the whole batch, in place on the heap.
// Native path (matmulBatched): bf16 on oneDNN where the CPU has bf16 units and the product is large
// enough, oneDNN fp32 for batched products, OpenBLAS otherwise (src/tensor/native.ts matmulPolicy).
// Wasm path: explicit transposes, then XNNPACK on batch-1 problems.
import { broadcast_util, type TensorInfo } from '@tensorflow/tfjs-core';
import { matmulPolicy, type NativeAddon } from '../native.js';
import {
  alias,
  dispose,
  f32,
  type KernelArgs,
  releaseAlias,
  run,
  size,
  stockKernel,
  type WasmBackendLike,
} from './heap.js';

interface Problem {
  batchA: number;
  batchB: number;
  m: number;
  n: number;
  k: number;
  outShape: number[];
}

function problem(a: TensorInfo, b: TensorInfo, ta: boolean, tb: boolean): Problem | undefined {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const [m, ka] = ta ? [a.shape[ra - 1], a.shape[ra - 2]] : [a.shape[ra - 2], a.shape[ra - 1]];
  const [kb, n] = tb ? [b.shape[rb - 1], b.shape[rb - 2]] : [b.shape[rb - 2], b.shape[rb - 1]];
  if (ka !== kb) {
    throw new Error(
      `matMul: inner sizes differ (${ka} vs ${kb}) for shapes [${a.shape}] and [${b.shape}], ` +
        `transposeA=${ta}, transposeB=${tb}`,
    );
  }
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const batchA = size(outerA);
  const batchB = size(outerB);
  const outer = broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  // Equal batches or a batch of one on either side; other broadcasts go to the stock kernel.
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) return undefined;
  if (size(outer) !== Math.max(batchA, batchB)) return undefined;
  return { batchA, batchB, m, n, k: ka, outShape: [...outer, m, n] };
}

/** out = op(a) · op(b), batched; a result the caller owns. */
export function matmul(
  backend: WasmBackendLike,
  native: NativeAddon | undefined,
  a: TensorInfo,
  b: TensorInfo,
  ta: boolean,
  tb: boolean,
): TensorInfo {
  const p = problem(a, b, ta, tb);
  if (!p) return run(stockKernel('BatchMatMul'), backend, { a, b }, { transposeA: ta, transposeB: tb });
  return native ? matmulNative(backend, native, a, b, ta, tb, p) : matmulWasm(backend, a, b, ta, tb, p);
}

function matmulNative(
  backend: WasmBackendLike,
  native: NativeAddon,
  a: TensorInfo,
  b: TensorInfo,
  ta: boolean,
  tb: boolean,
  p: Problem,
): TensorInfo {
  const out = backend.makeOutput(p.outShape, 'float32');
  const batch = Math.max(p.batchA, p.batchB);
  if (p.m * p.n * batch > 0) {
    const args = [
      ta,
      tb,
      batch,
      p.m,
      p.n,
      p.k,
      f32(backend, a),
      p.batchA === 1 ? 0 : p.m * p.k,
      f32(backend, b),
      p.batchB === 1 ? 0 : p.k * p.n,
      f32(backend, out),
      1,
      0,
    ] as const;
    if (native.matmulBatched) {
      const policy = matmulPolicy(native);
      pathCounts[native.matmulBatched(...args, policy.mode, policy.allowBf16)]++;
    } else {
      native.sgemmBatched(...args);
      pathCounts[0]++;
    }
  }
  return out;
}

/** Products run on each native path since the start (or the last reset): OpenBLAS, oneDNN fp32, oneDNN bf16. */
const pathCounts = [0, 0, 0];

/** How many native matmuls each path served (indices as MATMUL_PATHS); `reset` zeroes the counts. */
export function nativeMatmulCounts(reset = false): number[] {
  const counts = [...pathCounts];
  if (reset) pathCounts.fill(0);
  return counts;
}

function swapLastTwo(backend: WasmBackendLike, t: TensorInfo): TensorInfo {
  const r = t.shape.length;
  const perm = [...Array(r).keys()];
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return run(stockKernel('Transpose'), backend, { x: t }, { perm });
}

function view(t: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: t.dataId, dtype: t.dtype, shape };
}

function matmulWasm(
  backend: WasmBackendLike,
  a: TensorInfo,
  b: TensorInfo,
  ta: boolean,
  tb: boolean,
  p: Problem,
): TensorInfo {
  const stock = stockKernel('BatchMatMul');
  const a2 = ta ? swapLastTwo(backend, a) : a;
  const b2 = tb ? swapLastTwo(backend, b) : b;
  const { batchA, batchB, m, n, k } = p;
  let out: TensorInfo;
  if (batchB === 1) {
    // Shared right operand: fold the batch into the rows, one XNNPACK call.
    const r = run(stock, backend, { a: view(a2, [1, batchA * m, k]), b: view(b2, [1, k, n]) });
    out = view(r, p.outShape);
  } else {
    out = backend.makeOutput(p.outShape, 'float32');
    for (let i = 0; i < batchB; i++) {
      const ai = batchA === 1 ? a2 : alias(backend, a2, i * m * k, [1, m, k]);
      const bi = alias(backend, b2, i * k * n, [1, k, n]);
      const r = run(stock, backend, { a: view(ai, [1, m, k]), b: bi });
      f32(backend, out).set(f32(backend, r), i * m * n);
      dispose(backend, r);
      releaseAlias(backend, bi);
      if (ai !== a2) releaseAlias(backend, ai);
    }
  }
  if (a2 !== a) dispose(backend, a2);
  if (b2 !== b) dispose(backend, b2);
  return out;
}

export function batchMatMulKernel(native: NativeAddon | undefined) {
  return ({ inputs, backend, attrs }: KernelArgs): TensorInfo =>
    matmul(backend, native, inputs.a, inputs.b, !!attrs.transposeA, !!attrs.transposeB);
}
