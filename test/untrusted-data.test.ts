// Hardening: dataset writers keep to their readers' limits, and readers of folders, shards and
// caches take nothing they cannot trust: only regular files inside a dataset folder (anything else
// skipped and reported), tar members over a limit skipped while streaming, cache indices checked.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import {
  type CacheGrid,
  encodeCache,
  loadCacheShard,
  MAX_CAPTION_BYTES,
  MAX_KEY_BYTES,
  readManifest,
} from '../src/data/cache.js';
import { readImageFolder } from '../src/data/folder.js';
import { type Sample, SkipReport } from '../src/data/sample.js';
import { MAX_MEMBER_BYTES, readTarEntries, readWebDataset, writeTar } from '../src/data/webdataset.js';
import type { RgbImage } from '../src/image/image.js';
import { loadSafetensors, saveSafetensors } from '../src/tensor/safetensors.js';
import { MuseError } from '../src/util/errors.js';
import { hashTextEncoder, seededPatchTokenizer } from './helpers/seeded-codecs.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'muse-untrusted-data-'));
  dirs.push(d);
  return d;
}

async function collect<T>(gen: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of gen) out.push(x);
  return out;
}

async function png(r: number): Promise<Uint8Array> {
  return new Uint8Array(
    await sharp({ create: { width: 8, height: 8, channels: 3, background: { r, g: 0, b: 0 } } })
      .png()
      .toBuffer(),
  );
}

function solid(size: number): RgbImage {
  return { width: size, height: size, data: new Uint8Array(size * size * 3).fill(100) };
}

const grids = (): CacheGrid[] => [{ name: 'base', size: 8, tokenizer: seededPatchTokenizer(4, 16, 1) }];

async function* samples(list: Array<{ key: string; captions: string[] }>): AsyncGenerator<Sample> {
  for (const s of list) yield { ...s, image: solid(8) };
}

// ---- cache writer and reader ----

test('a caption the shard reader would refuse is skipped and reported; the shard stays readable', async () => {
  const out = tempDir();
  const skip = new SkipReport();
  // 15 MB of control characters: 105 MB once escaped twice into the shard's header.
  const huge = '\u0001'.repeat(15_000_000);
  const m = await encodeCache(
    samples([
      { key: 'a', captions: ['a red square'] },
      { key: 'huge', captions: ['fine', huge] },
      { key: 'k'.repeat(MAX_KEY_BYTES + 1), captions: ['long key'] },
      { key: 'b', captions: ['a blue square'] },
    ]),
    { out, grids: grids(), textEncoder: hashTextEncoder(6, 4), shardSize: 8, skip, quiet: true },
  );
  assert.deepEqual(skip.counts(), {
    [`caption longer than ${MAX_CAPTION_BYTES} bytes`]: 1,
    [`key longer than ${MAX_KEY_BYTES} bytes`]: 1,
  });
  assert.deepEqual(skip.toJSON()[`caption longer than ${MAX_CAPTION_BYTES} bytes`], ['huge']);
  assert.notEqual(skip.summary(), 'no samples skipped');
  assert.equal(m.shards.length, 1);
  const shard = await loadCacheShard(out, 0);
  assert.deepEqual(shard.keys, ['a', 'b']);
  assert.deepEqual(shard.texts, ['a red square', 'a blue square']);
});

test('a shard whose keys and captions would outgrow its header budget is closed early', async () => {
  const out = tempDir();
  const skip = new SkipReport();
  // 60 KB of control characters each: 420 KB of header per sample, about 60 per 25 MB shard header.
  const list = Array.from({ length: 70 }, (_, i) => ({ key: `s${i}`, captions: [`${i}${'\u0002'.repeat(60_000)}`] }));
  const m = await encodeCache(samples(list), {
    out,
    grids: grids(),
    textEncoder: hashTextEncoder(6, 4),
    shardSize: 1000,
    skip,
    quiet: true,
  });
  assert.equal(skip.total, 0);
  assert.equal(m.shards.length, 2);
  assert.equal(m.shards[0].images + m.shards[1].images, 70);
  assert.equal(m.samplesRead, 70);
  const keys = [...(await loadCacheShard(out, 0)).keys, ...(await loadCacheShard(out, 1)).keys];
  assert.deepEqual(
    keys,
    list.map((s) => s.key),
  );
});

test('cache token ids, pair indices and text lengths out of range are refused on load', async () => {
  const out = tempDir();
  await encodeCache(
    samples([
      { key: 'a', captions: ['one', 'two'] },
      { key: 'b', captions: ['three'] },
    ]),
    { out, grids: grids(), textEncoder: hashTextEncoder(6, 4), shardSize: 8, skip: new SkipReport(), quiet: true },
  );
  const file = join(out, readManifest(out).shards[0].file);
  const good = await loadSafetensors(file);
  const corrupt = async (name: string, index: number, value: number, pattern: RegExp) => {
    const data = Int32Array.from(good.tensors[name].data);
    data[index] = value;
    await saveSafetensors(
      file,
      { ...good.tensors, [name]: { shape: good.tensors[name].shape, data } },
      { metadata: { ...good.metadata } },
    );
    await assert.rejects(loadCacheShard(out, 0), (err: unknown) => {
      assert.ok(err instanceof MuseError, String(err));
      assert.match(err.message, pattern);
      return true;
    });
  };
  await corrupt(
    'tokens.base',
    3,
    16,
    /tokens\.base\[3\] is 16, out of range \(codes of a 16-code tokenizer: 0 to 15\)/,
  );
  await corrupt('tokens.base', 0, -1, /tokens\.base\[0\] is -1, out of range/);
  await corrupt('pair_image', 2, 2, /pair_image\[2\] is 2, out of range \(the shard's 2 images: 0 to 1\)/);
  await corrupt('pair_text', 1, 99, /pair_text\[1\] is 99, out of range \(the shard's 3 texts: 0 to 2\)/);
  await corrupt('text_length', 0, 7, /text_length\[0\] is 7, out of range/);
});

// ---- image folders ----

test('an image folder reads only regular files inside it; links out, FIFOs and devices are skipped and reported', {
  timeout: 60_000,
}, async () => {
  const dir = tempDir();
  const outside = tempDir();
  writeFileSync(join(outside, 'secret.txt'), 'a secret from outside');
  writeFileSync(join(outside, 'far.png'), await png(50));
  for (const stem of ['a', 'b', 'c', 'd', 'e', 'f']) writeFileSync(join(dir, `${stem}.txt`), `caption ${stem}`);
  writeFileSync(join(dir, 'a.png'), await png(10));
  writeFileSync(join(dir, 'b.png'), await png(20));
  // b's caption is a link out of the folder (it would put the secret into a cache).
  await rm(join(dir, 'b.txt'));
  symlinkSync(join(outside, 'secret.txt'), join(dir, 'b.txt'));
  symlinkSync('/dev/zero', join(dir, 'c.png'));
  execFileSync('mkfifo', [join(dir, 'd.png')]);
  symlinkSync(join(outside, 'far.png'), join(dir, 'e.png'));
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'sub', 'f.png'), await png(30));
  writeFileSync(join(dir, 'sub', 'f.txt'), 'caption f');
  symlinkSync('../a.png', join(dir, 'sub', 'g.png')); // inside the folder: fine
  writeFileSync(join(dir, 'sub', 'g.txt'), 'caption g');
  execFileSync('mkfifo', [join(dir, 'sub', 'h.png')]);
  symlinkSync(join(dir, 'sub', 'h.png'), join(dir, 'sub', 'i.png'));
  const skip = new SkipReport();
  const got = await collect(readImageFolder(dir, { size: 8, skip })); // a FIFO read would hang: the test's timeout
  assert.deepEqual(
    got.map((s) => [s.key, s.captions[0]]),
    [
      ['a.png', 'caption a'],
      ['sub/f.png', 'caption f'],
      ['sub/g.png', 'caption g'],
    ],
  );
  assert.deepEqual(skip.toJSON(), {
    'caption is a symbolic link out of the dataset folder': ['b.png'],
    'image is a symbolic link out of the dataset folder': ['c.png', 'e.png'],
    'image is a FIFO, not a regular file': ['d.png', 'sub/h.png'],
    'image is a symbolic link to a FIFO': ['sub/i.png'],
  });
  for (const s of got) assert.ok(!s.captions.join().includes('secret'));
});

// ---- WebDataset shards ----

test('tar members over the size limit are skipped while streaming, and their samples reported', async () => {
  const dir = tempDir();
  const small = join(dir, 'small.tar');
  await writeTar(small, [
    { name: '0001.png', data: await png(10) },
    { name: '0001.txt', data: new TextEncoder().encode('one') },
    { name: '0002.png', data: new Uint8Array(5000) },
    { name: '0002.txt', data: new TextEncoder().encode('two') },
    { name: '0003.png', data: await png(30) },
    { name: '0003.txt', data: new TextEncoder().encode('x'.repeat(5000)) },
    { name: '0004.png', data: await png(40) },
    { name: '0004.txt', data: new TextEncoder().encode('four') },
  ]);
  const skip = new SkipReport();
  const got = await collect(readWebDataset([small], { size: 8, skip, maxMemberBytes: 4096 }));
  assert.deepEqual(
    got.map((s) => s.key),
    ['0001', '0004'],
  );
  assert.deepEqual(skip.toJSON(), { 'file larger than 4096 bytes': [`${small}:0002`, `${small}:0003`] });
  await assert.rejects(collect(readTarEntries(small, { maxMemberBytes: 4096 })), (err: unknown) => {
    assert.ok(err instanceof MuseError);
    assert.match(err.message, /member "0002.png" is 5000 bytes, over the limit of 4096/);
    return true;
  });

  // The default limit on a small .tar.gz that expands to more than it.
  const big = join(dir, 'big.tar');
  await writeTar(big, [
    { name: 'big.png', data: new Uint8Array(MAX_MEMBER_BYTES + 1) },
    { name: 'big.txt', data: new TextEncoder().encode('big') },
    { name: 'ok.png', data: await png(10) },
    { name: 'ok.txt', data: new TextEncoder().encode('ok') },
  ]);
  const gz = join(dir, 'big.tar.gz');
  const { readFileSync } = await import('node:fs');
  writeFileSync(gz, gzipSync(readFileSync(big)));
  await rm(big);
  const skip2 = new SkipReport();
  const got2 = await collect(readWebDataset([gz], { size: 8, skip: skip2 }));
  assert.deepEqual(
    got2.map((s) => s.key),
    ['ok'],
  );
  assert.deepEqual(skip2.toJSON(), { [`file larger than ${MAX_MEMBER_BYTES} bytes`]: [`${gz}:big`] });
});
