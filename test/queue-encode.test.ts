// `muse data encode --queue`: a WebDataset of 8 shards encoded by 2 `muse worker --encode` processes
// over a real redis-server equals the single-process encode byte for byte (every shard file and
// cache.json); running the command again changes nothing (each shard is done once). Skipped only when
// /usr/bin/redis-server is missing.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { writeTar } from '../src/data/webdataset.js';
import { encodePng } from '../src/image/image.js';
import { shutdownBackend } from '../src/tensor/backend.js';
import { SKIP_REDIS, startWorker, stopChild, TestRedis, type TestWorker } from './helpers/redis.js';
import { runMuse } from './helpers/run-cli.js';

const SHARDS = 8;
const PER_SHARD = 4;
const COLOURS = ['red', 'green', 'blue', 'yellow', 'black', 'white', 'purple', 'orange'];

let redis: TestRedis | undefined;
let workers: TestWorker[] = [];
let dir = '';

before(async () => {
  if (SKIP_REDIS) return;
  dir = mkdtempSync(join(tmpdir(), 'muse-queue-encode-'));
  mkdirSync(join(dir, 'data'));
  for (let s = 0; s < SHARDS; s++) {
    const entries = [];
    for (let i = 0; i < PER_SHARD; i++) {
      const data = new Uint8Array(32 * 32 * 3);
      for (let p = 0; p < data.length; p++) data[p] = (p * (s + 3) + i * 71) % 256;
      const key = `s${s}-${i}`;
      entries.push({ name: `${key}.png`, data: await encodePng({ width: 32, height: 32, data }) });
      entries.push({
        name: `${key}.txt`,
        data: new TextEncoder().encode(`a ${COLOURS[(s + i) % COLOURS.length]} square ${i}`),
      });
    }
    await writeTar(join(dir, 'data', `shard-${String(s).padStart(4, '0')}.tar`), entries, { mtime: 0 });
  }
  redis = await TestRedis.start();
  workers = await Promise.all([1, 2].map(() => startWorker((redis as TestRedis).url, ['--encode'])));
});

after(async () => {
  await Promise.all(workers.map((w) => stopChild(w.child)));
  await redis?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  shutdownBackend();
});

function files(folder: string): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const f of readdirSync(folder)
    .filter((n) => !n.startsWith('.'))
    .sort())
    out[f] = readFileSync(join(folder, f));
  return out;
}

test('8 shards encoded by 2 queue workers equal the single-process encode byte for byte', {
  skip: SKIP_REDIS,
  timeout: 600_000,
}, async () => {
  const tokenizer = resolve('models/emoji/tokenizer.safetensors');
  const common = [join(dir, 'data'), '--tokenizer', tokenizer, '--size', '32', '--shard-size', String(PER_SHARD)];
  const queued = await runMuse(
    'data',
    'encode',
    ...common,
    '--out',
    join(dir, 'queued'),
    '--queue',
    (redis as TestRedis).url,
  );
  assert.equal(queued.code, 0, queued.err);
  assert.match(queued.out, /32 images, 32 \(image, caption\) pairs in 8 shards/);
  const single = await runMuse('data', 'encode', ...common, '--out', join(dir, 'single'));
  assert.equal(single.code, 0, single.err);
  const a = files(join(dir, 'single'));
  const b = files(join(dir, 'queued'));
  assert.deepEqual(Object.keys(b), Object.keys(a));
  assert.equal(Object.keys(a).length, SHARDS + 1);
  for (const name of Object.keys(a)) assert.ok(a[name].equals(b[name]), `${name} differs`);
  // Both workers took shards.
  for (const w of workers) assert.match(w.log(), /encode shard/, 'each worker encoded shards');
  // Again: every shard is done, nothing is queued or rewritten.
  const again = await runMuse(
    'data',
    'encode',
    ...common,
    '--out',
    join(dir, 'queued'),
    '--queue',
    (redis as TestRedis).url,
  );
  assert.equal(again.code, 0, again.err);
  const c = files(join(dir, 'queued'));
  for (const name of Object.keys(a)) assert.ok(a[name].equals(c[name]), `${name} differs after a re-run`);
  const status = await runMuse('queue', 'status', '--queue', (redis as TestRedis).url);
  assert.match(status.out, /encode\s+0\s+0\s+0\s+8\s+0/);
});
