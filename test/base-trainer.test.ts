// The base transformer's trainer: streams a token cache, learns, resumes exactly, refuses caches
// that do not fit the model.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { encodeCache } from '../src/data/cache.js';
import type { Sample } from '../src/data/sample.js';
import { SkipReport } from '../src/data/sample.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { Rng } from '../src/tensor/random.js';
import { loadTransformer } from '../src/transformer/checkpoint.js';
import { transformerConfig } from '../src/transformer/config.js';
import { loadTokenData, type TokenData } from '../src/transformer/token-data.js';
import { type BaseTrainOptions, trainBase } from '../src/transformer/trainer.js';
import { hashTextEncoder, seededPatchTokenizer } from './helpers/seeded-codecs.js';

let data: TokenData;

async function* samples(n: number): AsyncGenerator<Sample> {
  const rng = new Rng(3);
  const words = ['red', 'green', 'blue', 'yellow'];
  for (let i = 0; i < n; i++) {
    const data = new Uint8Array(16 * 16 * 3);
    for (let j = 0; j < data.length; j++) data[j] = rng.int(256);
    yield { key: `s${i}`, image: { width: 16, height: 16, data }, captions: [`a ${words[i % 4]} thing number ${i}`] };
  }
}

before(async () => {
  await initBackend();
  const out = mkdtempSync(join(tmpdir(), 'muse-base-'));
  await encodeCache(samples(12), {
    out,
    grids: [{ name: 'base', size: 16, tokenizer: seededPatchTokenizer(4, 16, 1) }],
    textEncoder: hashTextEncoder(8, 6),
    shardSize: 5,
    skip: new SkipReport(),
    quiet: true,
  });
  data = await loadTokenData(out);
});
after(() => shutdownBackend());

function options(out: string, extra: Partial<BaseTrainOptions> = {}): BaseTrainOptions {
  return {
    out,
    config: transformerConfig('tiny', { codebookSize: 16, grid: [4, 4], textDim: 8, textTokens: 6 }),
    data,
    validation: data,
    grid: 'base',
    steps: 8,
    batch: 4,
    lr: 3e-3,
    warmup: 2,
    weightDecay: 0.045,
    labelSmoothing: 0.1,
    textDropout: 0.1,
    ema: 0.9,
    seed: 5,
    evalEvery: 4,
    checkpointEvery: 0,
    resume: false,
    quiet: true,
    ...extra,
  };
}

test('the token cache loads whole: every shard, pair and text', () => {
  assert.equal(data.images, 12);
  assert.equal(data.pairImage.length, 12);
  assert.equal(data.tokens.base.length, 12 * 16);
  assert.equal(data.texts.length, 12);
  assert.equal(data.keys[7], 's7');
  assert.equal(data.texts[data.pairText[7]], 'a yellow thing number 7');
});

test('training lowers the validation loss and writes weights, EMA weights and a curve', async () => {
  const out = mkdtempSync(join(tmpdir(), 'muse-base-'));
  const r = await trainBase(options(out, { steps: 120, evalEvery: 60 }));
  assert.equal(r.history.eval.length, 2);
  const first = await trainBase(options(mkdtempSync(join(tmpdir(), 'muse-base-')), { steps: 1, evalEvery: 1, ema: 0 }));
  assert.ok(
    r.history.eval[1].loss < first.history.eval[0].loss,
    `${r.history.eval[1].loss} vs ${first.history.eval[0].loss}`,
  );
  const loaded = await loadTransformer(join(out, 'base-ema.safetensors'));
  assert.equal(loaded.config.codebookSize, 16);
});

test('an interrupted run resumes exactly', async () => {
  const whole = mkdtempSync(join(tmpdir(), 'muse-base-'));
  const counts: number[] = [];
  await trainBase(options(whole, { onStep: () => counts.push(tf.memory().numTensors) }));
  assert.equal(new Set(counts).size, 1, `no tensor leaks: ${counts}`);
  const parts = mkdtempSync(join(tmpdir(), 'muse-base-'));
  const stopped = await trainBase(options(parts, { minutes: 0 }));
  assert.deepEqual([stopped.step, stopped.stoppedEarly], [1, true]);
  const resumed = await trainBase(options(parts, { resume: true }));
  assert.equal(resumed.step, 8);
  for (const file of ['base.safetensors', 'base-ema.safetensors']) {
    const a = await loadTransformer(join(whole, file));
    const b = await loadTransformer(join(parts, file));
    for (const k of Object.keys(a.params))
      assert.deepEqual(Array.from(b.params[k].dataSync()), Array.from(a.params[k].dataSync()), `${file} ${k}`);
  }
});

test('a cache that does not fit the model is a clear error', async () => {
  const out = mkdtempSync(join(tmpdir(), 'muse-base-'));
  const wrongGrid = transformerConfig('tiny', { codebookSize: 16, grid: [8, 8], textDim: 8, textTokens: 6 });
  await assert.rejects(trainBase(options(out, { config: wrongGrid })), /grid 4×4 but the model expects 8×8/);
  const wrongText = transformerConfig('tiny', { codebookSize: 16, grid: [4, 4], textDim: 512, textTokens: 24 });
  await assert.rejects(trainBase(options(out, { config: wrongText })), /text embeddings 6×8/);
});
