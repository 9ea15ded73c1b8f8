// The native matmul paths side by side on the reference training step's own products (and the
// default base model's): OpenBLAS sgemm, oneDNN fp32 and oneDNN bf16, GFLOP/s each (best of
// `reps`), and the path matmulPolicy's by-shape rule picks. How the rule in native/muse_native.cc
// (PathByShape) was chosen and how to re-check it on another CPU:
//   node --import tsx bench/matmul-paths.ts [reps]
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { loadNative, MATMUL_PATHS } from '../src/tensor/native.js';
import { buildReferenceStep } from './reference-step.js';

const reps = Number(process.argv[2] ?? 7);
await initBackend();
const native = loadNative();
if (!native?.matmulBatched) {
  console.log('no native addon with matmulBatched: nothing to compare');
  process.exit(0);
}
const info = native.info();
console.log(`oneDNN ${info.dnnl ?? 'not built in'}, ISA ${info.isa}, bf16 units ${info.bf16}, threads ${info.threads}`);

// Record the products of one reference step (forward and backward).
type Shape = [boolean, boolean, number, number, number, number, boolean, boolean];
const shapes = new Map<string, { shape: Shape; calls: number }>();
const original = native.matmulBatched.bind(native);
native.matmulBatched = (ta, tb, batch, M, N, K, a, as, b, bs, c, alpha, beta, mode, allow) => {
  const shape: Shape = [ta, tb, batch, M, N, K, as === 0, bs === 0];
  const key = shape.join();
  const seen = shapes.get(key) ?? { shape, calls: 0 };
  seen.calls++;
  shapes.set(key, seen);
  return original(ta, tb, batch, M, N, K, a, as, b, bs, c, alpha, beta, mode, allow);
};
const step = buildReferenceStep();
step.step();
step.dispose();
native.matmulBatched = original;

const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
let total = [0, 0, 0];
console.log('product (batch × M×N×K, transposes, broadcast)            calls  OpenBLAS  oneDNN-f32  oneDNN-bf16  rule');
for (const { shape, calls } of [...shapes.values()].sort((x, y) => y.shape[3] * y.shape[4] - x.shape[3] * x.shape[4])) {
  const [ta, tb, batch, M, N, K, aBroad, bBroad] = shape;
  const a = random((aBroad ? 1 : batch) * M * K);
  const b = random((bBroad ? 1 : batch) * K * N);
  const c = new Float32Array(batch * M * N);
  const flops = 2 * batch * M * N * K;
  const run = (mode: number) =>
    original(ta, tb, batch, M, N, K, a, aBroad ? 0 : M * K, b, bBroad ? 0 : K * N, c, 1, 0, mode, true);
  const gflops = [0, 1, 2].map((mode) => {
    run(mode);
    let best = Infinity;
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      run(mode);
      best = Math.min(best, (performance.now() - t0) / 1000);
    }
    return flops / best / 1e9;
  });
  total = total.map((t, i) => t + (calls * flops) / gflops[i] / 1e9);
  const rule = run(3);
  const name = `${batch}×${M}×${N}×${K}${ta ? ' Aᵀ' : ''}${tb ? ' Bᵀ' : ''}${aBroad ? ' A shared' : ''}${bBroad ? ' B shared' : ''}`;
  console.log(
    `${name.padEnd(56)} ${String(calls).padStart(5)}  ${gflops.map((g) => g.toFixed(0).padStart(9)).join('   ')}  ${MATMUL_PATHS[rule]}`,
  );
}
console.log(
  `matmul seconds per reference step, all products on one path: ${total.map((t, i) => `${MATMUL_PATHS[i]} ${t.toFixed(3)}`).join(', ')}`,
);
tf.disposeVariables();
shutdownBackend();
