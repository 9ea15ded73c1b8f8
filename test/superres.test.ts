// The super-resolution transformer (Muse §2.4): low-res tokens → self-attention encoder → prepended to
// the text in the cross-attention context of the masked high-res transformer. Model contracts, and
// the trainer on a two-grid cache (learns; low-res noise option; refuses caches without the grids).
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { encodeCache } from '../src/data/cache.js';
import { type Sample, SkipReport } from '../src/data/sample.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { Rng } from '../src/tensor/random.js';
import { loadSafetensors, saveSafetensors } from '../src/tensor/safetensors.js';
import { codeNeighbours, codeVectors } from '../src/tokenizer/codes.js';
import type { TokenizerConfig } from '../src/tokenizer/config.js';
import { namedGrads } from '../src/train/grads.js';
import { loadTransformer } from '../src/transformer/checkpoint.js';
import { transformerConfig } from '../src/transformer/config.js';
import { contextTensors, forward, initTransformer, lowresIndex, precomputeContext } from '../src/transformer/model.js';
import { loadTokenData, type TokenData } from '../src/transformer/token-data.js';
import { type BaseTrainOptions, trainBase } from '../src/transformer/trainer.js';
import { MuseError } from '../src/util/errors.js';
import { hashTextEncoder, seededPatchTokenizer } from './helpers/seeded-codecs.js';

const config = transformerConfig('superres-tiny', {
  codebookSize: 16,
  grid: [8, 8],
  textDim: 8,
  textTokens: 6,
  lowres: { codebookSize: 16, grid: [4, 4] },
});
let data: TokenData;

async function* samples(n: number): AsyncGenerator<Sample> {
  const rng = new Rng(5);
  const words = ['red', 'green', 'blue', 'yellow'];
  for (let i = 0; i < n; i++) {
    // Blocky images, so the 16 px and 32 px grids are related (what super-res learns).
    const data = new Uint8Array(32 * 32 * 3);
    const colours = Array.from({ length: 16 }, () => [rng.int(256), rng.int(256), rng.int(256)]);
    for (let y = 0; y < 32; y++)
      for (let x = 0; x < 32; x++) data.set(colours[(y >> 3) * 4 + (x >> 3)], (y * 32 + x) * 3);
    yield { key: `s${i}`, image: { width: 32, height: 32, data }, captions: [`a ${words[i % 4]} thing`] };
  }
}

before(async () => {
  await initBackend();
  const out = mkdtempSync(join(tmpdir(), 'muse-sr-'));
  const tokenizer = seededPatchTokenizer(4, 16, 1);
  await encodeCache(samples(12), {
    out,
    grids: [
      { name: 'base', size: 16, tokenizer },
      { name: 'superres', size: 32, tokenizer },
    ],
    textEncoder: hashTextEncoder(8, 6),
    shardSize: 8,
    skip: new SkipReport(),
    quiet: true,
  });
  data = await loadTokenData(out);
});
after(() => shutdownBackend());

test('super-res: low-res tokens reach the logits; precomputed context = inline; every weight gets a gradient', () => {
  const p = initTransformer(config, new Rng(1));
  const rng = new Rng(2);
  const tokens = tf.tensor2d(
    Int32Array.from({ length: 2 * 64 }, () => rng.int(17)),
    [2, 64],
    'int32',
  );
  const lowA = tf.tensor2d(
    Int32Array.from({ length: 2 * 16 }, () => rng.int(16)),
    [2, 16],
    'int32',
  );
  const lowB = tf.tensor2d(
    Int32Array.from({ length: 2 * 16 }, () => rng.int(16)),
    [2, 16],
    'int32',
  );
  const text = tf.tensor3d(rng.normals(2 * 6 * 8), [2, 6, 8]);
  const lengths = Int32Array.from([3, 0]);
  const a = forward(p, config, tokens, text, lengths, lowA);
  const b = forward(p, config, tokens, text, lengths, lowB);
  assert.deepEqual(a.shape, [2, 64, 16]);
  assert.ok(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] > 1e-4, 'low-res tokens must change the prediction');
  const ctx = precomputeContext(p, config, text, lengths, lowA);
  assert.equal(ctx.bias.shape[3], 16 + 1 + 6);
  const viaContext = forward(p, config, tokens, ctx);
  assert.ok(tf.max(tf.abs(tf.sub(a, viaContext))).dataSync()[0] < 1e-5);
  const { grads, value } = namedGrads(() => tf.sum(tf.square(forward(p, config, tokens, text, lengths, lowA))), p);
  for (const name of Object.keys(p)) {
    if (name === 'tok_emb' || name === 'lowres.tok_emb') continue; // only the rows used get gradient
    assert.ok(tf.max(tf.abs(grads[name])).dataSync()[0] > 0, `${name} has no gradient`);
  }
  assert.ok(tf.max(tf.abs(grads['lowres.tok_emb'])).dataSync()[0] > 0);
  assert.throws(() => forward(p, config, tokens, text, lengths), /needs the low-res tokens/);
  assert.throws(
    () => transformerConfig('small', { codebookSize: 16, grid: [8, 8], lowres: { codebookSize: 16, grid: [4, 4] } }),
    MuseError,
  );
  assert.throws(() => transformerConfig('superres-tiny', { codebookSize: 16, grid: [8, 8] }), MuseError);
  tf.dispose([tokens, lowA, lowB, text, a, b, viaContext, value, ...contextTensors(ctx)]);
  tf.dispose([...Object.values(grads), ...Object.values(p)]);
});

test('each high-res position reads the low-res token it lies under (lowres.to_input starts at zero)', () => {
  const idx = Array.from(lowresIndex(config));
  assert.equal(idx.length, 64);
  for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) assert.equal(idx[y * 8 + x], (y >> 1) * 4 + (x >> 1));
  const p = initTransformer(config, new Rng(1));
  assert.equal(tf.max(tf.abs(p['lowres.to_input.w'])).dataSync()[0], 0);
  // With the projection set, changing one low-res token changes the input of exactly its 2×2 block.
  p['lowres.to_input.w'].assign(tf.eye(config.width));
  const text = tf.tensor3d(new Float32Array(6 * 8), [1, 6, 8]);
  const lowA = tf.tensor2d(new Int32Array(16).fill(3), [1, 16], 'int32');
  const lowB = tf.tensor2d(
    Int32Array.from({ length: 16 }, (_, i) => (i === 5 ? 7 : 3)),
    [1, 16],
    'int32',
  );
  const a = precomputeContext(p, config, text, Int32Array.of(0), lowA);
  const b = precomputeContext(p, config, text, Int32Array.of(0), lowB);
  assert.ok(a.lowresTerm && b.lowresTerm);
  const diff = tf.sum(tf.abs(tf.sub(a.lowresTerm, b.lowresTerm)), -1).dataSync();
  // Low-res token 5 is (row 1, col 1), self-attention spreads the change to every position a bit;
  // the directly aligned 2×2 block changes most.
  const block = [2 * 8 + 2, 2 * 8 + 3, 3 * 8 + 2, 3 * 8 + 3];
  const others = Array.from(diff).filter((_, i) => !block.includes(i));
  for (const i of block) assert.ok(diff[i] > Math.max(...others), `position ${i}`);
  tf.dispose([text, lowA, lowB, ...contextTensors(a), ...contextTensors(b), ...Object.values(p)]);
});

function options(out: string, extra: Partial<BaseTrainOptions> = {}): BaseTrainOptions {
  return {
    out,
    config,
    data,
    validation: data,
    grid: 'superres',
    lowGrid: 'base',
    steps: 60,
    batch: 8,
    lr: 3e-3,
    warmup: 5,
    weightDecay: 0.045,
    labelSmoothing: 0,
    textDropout: 0.1,
    ema: 0,
    seed: 0,
    evalEvery: 30,
    checkpointEvery: 0,
    resume: false,
    quiet: true,
    ...extra,
  };
}

test('super-res trainer: validation loss falls, weights saved as a muse-superres file; low-res noise trains too', async () => {
  const out = mkdtempSync(join(tmpdir(), 'muse-sr-run-'));
  const r = await trainBase(options(out));
  assert.equal(r.history.eval.length, 2);
  assert.ok(r.history.eval[1].loss < r.history.eval[0].loss, JSON.stringify(r.history.eval));
  const first = r.history.train[0].loss;
  assert.ok(r.history.eval[1].loss < first - 0.5, `loss ${first} → ${r.history.eval[1].loss}`);
  const saved = await loadTransformer(join(out, 'superres.safetensors'));
  assert.equal(saved.metadata.kind, 'muse-superres');
  assert.deepEqual(saved.config.lowres, config.lowres);
  const noisy = await trainBase(
    options(mkdtempSync(join(tmpdir(), 'muse-sr-noise-')), { steps: 10, lowresNoise: 0.3 }),
  );
  assert.ok(Number.isFinite(noisy.history.eval[0].loss));
  await assert.rejects(trainBase(options(out, { lowGrid: 'nothing' })), /low-res token grid/);
  // A checkpoint from before lowres.to_input existed warm-starts with it at zero.
  const { tensors, metadata } = await loadSafetensors(join(out, 'superres.safetensors'));
  delete tensors['lowres.to_input.w'];
  delete tensors['lowres.to_input.b'];
  const old = join(out, 'old.safetensors');
  await saveSafetensors(old, tensors, { metadata });
  await assert.rejects(loadTransformer(old), /lowres\.to_input\.w" is missing/);
  const warm = await trainBase(options(mkdtempSync(join(tmpdir(), 'muse-sr-warm-')), { steps: 2, init: old }));
  assert.equal(warm.step, 2);
});

test("super-res reading the tokenizer's code vectors: they reach the logits, stay frozen through training, and are saved", async () => {
  const codeConfig = { ...config, lowres: { ...(config.lowres as NonNullable<typeof config.lowres>), codeDim: 3 } };
  // Hand-made codes: code i is (i, −i, 1)/16, so two different low-res grids give different inputs.
  const codes = Float32Array.from({ length: 16 * 3 }, (_, k) => [Math.floor(k / 3), -Math.floor(k / 3), 1][k % 3] / 16);
  const out = mkdtempSync(join(tmpdir(), 'muse-sr-codes-'));
  await assert.rejects(
    trainBase(options(out, { config: codeConfig, steps: 2 })),
    /reads the low-res tokenizer's codes: 48 values needed, got none/,
  );
  const r = await trainBase(options(out, { config: codeConfig, lowresCodebook: codes, steps: 40, evalEvery: 20 }));
  assert.ok(r.history.eval[1].loss < r.history.eval[0].loss, JSON.stringify(r.history.eval));
  const saved = await loadTransformer(join(out, 'superres.safetensors'));
  assert.deepEqual(saved.config.lowres, codeConfig.lowres);
  assert.ok(!('lowres.tok_emb' in saved.params), 'no learnt low-res embedding beside the codes');
  // Frozen: bit-identical to the codes given (F32 in the run folder's checkpoint file).
  const kept = saved.params['lowres.codebook'].dataSync();
  for (let i = 0; i < codes.length; i++) assert.ok(Math.abs(kept[i] - codes[i]) < 1e-3, `code value ${i}`);
  const proj = saved.params['lowres.code_proj.w'].dataSync();
  assert.ok(
    proj.some((v) => Math.abs(v) > 0.03),
    'the projection trained (init std 0.02)',
  );
  // The codes are read: swapping two codes' vectors changes the logits of a grid that uses them.
  const low = tf.tensor2d(
    Int32Array.from({ length: 16 }, (_, i) => i % 2),
    [1, 16],
    'int32',
  );
  const tokens = tf.fill([1, 64], 16, 'int32') as tf.Tensor2D;
  const text = tf.zeros([1, 6, 8]) as tf.Tensor3D;
  const before = forward(saved.params, codeConfig, tokens, text, Int32Array.of(6), low).dataSync();
  const swapped = Float32Array.from(kept);
  swapped.set(kept.slice(3, 6), 0);
  swapped.set(kept.slice(0, 3), 3);
  saved.params['lowres.codebook'].assign(tf.tensor2d(swapped, [16, 3]));
  const after = forward(saved.params, codeConfig, tokens, text, Int32Array.of(6), low).dataSync();
  assert.ok(
    before.some((v, i) => Math.abs(v - after[i]) > 1e-4),
    'logits depend on the code vectors',
  );
});

test("neighbour targets: each code's nearest codes get the most mass (a hand-worked 1-D codebook)", () => {
  // Codes at 0, 1, 3 and 10 on a line: squared distances to the nearest other code 1, 1, 4, 49 → mean 13.75.
  const q = codeNeighbours({ data: Float32Array.from([0, 1, 3, 10]), dim: 1 }, 1);
  // Row 0: distances² 1, 9, 100 to codes 1, 2, 3 → weights exp(−(d − 1)/13.75) = 1, e^(−8/13.75), e^(−99/13.75).
  const w = [1, Math.exp(-8 / 13.75), Math.exp(-99 / 13.75)];
  const sum = w[0] + w[1] + w[2];
  [0, ...w.map((x) => x / sum)].forEach((want, k) => assert.ok(Math.abs(q[k] - want) < 1e-6, `q[0][${k}] = ${q[k]}`));
  for (let a = 0; a < 4; a++) {
    assert.equal(q[a * 4 + a], 0, 'no mass on the target itself');
    const row = Array.from(q.subarray(a * 4, a * 4 + 4));
    assert.ok(Math.abs(row.reduce((x, y) => x + y, 0) - 1) < 1e-6, 'a distribution');
  }
  assert.ok(q[3 * 4 + 2] > q[3 * 4 + 1] && q[3 * 4 + 1] > q[3 * 4 + 0], 'code 10: 3 nearest, then 1, then 0');
  // A higher temperature spreads the mass: the far code gets more.
  const wide = codeNeighbours({ data: Float32Array.from([0, 1, 3, 10]), dim: 1 }, 10);
  assert.ok(wide[3] > q[3]);
  assert.throws(() => codeNeighbours({ data: new Float32Array(4), dim: 1 }, 0), /temperature must be > 0/);
});

test('the super-res trainer takes neighbour targets (label smoothing toward near codes)', async () => {
  const vectors = {
    data: Float32Array.from({ length: 16 * 2 }, (_, k) => (k % 2 ? Math.sin(k) : Math.floor(k / 2))),
    dim: 2,
  };
  const neighbours = codeNeighbours(vectors, 1);
  const run = (extra: Partial<BaseTrainOptions>) =>
    trainBase(
      options(mkdtempSync(join(tmpdir(), 'muse-sr-nb-')), { steps: 3, evalEvery: 3, labelSmoothing: 0.3, ...extra }),
    );
  const plain = await run({});
  const near = await run({ neighbourTargets: neighbours });
  assert.ok(Number.isFinite(near.history.train[0].loss));
  assert.notEqual(near.history.train[0].loss, plain.history.train[0].loss, 'the smoothing target changed the loss');
});

test("a tokenizer's code vectors as the super-res stage reads them: the decoder's view, at unit RMS", () => {
  const raw = [3, 4, 0, 0, 0, 2]; // two codes of dimension 3
  const params = { 'quant.codebook': tf.variable(tf.tensor2d(raw, [2, 3])) };
  const base = { codeDim: 3 } as TokenizerConfig;
  // l2 lookup: rows (0.6, 0.8, 0) and (0, 0, 1), already at RMS √(2/6).
  const l2 = codeVectors(base, params).data;
  const s = Math.sqrt(3);
  assert.deepEqual(
    Array.from(l2, (v) => Number(v.toFixed(5))),
    [0.6 * s, 0.8 * s, 0, 0, 0, s].map((v) => Number(v.toFixed(5))),
  );
  // EMA lookup: the raw vectors, scaled by 1/RMS (RMS = √(29/6)).
  const ema = codeVectors({ ...base, quantizer: 'ema' }, params).data;
  const r = Math.sqrt(29 / 6);
  assert.deepEqual(
    Array.from(ema, (v) => Number(v.toFixed(5))),
    raw.map((v) => Number((v / r).toFixed(5))),
  );
  params['quant.codebook'].dispose();
});
