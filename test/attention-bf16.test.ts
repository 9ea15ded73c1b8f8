// The attention kernels' bf16 products (native/bf16_gemm.h through attentionStridedForward/Backward
// with bf16 = true; AVX-512 BF16): both operands of every per-item product are rounded to bf16 and
// summed in fp32.
//
// Inputs are multiples of 1/64 below 2 in magnitude, so q, k, v and dO are exact in bf16 and their
// products exact in fp32. Then the forward's scores must equal the float64 ones to fp32 rounding, and
// o must equal Σ bf16(p)·v computed in float64 from the kernel's own p: a path that ran fp32 (p not
// rounded), rounded by truncation, or mixed up an index or a transpose fails by far more than the
// tolerance (checked: the fp32 path fails the same comparison). The backward's dV = bf16(p)ᵀ·dO is
// checked the same way; dQ and dK (which go through the rounded dS) against the float64 gradients
// within what bf16 rounding allows. Shapes with odd dh and with rows and keys that are not whole
// register blocks exercise the packers' tails.
import assert from 'node:assert/strict';
import { after, type TestContext, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { loadNative, type NativeAddon, setMatmulPolicy } from '../src/tensor/native.js';
import { attentionInBf16, selfAttention } from '../src/tensor/ops/attention.js';
import { maxAbsDiff } from './helpers/values.js';

after(() => {
  setMatmulPolicy();
  shutdownBackend();
});

const addon = loadNative();
const requireNative = process.env.MUSE_REQUIRE_NATIVE === '1' && process.env.MUSE_NATIVE !== '0';

/** The addon when it runs bf16 attention here; otherwise the test is skipped (or fails when the native path is required and the addon is missing). */
function need(t: TestContext): NativeAddon | undefined {
  if (!addon?.attentionStridedForward) {
    if (requireNative) assert.fail('native addon with attention kernels required (MUSE_REQUIRE_NATIVE=1)');
    t.skip('native attention not built');
    return undefined;
  }
  if (addon.info().attentionBf16 !== true) {
    t.skip('this CPU has no AVX-512 BF16 (or the addon predates bf16 attention)');
    return undefined;
  }
  return addon;
}

/** Multiples of 1/64 in (−1.5, 1.5): exact in bf16 (at most 8 significant bits). */
function bf16Exact(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (Math.floor((s / 2 ** 32) * 191) - 95) / 64;
  });
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** An fp32 value rounded to bf16, round to nearest even (as vcvtneps2bf16). */
function bf16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  u32[0] = (((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16) >>> 0;
  return f32[0];
}

interface Case {
  b: number;
  h: number;
  sq: number;
  sk: number;
  dh: number;
  bias: boolean;
}

/** Head-layout operands [B, H, S, dh] and their strides. */
function layoutOf({ h, sq, sk, dh }: Case): Float64Array {
  const heads = (s: number) => [h * s * dh, s * dh, dh, 0];
  return Float64Array.from([...heads(sq), ...heads(sk), ...heads(sk), ...heads(sq)]);
}

function forwardCase(a: NativeAddon, c: Case, bf16Products: boolean) {
  const { b, h, sq, sk, dh } = c;
  const q = bf16Exact(b * h * sq * dh, 1);
  const k = bf16Exact(b * h * sk * dh, 2);
  const v = bf16Exact(b * h * sk * dh, 3);
  // Image 0 sees every key, the last image has its last three masked (a text padding bias).
  const bias = c.bias
    ? Float32Array.from({ length: b * sk }, (_, i) => (i >= b * sk - 3 ? -1e9 : 0))
    : new Float32Array(0);
  const o = new Float32Array(b * h * sq * dh);
  const p = new Float32Array(b * h * sq * sk);
  const scale = 1 / Math.sqrt(dh);
  a.attentionStridedForward?.(q, k, v, bias, o, p, b, h, sq, sk, dh, scale, layoutOf(c), bf16Products);
  return { q, k, v, bias, o, p, scale };
}

/** Largest |kernel − float64| of p (against exact scores) and of o (against Σ bf16(p)·v from the kernel's p). */
function forwardErrors(c: Case, r: ReturnType<typeof forwardCase>): { p: number; o: number } {
  const { b, h, sq, sk, dh } = c;
  let pErr = 0;
  let oErr = 0;
  for (let i = 0; i < b * h; i++) {
    const img = Math.floor(i / h);
    for (let row = 0; row < sq; row++) {
      const s = new Float64Array(sk);
      for (let j = 0; j < sk; j++) {
        let dot = 0;
        for (let d = 0; d < dh; d++) dot += r.q[(i * sq + row) * dh + d] * r.k[(i * sk + j) * dh + d];
        s[j] = dot * r.scale + (c.bias ? r.bias[img * sk + j] : 0);
      }
      const m = Math.max(...s);
      let sum = 0;
      for (let j = 0; j < sk; j++) sum += Math.exp(s[j] - m);
      const pRow = r.p.subarray((i * sq + row) * sk, (i * sq + row + 1) * sk);
      for (let j = 0; j < sk; j++) pErr = Math.max(pErr, Math.abs(pRow[j] - Math.exp(s[j] - m) / sum));
      for (let d = 0; d < dh; d++) {
        let acc = 0;
        for (let j = 0; j < sk; j++) acc += bf16(pRow[j]) * r.v[(i * sk + j) * dh + d];
        oErr = Math.max(oErr, Math.abs(r.o[(i * sq + row) * dh + d] - acc));
      }
    }
  }
  return { p: pErr, o: oErr };
}

const CASES: Case[] = [
  { b: 2, h: 3, sq: 13, sk: 37, dh: 5, bias: true }, // odd dh, partial row and column blocks
  { b: 1, h: 2, sq: 40, sk: 70, dh: 32, bias: false },
  { b: 2, h: 2, sq: 64, sk: 256, dh: 32, bias: true }, // a training shape's keys
];

test('bf16 attention forward: exact scores, and o = Σ bf16(p)·v to fp32 accuracy; the fp32 path fails that', (t) => {
  const a = need(t);
  if (!a) return;
  for (const c of CASES) {
    const errs = forwardErrors(c, forwardCase(a, c, true));
    assert.ok(errs.p < 2e-6, `${JSON.stringify(c)}: p off by ${errs.p}`);
    assert.ok(errs.o < 2e-5, `${JSON.stringify(c)}: o off by ${errs.o} from Σ bf16(p)·v`);
    const fp32 = forwardErrors(c, forwardCase(a, c, false));
    assert.ok(fp32.p < 2e-6, `${JSON.stringify(c)}: fp32 p off by ${fp32.p}`);
    assert.ok(fp32.o > 1e-4, `${JSON.stringify(c)}: the check cannot tell fp32 from bf16 (${fp32.o})`);
  }
});

test('bf16 attention backward: dV = bf16(p)ᵀ·dO exactly, dQ and dK within bf16 rounding of float64', (t) => {
  const a = need(t);
  if (!a) return;
  for (const c of CASES) {
    const { b, h, sq, sk, dh } = c;
    const r = forwardCase(a, c, true);
    const dout = bf16Exact(b * h * sq * dh, 4);
    const [dq, dk, dv] = [sq, sk, sk].map((s) => new Float32Array(b * h * s * dh));
    a.attentionStridedBackward?.(dout, r.q, r.k, r.v, r.p, dq, dk, dv, b, h, sq, sk, dh, r.scale, layoutOf(c), true);
    let dvErr = 0;
    let dqErr = 0;
    let dkErr = 0;
    let dqMax = 0;
    let dkMax = 0;
    for (let i = 0; i < b * h; i++) {
      const P = (row: number, j: number) => r.p[(i * sq + row) * sk + j];
      const dO = (row: number, d: number) => dout[(i * sq + row) * dh + d];
      for (let j = 0; j < sk; j++)
        for (let d = 0; d < dh; d++) {
          let acc = 0;
          for (let row = 0; row < sq; row++) acc += bf16(P(row, j)) * dO(row, d);
          dvErr = Math.max(dvErr, Math.abs(dv[(i * sk + j) * dh + d] - acc));
        }
      // Float64 dS = p ⊙ (dP − rowsum(dP ⊙ p)), dP = dO·vᵀ, from the kernel's p.
      const ds = new Float64Array(sq * sk);
      for (let row = 0; row < sq; row++) {
        let dot = 0;
        for (let j = 0; j < sk; j++) {
          let dp = 0;
          for (let d = 0; d < dh; d++) dp += dO(row, d) * r.v[(i * sk + j) * dh + d];
          ds[row * sk + j] = dp;
          dot += dp * P(row, j);
        }
        for (let j = 0; j < sk; j++) ds[row * sk + j] = P(row, j) * (ds[row * sk + j] - dot);
      }
      for (let d = 0; d < dh; d++) {
        for (let row = 0; row < sq; row++) {
          let acc = 0;
          for (let j = 0; j < sk; j++) acc += ds[row * sk + j] * r.k[(i * sk + j) * dh + d];
          acc *= r.scale;
          dqMax = Math.max(dqMax, Math.abs(acc));
          dqErr = Math.max(dqErr, Math.abs(dq[(i * sq + row) * dh + d] - acc));
        }
        for (let j = 0; j < sk; j++) {
          let acc = 0;
          for (let row = 0; row < sq; row++) acc += ds[row * sk + j] * r.q[(i * sq + row) * dh + d];
          acc *= r.scale;
          dkMax = Math.max(dkMax, Math.abs(acc));
          dkErr = Math.max(dkErr, Math.abs(dk[(i * sk + j) * dh + d] - acc));
        }
      }
    }
    assert.ok(dvErr < 2e-5, `${JSON.stringify(c)}: dV off by ${dvErr} from bf16(p)ᵀ·dO`);
    // dS is rounded to bf16 (relative 2⁻⁹ per element) before both products.
    assert.ok(dqErr < 1e-2 * dqMax, `${JSON.stringify(c)}: dQ off by ${dqErr} (largest ${dqMax})`);
    assert.ok(dkErr < 1e-2 * dkMax, `${JSON.stringify(c)}: dK off by ${dkErr} (largest ${dkMax})`);
  }
});

test('selfAttention takes bf16 products from 64 keys up when the policy allows bf16, and fp32 when it is forced', async (t) => {
  if (!need(t)) return;
  await initBackend({ backend: 'wasm', threads: 1 });
  const [b, s, heads, d] = [2, 64, 4, 64];
  const qkv = tf.tensor3d(bf16Exact(b * s * 3 * d, 7), [b, s, 3 * d]);
  const w = tf.tensor3d(bf16Exact(b * s * d, 8), [b, s, d]);
  const run = () => {
    const f = (x: tf.Tensor) => tf.sum(tf.mul(selfAttention(x as tf.Tensor3D, heads), w));
    const grad = tf.grad(f)(qkv);
    const out = {
      y: selfAttention(qkv, heads).dataSync().slice() as Float32Array,
      g: grad.dataSync().slice() as Float32Array,
    };
    grad.dispose();
    return out;
  };
  try {
    setMatmulPolicy({ precision: 'fp32' });
    assert.equal(attentionInBf16(s), false, 'fp32 forced: no bf16 attention');
    const fp32 = run();
    setMatmulPolicy({ precision: 'bf16' });
    assert.equal(attentionInBf16(s), true);
    assert.equal(attentionInBf16(16), false, 'a 16-key cross-attention stays fp32');
    const half = run();
    const maxAbs = (x: Float32Array) => x.reduce((m, xi) => Math.max(m, Math.abs(xi)), 0);
    const dy = maxAbsDiff(half.y, fp32.y);
    const dg = maxAbsDiff(half.g, fp32.g);
    assert.ok(dy > 1e-6 && dy < 1e-2 * maxAbs(fp32.y), `outputs differ by ${dy}: expected bf16-sized differences`);
    assert.ok(dg > 1e-6 && dg < 2e-2 * maxAbs(fp32.g), `gradients differ by ${dg}: expected bf16-sized differences`);
  } finally {
    setMatmulPolicy();
    tf.dispose([qkv, w]);
  }
});
