// `muse data build emoji|shapes`, `muse data preview DIR`.
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { builtSize } from '../data/build.js';
import { buildEmojiDataset } from '../data/build-emoji.js';
import { buildShapesDataset } from '../data/build-shapes.js';
import { encodeCache } from '../data/cache.js';
import { openDataset } from '../data/dataset.js';
import { EMOJI_STYLES, type EmojiStyle } from '../data/emoji.js';
import { type Sample, SkipReport } from '../data/sample.js';
import { imageGrid } from '../image/grid.js';
import { initBackend } from '../tensor/backend.js';
import { UseLiteEncoder } from '../text/use-lite.js';
import { VqTokenizer } from '../tokenizer/tokenizer.js';
import { MuseError } from '../util/errors.js';
import { checkOutputFile, makeFolder, writeFileAtomic } from '../util/files.js';
import { numberOption, subcommandHelp } from './options.js';

export const dataHelp = `Usage: muse data <build|preview|encode> ...

  muse data build emoji  --out DIR [--size 32] [--styles noto,twemoji,fluent] [--limit N]
      Renders every emoji of the installed Noto, Twemoji and Fluent flat packages at --size px on
      white, with several captions each, into DIR/{train,test_emoji,test_pair}/ (PNG + JSON) and
      writes DIR/dataset.json and DIR/ATTRIBUTION.md. test_emoji: emoji never seen in training;
      test_pair: emoji × style pairs never seen in training.

  muse data build shapes --out DIR [--size 32] [--train N] [--heldout N] [--seed S]
      Renders synthetic scenes of 1–4 coloured shapes with ground-truth captions (single object,
      two objects, counting, colours, position, attribute binding) into DIR/{train,heldout}/.

  muse data preview DIR [-n 48] [--columns 8] [-o preview.png]
      A contact sheet (PNG) of images and captions from any dataset: a built folder, a folder of
      images with .txt/.json captions, or WebDataset .tar shards.

  muse data encode DATASET --tokenizer FILE --out CACHE [--size 32] [--superres-size 64]
      [--superres-tokenizer FILE] [--shard-size 1024] [--captions N] [--max-tokens 24]
      Runs the VQ tokenizer and the frozen text encoder (USE-lite) once over a dataset and writes
      sharded token grids + per-token text embeddings, so transformer training streams tokens.
      With --superres-size, each image is also tokenized at that size (the super-res stage's
      targets). Resumable: run the same command again after an interruption.
      --queue redis://HOST:PORT: one job per input shard (each .tar, or each sub-folder of an image
      folder) for \`muse worker --queue URL --encode\` processes; each output shard is written
      atomically and once (shard-<input index>.safetensors), and the command waits for all, then
      writes cache.json (watch with \`muse queue status\`; run it again to resume or retry). Each
      input shard must fit one cache shard (--shard-size).`;

function positiveInt(value: string | undefined, name: string, fallback: number, max = 1e9): number {
  return numberOption(value, name, fallback, { min: 1, max, integer: true });
}

async function build(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      out: { type: 'string', short: 'o' },
      size: { type: 'string' },
      styles: { type: 'string' },
      limit: { type: 'string' },
      train: { type: 'string' },
      heldout: { type: 'string' },
      seed: { type: 'string' },
    },
  });
  const kind = positionals[0];
  if (kind !== 'emoji' && kind !== 'shapes')
    throw new MuseError(`muse data build takes "emoji" or "shapes", got "${kind ?? ''}"`);
  if (!values.out) throw new MuseError('--out DIR is required');
  const size = positiveInt(values.size, 'size', 32, 1024);
  const t0 = performance.now();
  if (kind === 'emoji') {
    const styles = values.styles?.split(',').map((s) => s.trim()) as EmojiStyle[] | undefined;
    for (const s of styles ?? []) {
      if (!EMOJI_STYLES.includes(s))
        throw new MuseError(`unknown style "${s}": choose from ${EMOJI_STYLES.join(', ')}`);
    }
    const r = await buildEmojiDataset({
      size,
      out: values.out,
      styles,
      limit: values.limit ? positiveInt(values.limit, 'limit', 0) : undefined,
    });
    console.log(`${r.emoji} emoji at ${size} px in ${((performance.now() - t0) / 1000).toFixed(1)} s → ${values.out}`);
    printCounts(r.counts);
    console.log(r.skipped.summary());
  } else {
    const r = await buildShapesDataset({
      size,
      out: values.out,
      train: positiveInt(values.train, 'train', 20000),
      heldout: positiveInt(values.heldout, 'heldout', 2000),
      seed: values.seed === undefined ? 0 : Number(values.seed),
    });
    console.log(`shapes at ${size} px in ${((performance.now() - t0) / 1000).toFixed(1)} s → ${values.out}`);
    printCounts(r.counts);
  }
  return 0;
}

function printCounts(counts: Record<string, Record<string, number>>): void {
  const columns = Object.keys(Object.values(counts)[0] ?? {});
  // Each column as wide as its name (at least 7), one space apart.
  const width = (c: string) => Math.max(7, c.length) + 1;
  console.log(`${'split'.padEnd(12)}${columns.map((c) => c.padStart(width(c))).join('')}${'total'.padStart(8)}`);
  for (const [split, row] of Object.entries(counts)) {
    const total = Object.values(row).reduce((a, b) => a + b, 0);
    console.log(
      `${split.padEnd(12)}${columns.map((c) => String(row[c] ?? 0).padStart(width(c))).join('')}${String(total).padStart(8)}`,
    );
  }
}

async function preview(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      n: { type: 'string', short: 'n' },
      columns: { type: 'string' },
      out: { type: 'string', short: 'o' },
      size: { type: 'string' },
    },
  });
  const path = positionals[0];
  if (!path) throw new MuseError('muse data preview needs a dataset path');
  const n = positiveInt(values.n, 'n', 48, 1000);
  const size = positiveInt(values.size, 'size', builtSize(path) ?? 64, 1024);
  checkOutputFile(values.out ?? 'preview.png');
  const skip = new SkipReport();
  const items: Sample[] = [];
  for await (const s of openDataset(path, { size, skip })) {
    items.push(s);
    if (items.length >= n) break;
  }
  if (items.length === 0) throw new MuseError(`${path}: no readable samples (${skip.summary()})`);
  const out = values.out ?? 'preview.png';
  const png = await imageGrid(
    items.map((s) => ({ image: s.image, caption: s.captions[0] })),
    { columns: positiveInt(values.columns, 'columns', 8, 64), title: `${path} — first ${items.length} samples` },
  );
  writeFileAtomic(out, png);
  console.log(`wrote ${out} (${items.length} samples)`);
  if (skip.total) console.log(skip.summary());
  return 0;
}

async function encode(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      tokenizer: { type: 'string' },
      'superres-tokenizer': { type: 'string' },
      out: { type: 'string', short: 'o' },
      size: { type: 'string' },
      'superres-size': { type: 'string' },
      'shard-size': { type: 'string' },
      captions: { type: 'string' },
      'max-tokens': { type: 'string' },
      queue: { type: 'string' },
    },
  });
  const path = positionals[0];
  if (!path) throw new MuseError('muse data encode needs a dataset path');
  if (values.queue !== undefined) return encodeOnQueue(path, values as Record<string, string | undefined>);
  if (!values.tokenizer) throw new MuseError('--tokenizer FILE.safetensors is required (from `muse tokenizer train`)');
  if (!values.out) throw new MuseError('--out CACHE_FOLDER is required');
  for (const f of [values.tokenizer, values['superres-tokenizer']])
    if (f && !existsSync(f)) throw new MuseError(`no such file: ${f}`);
  const size = positiveInt(values.size, 'size', builtSize(path) ?? 32, 1024);
  const srSize = values['superres-size'] ? positiveInt(values['superres-size'], 'superres-size', 64, 2048) : undefined;
  makeFolder(values.out);
  await initBackend();
  const base = await VqTokenizer.load(values.tokenizer);
  const sr = values['superres-tokenizer'] ? await VqTokenizer.load(values['superres-tokenizer']) : base;
  const grids = [{ name: 'base', size, tokenizer: base }];
  if (srSize) grids.push({ name: 'superres', size: srSize, tokenizer: sr });
  const text = await UseLiteEncoder.load({ maxTokens: positiveInt(values['max-tokens'], 'max-tokens', 24, 512) });
  const skip = new SkipReport();
  const readSize = Math.max(...grids.map((g) => g.size));
  const t0 = performance.now();
  const m = await encodeCache(openDataset(path, { size: readSize, skip }), {
    out: values.out,
    grids,
    textEncoder: text,
    shardSize: positiveInt(values['shard-size'], 'shard-size', 1024),
    captionsPerImage: values.captions ? positiveInt(values.captions, 'captions', 0) : undefined,
    skip,
  });
  const images = m.shards.reduce((a, s) => a + s.images, 0);
  const pairs = m.shards.reduce((a, s) => a + s.pairs, 0);
  console.log(
    `${images} images, ${pairs} (image, caption) pairs in ${m.shards.length} shards → ${values.out} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
  console.log(skip.summary());
  return 0;
}

/** `muse data encode --queue`: the shards go to workers; this process queues them, waits, writes cache.json. */
async function encodeOnQueue(path: string, values: Record<string, string | undefined>): Promise<number> {
  const url = values.queue as string;
  const tokenizer = values.tokenizer as string;
  const out = values.out as string;
  const { redisOptions } = await import('../queue/connection.js');
  redisOptions(url);
  makeFolder(out);
  const { runQueuedEncode } = await import('../queue/encode.js');
  const t0 = performance.now();
  let last = -1;
  const m = await runQueuedEncode({
    url,
    dataset: path,
    out,
    tokenizer,
    superresTokenizer: values['superres-tokenizer'],
    size: positiveInt(values.size, 'size', builtSize(path) ?? 32, 1024),
    superresSize: values['superres-size'] ? positiveInt(values['superres-size'], 'superres-size', 64, 2048) : undefined,
    shardSize: positiveInt(values['shard-size'], 'shard-size', 1024),
    captions: values.captions ? positiveInt(values.captions, 'captions', 0) : undefined,
    maxTokens: positiveInt(values['max-tokens'], 'max-tokens', 24, 512),
    onProgress: (done, total) => {
      if (done !== last) console.error(`encode: ${done}/${total} shards done`);
      last = done;
    },
  });
  const images = m.shards.reduce((a, s) => a + s.images, 0);
  const pairs = m.shards.reduce((a, s) => a + s.pairs, 0);
  console.log(
    `${images} images, ${pairs} (image, caption) pairs in ${m.shards.length} shards → ${out} (${((performance.now() - t0) / 1000).toFixed(1)} s, on the queue)`,
  );
  return 0;
}

export async function dataCommand(args: string[]): Promise<number> {
  const help = subcommandHelp(args, dataHelp);
  if (help !== undefined) return help;
  const [sub, ...rest] = args;
  if (sub === 'build') return build(rest);
  if (sub === 'preview') return preview(rest);
  if (sub === 'encode') return encode(rest);
  throw new MuseError(`unknown data command "${sub}": choose build, preview or encode`);
}
