// Dataset encoding on the queue (`muse data encode --queue`): one job per input shard (a WebDataset
// .tar, or a sub-folder of an image folder), any number of `muse worker --encode` processes.
//
// A job encodes its input shard with the same code as the single-process encode (src/data/cache.ts
// encodeCache) into a private temporary folder, then renames the one output shard into place
// (shard-<index>.safetensors: a rename is atomic, and a retried job writes the same bytes) and writes
// its done record (.shards/<index>.json, durably) last. A job whose done record exists returns it
// without work, so a retried or re-queued job never duplicates or corrupts output, and the run resumes
// where it stopped. When every shard is done, the coordinator writes cache.json as the single-process
// encode would: when every input shard holds --shard-size samples the whole cache is byte for byte the
// single-process one.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Job as BullJob, Queue, UnrecoverableError } from 'bullmq';
import { type CacheManifest, encodeCache } from '../data/cache.js';
import { openDataset } from '../data/dataset.js';
import { SkipReport } from '../data/sample.js';
import { expandShards } from '../data/webdataset.js';
import type { UseLiteEncoder } from '../text/use-lite.js';
import type { VqTokenizer } from '../tokenizer/tokenizer.js';
import { MuseError } from '../util/errors.js';
import { writeFileDurably } from '../util/files.js';
import { commandConnection, waitReady } from './connection.js';
import { BULL_PREFIX, ENCODE_QUEUE, type EncodedShard, type EncodeJobData, failureReason } from './protocol.js';

/** Loaded tokenizers and text encoders of a worker, by file (a worker encodes many shards). */
export type EncoderCache = Map<string, Promise<VqTokenizer | UseLiteEncoder>>;

const TAR = /\.(tar|tgz|tar\.gz)$/i;

export const shardName = (index: number) => `shard-${String(index).padStart(5, '0')}.safetensors`;
const doneFile = (out: string, index: number) => join(out, '.shards', `${String(index).padStart(5, '0')}.json`);

/**
 * The input shards of a dataset, in the order the single-process reader takes them: the .tar files of
 * a pattern, a file or a folder of tars; else the sub-folders of a folder (sorted), or the folder itself.
 */
export function inputShards(path: string): string[] {
  const info = existsSync(path) ? statSync(path) : undefined;
  if (!info) {
    const shards = expandShards(path);
    if (shards.length > 1 || shards[0] !== path) return shards.map((s) => resolve(s));
    throw new MuseError(`no such dataset: ${path}`);
  }
  if (info.isFile()) {
    if (!TAR.test(path)) throw new MuseError(`${path}: not a dataset (a .tar shard, a pattern or a folder)`);
    return [resolve(path)];
  }
  const entries = readdirSync(path, { withFileTypes: true })
    .filter((e) => !e.name.startsWith('.'))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const tars = entries.filter((e) => e.isFile() && TAR.test(e.name));
  if (tars.length) return tars.map((e) => resolve(path, e.name));
  const folders = entries.filter((e) => e.isDirectory());
  return folders.length ? folders.map((e) => resolve(path, e.name)) : [resolve(path)];
}

/** The setup a cache is made with (the manifest without its shard list), as a done record holds it. */
type Setup = Omit<CacheManifest, 'shards' | 'samplesRead' | 'complete'>;

interface DoneRecord extends EncodedShard {
  setup: Setup;
}

function readDone(out: string, index: number): DoneRecord | undefined {
  const file = doneFile(out, index);
  if (!existsSync(file)) return undefined;
  const d = JSON.parse(readFileSync(file, 'utf8')) as DoneRecord;
  // A done record whose shard is gone is not done.
  if (d.file && !existsSync(join(out, d.file))) return undefined;
  return d;
}

/** Encodes one input shard into out/shard-<index>.safetensors (see the file comment). */
export async function encodeShard(data: EncodeJobData, cache: EncoderCache): Promise<EncodedShard> {
  const done = readDone(data.out, data.index);
  if (done) {
    const { setup: _, ...shard } = done;
    return shard;
  }
  const { initBackend } = await import('../tensor/backend.js');
  await initBackend();
  const load = <T extends VqTokenizer | UseLiteEncoder>(key: string, f: () => Promise<T>): Promise<T> => {
    let p = cache.get(key);
    if (!p) {
      p = f();
      cache.set(key, p);
    }
    return p as Promise<T>;
  };
  const { VqTokenizer } = await import('../tokenizer/tokenizer.js');
  const { UseLiteEncoder } = await import('../text/use-lite.js');
  const base = await load(`tokenizer:${data.tokenizer}`, () => VqTokenizer.load(data.tokenizer));
  const sr = data.superresTokenizer
    ? await load(`tokenizer:${data.superresTokenizer}`, () => VqTokenizer.load(data.superresTokenizer as string))
    : base;
  const text = await load(`text:${data.maxTokens}`, () => UseLiteEncoder.load({ maxTokens: data.maxTokens }));
  const grids = [{ name: 'base', size: data.size, tokenizer: base }];
  if (data.superresSize) grids.push({ name: 'superres', size: data.superresSize, tokenizer: sr });
  const readSize = Math.max(...grids.map((g) => g.size));
  const skip = new SkipReport();
  mkdirSync(join(data.out, '.shards'), { recursive: true });
  const temp = join(data.out, `.tmp-${String(data.index).padStart(5, '0')}-${process.pid}-${Date.now()}`);
  try {
    const m = await encodeCache(openDataset(data.input, { size: readSize, skip }), {
      out: temp,
      grids,
      textEncoder: text,
      shardSize: data.shardSize,
      captionsPerImage: data.captions,
      skip,
      quiet: true,
    });
    if (m.shards.length > 1)
      throw new UnrecoverableError(
        failureReason(
          400,
          `${data.input} makes ${m.shards.length} cache shards: a queued encode makes one per input shard; give a \`shardSize\` of at least its ${m.shards.reduce((a, s) => a + s.images, 0)} samples`,
        ),
      );
    const s = m.shards[0];
    const file = s ? shardName(data.index) : undefined;
    if (s && file) renameSync(join(temp, s.file), join(data.out, file));
    const { shards: _s, samplesRead: _r, complete: _c, ...setup } = m;
    const record: DoneRecord = {
      index: data.index,
      file,
      images: s?.images ?? 0,
      pairs: s?.pairs ?? 0,
      texts: s?.texts ?? 0,
      samplesRead: m.samplesRead,
      skipped: skip.total,
      setup,
    };
    await writeFileDurably(doneFile(data.out, data.index), `${JSON.stringify(record, null, 2)}\n`);
    const { setup: _, ...shard } = record;
    return shard;
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
}

export interface QueuedEncodeOptions {
  url: string;
  dataset: string;
  out: string;
  tokenizer: string;
  superresTokenizer?: string;
  size: number;
  superresSize?: number;
  shardSize: number;
  captions?: number;
  maxTokens: number;
  attempts?: number;
  /** Called while waiting: shards done of all. */
  onProgress?: (done: number, total: number) => void;
  pollMs?: number;
}

/** Job id of shard `index` of the encode into `out` (the same on every run: re-queueing is idempotent). */
function encodeJobId(out: string, index: number): string {
  return `enc-${createHash('sha1').update(resolve(out)).digest('hex').slice(0, 12)}-${index}`;
}

/**
 * Queues one job per input shard that is not done yet, waits for all, and writes cache.json. Throws
 * a MuseError naming the shards that failed for good (they stay in the failed list; run again to retry).
 */
export async function runQueuedEncode(o: QueuedEncodeOptions): Promise<CacheManifest> {
  const out = resolve(o.out);
  const inputs = inputShards(o.dataset);
  mkdirSync(join(out, '.shards'), { recursive: true });
  const redis = commandConnection(o.url, 'muse-encode');
  const queue = new Queue<EncodeJobData, EncodedShard>(ENCODE_QUEUE, { connection: redis, prefix: BULL_PREFIX });
  queue.on('error', () => {});
  try {
    await waitReady(redis, o.url);
    const data = (index: number): EncodeJobData => ({
      index,
      input: inputs[index],
      out,
      tokenizer: resolve(o.tokenizer),
      ...(o.superresTokenizer ? { superresTokenizer: resolve(o.superresTokenizer) } : {}),
      size: o.size,
      ...(o.superresSize ? { superresSize: o.superresSize } : {}),
      shardSize: o.shardSize,
      ...(o.captions ? { captions: o.captions } : {}),
      maxTokens: o.maxTokens,
    });
    for (let i = 0; i < inputs.length; i++) {
      if (readDone(out, i)) continue;
      const id = encodeJobId(out, i);
      const old = await BullJob.fromId(queue, id);
      if (old) {
        const state = await old.getState();
        if (state === 'failed') {
          await old.retry('failed');
          continue;
        }
        if (state !== 'completed') continue; // waiting, delayed or active: it will be done
        await old.remove(); // completed, but its output is gone: encode it again
      }
      await queue.add('encode', data(i), {
        jobId: id,
        attempts: o.attempts ?? 3,
        backoff: { type: 'exponential', delay: 1000 },
        removeOnComplete: { age: 24 * 3600 },
        removeOnFail: { age: 7 * 24 * 3600 },
      });
    }
    for (;;) {
      let done = 0;
      const failed: string[] = [];
      for (let i = 0; i < inputs.length; i++) {
        if (readDone(out, i)) {
          done++;
          continue;
        }
        const job = await BullJob.fromId(queue, encodeJobId(out, i));
        if (job && (await job.getState()) === 'failed') failed.push(`${inputs[i]}: ${job.failedReason}`);
      }
      o.onProgress?.(done, inputs.length);
      if (done === inputs.length) break;
      if (failed.length && done + failed.length === inputs.length)
        throw new MuseError(
          `${failed.length} of ${inputs.length} shards failed (run the same command again to retry them): ${failed.join('; ')}`,
        );
      await new Promise((r) => setTimeout(r, o.pollMs ?? 500));
    }
    const records = inputs.map((_, i) => readDone(out, i) as DoneRecord);
    const manifest: CacheManifest = {
      ...records[0].setup,
      shards: records
        .filter((r) => r.file)
        .map((r) => ({ file: r.file as string, images: r.images, pairs: r.pairs, texts: r.texts })),
      samplesRead: records.reduce((a, r) => a + r.samplesRead, 0),
      complete: true,
    };
    await writeFileDurably(join(out, 'cache.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    return manifest;
  } finally {
    await queue.close().catch(() => {});
    redis.disconnect();
  }
}
