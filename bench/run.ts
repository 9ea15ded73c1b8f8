// `npm run bench`: throughput of the tensor backend on this machine (not a test). Prints a table
// and writes bench/results/<date>-<path>.json. Run with MUSE_NATIVE=0 for the pure-wasm path.
//   matmul 1024³ in all four transpose combinations; batched 64×(256×64 @ 64×256);
//   conv2d 3×3 [4,64,64,128]→128 forward and forward+backward; the reference training step;
//   the default base transformer's training samples/s (the trainer's own step); seconds per generated
//   image (batch 1 and 8); seconds per image of the evaluation's feature networks; the VQ tokenizer's
//   training step (the trainer's own, both codebooks) and its encoding and decoding speed; SSIM per
//   64 px image. `npm run bench NAME` runs one part; `npm run bench serve` (only by name) loads the
//   HTTP server: requests/s and p50/p95 latency at 1, 4, 16 clients, memory with 50 queued jobs;
//   `npm run bench queue` (only by name, needs redis-server): the job queue's per-job overhead against
//   in-process, and queued encoding throughput with 1 and 2 workers (bench/queue-load.ts);
//   `npm run bench amused` (only by name): full-size aMUSEd-256/-512 with random weights of the real
//   shapes: load time, seconds per image, peak resident memory (bench/amused.ts).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { FrozenFeatures } from '../src/eval/frozen-features.js';
import { ssim } from '../src/image/metrics.js';
import { MusePipeline } from '../src/pipeline/pipeline.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { matmulPolicy } from '../src/tensor/native.js';
import { Rng } from '../src/tensor/random.js';
import { tokenizerPreset } from '../src/tokenizer/config.js';
import { DEFAULT_DISCRIMINATOR, initDiscriminator } from '../src/tokenizer/discriminator.js';
import { initTokenizer } from '../src/tokenizer/model.js';
import { VqTokenizer } from '../src/tokenizer/tokenizer.js';
import { TokenizerTraining } from '../src/tokenizer/trainer.js';
import { transformerConfig } from '../src/transformer/config.js';
import { applyMask, sampleTrainingMasks } from '../src/transformer/masking.js';
import { initTransformer } from '../src/transformer/model.js';
import { baseOptimizer, baseStep } from '../src/transformer/trainer.js';
import { packageRoot } from '../src/util/package-root.js';
import { buildReferenceStep } from './reference-step.js';

interface Row {
  name: string;
  seconds: number;
  gflops?: number;
  samplesPerSecond?: number;
  /** Memory rows (the server's resident set). */
  bytes?: number;
}

/** Median seconds of `reps` runs after `warm` warm-up runs. */
function time(fn: () => void, reps: number, warm = 1): number {
  for (let i = 0; i < warm; i++) fn();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    t.push((performance.now() - t0) / 1000);
  }
  return t.sort((a, b) => a - b)[Math.floor(t.length / 2)];
}

// wasm and cpu kernels run synchronously, so the kernel call is the work; a GPU needs a read-back.
function finish(t: tf.Tensor | tf.Tensor[]): void {
  for (const x of Array.isArray(t) ? t : [t]) if (tf.getBackend() === 'webgpu') x.dataSync();
}

function randn(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(new Rng(seed).normals(shape.reduce((a, b) => a * b, 1)), shape);
}

const only = process.argv[2];
const info = await initBackend();
const rows: Row[] = [];
const add = (name: string, seconds: number, flop?: number) => {
  const row: Row = { name, seconds, gflops: flop ? flop / seconds / 1e9 : undefined };
  rows.push(row);
  console.log(
    `${name.padEnd(44)} ${(seconds * 1000).toFixed(1).padStart(9)} ms${row.gflops ? `  ${row.gflops.toFixed(1).padStart(6)} GFLOP/s` : ''}`,
  );
};
console.log(
  `backend ${info.backend}, ${info.threads} threads, native ${info.kernels.native ? 'on' : 'off'}; ${cpus()[0]?.model} × ${cpus().length}`,
);
if (info.kernels.native) console.log(`matmuls: ${matmulPolicy().describe}`);

if (!only || only === 'matmul') {
  const n = 1024;
  const a = randn([n, n], 1);
  const b = randn([n, n], 2);
  for (const [ta, tb] of [
    [false, false],
    [false, true],
    [true, false],
    [true, true],
  ] as const) {
    const s = time(() => tf.tidy(() => finish(tf.matMul(a, b, ta, tb))), 15, 3);
    add(`matmul 1024³ ${ta ? 'Aᵀ' : 'A'}·${tb ? 'Bᵀ' : 'B'}`, s, 2 * n ** 3);
  }
  const qa = randn([64, 256, 64], 3);
  const qb = randn([64, 64, 256], 4);
  add(
    'batched 64×(256×64 @ 64×256)',
    time(() => tf.tidy(() => finish(tf.matMul(qa, qb))), 25, 5),
    2 * 64 * 256 * 64 * 256,
  );
  tf.dispose([a, b, qa, qb]);
}

if (!only || only === 'conv') {
  const x = randn([4, 64, 64, 128], 5);
  const w = randn([3, 3, 128, 128], 6);
  const flop = 2 * 4 * 64 * 64 * 128 * 128 * 9;
  add(
    'conv2d 3×3 [4,64,64,128]→128 forward',
    time(() => tf.tidy(() => finish(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'))), 3),
    flop,
  );
  const dy = randn([4, 64, 64, 128], 7);
  const grads = tf.grads((xi: tf.Tensor, wi: tf.Tensor) => tf.conv2d(xi as tf.Tensor4D, wi as tf.Tensor4D, 1, 'same'));
  add(
    'conv2d 3×3 forward + backward',
    time(() => tf.tidy(() => finish(grads([x, w], dy))), 3),
    3 * flop,
  );
  tf.dispose([x, w, dy]);
}

if (!only || only === 'step') {
  const step = buildReferenceStep();
  add(
    'reference training step (docs/ARCHITECTURE.md)',
    time(() => void step.step(), 5, 2),
    56e9,
  );
  add(
    'reference forward',
    time(() => step.forward(), 5),
  );
  step.dispose();
}

if (!only || only === 'base') {
  // The default base transformer (small preset) on 8×8 grids of 1,024 codes with 24 USE-lite tokens.
  const config = transformerConfig('small', { codebookSize: 1024, grid: [8, 8], textDim: 512, textTokens: 24 });
  const rng = new Rng(9);
  const params = initTransformer(config, rng);
  const batch = 32;
  const n = 64;
  const targets = Int32Array.from({ length: batch * n }, () => rng.int(1024));
  const mask = sampleTrainingMasks(batch, n, rng);
  const tokens = tf.tensor2d(applyMask(targets, mask, 1024), [batch, n], 'int32');
  const text = randn([batch, 24, 512], 10) as tf.Tensor3D;
  const lengths = new Int32Array(batch).fill(6);
  // The trainer's own step (what `muse train base` runs each step): loss, clipping, AdamW.
  const trainStep = baseStep({ config, labelSmoothing: 0.1, ema: 0 }, params, baseOptimizer(0.045));
  const step = () => void trainStep({ tokens, targets, mask, text, lengths }, { lr: 1e-4 });
  const s = time(step, 5, 2);
  add(`base transformer (small) step, batch ${batch}`, s);
  rows[rows.length - 1].samplesPerSecond = batch / s;
  console.log(`${''.padEnd(44)} ${(batch / s).toFixed(1).padStart(9)} training samples/s`);
  tf.dispose([...Object.values(params), tokens, text]);
}

if (!only || only === 'tokenizer') {
  // The default VQ tokenizer (small, f = 4) with each codebook: a training step (L1 + L2 + VQ loss,
  // no discriminator) on 32 px crops, batch 32; then encoding and decoding speed at 32 and 64 px.
  for (const preset of ['small', 'small-ema']) {
    const config = tokenizerPreset(preset);
    const params = initTokenizer(config, new Rng(3));
    const x = tf.clipByValue(randn([32, 32, 32, 3], 11), -1, 1) as tf.Tensor4D;
    // The trainer's own step (what `muse tokenizer train` runs before --disc-start): losses, clipping,
    // AdamW, the EMA codebook (small-ema) and code usage.
    const training = new TokenizerTraining(
      { config, discStart: Number.POSITIVE_INFINITY, ganWeight: 0, restartEvery: 0, steps: 1, weightDecay: 1e-4 },
      params,
      initDiscriminator(DEFAULT_DISCRIMINATOR, new Rng(4)),
    );
    const ctx = { step: 0, lr: 1e-4, rng: new Rng(5) };
    const step = () => void training.step(x, ctx);
    const s = time(step, 5, 2);
    add(`tokenizer (${preset}) step, batch 32 at 32 px`, s);
    rows[rows.length - 1].samplesPerSecond = 32 / s;
    console.log(`${''.padEnd(44)} ${(32 / s).toFixed(1).padStart(9)} training images/s`);
    if (preset === 'small') {
      const tok = new VqTokenizer(params, config, 'bench');
      for (const size of [32, 64]) {
        const images = Array.from({ length: 32 }, (_, i) => {
          const rng = new Rng(i);
          return { width: size, height: size, data: Uint8Array.from({ length: size * size * 3 }, () => rng.int(256)) };
        });
        let tokens = await tok.encode(images);
        const runs: number[] = [];
        for (let i = 0; i < 3; i++) {
          const t0 = performance.now();
          tokens = await tok.encode(images);
          runs.push((performance.now() - t0) / 1000);
        }
        const encode = runs.sort((a, b) => a - b)[1];
        add(`tokenizer encode ${size} px, batch 32 (per image)`, encode / 32);
        const grid = size / 4;
        await tok.decode(tokens, grid, grid);
        const decodes: number[] = [];
        for (let i = 0; i < 3; i++) {
          const t0 = performance.now();
          await tok.decode(tokens, grid, grid);
          decodes.push((performance.now() - t0) / 1000);
        }
        add(`tokenizer decode ${size} px, batch 32 (per image)`, decodes.sort((a, b) => a - b)[1] / 32);
      }
    }
    tf.dispose([...Object.values(params), ...Object.values(training.disc), x]);
  }
}

if (!only || only === 'generate') {
  // Seconds per image of the shipped emoji pipeline at each size it makes (32 px: base stage; 64 px:
  // base + super-res), default steps and guidance (one batched forward of 2B grids per step).
  const muse = await MusePipeline.load(join(packageRoot(), 'models', 'emoji'));
  for (const size of muse.sizes) {
    for (const batch of [1, 8]) {
      const prompts = Array.from(
        { length: batch },
        (_, i) => ['red apple', 'a smiling face', 'dog face', 'sun'][i % 4],
      );
      const runs: number[] = [];
      for (let i = 0; i < (batch === 1 ? 6 : 4); i++) {
        const t0 = performance.now();
        await muse.generate(prompts, { seed: i, size });
        runs.push((performance.now() - t0) / 1000);
      }
      const s = runs.slice(1).sort((a, b) => a - b)[Math.floor((runs.length - 1) / 2)];
      const stages =
        size === muse.imageSize
          ? `${muse.defaults.steps} steps`
          : `${muse.defaults.steps} + ${muse.defaults.superresSteps} steps`;
      add(`generate emoji ${size} px, ${stages}, batch ${batch} (per image)`, s / batch);
    }
  }
  muse.dispose();
}

if (!only || only === 'features') {
  // The evaluation's frozen feature networks (nsfwjs): seconds per 32 px image, batches of 16.
  const images = Array.from({ length: 16 }, (_, i) => {
    const rng = new Rng(i);
    return { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, () => rng.int(256)) };
  });
  for (const net of ['inception_v3', 'mobilenet_v2'] as const) {
    const f = await FrozenFeatures.load(net);
    add(`${net} features, batch 16 (per image)`, time(() => f.features(images, 16), 3) / 16);
    f.dispose();
  }
}

if (!only || only === 'metrics') {
  // SSIM of 64 px images (the evaluation scores thousands): milliseconds per image.
  const noisy = (seed: number) => {
    const rng = new Rng(seed);
    return { width: 64, height: 64, data: Uint8Array.from({ length: 64 * 64 * 3 }, () => rng.int(256)) };
  };
  const [a, b] = [noisy(1), noisy(2)];
  add(
    'ssim 64×64 (per image)',
    time(() => ssim(a, b), 200),
  );
}

if (only === 'serve') {
  // Load on `muse serve` (long: not part of the default run). bench/server-load.ts says how.
  const { serverLoad } = await import('./server-load.js');
  for (const row of await serverLoad()) {
    rows.push(row);
    const figure =
      row.bytes !== undefined
        ? `${(row.bytes / 2 ** 20).toFixed(0).padStart(9)} MiB`
        : row.samplesPerSecond !== undefined
          ? `${row.samplesPerSecond.toFixed(2).padStart(9)} req/s`
          : `${(row.seconds * 1000).toFixed(0).padStart(9)} ms`;
    console.log(`${row.name.padEnd(44)} ${figure}`);
  }
}

if (only === 'queue') {
  // The Redis job queue's per-job overhead and encoding throughput (needs redis-server; only by name).
  const { queueLoad } = await import('./queue-load.js');
  for (const row of await queueLoad()) {
    rows.push(row);
    const figure =
      row.samplesPerSecond !== undefined
        ? `${(row.seconds * 1000).toFixed(0).padStart(9)} ms  ${row.samplesPerSecond.toFixed(1)} img/s`
        : `${(row.seconds * 1000).toFixed(1).padStart(9)} ms`;
    console.log(`${row.name.padEnd(56)} ${figure}`);
  }
}

if (only === 'amused') {
  // Full-size aMUSEd-256 and -512 with random weights of the real shapes (long, ~3 GB of scratch files:
  // only by name). Each size runs in a child process of its own; bench/amused.ts says how.
  const { amusedBench } = await import('./amused.js');
  for (const row of amusedBench()) {
    rows.push(row);
    const figure =
      row.bytes !== undefined
        ? `${(row.bytes / 2 ** 30).toFixed(2).padStart(9)} GiB`
        : `${row.seconds.toFixed(1).padStart(9)} s`;
    console.log(`${row.name.padEnd(56)} ${figure}`);
  }
}

const date = new Date().toISOString().slice(0, 10);
mkdirSync('bench/results', { recursive: true });
const file = `bench/results/${date}-${info.backend}-${info.kernels.native ? 'native' : 'wasm'}.json`;
// A partial run (`npm run bench generate`) updates its own rows and keeps the day's others.
const earlier: Row[] = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { rows: Row[] }).rows : [];
const merged = [...earlier.filter((r) => !rows.some((x) => x.name === r.name)), ...rows];
writeFileSync(
  file,
  `${JSON.stringify({ date, cpu: cpus()[0]?.model, cores: cpus().length, node: process.versions.node, ...info, rows: merged }, null, 2)}\n`,
);
console.log(`wrote ${file}`);
shutdownBackend();
