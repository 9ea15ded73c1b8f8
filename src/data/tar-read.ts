// Reading tar shards (untrusted input), streamed: the tar format (ustar, pax, GNU long names, base-256
// numbers, checksums) is tar-stream's; ours are the limits (one member in memory at a time, none over
// the member limit: a larger one is streamed past, never buffered), gzip by file extension, and
// errors that name the shard and the member.
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';
import { MuseError } from '../util/errors.js';

/** One regular file in a tar archive. */
export interface TarEntry {
  name: string;
  data: Uint8Array;
}

/**
 * The largest tar member (image or caption file) read into memory: a larger one is skipped while
 * streaming, before any of it is buffered, and its sample reported.
 */
export const MAX_MEMBER_BYTES = 64 * 1024 * 1024;

/** A member as tarMembers yields it: its bytes, or null when not wanted or over the limit (then its size). */
export interface TarMember {
  name: string;
  data: Uint8Array | null;
  oversize?: number;
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
  if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR')
    return new MuseError(`${path}: corrupt or truncated gzip data (${(err as Error).message})`);
  return new MuseError(`${path}: cannot read tar shard (${(err as Error).message})`);
}

/**
 * tar-stream's errors between members, in our words (its messages, matched here, are those of the
 * pinned version: "Invalid tar header...", "Unexpected end of data", "Header exceeds max size",
 * "Invalid header" for a size that is not a number).
 */
function headerError(path: string, err: unknown, last: string | undefined): MuseError {
  const message = (err as Error).message ?? '';
  const after = last === undefined ? '' : ` (after member ${quote(last)})`;
  if (message.startsWith('Invalid tar header'))
    return new MuseError(
      last === undefined
        ? `${path}: not a tar shard (bad header checksum at byte 0)`
        : `${path}: corrupt tar header${after}: checksum mismatch`,
    );
  if (message === 'Unexpected end of data')
    return new MuseError(`${path}: truncated tar shard: the file ends inside a member header or its padding${after}`);
  if (message === 'Header exceeds max size')
    return new MuseError(`${path}: a pax or long-name header over 4 MiB${after}; corrupt or hostile shard`);
  if (message === 'Invalid header') return new MuseError(`${path}: corrupt tar header${after}: bad size field`);
  return readError(path, err);
}

/**
 * Members of a tar file, streamed. `want(name)` false skips a member's bytes (it is still listed,
 * with data null), so a consumer can see every member without reading the ones it does not need.
 * Folders, links and special files are not listed. Stopping early closes the file.
 */
export async function* tarMembers(
  path: string,
  want: (name: string) => boolean,
  maxBytes: number,
): AsyncGenerator<TarMember> {
  const shard = openShard(path);
  // allowUnknownFormat: pre-POSIX (v7) headers have no ustar magic; the checksum still guards them.
  const tar = extract({ allowUnknownFormat: true } as Parameters<typeof extract>[0]);
  let bytes = 0;
  shard.stream.on('data', (chunk: Uint8Array) => {
    bytes += chunk.length;
  });
  shard.stream.on('error', (err) => tar.destroy(err));
  shard.stream.pipe(tar);
  const entries = tar[Symbol.asyncIterator]();
  let last: string | undefined;
  try {
    for (;;) {
      let next: Awaited<ReturnType<typeof entries.next>>;
      try {
        next = await entries.next();
      } catch (err) {
        throw headerError(path, err, last);
      }
      if (next.done) break;
      const entry = next.value;
      const { header } = entry;
      let name = header.name;
      while (name.startsWith('./')) name = name.slice(2);
      const regular = (header.type === 'file' || header.type === 'contiguous-file') && !name.endsWith('/');
      if (regular) last = name;
      const size = header.size;
      const keep = regular && want(name) && size <= maxBytes;
      const data = keep ? new Uint8Array(size) : null;
      let got = 0;
      try {
        for await (const chunk of entry as AsyncIterable<Uint8Array>) {
          if (data) data.set(chunk.subarray(0, Math.max(0, size - got)), got);
          got += chunk.length;
        }
      } catch (err) {
        if ((err as Error).message !== 'Unexpected end of data') throw readError(path, err);
        throw new MuseError(
          `${path}: truncated tar shard: member ${quote(name)} needs ${size} bytes but the file ends after ${got}`,
        );
      }
      if (!regular) continue;
      if (!want(name)) yield { name, data: null };
      else if (!data) yield { name, data: null, oversize: size };
      else yield { name, data };
    }
    if (bytes === 0) throw new MuseError(`${path}: empty file, not a tar shard`);
  } catch (err) {
    throw readError(path, err);
  } finally {
    tar.destroy();
    await shard.close();
  }
}

/**
 * The regular files of a tar archive, in order, streamed from disk: POSIX ustar, pax extended headers,
 * GNU long names, octal and base-256 numbers, header checksums; folders, links and special files are
 * skipped. A `.tar.gz`/`.tgz` path is gunzipped on the fly. Throws MuseError naming the shard (and
 * the member) for a truncated file, a corrupt header or a member over `maxMemberBytes`. Stopping
 * early (break, return) closes the file before the loop exits.
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
