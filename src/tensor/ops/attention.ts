// Scaled dot-product attention, softmax(scale·q·kᵀ + bias)·v, as one kernel forward and one backward
// on the native path (native attentionForward/attentionBackward: per (batch, head) item, the scores
// go through one product, one softmax pass and one product), instead of tfjs's scale, batched
// product, bias add, softmax and batched product each way with their [B, H, Sq, Sk] temporaries.
// The kernels are registered for wasm and cpu with plain loops as the fallback body; `attention`
// takes them only where the native addon runs them (plain loops would lose to XNNPACK on pure wasm).
import * as tf from '@tensorflow/tfjs-core';
import { activeNative } from '../kernels/active-native.js';
import { registerJsKernel, runKernel } from './js-kernel.js';

interface Dims {
  b: number;
  h: number;
  sq: number;
  sk: number;
  dh: number;
}

function dimsOf(shapes: number[][]): Dims {
  const [b, h, sq, dh] = shapes[0];
  return { b, h, sq, sk: shapes[1][2], dh };
}

/** Row-major c (m×n) = alpha · op(a) · op(b) for the loop fallbacks (k the shared dimension). */
function gemm(
  ta: boolean,
  tb: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  ao: number,
  b: Float32Array,
  bo: number,
  c: Float32Array,
  co: number,
): void {
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let l = 0; l < k; l++) s += a[ao + (ta ? l * m + i : i * k + l)] * b[bo + (tb ? j * k + l : l * n + j)];
      c[co + i * n + j] = alpha * s;
    }
  }
}

registerJsKernel({
  name: 'MuseAttention',
  outputs: (s) => {
    const d = dimsOf(s);
    return [
      [d.b, d.h, d.sq, d.dh],
      [d.b, d.h, d.sq, d.sk],
    ];
  },
  compute: ([q, k, v, bias], [o, p], shapes, attrs) => {
    const { b, h, sq, sk, dh } = dimsOf(shapes);
    const scale = attrs.scale as number;
    for (let i = 0; i < b * h; i++) {
      gemm(false, true, sq, sk, dh, scale, q, i * sq * dh, k, i * sk * dh, p, i * sq * sk);
      for (let r = 0; r < sq; r++) {
        const o0 = i * sq * sk + r * sk;
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
      gemm(false, false, sq, dh, sk, 1, p, i * sq * sk, v, i * sk * dh, o, i * sq * dh);
    }
  },
  computeNative: (addon, [q, k, v, bias], [o, p], shapes, attrs) => {
    const { b, h, sq, sk, dh } = dimsOf(shapes);
    addon.attentionForward?.(q, k, v, bias ?? new Float32Array(0), o, p, b, h, sq, sk, dh, attrs.scale as number);
  },
});

registerJsKernel({
  name: 'MuseAttentionGrad',
  outputs: (s) => [s[1], s[2], s[3]],
  compute: ([dy, q, k, v, p], [dq, dk, dv], shapes, attrs) => {
    const { b, h, sq, sk, dh } = dimsOf(shapes.slice(1));
    const scale = attrs.scale as number;
    const ds = new Float32Array(sq * sk);
    for (let i = 0; i < b * h; i++) {
      gemm(true, false, sk, dh, sq, 1, p, i * sq * sk, dy, i * sq * dh, dv, i * sk * dh);
      gemm(false, true, sq, sk, dh, 1, dy, i * sq * dh, v, i * sk * dh, ds, 0);
      for (let r = 0; r < sq; r++) {
        let dot = 0;
        for (let c = 0; c < sk; c++) dot += ds[r * sk + c] * p[i * sq * sk + r * sk + c];
        for (let c = 0; c < sk; c++) ds[r * sk + c] = p[i * sq * sk + r * sk + c] * (ds[r * sk + c] - dot);
      }
      gemm(false, false, sq, dh, sk, scale, ds, 0, k, i * sk * dh, dq, i * sq * dh);
      gemm(true, false, sk, dh, sq, scale, ds, 0, q, i * sq * dh, dk, i * sk * dh);
    }
  },
  computeNative: (addon, [dy, q, k, v, p], [dq, dk, dv], shapes, attrs) => {
    const { b, h, sq, sk, dh } = dimsOf(shapes.slice(1));
    addon.attentionBackward?.(dy, q, k, v, p, dq, dk, dv, b, h, sq, sk, dh, attrs.scale as number);
  },
});

/** The composite form (every backend): tfjs ops, tfjs gradients. */
export function attentionComposite(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias?: tf.Tensor): tf.Tensor4D {
  const dh = q.shape[3];
  let scores = tf.matMul(tf.mul(q, 1 / Math.sqrt(dh)), k, false, true);
  if (bias) scores = tf.add(scores, bias);
  return tf.matMul(tf.softmax(scores), v);
}

/** Whether `attention` runs as the fused native kernels here. */
export function fusedAttentionActive(): boolean {
  const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env;
  if (env?.MUSE_FUSED_ATTENTION === '0') return false; // A/B switch for benchmarks
  return tf.getBackend() === 'wasm' && typeof activeNative()?.attentionForward === 'function';
}

/** The fused kernels with their gradient (any backend that has them; `attention` picks when to). */
export function attentionFused(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias?: tf.Tensor): tf.Tensor4D {
  const scale = 1 / Math.sqrt(q.shape[3]);
  const grad = (dy: tf.Tensor, [sq, sk, sv, p]: tf.Tensor[]) =>
    runKernel('MuseAttentionGrad', { dy, q: sq, k: sk, v: sv, p }, { scale });
  if (bias) {
    const f = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, d: tf.Tensor, save: tf.GradSaveFunc) => {
      const [o, p] = runKernel('MuseAttention', { q: a, k: b, v: c, bias: d }, { scale });
      save([a, b, c, p]);
      // The bias (a padding mask) is a constant: its gradient is zero.
      return { value: o, gradFunc: (dy: tf.Tensor, s: tf.Tensor[]) => [...grad(dy, s), tf.zerosLike(d)] };
    }) as never) as (...t: tf.Tensor[]) => tf.Tensor4D;
    return f(q, k, v, bias);
  }
  const f = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, save: tf.GradSaveFunc) => {
    const [o, p] = runKernel('MuseAttention', { q: a, k: b, v: c }, { scale });
    save([a, b, c, p]);
    return { value: o, gradFunc: grad };
  }) as never) as (...t: tf.Tensor[]) => tf.Tensor4D;
  return f(q, k, v);
}

/**
 * Scaled dot-product attention, all heads at once: softmax(q·kᵀ/√dh + bias)·v.
 * q [B, H, Sq, dh], k and v [B, H, Sk, dh], bias (optional) [B, 1, 1, Sk] (other bias shapes take
 * the composite form). Fused native kernels on the native path, tfjs ops elsewhere.
 */
export function attention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias?: tf.Tensor): tf.Tensor4D {
  const b = q.shape[0];
  const sk = k.shape[2];
  const biasOk = !bias || (bias.rank === 4 && bias.shape.join() === [b, 1, 1, sk].join());
  const float = q.dtype === 'float32' && k.dtype === 'float32' && v.dtype === 'float32';
  return fusedAttentionActive() && biasOk && float ? attentionFused(q, k, v, bias) : attentionComposite(q, k, v, bias);
}
