// Scaled dot-product attention, softmax(scale·q·kᵀ + bias)·v, as one kernel forward and one backward
// on the native path (native attentionStridedForward/Backward: per (batch, head) item, the scores go
// through one product, one softmax pass and one product), instead of tfjs's scale, batched product,
// bias add, softmax and batched product each way with their [B, H, Sq, Sk] temporaries.
//
// The kernels read every operand through strides (batch, head, row, offset), so the transformer's
// packed projections need no head split or merge: `selfAttention` reads q, k and v straight out of
// the [B, S, 3D] projection and writes [B, S, D]; its gradient lands in one [B, S, 3D] tensor.
// The kernels are registered for wasm and cpu with plain loops as the fallback body; the ops take
// them only where the native addon runs them (plain loops would lose to XNNPACK on pure wasm).
import * as tf from '@tensorflow/tfjs-core';
import { activeNative } from '../kernels/active-native.js';
import { matmulPolicy } from '../native.js';
import { registerJsKernel, runKernel } from './js-kernel.js';

/** Batch, head and row stride and offset of one operand: (b, h, s, d) at offset + b·batch + h·head + s·row + d. */
type Strides = [batch: number, head: number, row: number, offset: number];

/** [B, H, S, dh]. */
function headStrides(h: number, s: number, dh: number): Strides {
  return [h * s * dh, s * dh, dh, 0];
}

/** Heads side by side in the rows of [B, S, width], the first at column `column`. */
function rowStrides(s: number, width: number, dh: number, column: number): Strides {
  return [s * width, dh, width, column];
}

interface StridedAttrs {
  /** B, H, Sq, Sk, dh. */
  dims: number[];
  /** Strides of q, k, v and o (dq, dk, dv and dO take their operand's), 16 numbers. */
  layout: number[];
  scale: number;
  /** The native kernels' per-item products in bf16 (the plain-loop fallbacks ignore it). */
  bf16?: boolean;
  /** false: no gradient will be taken, so the forward keeps no probabilities (p is empty). */
  keepP?: boolean;
}

/**
 * Whether an attention of sk keys runs its products in bf16: where the policy allows it (AVX-512
 * BF16, fp32 not forced) and there are at least 64 keys — with fewer (cross-attention to a short
 * text) the products are too small for the rounding to buy anything.
 */
export function attentionInBf16(sk: number): boolean {
  return sk >= 64 && matmulPolicy(activeNative()).attentionBf16;
}

function stridedAttrs(a: tf.NamedAttrMap): StridedAttrs & { outShape: number[]; grads: number[] } {
  return a as never;
}

/** Row-major c = alpha · op(a) · op(b) with leading dimensions (k the shared dimension), for the loop fallbacks. */
function gemm(
  ta: boolean,
  tb: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  ao: number,
  lda: number,
  b: Float32Array,
  bo: number,
  ldb: number,
  c: Float32Array,
  co: number,
  ldc: number,
): void {
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let l = 0; l < k; l++)
        s += a[ao + (ta ? l * lda + i : i * lda + l)] * b[bo + (tb ? j * ldb + l : l * ldb + j)];
      c[co + i * ldc + j] = alpha * s;
    }
  }
}

/** Start of item i (= b·H + h) of an operand. */
function at(layout: number[], operand: number, i: number, heads: number): number {
  const o = operand * 4;
  return layout[o + 3] + Math.floor(i / heads) * layout[o] + (i % heads) * layout[o + 1];
}

registerJsKernel({
  name: 'MuseAttention',
  outputs: (_s, attrs) => {
    const { dims, outShape, keepP } = stridedAttrs(attrs);
    const [b, h, sq, sk] = dims;
    return [outShape, keepP === false ? [0] : [b, h, sq, sk]];
  },
  compute: ([q, k, v, bias], [o, kept], _shapes, attrs) => {
    const { dims, layout, scale } = stridedAttrs(attrs);
    const [b, h, sq, sk, dh] = dims;
    const [lq, lk, lv, lo] = [layout[2], layout[6], layout[10], layout[14]];
    // Without a kept p (no gradient to come) each item's probabilities live in one scratch buffer.
    const p = kept.length ? kept : new Float32Array(sq * sk);
    for (let i = 0; i < b * h; i++) {
      const pi = kept.length ? i * sq * sk : 0;
      gemm(false, true, sq, sk, dh, scale, q, at(layout, 0, i, h), lq, k, at(layout, 1, i, h), lk, p, pi, sk);
      for (let r = 0; r < sq; r++) {
        const o0 = pi + r * sk;
        if (bias) for (let c = 0; c < sk; c++) p[o0 + c] += bias[Math.floor(i / h) * sk + c];
        let m = Number.NEGATIVE_INFINITY;
        for (let c = 0; c < sk; c++) m = Math.max(m, p[o0 + c]);
        let sum = 0;
        for (let c = 0; c < sk; c++) {
          p[o0 + c] = Math.exp(p[o0 + c] - m);
          sum += p[o0 + c];
        }
        for (let c = 0; c < sk; c++) p[o0 + c] /= sum;
      }
      gemm(false, false, sq, dh, sk, 1, p, pi, sk, v, at(layout, 2, i, h), lv, o, at(layout, 3, i, h), lo);
    }
  },
  computeNative: (addon, [q, k, v, bias], [o, p], _shapes, attrs) => {
    const { dims, layout, scale, bf16 } = stridedAttrs(attrs);
    const [b, h, sq, sk, dh] = dims;
    addon.attentionStridedForward?.(
      q,
      k,
      v,
      bias ?? new Float32Array(0),
      o,
      p,
      b,
      h,
      sq,
      sk,
      dh,
      scale,
      Float64Array.from(layout),
      bf16 === true,
    );
  },
});

// Inputs dy, q, k, v, p; `grads` maps dq, dk, dv to outputs: [0, 1, 2] three tensors, [0, 0, 0] one
// packed tensor shaped like q (self-attention on a [B, S, 3D] projection), [0, 1, 1] q apart from a
// packed [B, S, 2D] k and v. Each output takes the shape of the first operand mapped to it.
registerJsKernel({
  name: 'MuseAttentionGrad',
  outputs: (shapes, attrs) => {
    const { grads } = stridedAttrs(attrs);
    const out: number[][] = [];
    grads.forEach((g, operand) => {
      out[g] ??= shapes[1 + operand];
    });
    return out;
  },
  compute: ([dy, q, k, v, p], outs, _shapes, attrs) => {
    const { dims, layout, scale, grads } = stridedAttrs(attrs);
    const [b, h, sq, sk, dh] = dims;
    const [dq, dk, dv] = grads.map((g) => outs[g]);
    const [lq, lk, lv, lo] = [layout[2], layout[6], layout[10], layout[14]];
    const ds = new Float32Array(sq * sk);
    for (let i = 0; i < b * h; i++) {
      const [oq, ok, ov, oo] = [0, 1, 2, 3].map((t) => at(layout, t, i, h));
      gemm(true, false, sk, dh, sq, 1, p, i * sq * sk, sk, dy, oo, lo, dv, ov, lv);
      gemm(false, true, sq, sk, dh, 1, dy, oo, lo, v, ov, lv, ds, 0, sk);
      for (let r = 0; r < sq; r++) {
        let dot = 0;
        for (let c = 0; c < sk; c++) dot += ds[r * sk + c] * p[i * sq * sk + r * sk + c];
        for (let c = 0; c < sk; c++) ds[r * sk + c] = p[i * sq * sk + r * sk + c] * (ds[r * sk + c] - dot);
      }
      gemm(false, false, sq, dh, sk, scale, ds, 0, sk, k, ok, lk, dq, oq, lq);
      gemm(true, false, sk, dh, sq, scale, ds, 0, sk, q, oq, lq, dk, ok, lk);
    }
  },
  computeNative: (addon, [dy, q, k, v, p], outs, _shapes, attrs) => {
    const { dims, layout, scale, grads, bf16 } = stridedAttrs(attrs);
    const [b, h, sq, sk, dh] = dims;
    const [dq, dk, dv] = grads.map((g) => outs[g]);
    const strides = Float64Array.from(layout);
    addon.attentionStridedBackward?.(dy, q, k, v, p, dq, dk, dv, b, h, sq, sk, dh, scale, strides, bf16 === true);
  },
});

/** Whether the attention ops run as the fused native kernels here. */
export function fusedAttentionActive(): boolean {
  const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env;
  if (env?.MUSE_FUSED_ATTENTION === '0') return false; // A/B switch for benchmarks
  return tf.getBackend() === 'wasm' && typeof activeNative()?.attentionStridedForward === 'function';
}

/**
 * The fused kernels over strided operands, with their gradient. `inputs` are the distinct tensors
 * q, k and v are read from (`grads` maps q, k, v to them, as the gradient kernel's outputs); every
 * element of each input must belong to exactly one operand's heads, so the gradients cover them.
 */
function stridedAttention(
  inputs: tf.Tensor[],
  operands: [number, number, number],
  attrs: StridedAttrs & { outShape: number[] },
  bias?: tf.Tensor,
): tf.Tensor {
  const bf16 = attrs.bf16 ?? attentionInBf16(attrs.dims[3]);
  const all = { ...attrs, bf16, grads: operands } as unknown as tf.NamedAttrMap;
  if (tf.engine().state.gradientDepth === 0) {
    // Outside every gradient scope (generation, evaluation) nothing can ask for the gradient: skip
    // the tape and the [B, H, Sq, Sk] probabilities the backward would need (16 MB a layer at the
    // reference shape, written and never read).
    const [q, k, v] = operands.map((i) => inputs[i]);
    const [o, p] = runKernel('MuseAttention', bias ? { q, k, v, bias } : { q, k, v }, { ...all, keepP: false });
    p.dispose();
    return o;
  }
  const f = tf.customGrad(((...args: unknown[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const ts = args as tf.Tensor[];
    const [q, k, v] = operands.map((i) => ts[i]);
    const b = bias ? ts[inputs.length] : undefined;
    const [o, p] = runKernel('MuseAttention', b ? { q, k, v, bias: b } : { q, k, v }, all);
    save([...ts.slice(0, inputs.length), p]);
    return {
      value: o,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sq, sk, sv] = operands.map((i) => saved[i]);
        const grads = runKernel('MuseAttentionGrad', { dy, q: sq, k: sk, v: sv, p: saved[inputs.length] }, all);
        // The bias (a padding mask) is a constant: its gradient is zero.
        return b ? [...grads, tf.zerosLike(b)] : grads;
      },
    };
  }) as never) as (...t: tf.Tensor[]) => tf.Tensor;
  return bias ? f(...inputs, bias) : f(...inputs);
}

/** Attention of head-layout operands through the fused kernels (any backend that has them). */
export function attentionFused(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias?: tf.Tensor): tf.Tensor4D {
  const [b, h, sq, dh] = q.shape;
  const sk = k.shape[2];
  const layout = [
    ...headStrides(h, sq, dh),
    ...headStrides(h, sk, dh),
    ...headStrides(h, sk, dh),
    ...headStrides(h, sq, dh),
  ];
  return stridedAttention(
    [q, k, v],
    [0, 1, 2],
    { dims: [b, h, sq, sk, dh], layout, scale: 1 / Math.sqrt(dh), outShape: [b, h, sq, dh] },
    bias,
  ) as tf.Tensor4D;
}

/** The composite form (every backend): tfjs ops, tfjs gradients. */
export function attentionComposite(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias?: tf.Tensor): tf.Tensor4D {
  const dh = q.shape[3];
  let scores = tf.matMul(tf.mul(q, 1 / Math.sqrt(dh)), k, false, true);
  if (bias) scores = tf.add(scores, bias);
  return tf.matMul(tf.softmax(scores), v);
}

/** [B, S, D] → [B, heads, S, D/heads]. */
export function splitHeads(x: tf.Tensor, heads: number): tf.Tensor4D {
  const [b, s, d] = x.shape as [number, number, number];
  return tf.transpose(tf.reshape(x, [b, s, heads, d / heads]), [0, 2, 1, 3]);
}

/** [B, heads, S, dh] → [B, S, heads·dh]. */
export function mergeHeads(x: tf.Tensor4D): tf.Tensor3D {
  const [b, h, s, dh] = x.shape;
  return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [b, s, h * dh]);
}

function fusible(bias: tf.Tensor | undefined, b: number, sk: number, ...ts: tf.Tensor[]): boolean {
  const biasOk = !bias || (bias.rank === 4 && bias.shape.join() === [b, 1, 1, sk].join());
  return fusedAttentionActive() && biasOk && ts.every((t) => t.dtype === 'float32');
}

/**
 * Scaled dot-product attention, all heads at once: softmax(q·kᵀ/√dh + bias)·v.
 * q [B, H, Sq, dh], k and v [B, H, Sk, dh], bias (optional) [B, 1, 1, Sk] (other bias shapes take
 * the composite form). Fused native kernels on the native path, tfjs ops elsewhere.
 */
export function attention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias?: tf.Tensor): tf.Tensor4D {
  return fusible(bias, q.shape[0], k.shape[2], q, k, v)
    ? attentionFused(q, k, v, bias)
    : attentionComposite(q, k, v, bias);
}

/** Self-attention from a packed projection through the fused kernels (any backend that has them). */
export function selfAttentionFused(qkv: tf.Tensor3D, heads: number, bias?: tf.Tensor): tf.Tensor3D {
  const [b, s, width] = qkv.shape;
  const d = width / 3;
  const dh = d / heads;
  const layout = [
    ...rowStrides(s, width, dh, 0),
    ...rowStrides(s, width, dh, d),
    ...rowStrides(s, width, dh, 2 * d),
    ...rowStrides(s, d, dh, 0),
  ];
  return stridedAttention(
    [qkv],
    [0, 0, 0],
    { dims: [b, heads, s, s, dh], layout, scale: 1 / Math.sqrt(dh), outShape: [b, s, d] },
    bias,
  ) as tf.Tensor3D;
}

/**
 * Self-attention of `heads` heads from a packed projection qkv [B, S, 3D] (q, k, v side by side) to
 * [B, S, D]; bias (optional) [B, 1, 1, S]. On the native path q, k and v are read in place and the
 * gradient is one [B, S, 3D] tensor; elsewhere split, head transposes and `attention`.
 */
export function selfAttention(qkv: tf.Tensor3D, heads: number, bias?: tf.Tensor): tf.Tensor3D {
  const [b, s, width] = qkv.shape;
  if (!Number.isInteger(width / 3 / heads))
    throw new Error(`selfAttention: width ${width} is not 3 × a multiple of ${heads} heads`);
  if (fusible(bias, b, s, qkv)) return selfAttentionFused(qkv, heads, bias);
  const [q, k, v] = tf.split(qkv, 3, -1);
  return mergeHeads(attention(splitHeads(q, heads), splitHeads(k, heads), splitHeads(v, heads), bias));
}

/** Row-layout queries over head-layout keys and values through the fused kernels. */
export function queryRowsAttentionFused(q: tf.Tensor3D, k: tf.Tensor4D, v: tf.Tensor4D, bias?: tf.Tensor): tf.Tensor3D {
  const [b, sq, d] = q.shape;
  const [, heads, sk, dh] = k.shape;
  const layout = [
    ...rowStrides(sq, d, dh, 0),
    ...headStrides(heads, sk, dh),
    ...headStrides(heads, sk, dh),
    ...rowStrides(sq, d, dh, 0),
  ];
  return stridedAttention(
    [q, k, v],
    [0, 1, 2],
    { dims: [b, heads, sq, sk, dh], layout, scale: 1 / Math.sqrt(dh), outShape: [b, sq, d] },
    bias,
  ) as tf.Tensor3D;
}

/**
 * Attention of row-layout queries q [B, Sq, D] over head-layout keys and values [B, H, Sk, dh]
 * (cross-attention to a text context computed once), to [B, Sq, D]; bias (optional) [B, 1, 1, Sk].
 * On the native path q is read and the output written in place, with no head transposes.
 */
export function queryRowsAttention(q: tf.Tensor3D, k: tf.Tensor4D, v: tf.Tensor4D, bias?: tf.Tensor): tf.Tensor3D {
  const [b, , d] = q.shape;
  const [, heads, sk, dh] = k.shape;
  if (heads * dh !== d) throw new Error(`queryRowsAttention: queries of width ${d} for ${heads} heads of ${dh}`);
  if (fusible(bias, b, sk, q, k, v)) return queryRowsAttentionFused(q, k, v, bias);
  return mergeHeads(attention(splitHeads(q, heads), k, v, bias));
}
