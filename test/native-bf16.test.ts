// The native addon's matmul paths (native/muse_native.cc matmulBatched): OpenBLAS, oneDNN fp32 and
// oneDNN bf16 (bf16 inputs rounded on the fly, fp32 accumulation and output), the by-shape rule and
// the timing tuner, and the policy that src/tensor/kernels/batch-matmul.ts applies (MUSE_FP32,
// MUSE_MATMUL, setMatmulPolicy).
//
// The bf16 checks compare against two float64 references: one of the bf16-rounded inputs, which the
// bf16 path must match to fp32 accumulation accuracy (so bf16 accumulation, a transpose mix-up or a
// wrong rounding fails), and one of the original inputs, from which it must differ by no more than
// bf16 input rounding allows — and by more than fp32 would (so a path that silently ran fp32 fails).
//
// Skipped without the addon (failing under MUSE_REQUIRE_NATIVE=1); the oneDNN tests skip when the
// addon was built without oneDNN, the bf16 ones when the CPU has no bf16 units.

import assert from 'node:assert/strict';
import { after, type TestContext, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { nativeMatmulCounts } from '../src/tensor/kernels/batch-matmul.js';
import { loadNative, matmulPolicy, type NativeAddon, setMatmulPolicy } from '../src/tensor/native.js';

after(() => {
  setMatmulPolicy();
  shutdownBackend();
});

const addon = loadNative();
const nativeOff = process.env.MUSE_NATIVE === '0';
const requireNative = process.env.MUSE_REQUIRE_NATIVE === '1' && !nativeOff;

type Need = 'addon' | 'dnnl' | 'bf16';

/**
 * The addon when it offers what the test needs, else undefined. A missing addon skips the test; an
 * addon without oneDNN or a CPU without bf16 units is a configuration these tests cover elsewhere
 * (the fallback test below), so they pass with a note rather than skip (MUSE_REQUIRE_NATIVE=1
 * counts skips as failures).
 */
function need(t: TestContext, what: Need): NativeAddon | undefined {
  if (!addon) {
    if (requireNative) assert.fail('native addon not built/loadable (MUSE_REQUIRE_NATIVE=1)');
    t.skip(nativeOff ? 'native path off (MUSE_NATIVE=0)' : 'native addon not built');
    return undefined;
  }
  if (typeof addon.matmulBatched !== 'function') {
    if (requireNative) assert.fail('the addon predates matmulBatched: rebuild it (node scripts/build-native.mjs)');
    t.skip('addon built before matmulBatched');
    return undefined;
  }
  const info = addon.info();
  if (what !== 'addon' && typeof info.dnnl !== 'string') {
    t.diagnostic('addon built without oneDNN: nothing to check here');
    return undefined;
  }
  if (what === 'bf16' && !info.bf16) {
    t.diagnostic(`no bf16 units on this CPU (oneDNN ISA ${info.isa}): nothing to check here`);
    return undefined;
  }
  return addon;
}

// Deterministic inputs (mulberry32), values in [-1, 1).
function fill(arr: Float32Array, seed: number): Float32Array {
  let s = seed >>> 0;
  for (let i = 0; i < arr.length; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let r = Math.imul(s ^ (s >>> 15), 1 | s);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    arr[i] = ((r ^ (r >>> 14)) >>> 0) / 2 ** 31 - 1;
  }
  return arr;
}

/** x rounded to bf16 (round to nearest even), as float32 — what the bf16 path multiplies. */
function bf16(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  const u = new Uint32Array(out.buffer);
  out.set(x);
  for (let i = 0; i < u.length; i++) u[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16) << 16;
  return out;
}

interface Gemm {
  transA: boolean;
  transB: boolean;
  batch: number;
  M: number;
  N: number;
  K: number;
  aStride: number;
  bStride: number;
}

/** Float64 product and, per element, sum_k |a·b| (the scale rounding errors are measured against). */
function reference(g: Gemm, a: Float32Array, b: Float32Array): { want: Float64Array; scale: Float64Array } {
  const { transA, transB, batch, M, N, K, aStride, bStride } = g;
  const want = new Float64Array(batch * M * N);
  const scale = new Float64Array(batch * M * N);
  for (let p = 0; p < batch; p++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let sum = 0;
        let abs = 0;
        for (let k = 0; k < K; k++) {
          const av = a[p * aStride + (transA ? k * M + i : i * K + k)];
          const bv = b[p * bStride + (transB ? j * K + k : k * N + j)];
          sum += av * bv;
          abs += Math.abs(av * bv);
        }
        want[p * M * N + i * N + j] = sum;
        scale[p * M * N + i * N + j] = abs;
      }
    }
  }
  return { want, scale };
}

/** The largest |got − want| / scale. */
function worstError(got: Float32Array, want: Float64Array, scale: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]) / Math.max(scale[i], 1e-30);
    if (!(err <= worst)) worst = err;
  }
  return worst;
}

/** fp32 accumulation of K terms: ~K·2^-24 at worst; 1e-5 of the summed magnitudes covers K ≤ 2048 here. */
const FP32_TOL = 1e-5;
/** bf16 input rounding: each factor within 2^-9 relative, so each product within ~2^-8 = 3.9e-3. */
const BF16_TOL = 2 ** -8 + FP32_TOL;

interface Case {
  g: Gemm;
  a: Float32Array;
  b: Float32Array;
  exact: { want: Float64Array; scale: Float64Array };
  rounded: { want: Float64Array; scale: Float64Array };
}

function makeCase(g: Gemm, seed: number): Case {
  const a = fill(new Float32Array((g.batch - 1) * g.aStride + g.M * g.K), seed);
  const b = fill(new Float32Array((g.batch - 1) * g.bStride + g.K * g.N), seed + 1);
  return { g, a, b, exact: reference(g, a, b), rounded: reference(g, bf16(a), bf16(b)) };
}

function run(m: NativeAddon, c: Case, mode: number, allowBf16: boolean): { out: Float32Array; path: number } {
  const { g } = c;
  const out = new Float32Array(g.batch * g.M * g.N).fill(Number.NaN);
  const matmul = m.matmulBatched as NonNullable<NativeAddon['matmulBatched']>;
  const path = matmul(
    g.transA,
    g.transB,
    g.batch,
    g.M,
    g.N,
    g.K,
    c.a,
    g.aStride,
    c.b,
    g.bStride,
    out,
    1,
    0,
    mode,
    allowBf16,
  );
  return { out, path };
}

const TRANSPOSES: Array<[boolean, boolean]> = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

/** Odd sizes in every transpose combination, batched with gapped strides and with either side shared. */
function cases(): Case[] {
  const out: Case[] = [];
  let seed = 1;
  for (const [transA, transB] of TRANSPOSES) {
    seed += 6;
    out.push(makeCase({ transA, transB, batch: 1, M: 67, N: 45, K: 130, aStride: 0, bStride: 0 }, seed));
    out.push(
      makeCase({ transA, transB, batch: 3, M: 33, N: 70, K: 96, aStride: 33 * 96 + 5, bStride: 96 * 70 + 2 }, seed + 3),
    );
  }
  out.push(makeCase({ transA: false, transB: false, batch: 4, M: 40, N: 72, K: 64, aStride: 40 * 64, bStride: 0 }, 91));
  out.push(makeCase({ transA: false, transB: true, batch: 4, M: 40, N: 72, K: 64, aStride: 0, bStride: 72 * 64 }, 93));
  out.push(makeCase({ transA: true, transB: false, batch: 5, M: 24, N: 80, K: 48, aStride: 24 * 48, bStride: 0 }, 95));
  return out;
}

test('matmulBatched: OpenBLAS and oneDNN fp32 paths match float64 to fp32 accuracy', (t) => {
  const m = need(t, 'addon');
  if (!m) return;
  const hasDnnl = typeof m.info().dnnl === 'string';
  for (const c of cases()) {
    for (const mode of [0, 1, 3]) {
      const { out, path } = run(m, c, mode, false);
      const what = `${JSON.stringify(c.g)} mode ${mode} (path ${path})`;
      assert.ok(worstError(out, c.exact.want, c.exact.scale) <= FP32_TOL, `${what}: fp32 error`);
      assert.notEqual(path, 2, `${what}: bf16 ran although not allowed`);
      if (mode === 1 && hasDnnl) assert.equal(path, 1, `${what}: oneDNN fp32 did not run`);
      if (!hasDnnl) assert.equal(path, 0, `${what}: only OpenBLAS exists without oneDNN`);
    }
  }
});

test('matmulBatched: without oneDNN or bf16 units, asking for bf16 runs fp32', (t) => {
  const m = need(t, 'addon');
  if (!m) return;
  const info = m.info();
  if (typeof info.dnnl === 'string' && info.bf16) return t.diagnostic('this CPU has bf16 units: see the next tests');
  for (const c of cases().slice(0, 4)) {
    for (const mode of [2, 3, 4]) {
      const { out, path } = run(m, c, mode, true);
      assert.notEqual(path, 2, `mode ${mode}: bf16 reported without bf16 units`);
      assert.ok(worstError(out, c.exact.want, c.exact.scale) <= FP32_TOL, `mode ${mode}: fp32 error`);
    }
  }
});

test('matmulBatched: the bf16 path multiplies bf16-rounded inputs with fp32 accumulation', (t) => {
  const m = need(t, 'bf16');
  if (!m) return;
  for (const c of cases()) {
    const { out, path } = run(m, c, 2, true);
    const what = JSON.stringify(c.g);
    assert.equal(path, 2, `${what}: bf16 path did not run`);
    const vsRounded = worstError(out, c.rounded.want, c.rounded.scale);
    const vsExact = worstError(out, c.exact.want, c.exact.scale);
    assert.ok(vsRounded <= FP32_TOL, `${what}: error ${vsRounded} against the product of the bf16-rounded inputs`);
    assert.ok(vsExact <= BF16_TOL, `${what}: error ${vsExact} against the exact product`);
    assert.ok(vsExact > 20 * FP32_TOL, `${what}: error ${vsExact} is fp32's: the inputs were not rounded to bf16`);
  }
});

test('matmulBatched: a long bf16 dot product keeps fp32 accumulation (K = 4096 of ones and small steps)', (t) => {
  const m = need(t, 'bf16');
  if (!m) return;
  // Every a·b term is exactly representable in bf16 (1 × (1 + 2^-7)); the running sum passes 4096,
  // where a bf16 accumulator's spacing is 32 and would lose the 2^-7 parts entirely.
  const K = 4096;
  const g: Gemm = { transA: false, transB: false, batch: 1, M: 64, N: 64, K, aStride: 0, bStride: 0 };
  const a = new Float32Array(64 * K).fill(1);
  const b = new Float32Array(K * 64).fill(1 + 2 ** -7);
  const c: Case = { g, a, b, exact: reference(g, a, b), rounded: reference(g, a, b) };
  const { out, path } = run(m, c, 2, true);
  assert.equal(path, 2);
  for (const v of out) assert.ok(Math.abs(v - K * (1 + 2 ** -7)) <= 1e-3, `sum ${v}, want ${K * (1 + 2 ** -7)}`);
});

test('matmulBatched: NaN and infinities survive the bf16 conversion', (t) => {
  const m = need(t, 'bf16');
  if (!m) return;
  const c = makeCase({ transA: false, transB: false, batch: 1, M: 64, N: 64, K: 64, aStride: 0, bStride: 0 }, 7);
  c.a[0] = Number.NaN; // row 0 of the result
  c.a[64 * 3] = Number.POSITIVE_INFINITY; // row 3: ±inf or NaN, never finite
  const { out } = run(m, c, 2, true);
  for (let j = 0; j < 64; j++) {
    assert.ok(Number.isNaN(out[j]), `row 0 col ${j}: ${out[j]}`);
    assert.ok(!Number.isFinite(out[3 * 64 + j]), `row 3 col ${j}: ${out[3 * 64 + j]}`);
    assert.ok(Number.isFinite(out[64 + j]), `row 1 col ${j}: ${out[64 + j]}`);
  }
});

test('matmulBatched: the by-shape rule takes bf16 for large products only when allowed', (t) => {
  const m = need(t, 'bf16');
  if (!m) return;
  const big = makeCase({ transA: false, transB: true, batch: 1, M: 256, N: 192, K: 128, aStride: 0, bStride: 0 }, 11);
  assert.equal(run(m, big, 3, true).path, 2, 'large product, bf16 allowed');
  const fp32 = run(m, big, 3, false);
  assert.notEqual(fp32.path, 2, 'large product, bf16 not allowed');
  assert.ok(worstError(fp32.out, big.exact.want, big.exact.scale) <= FP32_TOL);
  const small = makeCase({ transA: false, transB: false, batch: 1, M: 8, N: 16, K: 8, aStride: 0, bStride: 0 }, 13);
  assert.equal(run(m, small, 3, true).path, 0, 'tiny product stays on OpenBLAS');
});

test('matmulBatched: the tuner keeps one path per shape and computes with it', (t) => {
  const m = need(t, 'dnnl');
  if (!m) return;
  const allow = m.info().bf16 === true;
  const c = makeCase(
    { transA: true, transB: false, batch: 2, M: 96, N: 80, K: 112, aStride: 96 * 112, bStride: 0 },
    17,
  );
  const first = run(m, c, 4, allow);
  for (let i = 0; i < 3; i++) {
    const again = run(m, c, 4, allow);
    assert.equal(again.path, first.path, 'the tuned path changed');
    assert.deepEqual(again.out, first.out, 'the tuned path gave different bits');
  }
  const tol = first.path === 2 ? BF16_TOL : FP32_TOL;
  assert.ok(worstError(first.out, c.exact.want, c.exact.scale) <= tol, `path ${first.path}`);
  const noBf16 = run(m, c, 4, false);
  assert.notEqual(noBf16.path, 2);
});

test('matmulBatched: alpha ≠ 1 or beta ≠ 0 falls back to OpenBLAS; bad arguments throw', (t) => {
  const m = need(t, 'addon');
  if (!m) return;
  const matmul = m.matmulBatched as NonNullable<NativeAddon['matmulBatched']>;
  const a = fill(new Float32Array(64 * 64), 1);
  const b = fill(new Float32Array(64 * 64), 2);
  const c = new Float32Array(64 * 64).fill(1);
  const want = new Float32Array(64 * 64).fill(1);
  m.sgemmBatched(false, false, 1, 64, 64, 64, a, 0, b, 0, want, 0.5, 2);
  assert.equal(matmul(false, false, 1, 64, 64, 64, a, 0, b, 0, c, 0.5, 2, 2, true), 0);
  assert.deepEqual(c, want);
  assert.throws(() => matmul(false, false, 1, 64, 64, 65, a, 0, b, 0, c, 1, 0, 2, true), RangeError);
  assert.throws(() => matmul(false, false, 1, 64, 64, 64, a, 0, b, 0, c, 1, 0, 5, true), RangeError);
  assert.throws(() => matmul(false, false, 1, 64, 64, 64, a, 0, b, 0, a, 1, 0, 2, true), RangeError);
});

test('policy: MUSE_FP32 / setMatmulPolicy decide whether tf.matMul and its gradients run bf16', async (t) => {
  const m = need(t, 'bf16');
  if (!m) return;
  const info = await initBackend();
  if (!info.kernels.native) return t.skip('backend started without the native kernels');
  const [M, K, N] = [128, 192, 96];
  const a = fill(new Float32Array(M * K), 21);
  const b = fill(new Float32Array(K * N), 22);
  const g: Gemm = { transA: false, transB: false, batch: 1, M, N, K, aStride: 0, bStride: 0 };
  const exact = reference(g, a, b);
  const rounded = reference(g, bf16(a), bf16(b));
  const ta = tf.tensor2d(a, [M, K]);
  const tb = tf.tensor2d(b, [K, N]);
  try {
    setMatmulPolicy({ precision: 'bf16' });
    assert.ok(matmulPolicy().allowBf16);
    nativeMatmulCounts(true);
    const outBf16 = tf.tidy(() => tf.matMul(ta, tb).dataSync() as Float32Array);
    assert.equal(nativeMatmulCounts(true)[2], 1, 'bf16 served the product');
    assert.ok(worstError(outBf16, rounded.want, rounded.scale) <= FP32_TOL);
    assert.ok(worstError(outBf16, exact.want, exact.scale) > 20 * FP32_TOL);

    // Gradients: dA = dY·Bᵀ and dB = Aᵀ·dY are matmuls with transposes, on the bf16 path too.
    const dy = fill(new Float32Array(M * N), 23);
    const [da, db] = tf.tidy(() =>
      tf
        .grads((x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y))([ta, tb], tf.tensor2d(dy, [M, N]))
        .map((d) => d.dataSync() as Float32Array),
    );
    assert.equal(nativeMatmulCounts(true)[2], 3, 'forward and both gradients on bf16');
    const daRef = reference({ ...g, N: K, K: N, transB: true }, bf16(dy), bf16(b));
    const dbRef = reference({ ...g, M: K, K: M, transA: true }, bf16(a), bf16(dy));
    assert.ok(worstError(da, daRef.want, daRef.scale) <= FP32_TOL, 'dA = dY·Bᵀ');
    assert.ok(worstError(db, dbRef.want, dbRef.scale) <= FP32_TOL, 'dB = Aᵀ·dY');

    setMatmulPolicy({ precision: 'fp32' });
    assert.ok(!matmulPolicy().allowBf16);
    const outFp32 = tf.tidy(() => tf.matMul(ta, tb).dataSync() as Float32Array);
    assert.equal(nativeMatmulCounts(true)[2], 0, 'no bf16 under fp32');
    assert.ok(worstError(outFp32, exact.want, exact.scale) <= FP32_TOL);
  } finally {
    setMatmulPolicy();
    tf.dispose([ta, tb]);
  }
});

test('policy: MUSE_FP32=1 in the environment forbids bf16; MUSE_MATMUL picks the selection', (t) => {
  const m = need(t, 'addon');
  if (!m) return;
  const saved = { fp32: process.env.MUSE_FP32, matmul: process.env.MUSE_MATMUL };
  try {
    process.env.MUSE_FP32 = '1';
    delete process.env.MUSE_MATMUL;
    setMatmulPolicy();
    assert.equal(matmulPolicy().allowBf16, false);
    delete process.env.MUSE_FP32;
    setMatmulPolicy();
    assert.equal(matmulPolicy().allowBf16, m.info().bf16 === true && typeof m.info().dnnl === 'string');
    process.env.MUSE_MATMUL = 'openblas';
    setMatmulPolicy();
    assert.equal(matmulPolicy().mode, 0);
    assert.match(matmulPolicy().describe, /OpenBLAS/);
    process.env.MUSE_MATMUL = 'nonsense';
    setMatmulPolicy();
    assert.throws(() => matmulPolicy(), /MUSE_MATMUL/);
  } finally {
    for (const [k, v] of [
      ['MUSE_FP32', saved.fp32],
      ['MUSE_MATMUL', saved.matmul],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    setMatmulPolicy();
  }
});
