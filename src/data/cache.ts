// Pre-encoded training caches (open-muse does the same): a tokenizer and a text encoder run once
// over a dataset; transformer training then streams token grids and text embeddings, not pixels.
//
// Layout: DIR/cache.json (manifest, rewritten after every shard) + DIR/shard-00000.safetensors ...
// Each shard holds up to `shardSize` images:
//   tokens.<name>   I32 [images, h, w]     one grid per tokenizer (e.g. base 32 px and super-res 64 px)
//   text            F16 [texts, T, D]      per-token embeddings of the shard's distinct captions
//   text_length     I32 [texts]            valid tokens of each
//   pair_image      I32 [pairs]            (image, caption) pairs: index into the images ...
//   pair_text       I32 [pairs]            ... and into the texts
// and its metadata holds the image keys and caption strings. Shards are written atomically; an
// interrupted run resumes after the last complete shard.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type RgbImage, resizeRgb } from '../image/image.js';
import { loadSafetensors, MAX_HEADER_BYTES, type NamedTensor, saveSafetensors } from '../tensor/safetensors.js';
import type { TextEncoderModel } from '../text/encoder.js';
import { MuseError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import type { Sample, SkipReport } from './sample.js';

/** Maps images to token grids. Implemented by the VQ tokenizer. */
export interface ImageTokenizer {
  /** Identity recorded in the cache (a resumed run must use the same tokenizer). */
  readonly id: string;
  /** Pixels per token along each side. */
  readonly downsample: number;
  readonly codebookSize: number;
  /** Token grids of same-sized images, [n · h · w] row-major. */
  encode(images: RgbImage[]): Promise<Int32Array>;
}

export type { TextEncoderModel };

export interface CacheGrid {
  /** Tensor name suffix, e.g. "base" or "superres". */
  name: string;
  /** Image side fed to this tokenizer. */
  size: number;
  tokenizer: ImageTokenizer;
}

export interface CacheManifest {
  format: 'muse-ts-cache';
  version: 1;
  grids: Array<{ name: string; size: number; tokenizer: string; grid: [number, number]; codebookSize: number }>;
  textEncoder: { id: string; dim: number; maxTokens: number };
  captionsPerImage: number;
  shardSize: number;
  shards: Array<{ file: string; images: number; pairs: number; texts: number }>;
  /** Samples of the input read so far, including skipped ones (the resume point). */
  samplesRead: number;
  complete: boolean;
}

export interface EncodeOptions {
  out: string;
  grids: CacheGrid[];
  textEncoder: TextEncoderModel;
  shardSize?: number;
  /** Captions encoded per image (the first ones); default all. */
  captionsPerImage?: number;
  batchSize?: number;
  skip: SkipReport;
  quiet?: boolean;
  /** Expected number of samples, for the progress bar's ETA. */
  total?: number;
}

/**
 * The longest caption a cache stores, in UTF-8 bytes (the text encoder reads far fewer tokens than
 * this); a sample with a longer one is skipped with this reason, not written.
 */
export const MAX_CAPTION_BYTES = 64 * 1024;
/** The longest sample key a cache stores, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 4096;
/**
 * Bytes a shard's keys and captions may take in its safetensors header, a quarter of what the reader
 * accepts (MAX_HEADER_BYTES): a shard is closed early rather than written unreadable.
 */
export const SHARD_TEXT_BUDGET = MAX_HEADER_BYTES / 4;

/** Bytes a string takes in a shard header: JSON inside a JSON string (control characters grow 7×). */
function headerBytes(s: string): number {
  return Buffer.byteLength(JSON.stringify(JSON.stringify(s))) + 2;
}

/** A key short enough to list in a skip report. */
function shownKey(key: string): string {
  return key.length > 200 ? `${key.slice(0, 200)}…` : key;
}

/** Why a sample cannot go into a cache shard (so the reader would refuse it), or undefined. */
function tooLongForCache(key: string, captions: string[]): string | undefined {
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return `key longer than ${MAX_KEY_BYTES} bytes`;
  if (captions.some((c) => Buffer.byteLength(c) > MAX_CAPTION_BYTES))
    return `caption longer than ${MAX_CAPTION_BYTES} bytes`;
  return undefined;
}

function manifestFor(options: EncodeOptions): CacheManifest {
  return {
    format: 'muse-ts-cache',
    version: 1,
    grids: options.grids.map((g) => {
      const side = g.size / g.tokenizer.downsample;
      if (!Number.isInteger(side)) {
        throw new MuseError(
          `grid "${g.name}": size ${g.size} is not a multiple of the tokenizer's factor ${g.tokenizer.downsample}`,
        );
      }
      return {
        name: g.name,
        size: g.size,
        tokenizer: g.tokenizer.id,
        grid: [side, side],
        codebookSize: g.tokenizer.codebookSize,
      };
    }),
    textEncoder: { id: options.textEncoder.id, dim: options.textEncoder.dim, maxTokens: options.textEncoder.maxTokens },
    captionsPerImage: options.captionsPerImage ?? 0,
    shardSize: options.shardSize ?? 1024,
    shards: [],
    samplesRead: 0,
    complete: false,
  };
}

function sameSetup(a: CacheManifest, b: CacheManifest): boolean {
  const setup = (m: CacheManifest) => JSON.stringify([m.grids, m.textEncoder, m.captionsPerImage, m.shardSize]);
  return setup(a) === setup(b);
}

export function readManifest(dir: string): CacheManifest {
  const file = join(dir, 'cache.json');
  if (!existsSync(file)) throw new MuseError(`${dir}: not a token cache (no cache.json)`);
  let m: CacheManifest;
  try {
    m = JSON.parse(readFileSync(file, 'utf8')) as CacheManifest;
  } catch (err) {
    throw new MuseError(`${file}: unreadable (${(err as Error).message})`);
  }
  if (m.format !== 'muse-ts-cache' || m.version !== 1)
    throw new MuseError(`${file}: not a muse-ts cache manifest of version 1`);
  return m;
}

function writeManifest(dir: string, m: CacheManifest): void {
  const file = join(dir, 'cache.json');
  writeFileSync(`${file}.tmp`, `${JSON.stringify(m, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

interface PendingImage {
  key: string;
  images: RgbImage[];
  captions: string[];
}

async function writeShard(options: EncodeOptions, m: CacheManifest, batch: PendingImage[]): Promise<void> {
  const tensors: Record<string, NamedTensor> = {};
  const bs = options.batchSize ?? 32;
  for (let gi = 0; gi < options.grids.length; gi++) {
    const g = options.grids[gi];
    const [h, w] = m.grids[gi].grid;
    const tokens = new Int32Array(batch.length * h * w);
    for (let i = 0; i < batch.length; i += bs) {
      const part = await g.tokenizer.encode(batch.slice(i, i + bs).map((p) => p.images[gi]));
      if (part.length !== Math.min(bs, batch.length - i) * h * w) {
        throw new Error(
          `tokenizer ${g.tokenizer.id} returned ${part.length} tokens for ${Math.min(bs, batch.length - i)} images of ${h}×${w}`,
        );
      }
      tokens.set(part, i * h * w);
    }
    tensors[`tokens.${g.name}`] = { shape: [batch.length, h, w], data: tokens };
  }
  const texts: string[] = [];
  const textIndex = new Map<string, number>();
  const pairImage: number[] = [];
  const pairText: number[] = [];
  batch.forEach((p, i) => {
    for (const c of p.captions) {
      let t = textIndex.get(c);
      if (t === undefined) {
        t = texts.length;
        texts.push(c);
        textIndex.set(c, t);
      }
      pairImage.push(i);
      pairText.push(t);
    }
  });
  const { maxTokens: T, dim: D } = options.textEncoder;
  const text = new Float32Array(texts.length * T * D);
  const lengths = new Int32Array(texts.length);
  for (let i = 0; i < texts.length; i += bs) {
    const { embeddings, lengths: l } = await options.textEncoder.encode(texts.slice(i, i + bs));
    text.set(embeddings, i * T * D);
    lengths.set(l, i);
  }
  tensors.text = { shape: [texts.length, T, D], data: text, dtype: 'F16' };
  tensors.text_length = { shape: [texts.length], data: lengths };
  tensors.pair_image = { shape: [pairImage.length], data: Int32Array.from(pairImage) };
  tensors.pair_text = { shape: [pairText.length], data: Int32Array.from(pairText) };
  const file = `shard-${String(m.shards.length).padStart(5, '0')}.safetensors`;
  await saveSafetensors(join(options.out, file), tensors, {
    metadata: {
      format: 'muse-ts-cache-shard',
      keys: JSON.stringify(batch.map((p) => p.key)),
      texts: JSON.stringify(texts),
    },
  });
  m.shards.push({ file, images: batch.length, pairs: pairImage.length, texts: texts.length });
}

/**
 * Encodes samples into a cache at options.out. If a cache with the same tokenizers, text encoder
 * and shard size is there already, resumes after its last complete shard (the samples must come in
 * the same order, as every reader in src/data yields them). Returns the manifest.
 */
export async function encodeCache(samples: AsyncIterable<Sample>, options: EncodeOptions): Promise<CacheManifest> {
  mkdirSync(options.out, { recursive: true });
  let m = manifestFor(options);
  if (existsSync(join(options.out, 'cache.json'))) {
    const old = readManifest(options.out);
    if (!sameSetup(old, m)) {
      throw new MuseError(
        `${options.out} holds a cache made with other tokenizers, text encoder or shard size; choose another \`out\``,
      );
    }
    if (old.complete) return old;
    m = old;
  }
  const resumeAt = m.samplesRead;
  const progress = options.quiet
    ? undefined
    : new Progress({ total: options.total, label: 'encoding', unit: 'img', startAt: resumeAt });
  let read = 0;
  let batch: PendingImage[] = [];
  let batchText = 0;
  const perImage = options.captionsPerImage;
  for await (const s of samples) {
    read++;
    if (read <= resumeAt) continue;
    const captions = (perImage ? s.captions.slice(0, perImage) : s.captions).filter((c) => c.trim().length > 0);
    // The writer keeps to the reader's limits: a sample the shard reader would refuse is skipped, and
    // a shard whose header would grow past its budget is closed before this sample.
    const tooLong = captions.length === 0 ? undefined : tooLongForCache(s.key, captions);
    const text = tooLong ? 0 : headerBytes(s.key) + captions.reduce((n, c) => n + headerBytes(c), 0);
    if (captions.length === 0) {
      options.skip.add(s.key, 'no caption');
    } else if (tooLong) {
      options.skip.add(shownKey(s.key), tooLong);
    } else if (text > SHARD_TEXT_BUDGET) {
      options.skip.add(shownKey(s.key), `captions too long for a cache shard (over ${SHARD_TEXT_BUDGET} bytes)`);
    } else {
      if (batch.length > 0 && batchText + text > SHARD_TEXT_BUDGET) {
        await writeShard(options, m, batch);
        m.samplesRead = read - 1;
        writeManifest(options.out, m);
        batch = [];
        batchText = 0;
      }
      batchText += text;
      batch.push({
        key: s.key,
        captions,
        images: await Promise.all(options.grids.map((g) => resizeRgb(s.image, g.size))),
      });
    }
    progress?.tick();
    if (batch.length === m.shardSize) {
      await writeShard(options, m, batch);
      m.samplesRead = read;
      writeManifest(options.out, m);
      batch = [];
      batchText = 0;
    }
  }
  if (batch.length) await writeShard(options, m, batch);
  m.samplesRead = read;
  m.complete = true;
  writeManifest(options.out, m);
  progress?.finish();
  return m;
}

export interface CacheShard {
  keys: string[];
  texts: string[];
  tokens: Record<string, Int32Array>;
  grids: Record<string, [number, number]>;
  text: Float32Array;
  textLength: Int32Array;
  pairImage: Int32Array;
  pairText: Int32Array;
}

/** Loads one shard of a cache, checking it against the manifest. */
export async function loadCacheShard(dir: string, index: number): Promise<CacheShard> {
  const m = readManifest(dir);
  const entry = m.shards[index];
  if (!entry) throw new MuseError(`${dir}: no shard ${index} (the cache has ${m.shards.length})`);
  const file = join(dir, entry.file);
  const { tensors, metadata } = await loadSafetensors(file);
  const need = (name: string) => {
    const t = tensors[name];
    if (!t) throw new MuseError(`${file}: tensor "${name}" is missing`);
    return t;
  };
  /** A tensor of this shape and integer values in [0, limit): `what` names what they index. */
  const ints = (name: string, shape: number[], limit: number, what: string): Int32Array => {
    const t = need(name);
    if (t.shape.join() !== shape.join())
      throw new MuseError(`${file}: ${name} has shape [${t.shape}], expected [${shape}]`);
    if (!(t.data instanceof Int32Array)) throw new MuseError(`${file}: ${name} must hold integers`);
    for (let i = 0; i < t.data.length; i++) {
      const v = t.data[i];
      if (v < 0 || v >= limit)
        throw new MuseError(`${file}: ${name}[${i}] is ${v}, out of range (${what}: 0 to ${limit - 1})`);
    }
    return t.data;
  };
  const tokens: Record<string, Int32Array> = {};
  const grids: Record<string, [number, number]> = {};
  for (const g of m.grids) {
    const n = `tokens.${g.name}`;
    tokens[g.name] = ints(n, [entry.images, ...g.grid], g.codebookSize, `codes of a ${g.codebookSize}-code tokenizer`);
    grids[g.name] = g.grid;
  }
  const { maxTokens: T, dim: D } = m.textEncoder;
  const text = need('text');
  if (text.shape.join() !== [entry.texts, T, D].join())
    throw new MuseError(`${file}: text has shape [${text.shape}], expected [${[entry.texts, T, D]}]`);
  for (let i = 0; i < text.data.length; i++)
    if (!Number.isFinite(text.data[i])) throw new MuseError(`${file}: text holds ${text.data[i]} (element ${i})`);
  const list = (key: string, length: number): string[] => {
    if (metadata[key] === undefined) return [];
    let v: unknown;
    try {
      v = JSON.parse(metadata[key]);
    } catch {
      throw new MuseError(`${file}: metadata "${key}" is not valid JSON`);
    }
    if (!Array.isArray(v) || v.length !== length || !v.every((x) => typeof x === 'string'))
      throw new MuseError(`${file}: metadata "${key}" must list ${length} strings`);
    return v;
  };
  return {
    keys: list('keys', entry.images),
    texts: list('texts', entry.texts),
    tokens,
    grids,
    text: text.data as Float32Array,
    textLength: ints('text_length', [entry.texts], T + 1, `token counts of a ${T}-token text encoder`),
    pairImage: ints('pair_image', [entry.pairs], entry.images, `the shard's ${entry.images} images`),
    pairText: ints('pair_text', [entry.pairs], entry.texts, `the shard's ${entry.texts} texts`),
  };
}
