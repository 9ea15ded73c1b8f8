// Writing tar files (our own shards and test fixtures), by hand from the format: tar-stream's packer
// (which reads them, see tar-read.ts) writes no GNU 'L' long names and no whole 10 KiB records, and
// both are part of what writeTar promises. The write is atomic: a temporary file renamed over the path.
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { MuseError } from '../util/errors.js';
import type { TarEntry } from './tar-read.js';

const BLOCK = 512;
const RECORD = 20 * BLOCK;
const encoder = new TextEncoder();

function quote(name: string): string {
  return JSON.stringify(name);
}

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
