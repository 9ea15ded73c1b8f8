// Optional native addon (native/muse_native.cc over OpenBLAS), built at install time by
// scripts/build-native.mjs. The wasm kernels call it on Float32Array views of the wasm heap
// (SharedArrayBuffer-backed when wasm runs threaded). When it is missing, fails to load, runs
// outside Node, or MUSE_NATIVE=0 is set, loadNative() returns undefined and the wasm kernels
// are used as they are.
//
// Node built-ins are reached through process.getBuiltinModule (Node >= 20.16) rather than
// static imports, so that this module stays importable in browser bundles.

import { packageRoot } from '../util/package-root.js';

/** Functions exported by native/build/Release/muse_native.node. */
export interface NativeAddon {
  /**
   * For each i < batch: C_i = alpha * op(A_i) * op(B_i) + beta * C_i (cblas_sgemm, row-major).
   *
   * - op(A_i) is M x K; A_i starts at a[i * aBatchStride] (0 broadcasts one A to every batch)
   *   and is stored M x K, or K x M when transA.
   * - op(B_i) is K x N; B_i starts at b[i * bBatchStride], stored K x N, or N x K when transB.
   * - C_i is M x N, contiguous: c[i * M * N ...].
   * - beta = 0 means C is not read (BLAS semantics).
   *
   * Throws a TypeError/RangeError (nothing is written) when an argument has the wrong type, an
   * index would fall outside a, b or c, or the part of c written overlaps what is read of a or b.
   */
  sgemmBatched(
    transA: boolean,
    transB: boolean,
    batch: number,
    M: number,
    N: number,
    K: number,
    a: Float32Array,
    aBatchStride: number,
    b: Float32Array,
    bBatchStride: number,
    c: Float32Array,
    alpha: number,
    beta: number,
  ): void;
  /** y = gelu(x) (tanh form) over n elements. */
  geluForward(x: Float32Array, y: Float32Array, n: number): void;
  /** dx = dy · gelu'(x) over n elements. */
  geluBackward(dy: Float32Array, x: Float32Array, dx: Float32Array, n: number): void;
  /** Layer norm of `rows` rows of `d` features; also writes each row's mean and 1/std. */
  layerNormForward(
    x: Float32Array,
    g: Float32Array,
    b: Float32Array,
    y: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    rows: number,
    d: number,
    eps: number,
  ): void;
  /** Gradients of layer norm with respect to x, g and b. */
  layerNormBackward(
    dy: Float32Array,
    x: Float32Array,
    g: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    dx: Float32Array,
    dg: Float32Array,
    db: Float32Array,
    rows: number,
    d: number,
  ): void;
  /** One AdamW update of n parameters in place (p, m, v); c1, c2 are the bias corrections 1/(1−βᵗ). */
  adamwUpdate(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    n: number,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    c1: number,
    c2: number,
    decay: number,
  ): void;
  /** y = x·σ(x) (SiLU / swish) over n elements. */
  siluForward(x: Float32Array, y: Float32Array, n: number): void;
  /** dx = dy · silu'(x) = dy·σ(x)·(1 + x·(1 − σ(x))) over n elements. */
  siluBackward(dy: Float32Array, x: Float32Array, dx: Float32Array, n: number): void;
  /**
   * Group norm of NHWC x ([batch, hw, channels] with channels in `groups` groups of consecutive
   * channels); also writes each (batch, group)'s mean and 1/std ([batch·groups]). Throws a
   * RangeError unless channels % groups == 0.
   */
  groupNormForward(
    x: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    y: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    batch: number,
    hw: number,
    channels: number,
    groups: number,
    eps: number,
  ): void;
  /** Gradients of group norm with respect to x, gamma and beta (from groupNormForward's mean, rstd). */
  groupNormBackward(
    dy: Float32Array,
    x: Float32Array,
    gamma: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
    batch: number,
    hw: number,
    channels: number,
    groups: number,
  ): void;
  /**
   * The im2col patch matrix of images [b0, b0+nb) of NHWC x into cols [nb·OH·OW, KH·KW·C]; geometry:
   * Int32Array [b0, nb, H, W, C, KH, KW, strideH, strideW, dilationH, dilationW, padTop, padLeft, OH, OW].
   */
  im2col(x: Float32Array, cols: Float32Array, geometry: Int32Array): void;
  /** x += col2im(cols): the scatter-add transpose of im2col (same geometry). */
  col2imAdd(x: Float32Array, cols: Float32Array, geometry: Int32Array): void;
  /** Threads OpenBLAS (and sgemmBatched's batch parallelism) may use; process-wide. n >= 1. */
  setThreads(n: number): void;
  getThreads(): number;
  info(): { blas: string; threads: number };
}

const ADDON_PATH = ['native', 'build', 'Release', 'muse_native.node'];

let cached: { addon: NativeAddon | undefined } | undefined;

interface NodeBuiltins {
  fs: typeof import('node:fs');
  path: typeof import('node:path');
  module: typeof import('node:module');
}

function nodeBuiltins(): NodeBuiltins | undefined {
  const proc = (globalThis as { process?: NodeJS.Process }).process;
  if (!proc?.versions?.node || typeof proc.getBuiltinModule !== 'function') return undefined;
  return {
    fs: proc.getBuiltinModule('node:fs'),
    path: proc.getBuiltinModule('node:path'),
    module: proc.getBuiltinModule('node:module'),
  };
}

function isAddon(x: unknown): x is NativeAddon {
  const m = x as Partial<Record<keyof NativeAddon, unknown>> | null;
  return (
    typeof m === 'object' &&
    m !== null &&
    typeof m.sgemmBatched === 'function' &&
    typeof m.setThreads === 'function' &&
    typeof m.getThreads === 'function' &&
    typeof m.info === 'function'
  );
}

function load(): NativeAddon | undefined {
  const node = nodeBuiltins();
  if (!node) return undefined;
  if (process.env.MUSE_NATIVE === '0') return undefined;
  try {
    if (!import.meta.url.startsWith('file:')) return undefined;
    const file = node.path.join(packageRoot(), ...ADDON_PATH);
    if (!node.fs.existsSync(file)) return undefined;
    const require = node.module.createRequire(import.meta.url);
    const addon: unknown = require(file);
    return isAddon(addon) ? addon : undefined;
  } catch {
    // no package folder, libopenblas.so.0 missing at run time, or an addon built for another Node ABI
    return undefined;
  }
}

/**
 * The native addon, or undefined when it is not built, fails to load, is disabled with
 * MUSE_NATIVE=0, or this is not Node. Never throws; the result is cached.
 */
export function loadNative(): NativeAddon | undefined {
  if (!cached) cached = { addon: load() };
  return cached.addon;
}
