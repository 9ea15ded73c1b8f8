// Attention as one kernel each way (src/tensor/ops/attention.ts; native attentionStridedForward/Backward on
// the native path, plain-loop kernels on the cpu backend): values against a float64 forward, gradients
// against central finite differences of that float64 forward (independent of the backward formula),
// padding-mask bias included; and, at a training-sized shape, fused against tfjs's composite ops.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { loadNative, setMatmulPolicy } from '../src/tensor/native.js';
import {
  attention,
  attentionComposite,
  attentionFused,
  fusedAttentionActive,
  mergeHeads,
  queryRowsAttention,
  queryRowsAttentionFused,
  selfAttention,
  selfAttentionFused,
  splitHeads,
} from '../src/tensor/ops/attention.js';
import { maxAbsDiff, seededValues } from './helpers/values.js';

after(() => {
  setMatmulPolicy();
  shutdownBackend();
});

const [B, H, SQ, SK, DH] = [2, 3, 5, 7, 4];
const q = seededValues(B * H * SQ * DH, 1);
const k = seededValues(B * H * SK * DH, 2);
const v = seededValues(B * H * SK * DH, 3);
const w = seededValues(B * H * SQ * DH, 4); // loss = Σ o ⊙ w
// Image 0 sees every key; image 1 has its last two keys masked out (as a text padding bias).
const bias = Float32Array.from({ length: B * SK }, (_, i) => (i >= SK + SK - 2 ? -1e9 : 0));

/** Float64 loss Σ o ⊙ w of attention with the given inputs (bias [B, SK]). */
function loss64(qa: ArrayLike<number>, ka: ArrayLike<number>, va: ArrayLike<number>, withBias: boolean): number {
  let total = 0;
  const scale = 1 / Math.sqrt(DH);
  for (let i = 0; i < B * H; i++) {
    const b = Math.floor(i / H);
    for (let r = 0; r < SQ; r++) {
      const s = new Float64Array(SK);
      for (let c = 0; c < SK; c++) {
        let dot = 0;
        for (let d = 0; d < DH; d++) dot += qa[(i * SQ + r) * DH + d] * ka[(i * SK + c) * DH + d];
        s[c] = dot * scale + (withBias ? bias[b * SK + c] : 0);
      }
      const m = Math.max(...s);
      let sum = 0;
      for (let c = 0; c < SK; c++) sum += Math.exp(s[c] - m);
      for (let d = 0; d < DH; d++) {
        let o = 0;
        for (let c = 0; c < SK; c++) o += (Math.exp(s[c] - m) / sum) * va[(i * SK + c) * DH + d];
        total += o * w[(i * SQ + r) * DH + d];
      }
    }
  }
  return total;
}

/** d loss / d x by central differences of the float64 forward. */
function numericGrad(which: 0 | 1 | 2, withBias: boolean): Float64Array {
  const arrays = [Float64Array.from(q), Float64Array.from(k), Float64Array.from(v)];
  const x = arrays[which];
  const g = new Float64Array(x.length);
  const h = 1e-6;
  for (let i = 0; i < x.length; i++) {
    const keep = x[i];
    x[i] = keep + h;
    const up = loss64(arrays[0], arrays[1], arrays[2], withBias);
    x[i] = keep - h;
    const down = loss64(arrays[0], arrays[1], arrays[2], withBias);
    x[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

function run(fn: typeof attention, withBias: boolean) {
  return tf.tidy(() => {
    const qt = tf.tensor4d(q, [B, H, SQ, DH]);
    const kt = tf.tensor4d(k, [B, H, SK, DH]);
    const vt = tf.tensor4d(v, [B, H, SK, DH]);
    const bt = withBias ? tf.tensor4d(bias, [B, 1, 1, SK]) : undefined;
    const wt = tf.tensor4d(w, [B, H, SQ, DH]);
    const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      tf.sum(tf.mul(fn(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, bt), wt)) as tf.Scalar;
    const { value, grads } = tf.valueAndGrads(f)([qt, kt, vt]);
    return { loss: value.dataSync()[0], grads: grads.map((g) => g.dataSync() as Float32Array) };
  });
}

const references = new Map<boolean, { loss: number; grads: Float64Array[] }>();
function reference(withBias: boolean) {
  let r = references.get(withBias);
  if (!r) {
    r = { loss: loss64(q, k, v, withBias), grads: [0, 1, 2].map((i) => numericGrad(i as 0 | 1 | 2, withBias)) };
    references.set(withBias, r);
  }
  return r;
}

function check(label: string, fn: typeof attention): void {
  for (const withBias of [false, true]) {
    const got = run(fn, withBias);
    const want = reference(withBias);
    assert.ok(Math.abs(got.loss - want.loss) < 1e-5, `${label}, bias ${withBias}: loss ${got.loss} vs ${want.loss}`);
    ['dq', 'dk', 'dv'].forEach((name, i) => {
      const err = maxAbsDiff(got.grads[i], want.grads[i]);
      assert.ok(err < 2e-5, `${label}, bias ${withBias}: ${name} off by ${err}`);
    });
    if (withBias) {
      // Masked keys get no weight: their values and keys get no gradient.
      for (let hh = 0; hh < H; hh++)
        for (const c of [SK - 2, SK - 1])
          for (let d = 0; d < DH; d++) {
            const at = ((H + hh) * SK + c) * DH + d;
            assert.equal(got.grads[1][at], 0, 'masked key gradient');
            assert.equal(got.grads[2][at], 0, 'masked value gradient');
          }
    }
  }
}

test('attention on this path: values and gradients against float64 (finite differences), with a padding mask', async () => {
  await initBackend();
  setMatmulPolicy({ precision: 'fp32' });
  const native = loadNative();
  if (process.env.MUSE_NATIVE !== '0' && native?.attentionStridedForward)
    assert.ok(fusedAttentionActive(), 'fused on the native path');
  check(fusedAttentionActive() ? 'fused (native)' : 'composite', attention);
  check('composite', attentionComposite);
});

test('the fused kernels on the cpu backend (plain loops) give the same values and gradients', async () => {
  await initBackend();
  const previous = tf.getBackend();
  await tf.setBackend('cpu');
  try {
    check('fused (cpu loops)', attentionFused);
  } finally {
    await tf.setBackend(previous);
  }
});

test('at a training shape, fused and composite agree (forward and gradients, relative 1e-5)', async (t) => {
  await initBackend();
  if (!fusedAttentionActive()) {
    t.skip('fused attention runs on the native path only');
    return;
  }
  setMatmulPolicy({ precision: 'fp32' });
  const [b, h, sq, sk, dh] = [4, 8, 64, 88, 32];
  const ins = [
    seededValues(b * h * sq * dh, 5, 2),
    seededValues(b * h * sk * dh, 6, 2),
    seededValues(b * h * sk * dh, 7),
  ];
  const mask = Float32Array.from({ length: b * sk }, (_, i) => (i % sk >= sk - 10 * (i % 3) ? -1e9 : 0));
  const outs = [attentionFused, attentionComposite].map((fn) =>
    tf.tidy(() => {
      const [qt, kt, vt] = [
        tf.tensor4d(ins[0], [b, h, sq, dh]),
        tf.tensor4d(ins[1], [b, h, sk, dh]),
        tf.tensor4d(ins[2], [b, h, sk, dh]),
      ];
      const bt = tf.tensor4d(mask, [b, 1, 1, sk]);
      const wt = tf.tensor4d(seededValues(b * h * sq * dh, 8), [b, h, sq, dh]);
      const o = fn(qt, kt, vt, bt);
      const g = tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
        tf.sum(tf.mul(fn(x as tf.Tensor4D, y as tf.Tensor4D, z as tf.Tensor4D, bt), wt)),
      )([qt, kt, vt]);
      return [o, ...g].map((x) => x.dataSync() as Float32Array);
    }),
  );
  ['o', 'dq', 'dk', 'dv'].forEach((name, i) => {
    const scale = Math.max(...outs[1][i].map(Math.abs));
    const err = maxAbsDiff(outs[0][i], outs[1][i]) / scale;
    assert.ok(err < 1e-5, `${name}: relative error ${err}`);
  });
});

// Packed operands: self-attention reading q, k, v out of one [B, S, 3D] projection (gradient: one
// [B, S, 3D] tensor) and queries in row layout over head-layout keys, against the composite form
// (split, head transposes, tfjs ops) on the same inputs. A kernel that read the wrong columns, mixed
// heads up, wrote the output in head order or left part of the packed gradient unwritten fails.
function packedCase(fn: 'self' | 'rows', fused: boolean, withBias: boolean, force = false): Float32Array[] {
  const [b, h, s, t, dh] = [2, 3, 6, 5, 4];
  const d = h * dh;
  return tf.tidy(() => {
    const bias = withBias
      ? tf.tensor4d(
          Float32Array.from({ length: b * (fn === 'self' ? s : t) }, (_, i) => (i % 7 === 6 ? -1e9 : 0)),
          [b, 1, 1, fn === 'self' ? s : t],
        )
      : undefined;
    if (fn === 'self') {
      const qkv = tf.tensor3d(seededValues(b * s * 3 * d, 11), [b, s, 3 * d]);
      const w = tf.tensor3d(seededValues(b * s * d, 12), [b, s, d]);
      const f = (x: tf.Tensor) => {
        if (fused) return (force ? selfAttentionFused : selfAttention)(x as tf.Tensor3D, h, bias);
        const [q, k, v] = tf.split(x, 3, -1);
        return mergeHeads(attentionComposite(splitHeads(q, h), splitHeads(k, h), splitHeads(v, h), bias));
      };
      const { value, grad } = tf.valueAndGrad((x: tf.Tensor) => tf.sum(tf.mul(f(x), w)) as tf.Scalar)(qkv);
      return [f(qkv), value, grad].map((x) => x.dataSync() as Float32Array);
    }
    const q = tf.tensor3d(seededValues(b * s * d, 13), [b, s, d]);
    const k = tf.tensor4d(seededValues(b * h * t * dh, 14), [b, h, t, dh]);
    const v = tf.tensor4d(seededValues(b * h * t * dh, 15), [b, h, t, dh]);
    const w = tf.tensor3d(seededValues(b * s * d, 16), [b, s, d]);
    const f = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
      fused
        ? (force ? queryRowsAttentionFused : queryRowsAttention)(
            x as tf.Tensor3D,
            y as tf.Tensor4D,
            z as tf.Tensor4D,
            bias,
          )
        : mergeHeads(attentionComposite(splitHeads(x, h), y as tf.Tensor4D, z as tf.Tensor4D, bias));
    const { value, grads } = tf.valueAndGrads(
      (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => tf.sum(tf.mul(f(x, y, z), w)) as tf.Scalar,
    )([q, k, v]);
    return [f(q, k, v), value, ...grads].map((x) => x.dataSync() as Float32Array);
  });
}

function checkPacked(label: string, force = false): void {
  for (const fn of ['self', 'rows'] as const)
    for (const withBias of [false, true]) {
      const got = packedCase(fn, true, withBias, force);
      const want = packedCase(fn, false, withBias);
      got.forEach((g, i) => {
        assert.equal(g.length, want[i].length);
        const err = maxAbsDiff(g, want[i]);
        assert.ok(err < 2e-5, `${label} ${fn}, bias ${withBias}: output ${i} off by ${err}`);
      });
    }
}

test('packed self-attention and row-layout queries: outputs and gradients equal the composite form', async () => {
  await initBackend();
  setMatmulPolicy({ precision: 'fp32' });
  checkPacked(fusedAttentionActive() ? 'fused (native)' : 'composite');
});

test('packed attention through the fused kernels on the cpu backend (plain loops) equals the composite form', async () => {
  await initBackend();
  const previous = tf.getBackend();
  await tf.setBackend('cpu');
  try {
    // The ops take the composite form on cpu: force the fused kernels (their plain-loop bodies).
    checkPacked('fused (cpu loops)', true);
  } finally {
    await tf.setBackend(previous);
  }
});

test('the strided native kernels refuse bad layouts and outputs that overlap', (t) => {
  const addon = loadNative();
  if (!addon?.attentionStridedForward || !addon.attentionStridedBackward) {
    t.skip('native attention not built');
    return;
  }
  const [b, h, s, dh] = [1, 2, 3, 2];
  const d = h * dh;
  const qkv = seededValues(b * s * 3 * d, 21);
  const rows = (width: number, col: number) => [s * width, dh, width, col];
  const layout = Float64Array.from([...rows(3 * d, 0), ...rows(3 * d, d), ...rows(3 * d, 2 * d), ...rows(d, 0)]);
  const o = new Float32Array(b * s * d);
  const p = new Float32Array(b * h * s * s);
  const none = new Float32Array(0);
  addon.attentionStridedForward(qkv, qkv, qkv, none, o, p, b, h, s, s, dh, 1, layout, false);
  assert.throws(
    () => addon.attentionStridedForward?.(qkv, qkv, qkv, none, o, p, b, h, s, s, dh, 1, layout.subarray(0, 12), false),
    /16 entries/,
  );
  assert.throws(
    () =>
      addon.attentionStridedForward?.(
        qkv,
        qkv,
        qkv,
        none,
        o,
        p,
        b,
        h,
        s,
        s,
        dh,
        1,
        Float64Array.from({ length: 16 }, (_, i) => (i === 11 ? 3 * d * s : layout[i])),
        false,
      ),
    /too small/,
  );
  const dqkv = new Float32Array(qkv.length);
  addon.attentionStridedBackward(o, qkv, qkv, qkv, p, dqkv, dqkv, dqkv, b, h, s, s, dh, 1, layout, false);
  // dq and dk on the same columns of one buffer: refused.
  const clash = Float64Array.from(layout);
  clash[7] = 1; // k's columns start at 1, inside q's [0, d)
  assert.throws(
    () => addon.attentionStridedBackward?.(o, qkv, qkv, qkv, p, dqkv, dqkv, dqkv, b, h, s, s, dh, 1, clash, false),
    /two outputs overlap/,
  );
  assert.throws(
    () => addon.attentionStridedBackward?.(o, qkv, qkv, qkv, p, qkv, dqkv, dqkv, b, h, s, s, dh, 1, layout, false),
    /overlaps an input/,
  );
});

test('a forward outside any gradient scope keeps no probabilities and gives the same output', async (t) => {
  const addon = loadNative();
  if (addon?.attentionStridedForward) {
    // Native: p of length 0 means none kept; o must not change.
    const [b, h, sq, sk, dh] = [2, 3, 9, 11, 4];
    const heads = (s: number) => [h * s * dh, s * dh, dh, 0];
    const layout = Float64Array.from([...heads(sq), ...heads(sk), ...heads(sk), ...heads(sq)]);
    const [qa, ka, va] = [
      seededValues(b * h * sq * dh, 31),
      seededValues(b * h * sk * dh, 32),
      seededValues(b * h * sk * dh, 33),
    ];
    const kept = new Float32Array(b * h * sq * dh);
    const none = new Float32Array(b * h * sq * dh);
    const empty = new Float32Array(0);
    addon.attentionStridedForward(
      qa,
      ka,
      va,
      empty,
      kept,
      new Float32Array(b * h * sq * sk),
      b,
      h,
      sq,
      sk,
      dh,
      0.5,
      layout,
      false,
    );
    addon.attentionStridedForward(qa, ka, va, empty, none, empty, b, h, sq, sk, dh, 0.5, layout, false);
    assert.deepEqual(none, kept);
  } else t.diagnostic('native attention not built: the op-level check only');
  await initBackend({ backend: 'wasm', threads: 1 });
  for (const backend of ['wasm', 'cpu']) {
    await tf.setBackend(backend);
    const [b, s, heads, d] = [2, 6, 2, 8];
    const qkv = tf.tensor3d(seededValues(b * s * 3 * d, 34), [b, s, 3 * d]);
    let plain = tf.zeros([0]);
    const profile = await tf.profile(() => {
      plain = selfAttentionFused(qkv, heads);
      return plain;
    });
    const kernel = profile.kernels.find((k) => k.name === 'MuseAttention');
    assert.deepEqual(kernel?.outputShapes[1], [0], `${backend}: no probabilities kept`);
    let inside: Float32Array | undefined;
    const g = tf.grad((x: tf.Tensor) => {
      const y = selfAttentionFused(x as tf.Tensor3D, heads);
      inside = y.dataSync().slice() as Float32Array;
      return tf.sum(y);
    })(qkv);
    assert.deepEqual(plain.dataSync(), inside, `${backend}: the same output with and without a gradient to come`);
    tf.dispose([qkv, plain, g]);
  }
});
