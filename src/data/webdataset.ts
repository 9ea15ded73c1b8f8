// WebDataset shards: tar files whose members are grouped into samples by key (the path up to the
// first dot of the basename: dir/0001.jpg, dir/0001.txt and dir/0001.json make sample dir/0001).
// The tar reader streams (one member in memory at a time) and the writer is atomic; both are
// written here from the format (POSIX ustar + pax, GNU long names and base-256 numbers).
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, stat, unlink } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { type RgbImage, resizeCenterCrop } from '../image/image.js';
import { MuseError } from '../util/errors.js';
import type { Sample, SkipReport } from './sample.js';

/** One regular file in a tar archive. */
export interface TarEntry {
  name: string;
  data: Uint8Array;
}

/** Image extensions a sample's image may have, in order of preference (compared lower-cased). */
export const IMAGE_EXTENSIONS = ['jpg', 'jpeg', 'png', 'webp', 'gif', 'bmp', 'tif', 'tiff', 'avif'] as const;

/**
 * The largest tar member (image or caption file) read into memory: a larger one is skipped while
 * streaming, before any of it is buffered, and its sample reported.
 */
export const MAX_MEMBER_BYTES = 64 * 1024 * 1024;
/** The largest pax or GNU long-name header read (they hold a path and a few numbers). */
const MAX_META_HEADER_BYTES = 1024 * 1024;

const BLOCK = 512;
const RECORD = 20 * BLOCK;
const utf8 = new TextDecoder('utf-8');
const utf8Strict = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// Reading

/** Pulls exact byte counts out of a stream of chunks. */
class ByteReader {
  private head: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private ended = false;

  constructor(private readonly chunks: AsyncIterator<Uint8Array>) {}

  private async more(): Promise<boolean> {
    while (!this.ended) {
      const r = await this.chunks.next();
      if (r.done) {
        this.ended = true;
        break;
      }
      if (r.value.length === 0) continue;
      this.head = r.value;
      this.pos = 0;
      return true;
    }
    return false;
  }

  /** Exactly `n` bytes (a fresh copy), or fewer only where the stream ends first. */
  async read(n: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let got = 0;
    while (got < n) {
      if (this.pos >= this.head.length && !(await this.more())) break;
      const take = Math.min(n - got, this.head.length - this.pos);
      parts.push(this.head.subarray(this.pos, this.pos + take));
      this.pos += take;
      got += take;
    }
    const out = new Uint8Array(got);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  /** Discards up to `n` bytes; returns how many there were. */
  async skip(n: number): Promise<number> {
    let got = 0;
    while (got < n) {
      if (this.pos >= this.head.length && !(await this.more())) break;
      const take = Math.min(n - got, this.head.length - this.pos);
      this.pos += take;
      got += take;
    }
    return got;
  }
}

/** A NUL-terminated string field. */
function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return utf8.decode(end < 0 ? bytes : bytes.subarray(0, end));
}

/** A numeric header field: octal text (NUL/space padded) or GNU base-256 (high bit of byte 0 set). */
function parseNumber(field: Uint8Array): number | undefined {
  if (field[0] & 0x80) {
    if (field[0] === 0xff) return undefined; // negative
    let v = field[0] & 0x7f;
    for (let i = 1; i < field.length; i++) {
      v = v * 256 + field[i];
      if (v > Number.MAX_SAFE_INTEGER) return undefined;
    }
    return v;
  }
  const text = cString(field).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) return undefined;
  return Number.parseInt(text, 8);
}

function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

/** The header checksum: the unsigned (or, historically, signed) byte sum with the field as spaces. */
function checksumMatches(block: Uint8Array): boolean {
  const stored = parseNumber(block.subarray(148, 156));
  if (stored === undefined) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

/** Records of a pax extended header: "LEN key=value\n" each, LEN counting the whole record. */
function parsePax(data: Uint8Array, where: string): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // padding some writers leave
    const space = data.indexOf(0x20, pos);
    const len = space < 0 ? Number.NaN : Number(utf8.decode(data.subarray(pos, space)));
    if (!Number.isInteger(len) || len <= 0 || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw new MuseError(`${where}: malformed pax extended header`);
    }
    const record = utf8.decode(data.subarray(space + 1, pos + len - 1));
    const eq = record.indexOf('=');
    if (eq < 0) throw new MuseError(`${where}: malformed pax extended header`);
    out.set(record.slice(0, eq), record.slice(eq + 1));
    pos += len;
  }
  return out;
}

function quote(name: string): string {
  return JSON.stringify(name);
}

/** Destroys a stream and waits until it has closed (its file descriptor released). */
function destroyed(stream: Readable): Promise<void> {
  if (stream.closed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once('close', () => resolve());
    stream.destroy();
  });
}

/** Opens a shard as a byte stream (gunzipped for .tar.gz / .tgz). */
function openShard(path: string): { stream: Readable; close(): Promise<void> } {
  const file = createReadStream(path, { highWaterMark: 1 << 20 });
  if (!/\.(tgz|tar\.gz)$/i.test(path)) return { stream: file, close: () => destroyed(file) };
  const gunzip = createGunzip();
  file.on('error', (err) => gunzip.destroy(err));
  file.pipe(gunzip);
  return { stream: gunzip, close: async () => void (await Promise.all([destroyed(file), destroyed(gunzip)])) };
}

function readError(path: string, err: unknown): MuseError {
  if (err instanceof MuseError) return err;
  const code = (err as { code?: string }).code;
  if (code === 'ENOENT') return new MuseError(`no such tar shard: ${path}`);
  if (code === 'EISDIR') return new MuseError(`${path}: is a folder, not a tar shard`);
  if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR') {
    return new MuseError(`${path}: corrupt or truncated gzip data (${(err as Error).message})`);
  }
  return new MuseError(`${path}: cannot read tar shard (${(err as Error).message})`);
}

/**
 * Members of a tar file, streamed. `want(name)` false skips a member's bytes (it is still listed,
 * with data null), so a consumer can see every member without reading the ones it does not need.
 */
async function* tarMembers(
  path: string,
  want: (name: string) => boolean,
  maxBytes: number,
): AsyncGenerator<{ name: string; data: Uint8Array | null; oversize?: number }> {
  const shard = openShard(path);
  try {
    const reader = new ByteReader(shard.stream[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>);
    const globalPax = new Map<string, string>();
    let localPax: Map<string, string> | undefined;
    let longName: string | undefined;
    let offset = 0;
    let last: string | undefined;
    const after = () => (last === undefined ? '' : ` (after member ${quote(last)})`);

    const readData = async (size: number, member: string): Promise<Uint8Array> => {
      const data = await reader.read(size);
      if (data.length < size) {
        throw new MuseError(
          `${path}: truncated tar shard: member ${quote(member)} needs ${size} bytes but the file ends after ${data.length}`,
        );
      }
      return data;
    };
    const skipData = async (size: number, member: string): Promise<void> => {
      const got = await reader.skip(size);
      if (got < size) {
        throw new MuseError(
          `${path}: truncated tar shard: member ${quote(member)} needs ${size} bytes but the file ends after ${got}`,
        );
      }
    };
    // Data is padded to a whole block; a file that ends inside the last padding lost nothing.
    const skipPadding = async (size: number): Promise<void> => {
      const pad = (BLOCK - (size % BLOCK)) % BLOCK;
      if (pad) await reader.skip(pad);
    };

    for (;;) {
      let block: Uint8Array;
      try {
        block = await reader.read(BLOCK);
      } catch (err) {
        throw readError(path, err);
      }
      if (block.length === 0) {
        if (offset === 0) throw new MuseError(`${path}: empty file, not a tar shard`);
        break; // no end-of-archive blocks: accepted, as tar and Python's tarfile do
      }
      if (block.length < BLOCK) {
        throw new MuseError(`${path}: truncated tar shard: the file ends inside a member header${after()}`);
      }
      if (isZeroBlock(block)) break; // end of archive
      if (!checksumMatches(block)) {
        throw new MuseError(
          offset === 0
            ? `${path}: not a tar shard (bad header checksum at byte 0)`
            : `${path}: corrupt tar header at byte ${offset}${after()}: checksum mismatch`,
        );
      }
      const headerOffset = offset;
      const type = String.fromCharCode(block[156]);
      const magic = utf8.decode(block.subarray(257, 263));
      let headerName = cString(block.subarray(0, 100));
      const prefix = magic === 'ustar\0' ? cString(block.subarray(345, 500)) : '';
      if (prefix) headerName = `${prefix}/${headerName}`;
      let size = parseNumber(block.subarray(124, 136));
      const paxSize = localPax?.get('size') ?? globalPax.get('size');
      if (paxSize !== undefined && /^\d+$/.test(paxSize)) size = Number(paxSize);
      if (size === undefined || !Number.isSafeInteger(size)) {
        throw new MuseError(`${path}: corrupt tar header at byte ${headerOffset}${after()}: bad size field`);
      }
      offset += BLOCK;
      const where = `${path}: tar header at byte ${headerOffset}`;

      if (type === 'L' || type === 'K' || type === 'x' || type === 'g') {
        // Metadata for the next member; pax 'size' never applies to these headers themselves.
        size = parseNumber(block.subarray(124, 136));
        if (size === undefined) throw new MuseError(`${where}${after()}: bad size field`);
        if (size > MAX_META_HEADER_BYTES)
          throw new MuseError(
            `${where}${after()}: a '${type}' header of ${size} bytes (limit ${MAX_META_HEADER_BYTES}); corrupt or hostile shard`,
          );
        const data = await readData(size, `${headerName} (${type} header)`);
        await skipPadding(size);
        offset += size + ((BLOCK - (size % BLOCK)) % BLOCK);
        if (type === 'L') longName = cString(data);
        else if (type === 'x') localPax = parsePax(data, where);
        else if (type === 'g') for (const [k, v] of parsePax(data, where)) globalPax.set(k, v);
        continue;
      }

      let name = longName ?? localPax?.get('path') ?? globalPax.get('path') ?? headerName;
      longName = undefined;
      localPax = undefined;
      while (name.startsWith('./')) name = name.slice(2);
      last = name;

      const regular = (type === '0' || type === '\0' || type === '7') && !name.endsWith('/');
      // Links, folders, devices and FIFOs carry no data whatever their size field says; other
      // types (sparse, GNU dumpdir, unknown) are skipped over by their size.
      const hasData = regular || !'123456'.includes(type);
      if (!hasData) size = 0;
      if (regular && want(name) && size > maxBytes) {
        // Streamed past, never buffered: the consumer sees the member and its size.
        await skipData(size, name);
        await skipPadding(size);
        offset += size + ((BLOCK - (size % BLOCK)) % BLOCK);
        yield { name, data: null, oversize: size };
      } else if (regular && want(name)) {
        const data = await readData(size, name);
        await skipPadding(size);
        offset += size + ((BLOCK - (size % BLOCK)) % BLOCK);
        yield { name, data };
      } else {
        await skipData(size, name);
        await skipPadding(size);
        offset += size + ((BLOCK - (size % BLOCK)) % BLOCK);
        if (regular) yield { name, data: null };
      }
    }
  } catch (err) {
    throw readError(path, err);
  } finally {
    await shard.close();
  }
}

/**
 * The regular files of a tar archive, in order, streamed from disk: POSIX ustar (with the name
 * prefix field), pax extended headers (local 'x' and global 'g': path, size), GNU long names ('L'),
 * octal and base-256 numbers, header checksums; folders, links and special files are skipped. A
 * `.tar.gz`/`.tgz` path is gunzipped on the fly. Throws MuseError naming the shard (and the member)
 * for a truncated file or a corrupt header. Stopping early (break, return) closes the file before
 * the loop exits.
 */
export async function* readTarEntries(
  path: string,
  options: { maxMemberBytes?: number } = {},
): AsyncGenerator<TarEntry> {
  const limit = options.maxMemberBytes ?? MAX_MEMBER_BYTES;
  for await (const m of tarMembers(path, () => true, limit)) {
    if (m.oversize !== undefined)
      throw new MuseError(`${path}: member ${quote(m.name)} is ${m.oversize} bytes, over the limit of ${limit}`);
    yield { name: m.name, data: m.data as Uint8Array };
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

function writeString(block: Uint8Array, offset: number, length: number, value: string | Uint8Array): void {
  const bytes = typeof value === 'string' ? encoder.encode(value) : value;
  block.set(bytes.subarray(0, length), offset);
}

/** Octal with a NUL when it fits the field, else GNU base-256. */
function writeNumber(block: Uint8Array, offset: number, length: number, value: number): void {
  if (value < 8 ** (length - 1)) {
    writeString(block, offset, length, `${value.toString(8).padStart(length - 1, '0')}\0`);
    return;
  }
  let v = BigInt(value);
  for (let i = length - 1; i > 0; i--) {
    block[offset + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  block[offset] = 0x80;
}

function makeHeader(
  name: Uint8Array,
  prefix: Uint8Array,
  size: number,
  type: string,
  mtime: number,
  gnu: boolean,
): Uint8Array {
  const block = new Uint8Array(BLOCK);
  writeString(block, 0, 100, name);
  writeNumber(block, 100, 8, 0o644);
  writeNumber(block, 108, 8, 0);
  writeNumber(block, 116, 8, 0);
  writeNumber(block, 124, 12, size);
  writeNumber(block, 136, 12, mtime);
  block.fill(0x20, 148, 156);
  block[156] = type.charCodeAt(0);
  writeString(block, 257, 8, gnu ? 'ustar  \0' : 'ustar\x0000');
  if (!gnu) {
    writeNumber(block, 329, 8, 0);
    writeNumber(block, 337, 8, 0);
    writeString(block, 345, 155, prefix);
  }
  let sum = 0;
  for (const b of block) sum += b;
  writeString(block, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return block;
}

/** Splits a long UTF-8 path into a ustar prefix (≤155 bytes) and name (≤100 bytes) at a slash. */
function splitUstar(bytes: Uint8Array): [Uint8Array, Uint8Array] | undefined {
  for (let i = Math.min(bytes.length - 2, 155); i > 0; i--) {
    if (bytes[i] === 0x2f && bytes.length - i - 1 <= 100) return [bytes.subarray(0, i), bytes.subarray(i + 1)];
  }
  return undefined;
}

function paxRecord(key: string, value: string): Uint8Array {
  const body = encoder.encode(` ${key}=${value}\n`);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return encoder.encode(`${len} ${key}=${value}\n`);
}

function padding(size: number): Uint8Array {
  return new Uint8Array((BLOCK - (size % BLOCK)) % BLOCK);
}

/** Options for writeTar. */
export interface WriteTarOptions {
  /** How names over 100 bytes (that no ustar prefix split fits) are stored: pax 'path' (default) or GNU 'L'. */
  longNames?: 'pax' | 'gnu';
  /** Modification time of every member, seconds since 1970 (default: now). */
  mtime?: number;
}

/**
 * Writes a tar archive of regular files (mode 0644) atomically: a temporary file next to `path`,
 * renamed over it once complete. Long names use the ustar prefix field when a slash allows, else a
 * pax extended header (or GNU 'L' entry with `longNames: 'gnu'`). Readable by tar, Python's tarfile
 * and readTarEntries.
 */
export async function writeTar(
  path: string,
  entries: Iterable<TarEntry> | AsyncIterable<TarEntry>,
  options: WriteTarOptions = {},
): Promise<void> {
  const gnu = options.longNames === 'gnu';
  const mtime = Math.max(0, Math.floor(options.mtime ?? Date.now() / 1000));
  const temp = `${path}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temp, 'w');
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let total = 0;
  const flush = async () => {
    if (pending.length) await handle.writev(pending);
    pending = [];
    pendingBytes = 0;
  };
  const put = async (bytes: Uint8Array) => {
    if (bytes.length === 0) return;
    pending.push(bytes);
    pendingBytes += bytes.length;
    total += bytes.length;
    if (pendingBytes >= 1 << 20 || pending.length >= 512) await flush();
  };
  try {
    for await (const entry of entries) {
      const { name, data } = entry;
      if (!name || name.includes('\0') || name.endsWith('/')) {
        throw new MuseError(`${path}: bad tar member name ${quote(name)}`);
      }
      const bytes = encoder.encode(name);
      if (bytes.length <= 100) {
        await put(makeHeader(bytes, new Uint8Array(0), data.length, '0', mtime, gnu));
      } else {
        const split = gnu ? undefined : splitUstar(bytes);
        if (split) {
          await put(makeHeader(split[1], split[0], data.length, '0', mtime, gnu));
        } else if (gnu) {
          const long = new Uint8Array(bytes.length + 1);
          long.set(bytes);
          await put(makeHeader(encoder.encode('././@LongLink'), new Uint8Array(0), long.length, 'L', 0, true));
          await put(long);
          await put(padding(long.length));
          await put(makeHeader(bytes.subarray(0, 100), new Uint8Array(0), data.length, '0', mtime, true));
        } else {
          const pax = paxRecord('path', name);
          await put(makeHeader(encoder.encode('././@PaxHeader'), new Uint8Array(0), pax.length, 'x', mtime, false));
          await put(pax);
          await put(padding(pax.length));
          await put(makeHeader(bytes.subarray(0, 100), new Uint8Array(0), data.length, '0', mtime, false));
        }
      }
      await put(data);
      await put(padding(data.length));
    }
    // End of archive: two zero blocks, then zeros up to a whole 10 KiB record, as tar does.
    const end = 2 * BLOCK + ((RECORD - ((total + 2 * BLOCK) % RECORD)) % RECORD);
    await put(new Uint8Array(end));
    await flush();
    await handle.sync();
    await handle.close();
    await rename(temp, path);
  } catch (err) {
    await handle.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Shard patterns

const MAX_SHARDS = 1_000_000;

/** Index of the `}` closing the `{` at `open`, or -1. */
function closingBrace(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === '{') depth++;
    else if (s[i] === '}' && --depth === 0) return i;
  }
  return -1;
}

/** Splits the inside of a brace group at its top-level commas. */
function topLevelCommas(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '{') depth++;
    else if (s[i] === '}') depth--;
    else if (s[i] === ',' && depth === 0) {
      parts.push(s.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(s.slice(start));
  return parts;
}

function range(body: string): string[] | undefined {
  const num = /^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$/.exec(body);
  if (num) {
    const [, a, b, stepText] = num;
    const from = Number(a);
    const to = Number(b);
    const step = Math.abs(Number(stepText ?? 1)) || 1;
    const count = Math.floor(Math.abs(to - from) / step) + 1;
    if (count > MAX_SHARDS) throw new MuseError(`shard pattern {${body}} expands to more than ${MAX_SHARDS} names`);
    // Zero-padded when either end is written with a leading zero: {000000..000009}.
    const padded = /^-?0\d/.test(a) || /^-?0\d/.test(b);
    const width = padded ? Math.max(a.length, b.length) : 0;
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      const v = from <= to ? from + i * step : from - i * step;
      const text = String(Math.abs(v)).padStart(width - (v < 0 ? 1 : 0), '0');
      out.push(v < 0 ? `-${text}` : text);
    }
    return out;
  }
  const chars = /^([a-zA-Z])\.\.([a-zA-Z])$/.exec(body);
  if (chars) {
    const from = chars[1].charCodeAt(0);
    const to = chars[2].charCodeAt(0);
    const out: string[] = [];
    for (let c = from; from <= to ? c <= to : c >= to; c += from <= to ? 1 : -1) out.push(String.fromCharCode(c));
    return out;
  }
  return undefined;
}

function expandOne(pattern: string): string[] {
  for (let open = pattern.indexOf('{'); open >= 0; open = pattern.indexOf('{', open + 1)) {
    const close = closingBrace(pattern, open);
    if (close < 0) break;
    const head = pattern.slice(0, open);
    const body = pattern.slice(open + 1, close);
    const tails = expandOne(pattern.slice(close + 1));
    const alternatives = topLevelCommas(body);
    let choices: string[] | undefined;
    if (alternatives.length > 1) choices = alternatives.flatMap(expandOne);
    else choices = range(body);
    if (!choices) continue; // not a range or list: the braces are literal
    const out: string[] = [];
    for (const c of choices) {
      for (const t of tails) {
        out.push(head + c + t);
        if (out.length > MAX_SHARDS) throw new MuseError(`shard pattern expands to more than ${MAX_SHARDS} names`);
      }
    }
    return out;
  }
  return [pattern];
}

/**
 * Expands a WebDataset shard pattern the way bash and Python's braceexpand do: numeric ranges
 * `{000000..000009}` (zero-padded when an end is; optional step `{0..10..2}`), letter ranges
 * `{a..e}`, lists `{train,val}`, several and nested groups; `a.tar::b.tar` joins patterns.
 */
export function expandShards(pattern: string): string[] {
  return pattern
    .split('::')
    .filter((p) => p !== '')
    .flatMap(expandOne);
}

// ---------------------------------------------------------------------------------------------
// Captions (shared with the image-folder reader)

/** The caption sources of one sample, as raw bytes. */
export interface CaptionFiles {
  txt?: Uint8Array;
  json?: Uint8Array;
  caption?: Uint8Array;
}

export type CaptionResult =
  | { ok: true; captions: string[]; meta: Record<string, unknown> }
  | { ok: false; reason: string };

const JSON_CAPTION_FIELDS = ['caption', 'captions', 'text'];

function decodeText(bytes: Uint8Array): string | undefined {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * A sample's captions: the trimmed UTF-8 text of `.txt`; else the `.json` object's `caption`
 * string, `captions` string array and `text` (string or string array), in that order, trimmed,
 * empty ones dropped, duplicates removed; else the trimmed `.caption` file. The first source giving
 * a non-empty caption wins. The json's other fields become meta (also when the caption came from
 * .txt). Failure reasons: 'no caption', 'empty caption', 'unreadable caption' (not UTF-8, or a
 * json that is not an object).
 */
export function captionsFrom(files: CaptionFiles): CaptionResult {
  if (!files.txt && !files.json && !files.caption) return { ok: false, reason: 'no caption' };
  let meta: Record<string, unknown> = {};
  let unreadable = false;
  let empty = false;
  const fromText = (bytes: Uint8Array | undefined): string[] | undefined => {
    if (!bytes) return undefined;
    const text = decodeText(bytes);
    if (text === undefined) {
      unreadable = true;
      return undefined;
    }
    const t = text.trim();
    if (!t) empty = true;
    return t ? [t] : undefined;
  };
  let jsonCaptions: string[] | undefined;
  if (files.json) {
    const text = decodeText(files.json);
    let obj: unknown;
    try {
      obj = text === undefined ? undefined : JSON.parse(text);
    } catch {
      obj = undefined;
    }
    if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
      const record = obj as Record<string, unknown>;
      const found: string[] = [];
      for (const field of JSON_CAPTION_FIELDS) {
        const v = record[field];
        const list = typeof v === 'string' ? [v] : Array.isArray(v) ? v : [];
        for (const c of list) if (typeof c === 'string' && c.trim()) found.push(c.trim());
      }
      meta = Object.fromEntries(Object.entries(record).filter(([k]) => !JSON_CAPTION_FIELDS.includes(k)));
      jsonCaptions = [...new Set(found)];
      if (jsonCaptions.length === 0) {
        empty = true;
        jsonCaptions = undefined;
      }
    } else {
      unreadable = true;
    }
  }
  const captions = fromText(files.txt) ?? jsonCaptions ?? fromText(files.caption);
  if (captions) return { ok: true, captions, meta };
  return { ok: false, reason: unreadable ? 'unreadable caption' : empty ? 'empty caption' : 'no caption' };
}

/** Decodes, resizes and centre-crops a sample's image bytes; a skip reason when it cannot. */
export async function loadSampleImage(
  bytes: Uint8Array,
  size: number,
  name: string,
): Promise<{ ok: true; image: RgbImage } | { ok: false; reason: string }> {
  if (bytes.length === 0) return { ok: false, reason: 'empty image file' };
  try {
    return { ok: true, image: await resizeCenterCrop(bytes, size, name) };
  } catch {
    return { ok: false, reason: 'unreadable image' };
  }
}

export function checkSize(size: number): void {
  if (!Number.isInteger(size) || size < 1) throw new MuseError(`image size must be a positive integer, got ${size}`);
}

// ---------------------------------------------------------------------------------------------
// Samples

/** Options for the dataset readers. */
export interface ReadOptions {
  /** Side of the square images yielded (resized so the short side fits, then centre-cropped). */
  size: number;
  /** Where skipped samples are recorded, by reason. */
  skip: SkipReport;
  /** The largest image or caption file read (default MAX_MEMBER_BYTES); a sample with a larger one is skipped. */
  maxMemberBytes?: number;
}

/** Key and extension of a member (`dir/0001.seg.png` → `dir/0001`, `seg.png`); null for names without one. */
function splitMember(name: string): { key: string; ext: string } | null {
  const slash = name.lastIndexOf('/');
  const dot = name.indexOf('.', slash + 1);
  if (dot <= slash + 1) return null; // no extension, or a hidden file like .DS_Store
  return { key: name.slice(0, dot), ext: name.slice(dot + 1).toLowerCase() };
}

const WANTED = new Set<string>([...IMAGE_EXTENSIONS, 'txt', 'json', 'caption']);

async function makeSample(
  shard: string,
  key: string,
  members: Map<string, TarEntry | null>,
  options: ReadOptions,
  oversize: boolean,
): Promise<Sample | null> {
  const where = `${shard}:${key}`;
  if (oversize) {
    options.skip.add(where, `file larger than ${options.maxMemberBytes ?? MAX_MEMBER_BYTES} bytes`);
    return null;
  }
  const imageExt = IMAGE_EXTENSIONS.find((e) => members.get(e));
  if (!imageExt) {
    options.skip.add(where, 'no image');
    return null;
  }
  const imageEntry = members.get(imageExt)!;
  if (imageEntry.data.length === 0) {
    options.skip.add(where, 'empty image file');
    return null;
  }
  const caption = captionsFrom({
    txt: members.get('txt')?.data,
    json: members.get('json')?.data,
    caption: members.get('caption')?.data,
  });
  if (!caption.ok) {
    options.skip.add(where, caption.reason);
    return null;
  }
  const loaded = await loadSampleImage(imageEntry.data, options.size, `${shard}: ${imageEntry.name}`);
  if (!loaded.ok) {
    options.skip.add(where, loaded.reason);
    return null;
  }
  return {
    key,
    image: loaded.image,
    captions: caption.captions,
    meta: { ...caption.meta, shard, source: imageEntry.name },
  };
}

/**
 * Samples of WebDataset shards (paths or brace patterns, see expandShards), in shard order, images
 * resized and centre-cropped to size×size. A sample is the run of consecutive members sharing a key;
 * its image is the member with the first extension of IMAGE_EXTENSIONS it has, its captions follow
 * captionsFrom. Samples without an image, with an unreadable or empty image, or without a caption
 * are recorded in `skip` (key `SHARD:KEY`) and left out. A missing, truncated or corrupt shard
 * throws MuseError. Only one sample's members are held in memory.
 */
export async function* readWebDataset(shards: string[], options: ReadOptions): AsyncGenerator<Sample> {
  checkSize(options.size);
  const paths: string[] = [];
  for (const pattern of shards) {
    // A path that exists is taken as it is, even with braces in its name.
    const exists = await stat(pattern).then(
      (i) => i.isFile(),
      () => false,
    );
    for (const p of exists ? [pattern] : expandShards(pattern)) {
      const info = await stat(p).catch(() => undefined);
      if (!info) throw new MuseError(`no such tar shard: ${p}`);
      if (!info.isFile()) throw new MuseError(`${p}: not a tar shard (not a file)`);
      paths.push(p);
    }
  }
  if (paths.length === 0) throw new MuseError('no WebDataset shards given');
  const limit = options.maxMemberBytes ?? MAX_MEMBER_BYTES;
  for (const shard of paths) {
    let key: string | undefined;
    let members = new Map<string, TarEntry | null>();
    let oversize = false;
    for await (const m of tarMembers(shard, (name) => WANTED.has(splitMember(name)?.ext ?? ''), limit)) {
      const parts = splitMember(m.name);
      if (!parts) continue;
      if (key !== undefined && parts.key !== key) {
        const sample = await makeSample(shard, key, members, options, oversize);
        if (sample) yield sample;
        members = new Map();
        oversize = false;
      }
      key = parts.key;
      if (m.oversize !== undefined) oversize = true;
      members.set(parts.ext, m.data ? { name: m.name, data: m.data } : null);
    }
    if (key !== undefined) {
      const sample = await makeSample(shard, key, members, options, oversize);
      if (sample) yield sample;
    }
  }
}
