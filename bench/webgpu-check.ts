// WebGPU check for a lent GPU machine (no Node or npm there): correctness of matmul, conv, the base
// transformer forward and its gradients against the cpu backend, the tokenizer decoder, then a
// training step and generation timings. `node scripts/webgpu-bundle.mjs` builds what to carry (see
// docs/PERFORMANCE.md, "WebGPU"); CHECK_BACKEND=cpu runs it here as a dry run.
import { readFileSync, writeFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { guidedTransformer } from '../src/decoding/guided-transformer.js';
import { parallelDecode } from '../src/decoding/parallel-decode.js';
import { initBackend } from '../src/tensor/backend.js';
import { Rng } from '../src/tensor/random.js';
import { VqTokenizer } from '../src/tokenizer/tokenizer.js';
import { AdamW } from '../src/train/adamw.js';
import { namedGrads } from '../src/train/grads.js';
import { loadTransformer } from '../src/transformer/checkpoint.js';
import { transformerConfig } from '../src/transformer/config.js';
import { maskedCrossEntropy } from '../src/transformer/loss.js';
import { applyMask, sampleTrainingMasks } from '../src/transformer/masking.js';
import { forward, initTransformer } from '../src/transformer/model.js';

interface GpuLike {
  requestAdapter(): Promise<{ info?: Record<string, string> } | null>;
}

const out: Record<string, unknown> = {};
const log = (k: string, v: unknown) => {
  out[k] = v;
  console.log(k, JSON.stringify(v));
};
const here = new URL('.', import.meta.url).pathname;
const OUT = process.env.OUT ?? here;
const save = () => writeFileSync(`${OUT}/gpu-check.json`, JSON.stringify(out, null, 2));

const target = (process.env.CHECK_BACKEND ?? 'webgpu') as 'webgpu' | 'cpu';
const info = await initBackend({ backend: target });
log('backend', info);
const adapter =
  target === 'webgpu' ? await (globalThis.navigator as unknown as { gpu: GpuLike }).gpu.requestAdapter() : null;
log(
  'adapter',
  adapter?.info
    ? {
        vendor: adapter.info.vendor,
        architecture: adapter.info.architecture,
        device: adapter.info.device,
        description: adapter.info.description,
      }
    : null,
);

function maxRel(a: Float32Array, b: Float32Array): number {
  let m = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m / (scale || 1);
}

// Work done identically on both backends: seeded inputs → outputs as Float32Arrays.
const tinyConfig = transformerConfig('small', { codebookSize: 1024, grid: [8, 8], textDim: 512, textTokens: 24 });
function workload(): Record<string, Float32Array> {
  const res: Record<string, Float32Array> = {};
  const rng = new Rng(1);
  const a = tf.tensor(rng.normals(256 * 384), [256, 384]);
  const b = tf.tensor(rng.normals(384 * 320), [384, 320]);
  res.matmul = tf.matMul(a, b).dataSync() as Float32Array;
  res.matmulTT = tf.matMul(b, a, true, true).dataSync() as Float32Array;
  const x = tf.tensor4d(rng.normals(2 * 16 * 16 * 8), [2, 16, 16, 8]);
  const w = tf.tensor4d(rng.normals(3 * 3 * 8 * 16, 0.2), [3, 3, 8, 16]);
  res.conv = tf.conv2d(x, w, 1, 'same').dataSync() as Float32Array;
  const p = initTransformer(tinyConfig, new Rng(2));
  const B = 4;
  const n = 64;
  const targets = Int32Array.from({ length: B * n }, () => rng.int(1024));
  const mask = sampleTrainingMasks(B, n, rng);
  const tokens = tf.tensor2d(applyMask(targets, mask, 1024), [B, n], 'int32');
  const text = tf.tensor3d(rng.normals(B * 24 * 512), [B, 24, 512]);
  const lengths = Int32Array.from([5, 0, 24, 11]);
  res.forward = forward(p, tinyConfig, tokens, text, lengths).dataSync() as Float32Array;
  const { value, grads } = namedGrads(
    () => maskedCrossEntropy(forward(p, tinyConfig, tokens, text, lengths), targets, mask, 0.1).loss,
    p,
  );
  res.loss = value.dataSync() as Float32Array;
  for (const k of ['blocks.0.attn.qkv.w', 'blocks.3.mlp.fc1.w', 'tok_emb', 'text.proj.w', 'ln_f.g'])
    res[`grad ${k}`] = grads[k].dataSync() as Float32Array;
  return res;
}

async function tokenizerDecode(): Promise<Float32Array> {
  const tok = await VqTokenizer.load('models/emoji/tokenizer.safetensors');
  const rng = new Rng(3);
  const imgs = await tok.decode(
    Int32Array.from({ length: 2 * 64 }, () => rng.int(1024)),
    8,
    8,
  );
  tok.dispose();
  return Float32Array.from([...imgs[0].data, ...imgs[1].data]);
}

const t0 = performance.now();
const gpu = workload();
const gpuDecode = await tokenizerDecode();
log('gpu workload seconds', (performance.now() - t0) / 1000);
await tf.setBackend('cpu');
const cpu = workload();
const cpuDecode = await tokenizerDecode();
const agreement: Record<string, number> = {};
for (const k of Object.keys(cpu)) agreement[k] = maxRel(gpu[k], cpu[k]);
let pix = 0;
for (let i = 0; i < cpuDecode.length; i++) pix = Math.max(pix, Math.abs(cpuDecode[i] - gpuDecode[i]));
agreement['tokenizer decode (max pixel diff of 255)'] = pix;
log('max relative error webgpu vs cpu', agreement);
save();
await tf.setBackend(target);

// Timings on webgpu.
async function timeIt(fn: () => Promise<void> | void, reps: number): Promise<number> {
  await fn();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    await fn();
    t.push((performance.now() - s) / 1000);
  }
  return t.sort((a, b) => a - b)[Math.floor(reps / 2)];
}
{
  const params = initTransformer(tinyConfig, new Rng(9));
  const opt = new AdamW({ weightDecay: 0.045 });
  const rng = new Rng(4);
  const batch = 32;
  const targets = Int32Array.from({ length: batch * 64 }, () => rng.int(1024));
  const mask = sampleTrainingMasks(batch, 64, rng);
  const tokens = tf.tensor2d(applyMask(targets, mask, 1024), [batch, 64], 'int32');
  const text = tf.tensor3d(rng.normals(batch * 24 * 512), [batch, 24, 512]);
  const lengths = new Int32Array(batch).fill(6);
  const s = await timeIt(async () => {
    const { value, grads } = namedGrads(
      () => maskedCrossEntropy(forward(params, tinyConfig, tokens, text, lengths), targets, mask, 0.1).loss,
      params,
    );
    opt.apply(params, grads, 1e-4);
    await value.data();
    tf.dispose([value, ...Object.values(grads)]);
  }, 5);
  log('base small training step batch 32 (s)', s);
  log('base small training samples/s', batch / s);
  save();
}
{
  const base = await loadTransformer('models/emoji/base.safetensors');
  const tok = await VqTokenizer.load('models/emoji/tokenizer.safetensors');
  const emb = JSON.parse(readFileSync(`${here}text.json`, 'utf8')) as { embeddings: number[]; lengths: number[] };
  for (const B of [1, 8]) {
    const text = { embeddings: new Float32Array(B * 24 * 512), lengths: new Int32Array(B) };
    for (let b = 0; b < B; b++) {
      text.embeddings.set(emb.embeddings.slice(0, 24 * 512), b * 24 * 512);
      text.lengths[b] = emb.lengths[0];
    }
    let seed = 0;
    const s = await timeIt(async () => {
      const g = guidedTransformer(base.params, base.config, text, { scale: 3 });
      const tokens = await parallelDecode(
        g.logits,
        { tokens: new Int32Array(B * 64).fill(1024), batch: B, codebookSize: 1024, maskId: 1024 },
        { steps: 12, rng: new Rng(seed++) },
      );
      g.dispose();
      await tok.decode(tokens, 8, 8);
    }, 3);
    log(`generate 12 steps batch ${B}: seconds per image`, s / B);
    save();
  }
}
save();
process.exit(0);
