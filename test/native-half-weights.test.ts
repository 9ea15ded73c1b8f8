// Products with 16-bit weights read in place (native matmulHalfWeights, the MuseHalfWeightMatMul
// kernel the aMUSEd U-ViT uses for its F16 host copies) and the native erf.
//
// - Widening is exact for every finite F16 and BF16 bit pattern (x = identity reads each weight back).
// - The product equals matmulBatched's on weights widened independently in JavaScript, bit for bit,
//   on every path (OpenBLAS, oneDNN fp32, oneDNN bf16, the shape rule): a path that rounded the
//   weights differently, transposed them or read the wrong kind fails.
// - erf is within one float32 ulp of a float64 series (a polynomial approximation such as
//   Abramowitz–Stegun 7.1.26, up to 1.5e-7 off, is not).
// Skipped without the addon (failing under MUSE_REQUIRE_NATIVE=1).
import assert from 'node:assert/strict';
import { after, type TestContext, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { loadNative, type NativeAddon } from '../src/tensor/native.js';
import { canMatMulHalfWeights, matMulHalfWeights } from '../src/tensor/ops/half-weight-matmul.js';
import { bfloat16BitsToFloat32, float16BitsToFloat32, float32ToFloat16Bits } from '../src/tensor/safetensors.js';

after(() => shutdownBackend());

const addon = loadNative();
const requireNative = process.env.MUSE_REQUIRE_NATIVE === '1' && process.env.MUSE_NATIVE !== '0';

function need(t: TestContext): NativeAddon | undefined {
  if (addon?.matmulHalfWeights && addon.erfForward && addon.matmulBatched) return addon;
  if (requireNative) assert.fail('native addon without matmulHalfWeights/erfForward: rebuild it');
  t.skip(
    addon
      ? 'addon built before matmulHalfWeights'
      : process.env.MUSE_NATIVE === '0'
        ? 'native path off (MUSE_NATIVE=0)'
        : 'native addon not built',
  );
  return undefined;
}

function random(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

const identity = (n: number) => Float32Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0));

test('every finite F16 and BF16 pattern widens exactly', (t) => {
  const a = need(t);
  if (!a) return;
  const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
  for (const [kind, name, widen] of [
    [0, 'F16', float16BitsToFloat32],
    [1, 'BF16', bfloat16BitsToFloat32],
  ] as const) {
    // Infinities and NaN would spread through the identity product: zero them, check the rest.
    const w = bits.map((b) => (Number.isFinite(widen(b)) ? b : 0));
    const y = new Float32Array(65536);
    a.matmulHalfWeights?.(identity(256), 256, 256, w, kind, 256, y, 0, false);
    let wrong = 0;
    for (let i = 0; i < 65536; i++) if (y[i] !== widen(w[i]) && !(y[i] === 0 && widen(w[i]) === 0)) wrong++;
    assert.equal(wrong, 0, `${name}: ${wrong} patterns widened wrongly`);
  }
});

test('the product equals matmulBatched on the widened weights, bit for bit, on every path', (t) => {
  const a = need(t);
  if (!a?.matmulBatched) return;
  const bf16Units = a.info().bf16 === true;
  for (const [m, k, n] of [
    [512, 96, 80],
    [2, 128, 192],
    [3, 5, 7],
    [130, 256, 64],
  ]) {
    const x = random(m * k, m + k);
    const values = random(k * n, n).map((v) => v * 0.2);
    values[0] = 3e-6; // an F16 subnormal
    const f16 = Uint16Array.from(values, float32ToFloat16Bits);
    const bf = Uint16Array.from(new Uint32Array(values.buffer), (u) => u >>> 16);
    for (const [kind, w, widen] of [
      [0, f16, float16BitsToFloat32],
      [1, bf, bfloat16BitsToFloat32],
    ] as const) {
      const wide = Float32Array.from(w, widen);
      for (const [mode, allowBf16] of [
        [0, false],
        [1, false],
        [2, true],
        [3, true],
        [3, false],
      ] as const) {
        if (mode === 2 && !bf16Units) continue;
        const want = new Float32Array(m * n);
        const got = new Float32Array(m * n).fill(Number.NaN);
        const p1: number = a.matmulBatched(false, false, 1, m, n, k, x, 0, wide, 0, want, 1, 0, mode, allowBf16);
        const p2: number | undefined = a.matmulHalfWeights?.(x, m, k, w, kind, n, got, mode, allowBf16);
        const at: string = `${m}×${k}×${n} kind ${kind} mode ${mode}${allowBf16 ? ' bf16' : ''}`;
        assert.equal(p2, p1, `${at}: same path`);
        assert.deepEqual(got, want, at);
      }
    }
  }
});

test('bad arguments throw one clear error and write nothing', (t) => {
  const a = need(t);
  if (!a?.matmulHalfWeights) return;
  const y = new Float32Array(4).fill(7);
  assert.throws(
    () => a.matmulHalfWeights?.(new Float32Array(3), 2, 2, new Uint16Array(4), 0, 2, y, 3, true),
    /x is too small/,
  );
  assert.throws(
    () => a.matmulHalfWeights?.(new Float32Array(4), 2, 2, new Uint16Array(3), 0, 2, y, 3, true),
    /w is too small/,
  );
  assert.throws(
    () => a.matmulHalfWeights?.(new Float32Array(4), 2, 2, new Float32Array(4) as never, 0, 2, y, 3, true),
    /w must be a Uint16Array/,
  );
  assert.throws(() => a.matmulHalfWeights?.(new Float32Array(4), 2, 2, new Uint16Array(4), 2, 2, y, 3, true), /kind/);
  const shared = new ArrayBuffer(64);
  assert.throws(
    () =>
      a.matmulHalfWeights?.(
        new Float32Array(4),
        2,
        2,
        new Uint16Array(shared, 0, 4),
        0,
        2,
        new Float32Array(shared, 0, 4),
        3,
        true,
      ),
    /overlaps/,
  );
  assert.deepEqual([...y], [7, 7, 7, 7]);
  const k0 = new Float32Array(6).fill(7);
  a.matmulHalfWeights(new Float32Array(0), 2, 0, new Uint16Array(0), 0, 3, k0, 3, true);
  assert.deepEqual([...k0], [0, 0, 0, 0, 0, 0], 'K = 0: a product of zeros');
});

/** erf in float64: its Maclaurin series (|x| ≤ 4: terms stay below 2^24, cancellation ~1e-10). */
function erf64(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
    if (Math.abs(term) < 1e-17) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

function ulpsApart(got: number, want: number): number {
  const f = Math.fround(want);
  const ulp = Math.abs(Math.fround(f * (1 + 2 ** -23)) - f) || 2 ** -149;
  return Math.abs(got - want) / ulp;
}

test('erf is within one float32 ulp of a float64 series, natively and as tf.erf', async (t) => {
  const a = need(t);
  if (!a?.erfForward) return;
  const x = Float32Array.from({ length: 513 }, (_, i) => -4 + i / 64);
  const y = new Float32Array(x.length);
  a.erfForward(x, y, x.length);
  const worst = Math.max(...Array.from(x, (v, i) => ulpsApart(y[i], erf64(v))));
  assert.ok(worst <= 1, `erfForward: ${worst.toFixed(2)} ulps off`);
  assert.equal(y[256], 0, 'erf(0) = 0');
  await initBackend();
  if (tf.getBackend() !== 'wasm') return;
  const viaTf = tf.erf(tf.tensor1d(x)).dataSync();
  const worstTf = Math.max(...Array.from(x, (v, i) => ulpsApart(viaTf[i], erf64(v))));
  assert.ok(worstTf <= 1, `tf.erf on the native path: ${worstTf.toFixed(2)} ulps off`);
});

test('matMulHalfWeights (the kernel) equals tf.matMul on the widened weights', async (t) => {
  const a = need(t);
  if (!a) return;
  await initBackend();
  assert.ok(canMatMulHalfWeights(), 'the kernel is registered with the native path');
  const [m, k, n] = [300, 64, 96];
  const bits = Uint16Array.from(random(k * n, 9), (v) => float32ToFloat16Bits(v));
  const x = tf.tensor2d(random(m * k, 4), [m, k]);
  const got = matMulHalfWeights(x, { bits, kind: 'F16', shape: [k, n] });
  const want = tf.matMul(x, tf.tensor2d(Float32Array.from(bits, float16BitsToFloat32), [k, n]));
  assert.deepEqual(got.shape, [m, n]);
  assert.deepEqual(got.dataSync(), want.dataSync());
  assert.throws(() => matMulHalfWeights(tf.zeros([3, 5]), { bits, kind: 'F16', shape: [k, n] }), /\[M, 64\]/);
  tf.dispose([x, got, want]);
});
