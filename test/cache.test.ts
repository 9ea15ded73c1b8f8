// Token caches: contents, caption de-duplication, exact resume after an interruption, bad setups.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type CacheGrid, encodeCache, loadCacheShard, readManifest } from '../src/data/cache.js';
import { type Sample, SkipReport } from '../src/data/sample.js';
import type { RgbImage } from '../src/image/image.js';
import { hashTextEncoder, seededPatchTokenizer } from './helpers/seeded-codecs.js';

function solid(size: number, r: number, g: number, b: number): RgbImage {
  const data = new Uint8Array(size * size * 3);
  for (let i = 0; i < data.length; i += 3) data.set([r, g, b], i);
  return { width: size, height: size, data };
}

const colours: Array<[string, number, number, number]> = [
  ['red', 230, 20, 20],
  ['green', 20, 200, 40],
  ['blue', 20, 40, 220],
];

async function* samples(n: number, failAt = -1): AsyncGenerator<Sample> {
  for (let i = 0; i < n; i++) {
    if (i === failAt) throw new Error('interrupted');
    const [name, r, g, b] = colours[i % 3];
    yield {
      key: `s${i}`,
      image: solid(16, r, g, b),
      captions: i === 4 ? ['  '] : [`a ${name} square`, `${name} square`],
    };
  }
}

const grids = (): CacheGrid[] => [
  { name: 'base', size: 8, tokenizer: seededPatchTokenizer(4, 16, 1) },
  { name: 'superres', size: 16, tokenizer: seededPatchTokenizer(4, 16, 2) },
];

test('a cache holds both token grids, deduplicated captions and (image, caption) pairs', async () => {
  const out = mkdtempSync(join(tmpdir(), 'muse-cache-'));
  const skip = new SkipReport();
  const m = await encodeCache(samples(10), {
    out,
    grids: grids(),
    textEncoder: hashTextEncoder(6, 4),
    shardSize: 4,
    skip,
    quiet: true,
  });
  assert.equal(m.complete, true);
  assert.equal(m.samplesRead, 10);
  assert.deepEqual(
    m.grids.map((g) => g.grid),
    [
      [2, 2],
      [4, 4],
    ],
  );
  assert.equal(skip.counts()['no caption'], 1, 'the blank caption is skipped and counted');
  assert.deepEqual(
    m.shards.map((s) => s.images),
    [4, 4, 1],
  );
  const s0 = await loadCacheShard(out, 0);
  assert.deepEqual(s0.keys, ['s0', 's1', 's2', 's3']);
  assert.equal(s0.tokens.base.length, 4 * 2 * 2);
  assert.equal(s0.tokens.superres.length, 4 * 4 * 4);
  // s0 and s3 are both red: same tokens, and their captions are stored once.
  assert.deepEqual(Array.from(s0.tokens.base.slice(0, 4)), Array.from(s0.tokens.base.slice(12, 16)));
  assert.equal(s0.texts.length, 6);
  assert.equal(s0.pairImage.length, 8);
  const red = s0.texts.indexOf('a red square');
  assert.deepEqual([...s0.pairText].filter((t) => t === red).length, 2);
  assert.deepEqual(Array.from(s0.textLength.slice(red, red + 1)), [3]);
  // Embeddings survive F16 within its precision and are zero past the length.
  const enc = await hashTextEncoder(6, 4).encode(['a red square']);
  for (let j = 0; j < 24; j++)
    assert.ok(Math.abs(s0.text[red * 24 + j] - enc.embeddings[j]) < 5e-3 * (1 + Math.abs(enc.embeddings[j])));
});

test('an interrupted encode resumes after its last shard and ends identical to an uninterrupted one', async () => {
  const whole = mkdtempSync(join(tmpdir(), 'muse-cache-'));
  await encodeCache(samples(11), {
    out: whole,
    grids: grids(),
    textEncoder: hashTextEncoder(6, 4),
    shardSize: 3,
    skip: new SkipReport(),
    quiet: true,
  });
  const broken = mkdtempSync(join(tmpdir(), 'muse-cache-'));
  const opts = { out: broken, grids: grids(), textEncoder: hashTextEncoder(6, 4), shardSize: 3, quiet: true };
  await assert.rejects(encodeCache(samples(11, 8), { ...opts, skip: new SkipReport() }), /interrupted/);
  const partial = readManifest(broken);
  assert.equal(partial.complete, false);
  assert.equal(partial.shards.length, 2);
  await encodeCache(samples(11), { ...opts, skip: new SkipReport() });
  assert.deepEqual(readManifest(broken).shards, readManifest(whole).shards);
  for (let i = 0; i < readManifest(whole).shards.length; i++) {
    const [a, b] = [await loadCacheShard(whole, i), await loadCacheShard(broken, i)];
    assert.deepEqual(a.keys, b.keys);
    assert.deepEqual(a.tokens, b.tokens);
    assert.deepEqual(a.text, b.text);
  }
  assert.deepEqual(
    readdirSync(broken).filter((f) => f.includes('.tmp')),
    [],
  );
});

test('resuming with another tokenizer, and a size the tokenizer cannot divide, are clear errors', async () => {
  const out = mkdtempSync(join(tmpdir(), 'muse-cache-'));
  await assert.rejects(
    encodeCache(samples(2, 1), {
      out,
      grids: grids(),
      textEncoder: hashTextEncoder(6, 4),
      shardSize: 1,
      skip: new SkipReport(),
      quiet: true,
    }),
  );
  const other = [{ name: 'base', size: 8, tokenizer: seededPatchTokenizer(4, 16, 9) }];
  await assert.rejects(
    encodeCache(samples(2), {
      out,
      grids: other,
      textEncoder: hashTextEncoder(6, 4),
      shardSize: 1,
      skip: new SkipReport(),
      quiet: true,
    }),
    /other tokenizers/,
  );
  const bad = [{ name: 'base', size: 10, tokenizer: seededPatchTokenizer(4, 16, 1) }];
  await assert.rejects(
    encodeCache(samples(2), {
      out: mkdtempSync(join(tmpdir(), 'muse-cache-')),
      grids: bad,
      textEncoder: hashTextEncoder(6, 4),
      skip: new SkipReport(),
      quiet: true,
    }),
    /not a multiple/,
  );
  assert.throws(() => readManifest(tmpdir()), /not a token cache/);
});
