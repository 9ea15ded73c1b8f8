// `muse doctor`: which backend, threads and kernel path are active, versions, and a small matmul
// checked against a float64 reference and timed.
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { type BackendName, initBackend } from '../tensor/backend.js';
import { nativeMatmulCounts } from '../tensor/kernels/batch-matmul.js';
import { loadNative, MATMUL_PATHS, matmulPolicy } from '../tensor/native.js';
import { Rng } from '../tensor/random.js';
import { MuseError } from '../util/errors.js';

export const doctorHelp = `Usage: muse doctor [--backend wasm|webgpu|cpu] [--threads N] [--no-native]

Starts the tensor backend and reports what is active: backend, threads, whether the native BLAS path
serves matmuls and convolutions and in which precision (bf16 on AMX / AVX-512 BF16 via oneDNN where
the CPU has them), package versions, and a 512×512 matmul checked against a float64 reference with
its speed. Environment: MUSE_BACKEND, MUSE_THREADS, MUSE_NATIVE=0, MUSE_FP32=1 (no bf16),
MUSE_MATMUL=rule|tune|openblas|onednn|bf16.`;

function version(pkg: string): string {
  const require = createRequire(import.meta.url);
  try {
    return (require(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

export async function doctorCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      backend: { type: 'string' },
      threads: { type: 'string' },
      'no-native': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(doctorHelp);
    return 0;
  }
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) {
    throw new MuseError(`--threads must be a positive integer, got "${values.threads}"`);
  }
  const info = await initBackend({
    backend: values.backend as BackendName | undefined,
    threads,
    native: values['no-native'] ? false : undefined,
  });
  console.log(`backend      ${info.backend}`);
  console.log(`threads      ${info.threads}`);
  console.log(
    `native BLAS  ${info.kernels.native ? `active (${info.kernels.blas})` : 'not active: wasm kernels serve'}`,
  );
  if (info.kernels.native) {
    const cpu = loadNative()?.info();
    console.log(`matmuls      ${matmulPolicy().describe}`);
    if (cpu?.isa) console.log(`cpu units    ${cpu.isa}${cpu.amx ? ' (AMX tiles)' : cpu.bf16 ? ' (AVX-512 BF16)' : ''}`);
    if (cpu?.vectorIsa) console.log(`vector loops ${cpu.vectorIsa} (exp, softmax, GELU, SiLU)`);
    if (cpu?.attentionBf16 !== undefined)
      console.log(
        `attention    ${
          matmulPolicy().attentionBf16
            ? 'fused; products in bf16 (AVX-512 BF16) from 64 keys'
            : `fused; fp32 products (${cpu.attentionBf16 ? 'bf16 not allowed by MUSE_FP32 / MUSE_MATMUL' : 'no AVX-512 BF16'})`
        }`,
      );
  }
  if (info.kernels.kernels.length) console.log(`kernel pack  ${info.kernels.kernels.join(', ')}`);
  console.log(`node         ${process.versions.node}`);
  for (const pkg of ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-wasm']) {
    console.log(`${pkg.padEnd(12)} ${version(pkg)}`.replace('@tensorflow/', ''));
  }
  const n = 512;
  const rng = new Rng(0);
  const a = rng.normals(n * n);
  const b = rng.normals(n * n);
  const ta = tf.tensor2d(a, [n, n]);
  const tb = tf.tensor2d(b, [n, n]);
  tf.matMul(ta, tb).dispose();
  nativeMatmulCounts(true);
  const c = tf.tidy(() => tf.matMul(ta, tb).dataSync() as Float32Array);
  // The path that served it; a bf16 product is checked against the product of the bf16-rounded inputs.
  const counts = nativeMatmulCounts();
  const path = info.kernels.native ? counts.findIndex((n) => n > 0) : -1;
  const bf16 = path === 2;
  const [ra, rb] = bf16 ? [roundToBf16(a), roundToBf16(b)] : [a, b];
  // Timed with one read-back at the end: wasm and cpu kernels are synchronous, a GPU queues work.
  const reps = 20;
  const t0 = performance.now();
  const products = Array.from({ length: reps }, () => tf.matMul(ta, tb));
  products[reps - 1].dataSync();
  const seconds = (performance.now() - t0) / 1000 / reps;
  tf.dispose(products);
  let worst = 0;
  for (let i = 0; i < n; i += 17) {
    for (let j = 0; j < n; j += 13) {
      let ref = 0;
      for (let k = 0; k < n; k++) ref += ra[i * n + k] * rb[k * n + j];
      worst = Math.max(worst, Math.abs(ref - c[i * n + j]) / Math.sqrt(n));
    }
  }
  const ok = worst < 1e-4;
  console.log(
    `matmul check ${ok ? 'ok' : 'FAILED'} (max error ${worst.toExponential(1)}), ` +
      `${((2 * n ** 3) / seconds / 1e9).toFixed(1)} GFLOP/s at ${n}³${path >= 0 ? ` on ${MATMUL_PATHS[path]}` : ''}` +
      (bf16 ? ' (against the product of the bf16-rounded inputs)' : ''),
  );
  tf.dispose([ta, tb]);
  return ok ? 0 : 1;
}

/** x rounded to bf16 (nearest even), as float32: what the bf16 path multiplies. */
function roundToBf16(x: Float32Array): Float32Array {
  const out = Float32Array.from(x);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < u.length; i++) u[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16) << 16;
  return out;
}
