// The fused attention kernels at the reference step's self-attention shape (docs/ARCHITECTURE.md: B 8,
// 8 heads, 256 tokens, dh 32, q/k/v read from a packed [B, S, 3D] projection), forward and backward,
// with the per-item products in fp32 (single-threaded OpenBLAS) and in bf16 (native/bf16_gemm.h).
// Usage: node --import tsx bench/attention-paths.ts   (best of 7 calls each, after 2 warm-up calls)
import { loadNative } from '../src/tensor/native.js';

const addon = loadNative();
if (!addon?.attentionStridedForward || !addon.attentionStridedBackward) {
  console.log('native attention not built');
  process.exit(0);
}
const [b, h, s, dh] = [8, 8, 256, 32];
const d = h * dh;
const rows = (width: number, col: number) => [s * width, dh, width, col];
const layout = Float64Array.from([...rows(3 * d, 0), ...rows(3 * d, d), ...rows(3 * d, 2 * d), ...rows(d, 0)]);
const qkv = Float32Array.from({ length: b * s * 3 * d }, (_, i) => Math.sin(i * 0.37));
const dout = Float32Array.from({ length: b * s * d }, (_, i) => Math.cos(i * 0.11));
const o = new Float32Array(b * s * d);
const p = new Float32Array(b * h * s * s);
const dqkv = new Float32Array(qkv.length);
const none = new Float32Array(0);
const scale = 1 / Math.sqrt(dh);

function best(f: () => void): number {
  for (let i = 0; i < 2; i++) f();
  let min = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    f();
    min = Math.min(min, performance.now() - t0);
  }
  return min;
}

const flops = 2 * 2 * b * h * s * s * dh;
const bf16Paths = addon.info().attentionBf16 ? [false, true] : [false];
console.log(`self-attention ${b}×${h} items of ${s}×${s}×${dh}; ${(flops / 1e9).toFixed(2)} GFLOP forward`);
for (const bf16 of bf16Paths) {
  const fwd = best(() =>
    addon.attentionStridedForward?.(qkv, qkv, qkv, none, o, p, b, h, s, s, dh, scale, layout, bf16),
  );
  const bwd = best(() =>
    addon.attentionStridedBackward?.(dout, qkv, qkv, qkv, p, dqkv, dqkv, dqkv, b, h, s, s, dh, scale, layout, bf16),
  );
  console.log(
    `${bf16 ? 'bf16' : 'fp32'} products  forward ${fwd.toFixed(2)} ms (${(flops / fwd / 1e6).toFixed(0)} GFLOP/s)  backward ${bwd.toFixed(2)} ms (${((2 * flops) / bwd / 1e6).toFixed(0)} GFLOP/s)`,
  );
}

// Cross-attention to the text: row-layout queries [B, S, D] over 16 head-layout keys and values.
const t = 16;
const heads = (n: number) => [h * n * dh, n * dh, dh, 0];
const crossLayout = Float64Array.from([...rows(d, 0), ...heads(t), ...heads(t), ...rows(d, 0)]);
const cq = qkv.subarray(0, b * s * d);
const ck = Float32Array.from({ length: b * h * t * dh }, (_, i) => Math.sin(i * 0.05));
const cp = new Float32Array(b * h * s * t);
const [dcq, dck, dcv] = [new Float32Array(cq.length), new Float32Array(ck.length), new Float32Array(ck.length)];
const crossFlops = 2 * 2 * b * h * s * t * dh;
const cfwd = best(() =>
  addon.attentionStridedForward?.(cq, ck, ck, none, o, cp, b, h, s, t, dh, scale, crossLayout, false),
);
const cbwd = best(() =>
  addon.attentionStridedBackward?.(dout, cq, ck, ck, cp, dcq, dck, dcv, b, h, s, t, dh, scale, crossLayout, false),
);
console.log(
  `cross-attention ${b}×${h} items of ${s}×${t}×${dh} (${(crossFlops / 1e6).toFixed(0)} MFLOP), fp32: forward ${cfwd.toFixed(2)} ms  backward ${cbwd.toFixed(2)} ms`,
);
