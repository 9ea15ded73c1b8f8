// Tests for the optional native BLAS addon (native/muse_native.cc, loaded by src/tensor/native.ts).
// Skipped when the addon is not built, unless MUSE_REQUIRE_NATIVE=1 (CI sets it where BLAS is
// installed), in which case a missing addon fails the tests.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadNative, type NativeAddon } from '../src/tensor/native.js';

const addon = loadNative();
const nativeOff = process.env.MUSE_NATIVE === '0';
// The pure-wasm pass of `npm test` turns the native path off on purpose: there these tests skip.
const requireNative = process.env.MUSE_REQUIRE_NATIVE === '1' && !nativeOff;

/** The addon, or undefined after skipping the test (failing it when MUSE_REQUIRE_NATIVE=1). */
function need(t: TestContext): NativeAddon | undefined {
  if (addon) return addon;
  if (requireNative) {
    assert.fail('native addon not built/loadable (MUSE_REQUIRE_NATIVE=1); run `node scripts/build-native.mjs`');
  }
  t.skip(nativeOff ? 'native path off (MUSE_NATIVE=0)' : 'native addon not built');
  return undefined;
}

// Deterministic inputs (mulberry32), values in [-1, 1).
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let r = Math.imul(s ^ (s >>> 15), 1 | s);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 2 ** 31 - 1;
  };
}

function fill(arr: Float32Array, seed: number): Float32Array {
  const r = rng(seed);
  for (let i = 0; i < arr.length; i++) arr[i] = r();
  return arr;
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
  alpha: number;
  beta: number;
}

/**
 * Float64 reference for the same (float32) inputs. Returns the expected C and, per element, the
 * scale sum_k |alpha*a*b| + |beta*c| that bounds float32 rounding error. The check below is
 * |got - want| <= 1e-5 * scale: a relative error of 1e-5 measured against the magnitude of the
 * summed terms rather than of the (possibly cancelled, near-zero) result, which is the bound a
 * K-term float32 dot product satisfies (about K * 2^-24 ≈ 4e-6 for K = 65 in the worst case).
 */
function reference(
  g: Gemm,
  a: Float32Array,
  b: Float32Array,
  c0: Float32Array,
): { want: Float64Array; scale: Float64Array } {
  const { transA, transB, batch, M, N, K, aStride, bStride, alpha, beta } = g;
  const want = new Float64Array(batch * M * N);
  const scale = new Float64Array(batch * M * N);
  for (let p = 0; p < batch; p++) {
    const ao = p * aStride;
    const bo = p * bStride;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let sum = 0;
        let abs = 0;
        for (let k = 0; k < K; k++) {
          const av = a[ao + (transA ? k * M + i : i * K + k)];
          const bv = b[bo + (transB ? j * K + k : k * N + j)];
          sum += av * bv;
          abs += Math.abs(av * bv);
        }
        const idx = p * M * N + i * N + j;
        const cv = beta === 0 ? 0 : beta * c0[idx];
        want[idx] = alpha * sum + cv;
        scale[idx] = Math.abs(alpha) * abs + Math.abs(cv);
      }
    }
  }
  return { want, scale };
}

function assertClose(got: Float32Array, want: Float64Array, scale: Float64Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0;
  let worstAt = -1;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]) / Math.max(scale[i], 1e-30);
    if (!(err <= worst)) {
      worst = err;
      worstAt = i;
    }
  }
  assert.ok(
    worst <= 1e-5,
    `${what}: relative error ${worst} at ${worstAt} (got ${got[worstAt]}, want ${want[worstAt]})`,
  );
}

/** Runs one product through the addon on fresh arrays and checks it against the reference. */
function check(m: NativeAddon, g: Gemm, seed: number): void {
  const aLen = (g.batch - 1) * g.aStride + g.M * g.K;
  const bLen = (g.batch - 1) * g.bStride + g.K * g.N;
  const a = fill(new Float32Array(aLen), seed);
  const b = fill(new Float32Array(bLen), seed + 1);
  const c = fill(new Float32Array(g.batch * g.M * g.N), seed + 2);
  const { want, scale } = reference(g, a, b, c);
  m.sgemmBatched(g.transA, g.transB, g.batch, g.M, g.N, g.K, a, g.aStride, b, g.bStride, c, g.alpha, g.beta);
  assertClose(c, want, scale, JSON.stringify(g));
}

const TRANSPOSES: Array<[boolean, boolean]> = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

test('info, getThreads and setThreads', (t) => {
  const m = need(t);
  if (!m) return;
  const info = m.info();
  assert.equal(typeof info.blas, 'string');
  assert.match(info.blas, /openblas/i);
  assert.ok(Number.isInteger(info.threads) && info.threads >= 1);
  const before = m.getThreads();
  assert.equal(before, info.threads);
  try {
    m.setThreads(1);
    assert.equal(m.getThreads(), 1);
    assert.equal(m.info().threads, 1);
  } finally {
    m.setThreads(before);
  }
  assert.equal(m.getThreads(), before);
  assert.throws(() => m.setThreads(0), RangeError);
  assert.throws(() => m.setThreads(1.5), RangeError);
  assert.throws(() => m.setThreads('2' as unknown as number), TypeError);
});

test('sgemmBatched: all transpose combinations, odd and non-square sizes', (t) => {
  const m = need(t);
  if (!m) return;
  const sizes: Array<[number, number, number]> = [
    [1, 1, 1],
    [7, 5, 3],
    [5, 7, 1],
    [33, 17, 65],
    [17, 65, 33],
    [64, 48, 40],
  ];
  let seed = 1;
  for (const [transA, transB] of TRANSPOSES) {
    for (const [M, N, K] of sizes) {
      for (const batch of [1, 3]) {
        const g = { transA, transB, batch, M, N, K, aStride: M * K, bStride: K * N, alpha: 1, beta: 0 };
        check(m, g, seed++);
      }
    }
  }
});

test('sgemmBatched: broadcast with batch stride 0 (and gapped strides)', (t) => {
  const m = need(t);
  if (!m) return;
  let seed = 100;
  for (const [transA, transB] of TRANSPOSES) {
    const M = 7;
    const N = 5;
    const K = 3;
    const base = { transA, transB, batch: 3, M, N, K, alpha: 1, beta: 0 };
    check(m, { ...base, aStride: 0, bStride: K * N }, seed++);
    check(m, { ...base, aStride: M * K, bStride: 0 }, seed++);
    check(m, { ...base, aStride: 0, bStride: 0 }, seed++);
    check(m, { ...base, aStride: M * K + 4, bStride: K * N + 1 }, seed++);
  }
});

test('sgemmBatched: alpha and beta', (t) => {
  const m = need(t);
  if (!m) return;
  let seed = 200;
  for (const [transA, transB] of TRANSPOSES) {
    for (const [alpha, beta] of [
      [-0.5, 2],
      [0.125, 1],
      [3, -1],
      [0, 0.5],
    ]) {
      const [M, N, K] = [33, 17, 65];
      check(m, { transA, transB, batch: 3, M, N, K, aStride: M * K, bStride: 0, alpha, beta }, seed++);
    }
  }
  // beta = 0: C is not read, so NaN in C does not leak into the result (BLAS semantics).
  const a = new Float32Array([1, 2, 3, 4]);
  const b = new Float32Array([5, 6, 7, 8]);
  const c = new Float32Array([Number.NaN, Number.NaN, Number.NaN, Number.NaN]);
  m.sgemmBatched(false, false, 1, 2, 2, 2, a, 0, b, 0, c, 1, 0);
  assert.deepEqual(Array.from(c), [19, 22, 43, 50]);
});

test('sgemmBatched: K = 0 scales C by beta; empty products write nothing', (t) => {
  const m = need(t);
  if (!m) return;
  const c = new Float32Array([1, 2, 3, 4, 5, 6]);
  m.sgemmBatched(false, false, 1, 2, 3, 0, new Float32Array(0), 0, new Float32Array(0), 0, c, 1, 2);
  assert.deepEqual(Array.from(c), [2, 4, 6, 8, 10, 12]);
  const untouched = new Float32Array([9]);
  m.sgemmBatched(false, false, 0, 1, 1, 1, new Float32Array(0), 1, new Float32Array(0), 1, untouched, 1, 0);
  m.sgemmBatched(false, false, 4, 0, 1, 1, new Float32Array(0), 0, new Float32Array(1), 0, untouched, 1, 0);
  assert.deepEqual(Array.from(untouched), [9]);
});

test('sgemmBatched: views at non-zero byteOffset inside a SharedArrayBuffer', (t) => {
  const m = need(t);
  if (!m) return;
  let seed = 300;
  for (const [transA, transB] of TRANSPOSES) {
    const g = { transA, transB, batch: 3, M: 33, N: 17, K: 65, aStride: 0, bStride: 65 * 17, alpha: 1.5, beta: 0.5 };
    const aLen = g.M * g.K;
    const bLen = (g.batch - 1) * g.bStride + g.K * g.N;
    const cLen = g.batch * g.M * g.N;
    // Like the wasm heap: one shared buffer, a, b, c at odd element offsets with guard cells between.
    const guard = 7;
    const heap = new Float32Array(new SharedArrayBuffer(4 * (guard + aLen + guard + bLen + guard + cLen + guard)));
    heap.fill(-12345);
    let off = guard;
    const a = fill(heap.subarray(off, off + aLen), seed++);
    off += aLen + guard;
    const b = fill(heap.subarray(off, off + bLen), seed++);
    off += bLen + guard;
    const c = fill(heap.subarray(off, off + cLen), seed++);
    assert.ok(c.buffer instanceof SharedArrayBuffer && c.byteOffset > 0);
    const before = heap.slice();
    const { want, scale } = reference(g, a, b, c);
    m.sgemmBatched(g.transA, g.transB, g.batch, g.M, g.N, g.K, a, g.aStride, b, g.bStride, c, g.alpha, g.beta);
    assertClose(c, want, scale, `shared ${JSON.stringify(g)}`);
    // Nothing outside c changed.
    for (let i = 0; i < heap.length; i++) {
      if (i >= off && i < off + cLen) continue;
      assert.equal(heap[i], before[i], `heap[${i}] changed`);
    }
  }
  // A plain-ArrayBuffer view at an offset works too.
  const buf = new Float32Array(100);
  const a = fill(buf.subarray(3, 3 + 12), 400);
  const b = fill(buf.subarray(20, 20 + 20), 401);
  const c = buf.subarray(50, 50 + 15);
  const g = { transA: false, transB: false, batch: 1, M: 3, N: 5, K: 4, aStride: 0, bStride: 0, alpha: 1, beta: 0 };
  const { want, scale } = reference(g, a, b, c);
  m.sgemmBatched(false, false, 1, 3, 5, 4, a, 0, b, 0, c, 1, 0);
  assertClose(c, want, scale, 'ArrayBuffer view');
});

test('sgemmBatched: batch-parallel path (many small products) matches the reference', (t) => {
  const m = need(t);
  if (!m) return;
  const before = m.getThreads();
  try {
    for (const threads of [1, 2, 4]) {
      m.setThreads(threads);
      let seed = 500 + threads * 10;
      for (const [transA, transB] of TRANSPOSES) {
        check(
          m,
          { transA, transB, batch: 16, M: 64, N: 64, K: 32, aStride: 64 * 32, bStride: 32 * 64, alpha: 1, beta: 0 },
          seed++,
        );
        check(
          m,
          { transA, transB, batch: 9, M: 65, N: 33, K: 128, aStride: 0, bStride: 33 * 128, alpha: 0.5, beta: 1 },
          seed++,
        );
        check(
          m,
          { transA, transB, batch: 24, M: 64, N: 64, K: 64, aStride: 64 * 64, bStride: 0, alpha: 1, beta: -1 },
          seed++,
        );
      }
      // The thread count is restored after a batch-parallel call.
      assert.equal(m.getThreads(), threads);
    }
  } finally {
    m.setThreads(before);
  }
});

test('sgemmBatched: out-of-bounds and invalid arguments throw and write nothing', (t) => {
  const m = need(t);
  if (!m) return;
  const M = 4;
  const N = 3;
  const K = 5;
  const batch = 2;
  const a = fill(new Float32Array(batch * M * K), 600);
  const b = fill(new Float32Array(batch * K * N), 601);
  const c = new Float32Array(batch * M * N).fill(7);
  type Args = Parameters<NativeAddon['sgemmBatched']>;
  const good: Args = [false, false, batch, M, N, K, a, M * K, b, K * N, c, 1, 0];
  const call = (patch: Partial<Record<number, unknown>>): void => {
    const args = good.slice() as unknown[];
    for (const [i, v] of Object.entries(patch)) args[Number(i)] = v;
    m.sgemmBatched(...(args as Args));
  };
  const cases: Array<[string, Partial<Record<number, unknown>>, RegExp]> = [
    ['a one element short', { 6: a.subarray(1) }, /a is too small/],
    ['b one element short', { 8: b.subarray(0, b.length - 1) }, /b is too small/],
    ['c one element short', { 10: c.subarray(1) }, /c is too small/],
    ['aBatchStride too large', { 7: M * K + 1 }, /a is too small/],
    ['bBatchStride too large', { 9: K * N + 1 }, /b is too small/],
    ['batch too large', { 2: 3 }, /too small/],
    ['K too large for a', { 5: K + 1 }, /too small/],
    ['transA with mismatched storage', { 0: true, 3: M + 1 }, /too small/],
    ['huge stride (overflow)', { 7: Number.MAX_SAFE_INTEGER }, /a is too small/],
    ['huge dims', { 3: 2 ** 31 - 1, 4: 2 ** 31 - 1 }, /too small/],
    ['dimension above int32', { 3: 2 ** 31 }, /M must be an integer/],
    ['negative dimension', { 4: -1 }, /N must be an integer/],
    ['fractional dimension', { 5: 2.5 }, /K must be an integer/],
    ['NaN stride', { 7: Number.NaN }, /aBatchStride must be an integer/],
    ['Float64Array for a', { 6: new Float64Array(a.length) }, /a must be a Float32Array/],
    ['plain array for b', { 8: Array.from(b) }, /b must be a Float32Array/],
    ['number for c', { 10: 3 }, /c must be a Float32Array/],
    ['non-boolean transA', { 0: 1 }, /transA must be a boolean/],
    ['string alpha', { 11: '1' }, /alpha must be a number/],
  ];
  for (const [what, patch, message] of cases) {
    assert.throws(() => call(patch), message, what);
    assert.ok(
      c.every((v) => v === 7),
      `${what}: c was modified`,
    );
  }
  assert.throws(() => (m.sgemmBatched as (...x: unknown[]) => void)(false, false, 1), TypeError);
  // c overlapping a or b (same heap) is rejected.
  const heap = new Float32Array(64);
  assert.throws(
    () =>
      m.sgemmBatched(
        false,
        false,
        1,
        2,
        2,
        2,
        heap.subarray(0, 4),
        0,
        heap.subarray(8, 12),
        0,
        heap.subarray(2, 6),
        1,
        0,
      ),
    /overlap/,
  );
  // A detached buffer is an empty view.
  const detached = new Float32Array(4);
  structuredClone(detached.buffer, { transfer: [detached.buffer] });
  assert.throws(() => m.sgemmBatched(false, false, 1, 2, 2, 1, a, 0, b, 0, detached, 1, 0), /c is too small/);
  // Still alive and correct afterwards.
  call({});
  check(
    m,
    { transA: false, transB: false, batch: 1, M: 7, N: 5, K: 3, aStride: 0, bStride: 0, alpha: 1, beta: 0 },
    602,
  );
});

test('loadNative returns undefined when MUSE_NATIVE=0', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      "const { loadNative } = await import('./src/tensor/native.ts'); console.log(String(loadNative() === undefined));",
    ],
    { cwd: root, env: { ...process.env, MUSE_NATIVE: '0' }, encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'true');
});
