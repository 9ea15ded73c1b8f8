// The VQ tokenizer: quantizer maths and gradient path, shape contracts, overfitting a few images,
// exact resume, files and bad input.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import type { RgbImage } from '../src/image/image.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { Rng } from '../src/tensor/random.js';
import { loadTokenizer, saveTokenizer } from '../src/tokenizer/checkpoint.js';
import { tokenizerPreset } from '../src/tokenizer/config.js';
import { EmaCodebook } from '../src/tokenizer/ema-codebook.js';
import { decodeLatents, encodeLatents, initTokenizer } from '../src/tokenizer/model.js';
import { codeUsage, nearestCodes, quantize, restartDeadCodes } from '../src/tokenizer/quantizer.js';
import { VqTokenizer } from '../src/tokenizer/tokenizer.js';
import { type TokenizerTrainOptions, trainTokenizer } from '../src/tokenizer/trainer.js';
import { namedGrads } from '../src/train/grads.js';

after(() => shutdownBackend());

const tiny = tokenizerPreset('tiny');

function blobs(n: number, size: number, seed: number): RgbImage[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const data = new Uint8Array(size * size * 3).fill(255);
    const [r, g, b] = [rng.int(256), rng.int(256), rng.int(256)];
    const cx = 4 + rng.int(size - 8);
    const cy = 4 + rng.int(size - 8);
    const rad = 3 + rng.int(size / 4);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        if ((x - cx) ** 2 + (y - cy) ** 2 <= rad * rad) data.set([r, g, b], (y * size + x) * 3);
      }
    }
    return { width: size, height: size, data };
  });
}

test('nearest code is the largest cosine similarity (hand-worked)', async () => {
  await initBackend();
  const codes = tf.tensor2d([
    [1, 0],
    [0, 1],
    [-1, 0],
  ]);
  const z = tf.tensor2d([
    [0.9, 0.1],
    [0.2, 0.8],
    [-0.7, -0.1],
  ]);
  assert.deepEqual(Array.from(nearestCodes(z, codes).dataSync()), [0, 1, 2]);
  const u = codeUsage(Int32Array.from([0, 0, 1, 3]), 4);
  assert.equal(u.used, 0.75);
  // entropy of (1/2, 1/4, 1/4) = 1.5·ln 2 → perplexity 2^1.5
  assert.ok(Math.abs(u.perplexity - 2 ** 1.5) < 1e-9);
});

test('EMA lookup is the smallest Euclidean distance, where cosine would choose otherwise (hand-worked)', async () => {
  await initBackend();
  const codes = tf.tensor2d([
    [1, 0],
    [3, 0.5],
  ]);
  // cosine prefers [1, 0] (cos 1 against 0.986); Euclidean prefers [3, 0.5] (0.41 against 2.56).
  const far = tf.tensor2d([[2.6, 0]]);
  const unit = (t: tf.Tensor2D) => tf.div(t, tf.norm(t, 2, 1, true)) as tf.Tensor2D;
  assert.deepEqual(Array.from(nearestCodes(unit(far), unit(codes), 'l2').dataSync()), [0]);
  assert.deepEqual(Array.from(nearestCodes(far, codes, 'ema').dataSync()), [1]);
});

test('EMA codebook: a used code moves to the running mean of its latents; an unused one stays (hand-worked)', () => {
  const ema = EmaCodebook.fromCodebook(Float32Array.from([0, 0, 1, 1]), 2, 0.5);
  // Both latents go to code 0: N = (0.5·1 + 0.5·2, 0.5·1) = (1.5, 0.5); m_0 = 0.5·(2+4, 0) = (3, 0);
  // m_1 = 0.5·(1, 1); e = m / N (smoothing ε = 1e-5 changes the 5th decimal at most).
  const book = ema.update(Int32Array.from([0, 0]), Float32Array.from([2, 0, 4, 0]));
  const expected = [2, 0, 1, 1];
  book.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-4, `${Array.from(book)}`));
  assert.deepEqual(Array.from(ema.counts), [1.5, 0.5]);
  // A restarted code sits exactly where it was put.
  ema.reset(1, Float32Array.from([5, -5]));
  const after = ema.codebook();
  assert.ok(Math.abs(after[2] - 5) < 1e-4 && Math.abs(after[3] + 5) < 1e-4, `${Array.from(after)}`);
  assert.throws(() => EmaCodebook.fromState(new Float32Array(2), new Float32Array(3), 2), /3 sums for 2 codes/);
});

test('dead codes (usage EMA under the threshold) restart on recent encoder vectors; live ones stay', async () => {
  await initBackend();
  const p = { 'quant.codebook': tf.variable(tf.tensor2d([0, 0, 1, 1, 2, 2, 3, 3], [4, 2])) };
  const usage = Float32Array.from([1, 0.001, 0.5, 0]);
  const recent = Float32Array.from([10, 11, 20, 21]);
  const picks = [1, 0];
  const restarted = restartDeadCodes(p, usage, recent, 2, 0.01, () => picks.shift() ?? 0);
  assert.deepEqual(restarted, [1, 3]);
  assert.deepEqual(Array.from(p['quant.codebook'].dataSync()), [0, 0, 20, 21, 2, 2, 10, 11]);
  assert.deepEqual(Array.from(usage), [1, 0.01, 0.5, 0.01].map(Math.fround));
  p['quant.codebook'].dispose();
});

test('shapes: f = 4 maps 32 → 8×8, 64 → 16×16 and 48×32 → 12×8 tokens; other sizes are refused', async () => {
  await initBackend();
  const p = initTokenizer(tiny, new Rng(0));
  for (const [h, w] of [
    [32, 32],
    [64, 64],
    [48, 32],
  ]) {
    tf.tidy(() => {
      const x = tf.zeros([2, h, w, 3]) as tf.Tensor4D;
      const z = encodeLatents(p, tiny, x);
      assert.deepEqual(z.shape, [2, h / 4, w / 4, tiny.latentDim]);
      const q = quantize(p, z);
      assert.deepEqual(q.indices.shape, [2, h / 4, w / 4]);
      assert.deepEqual(decodeLatents(p, tiny, q.latents).shape, [2, h, w, 3]);
    });
  }
  assert.throws(
    () => encodeLatents(p, tiny, tf.zeros([1, 30, 32, 3]) as tf.Tensor4D),
    /multiple of the tokenizer's factor 4/,
  );
  tf.dispose(Object.values(p));
});

test('the straight-through estimator passes the decoder gradient to the encoder; the codebook learns from the VQ loss', async () => {
  await initBackend();
  const p = initTokenizer(tiny, new Rng(1));
  const x = tf.randomUniform([2, 16, 16, 3], -1, 1, 'float32', 3) as tf.Tensor4D;
  // Reconstruction loss only: the encoder's weights get a gradient through the quantizer.
  const pick = { 'enc.conv_in.w': p['enc.conv_in.w'], 'quant.codebook': p['quant.codebook'] };
  const rec = namedGrads(() => {
    const q = quantize(p, encodeLatents(p, tiny, x));
    return tf.mean(tf.square(tf.sub(decodeLatents(p, tiny, q.latents), x))) as tf.Scalar;
  }, pick);
  const encNorm = tf.norm(rec.grads['enc.conv_in.w']).dataSync()[0];
  assert.ok(encNorm > 0, 'encoder gets a gradient through the straight-through estimator');
  // The VQ loss moves the codebook (codebook term) and the encoder (commitment term).
  const vq = namedGrads(() => quantize(p, encodeLatents(p, tiny, x)).loss, pick);
  assert.ok(tf.norm(vq.grads['quant.codebook']).dataSync()[0] > 0);
  assert.ok(tf.norm(vq.grads['enc.conv_in.w']).dataSync()[0] > 0);
  // The EMA lookup: only the commitment term, so no gradient reaches the codebook; the encoder still learns.
  const emaVq = namedGrads(() => quantize(p, encodeLatents(p, tiny, x), 'ema').loss, pick);
  assert.equal(tf.norm(emaVq.grads['quant.codebook']).dataSync()[0], 0);
  assert.ok(tf.norm(emaVq.grads['enc.conv_in.w']).dataSync()[0] > 0);
  tf.dispose(Object.values(p));
});

/** Images of 4×4-pixel tiles in 6 colours: each f = 4 token covers one tile exactly. */
function tiles(n: number, size: number, seed: number): RgbImage[] {
  const rng = new Rng(seed);
  const palette = [
    [230, 30, 30],
    [30, 180, 60],
    [40, 60, 220],
    [250, 220, 40],
    [255, 255, 255],
    [20, 20, 20],
  ];
  return Array.from({ length: n }, () => {
    const data = new Uint8Array(size * size * 3);
    for (let ty = 0; ty < size / 4; ty++) {
      for (let tx = 0; tx < size / 4; tx++) {
        const c = palette[rng.int(palette.length)];
        for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) data.set(c, ((ty * 4 + y) * size + tx * 4 + x) * 3);
      }
    }
    return { width: size, height: size, data };
  });
}

function options(out: string, images: RgbImage[], extra: Partial<TokenizerTrainOptions> = {}): TokenizerTrainOptions {
  return {
    out,
    config: tiny,
    images,
    validation: images,
    crop: 16,
    steps: 300,
    batch: 8,
    lr: 3e-3,
    warmup: 10,
    weightDecay: 0,
    discStart: 1e9,
    ganWeight: 0,
    seed: 7,
    sampleEvery: 0,
    checkpointEvery: 0,
    evalEvery: 0,
    restartEvery: 50,
    resume: false,
    quiet: true,
    ...extra,
  };
}

test('a tiny tokenizer overfits 8 images to high PSNR within seconds', async () => {
  await initBackend();
  const images = tiles(8, 16, 11);
  const out = mkdtempSync(join(tmpdir(), 'muse-tok-'));
  const r = await trainTokenizer(options(out, images, { steps: 300, lr: 5e-3, evalEvery: 300 }));
  const e = r.history.eval.at(-1);
  assert.ok(e && e.psnr > 30, `PSNR ${e?.psnr}`);
  const tok = await VqTokenizer.load(join(out, 'tokenizer.safetensors'));
  const tokens = await tok.encode(images.slice(0, 2));
  assert.equal(tokens.length, 2 * 4 * 4);
  const back = await tok.decode(tokens, 4, 4);
  assert.deepEqual([back[0].width, back[0].height], [16, 16]);
  // reconstruct = encode + decode, whatever the chunk size it works in.
  const whole = await tok.reconstruct(images);
  assert.deepEqual(await tok.reconstruct(images, 3), whole);
  assert.deepEqual(whole.slice(0, 2), back);
  tok.dispose();
});

test('an EMA-codebook tokenizer also overfits 8 images, its codes moving without the optimizer', async () => {
  await initBackend();
  const images = tiles(8, 16, 11);
  const out = mkdtempSync(join(tmpdir(), 'muse-tok-'));
  const config = { ...tiny, quantizer: 'ema' as const };
  const start = initTokenizer(config, new Rng(7).fork())['quant.codebook'].dataSync();
  const r = await trainTokenizer(options(out, images, { config, steps: 300, lr: 5e-3, evalEvery: 300 }));
  const e = r.history.eval.at(-1);
  assert.ok(e && e.psnr > 30, `PSNR ${e?.psnr}`);
  const trained = (await loadTokenizer(join(out, 'tokenizer.safetensors'))).params['quant.codebook'].dataSync();
  assert.notDeepEqual(Array.from(trained), Array.from(start));
});

for (const quantizer of ['l2', 'ema'] as const)
  test(`an interrupted run resumes exactly: same weights as an uninterrupted run (${quantizer} codebook)`, async () => {
    await initBackend();
    const images = blobs(6, 16, 5);
    const base = { steps: 8, restartEvery: 3, discStart: 4, ganWeight: 0.1, config: { ...tiny, quantizer } };
    const whole = mkdtempSync(join(tmpdir(), 'muse-tok-'));
    const counts: number[] = [];
    await trainTokenizer(options(whole, images, { ...base, onStep: () => counts.push(tf.memory().numTensors) }));
    // No tensor leaks: the count settles once the discriminator joins (step 4) and stays.
    assert.deepEqual(new Set(counts.slice(4)).size, 1, `tensors per step: ${counts}`);
    // A time budget of 0 minutes stops (and saves) after the first step; then resume to the end.
    const partsFull = mkdtempSync(join(tmpdir(), 'muse-tok-'));
    const first = await trainTokenizer(options(partsFull, images, { ...base, minutes: 0 }));
    assert.deepEqual([first.step, first.stoppedEarly], [1, true]);
    const resumed = await trainTokenizer(options(partsFull, images, { ...base, resume: true }));
    assert.equal(resumed.step, 8);
    const a = await loadTokenizer(join(whole, 'tokenizer.safetensors'));
    const b = await loadTokenizer(join(partsFull, 'tokenizer.safetensors'));
    for (const k of Object.keys(a.params)) {
      assert.deepEqual(Array.from(b.params[k].dataSync()), Array.from(a.params[k].dataSync()), k);
    }
  });

test('tokenizer files: round trip, F16 export, and clear errors for bad files and tokens', async () => {
  await initBackend();
  const dir = mkdtempSync(join(tmpdir(), 'muse-tok-'));
  const p = initTokenizer(tiny, new Rng(2));
  await saveTokenizer(join(dir, 't.safetensors'), p, tiny, { dtype: 'F16' });
  const loaded = await loadTokenizer(join(dir, 't.safetensors'));
  assert.deepEqual(loaded.config, tiny);
  const w = p['enc.conv_in.w'].dataSync();
  const w16 = loaded.params['enc.conv_in.w'].dataSync();
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(w[i] - w16[i]) <= 1e-3 * Math.abs(w[i]) + 1e-7);
  await assert.rejects(loadTokenizer(join(dir, 'missing.safetensors')), /no such file/);
  const tok = new VqTokenizer(loaded.params, tiny, 't');
  await assert.rejects(tok.decode(Int32Array.from([0, 1, 2, 999]), 2, 2), /outside the codebook/);
  await assert.rejects(tok.encode(blobs(1, 18, 1)), /multiples of 4/);
});
