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
  /**
   * sgemmBatched's product (same arguments and checks) through the path `mode` asks for, returning
   * the path that ran: 0 OpenBLAS, 1 oneDNN fp32, 2 oneDNN bf16 (inputs rounded to bf16 on the fly,
   * fp32 accumulation and output). Modes 0–2 ask for that path (OpenBLAS when oneDNN is not built in
   * or cannot run it); 3 chooses by shape (deterministic); 4 times the allowed paths at a shape's
   * first call and keeps the fastest for the process. bf16 is a candidate in modes 3 and 4 only when
   * allowBf16 and the CPU has bf16 units. Absent from addons built before oneDNN support.
   */
  matmulBatched?(
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
    mode: number,
    allowBf16: boolean,
  ): number;
  /** Softmax of each of `rows` rows of d values (sums in double). Absent from older addons. */
  softmaxForward?(x: Float32Array, y: Float32Array, rows: number, d: number): void;
  /** dx = y·(dy − Σ dy·y) per row: softmax's gradient from its output y. Absent from older addons. */
  softmaxBackward?(dy: Float32Array, y: Float32Array, dx: Float32Array, rows: number, d: number): void;
  /** y[c] = Σ_r x[r·d + c] over `rows` rows (a sum over leading axes; sums in double). Absent from older addons. */
  sumRows?(x: Float32Array, y: Float32Array, rows: number, d: number): void;
  /**
   * y (M×N) = x (M×K) · W (K×N), W row-major 16-bit (kind 0 IEEE half, 1 bfloat16) anywhere in
   * memory (host copies outside the wasm heap); the path is chosen as matmulBatched's (mode 4 takes the
   * shape rule) and the result equals matmulBatched's on the widened weights bit for bit. Returns the
   * path. Absent from older addons.
   */
  matmulHalfWeights?(
    x: Float32Array,
    M: number,
    K: number,
    w: Uint16Array,
    kind: number,
    N: number,
    y: Float32Array,
    mode: number,
    allowBf16: boolean,
  ): number;
  /**
   * Scaled dot-product attention per (batch, head): p = softmax(scale·q·kᵀ + bias), o = p·v. Every
   * operand strided: `layout` holds the batch, head and row stride and the offset of q, k, v and o
   * (element (b, h, s, d) at offset + b·batch + h·head + s·row + d); bias [B,Sk] (length 0: none),
   * p [B,H,Sq,Sk]. Absent from older addons.
   */
  attentionStridedForward?(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    bias: Float32Array,
    o: Float32Array,
    p: Float32Array,
    B: number,
    H: number,
    Sq: number,
    Sk: number,
    dh: number,
    scale: number,
    layout: Float64Array,
    bf16: boolean,
  ): void;
  /**
   * Its gradients from dO (o's layout) and the saved p into dq, dk, dv (their operand's layout; they
   * may share one buffer when their column ranges do not meet, as a packed [B, S, 3D] gradient).
   * bf16 (both calls): the per-item products with operands rounded to bf16 and fp32 accumulation
   * (AVX-512 BF16; only where info().attentionBf16, else a RangeError).
   */
  attentionStridedBackward?(
    dO: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    p: Float32Array,
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    B: number,
    H: number,
    Sq: number,
    Sk: number,
    dh: number,
    scale: number,
    layout: Float64Array,
    bf16: boolean,
  ): void;
  /** y = erf(x) over n elements (the C library's erf). Absent from older addons. */
  erfForward?(x: Float32Array, y: Float32Array, n: number): void;
  /** y = gelu(x) (tanh form) over n elements. */
  geluForward(x: Float32Array, y: Float32Array, n: number): void;
  /**
   * Cross-entropy against soft targets per row: p = softmax(x), loss[r] = −Σ_c q·log p (from the
   * log-sum-exp, in double). x, q, p [rows, d]; loss [rows]. Absent from older addons.
   */
  softCrossEntropyForward?(
    x: Float32Array,
    q: Float32Array,
    p: Float32Array,
    loss: Float32Array,
    rows: number,
    d: number,
  ): void;
  /** Its gradient: dx = dloss[r]·(p·Σ_c q − q). */
  softCrossEntropyBackward?(
    dloss: Float32Array,
    p: Float32Array,
    q: Float32Array,
    dx: Float32Array,
    rows: number,
    d: number,
  ): void;
  /**
   * y[i] = a[i] + b[i mod m] over n elements (n a multiple of m): Add of same shapes (m = n) or with
   * b broadcast over a's leading axes. Absent from older addons.
   */
  addCyclic?(a: Float32Array, b: Float32Array, y: Float32Array, n: number, m: number): void;
  /** y = e^x, the vectorised exponential softmax, GELU and SiLU use (0 below −87.34). Absent from older addons. */
  expForward?(x: Float32Array, y: Float32Array, n: number): void;
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
  /**
   * blas: OpenBLAS's configuration; dnnl: oneDNN's version (null when not built in); isa: the
   * instruction set oneDNN runs; bf16 / amx: whether the CPU has bf16 units oneDNN can use. The last
   * four are absent from addons built before oneDNN support.
   */
  info(): {
    blas: string;
    threads: number;
    dnnl?: string | null;
    isa?: string;
    bf16?: boolean;
    amx?: boolean;
    /** The instruction set the addon's own vector loops run (exp, softmax, GELU, SiLU): avx512f, avx2 or baseline; `MUSE_VECTOR_ISA=baseline|avx2` forces a narrower one. */
    vectorIsa?: string;
    /** The attention calls can run their products in bf16 (the CPU has AVX-512 BF16; oneDNN not needed). */
    attentionBf16?: boolean;
  };
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
    // oneDNN runs on OpenMP threads (libgomp), which by default spin for a while after each
    // product and then compete for the cores with OpenBLAS's threads and the addon's pool: measured
    // 2–4× slower products on 2 cores. Passive waiting, unless the user chose a policy.
    if (process.env.OMP_WAIT_POLICY === undefined && process.env.GOMP_SPINCOUNT === undefined) {
      process.env.OMP_WAIT_POLICY = 'passive';
    }
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

/** Paths of matmulBatched, by the number it returns. */
export const MATMUL_PATHS = ['OpenBLAS fp32', 'oneDNN fp32', 'oneDNN bf16'] as const;

/** How matmuls are dispatched on the native path (see matmulPolicy). */
export interface MatmulPolicy {
  /** matmulBatched's mode: 0 OpenBLAS, 1 oneDNN fp32, 2 oneDNN bf16, 3 by shape, 4 tuned by timing. */
  mode: number;
  /** bf16 may be chosen (modes 3 and 4): the CPU has bf16 units and fp32 is not forced. */
  allowBf16: boolean;
  /**
   * The fused attention kernels may run their per-item products in bf16 (src/tensor/ops/attention.ts
   * decides by shape): the CPU has AVX-512 BF16, fp32 is not forced and MUSE_MATMUL does not force
   * an fp32 path (`openblas`, `onednn`).
   */
  attentionBf16: boolean;
  /** One line for `muse doctor` and benchmarks. */
  describe: string;
}

const MODES: Record<string, number> = { openblas: 0, onednn: 1, 'onednn-fp32': 1, bf16: 2, rule: 3, tune: 4 };

let policyOverride: { precision?: 'fp32' | 'bf16'; select?: string } = {};
let cachedPolicy: MatmulPolicy | undefined;

/**
 * The matmul policy of the native path, from the environment unless setMatmulPolicy overrides it:
 *
 * - `MUSE_FP32=1` forces fp32 (no bf16 anywhere); otherwise bf16 is used where the CPU has bf16
 *   units (AVX-512 BF16 or AMX) and the addon has oneDNN, for products large enough to gain.
 * - `MUSE_MATMUL=rule` (default: by shape, reproducible), `tune` (time the paths at each shape's
 *   first call; fastest, not reproducible between processes), or one path for every product:
 *   `openblas`, `onednn` (fp32), `bf16`.
 */
export function matmulPolicy(addon: NativeAddon | undefined = loadNative()): MatmulPolicy {
  if (cachedPolicy) return cachedPolicy;
  const env = (globalThis as { process?: NodeJS.Process }).process?.env ?? {};
  const info = addon?.info();
  const hasDnnl = typeof addon?.matmulBatched === 'function' && typeof info?.dnnl === 'string';
  const fp32Forced =
    policyOverride.precision === 'fp32' ||
    (policyOverride.precision === undefined && env.MUSE_FP32 !== undefined && !['', '0'].includes(env.MUSE_FP32));
  const select = (policyOverride.select ?? env.MUSE_MATMUL ?? 'rule').toLowerCase();
  if (!(select in MODES)) {
    throw new Error(`MUSE_MATMUL must be one of ${Object.keys(MODES).join(', ')}, got "${select}"`);
  }
  const mode = hasDnnl ? MODES[select] : 0;
  const allowBf16 = hasDnnl && !fp32Forced && info?.bf16 === true;
  let describe: string;
  if (!addon) describe = 'no native addon';
  else if (!hasDnnl) describe = 'OpenBLAS fp32 (addon built without oneDNN)';
  else if (mode <= 2) describe = `${MATMUL_PATHS[mode]} for every product (MUSE_MATMUL=${select})`;
  else {
    const units = info?.amx ? 'AMX' : 'AVX-512 BF16';
    const bf16 = allowBf16
      ? `bf16 on ${units} (oneDNN ${info?.dnnl}, fp32 accumulation)`
      : fp32Forced
        ? 'fp32 only (MUSE_FP32)'
        : `fp32 only (no bf16 units: ${info?.isa})`;
    describe = `${bf16}; ${mode === 3 ? 'path chosen by shape' : 'path chosen by timing each shape'} among ${
      allowBf16 ? 'oneDNN bf16, ' : ''
    }oneDNN fp32 and OpenBLAS`;
  }
  const attentionBf16 =
    info?.attentionBf16 === true && !fp32Forced && !['openblas', 'onednn', 'onednn-fp32'].includes(select);
  cachedPolicy = { mode, allowBf16, attentionBf16, describe };
  return cachedPolicy;
}

/**
 * Overrides the environment's matmul policy for this process (tests, benchmarks): precision
 * 'fp32' forbids bf16, 'bf16' allows it where the hardware has it; select as MUSE_MATMUL.
 * Call with no argument to return to the environment's policy.
 */
export function setMatmulPolicy(override: { precision?: 'fp32' | 'bf16'; select?: string } = {}): void {
  policyOverride = { ...override };
  cachedPolicy = undefined;
}
