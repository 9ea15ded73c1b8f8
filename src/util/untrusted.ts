// Reading files a user handed us (model folders, datasets) without trusting them: only regular files,
// size checked before a byte is read, and paths named inside a folder kept inside it.
import { closeSync, constants, fstatSync, openSync, readSync, realpathSync, type Stats, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { MuseError } from './errors.js';

// O_NONBLOCK: opening a FIFO must not wait for a writer (the fstat after it then refuses it).
const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/** What a file that is not a regular file is, in words ("a FIFO", "a device", ...). */
export function fileKind(info: Stats): string {
  if (info.isDirectory()) return 'a folder';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'a device';
  if (info.isSocket()) return 'a socket';
  if (info.isSymbolicLink()) return 'a symbolic link';
  return 'a special file';
}

/**
 * A file refused before reading; `reason` is the message without the path (for skip reports), `size`
 * its size when that was the reason.
 */
export class FileRefused extends MuseError {
  constructor(
    path: string,
    readonly reason: string,
    readonly size?: number,
  ) {
    super(`${path}: ${reason}`);
  }
}

function notRegular(path: string, info: Stats): MuseError {
  return new FileRefused(path, `is ${fileKind(info)}, not a regular file`);
}

function tooLarge(path: string, size: number, limit: number, what: string): MuseError {
  return new FileRefused(
    path,
    `${size.toLocaleString('en-US')} bytes is too large for ${what} (limit ${limit.toLocaleString('en-US')} bytes)`,
    size,
  );
}

function openError(path: string, err: unknown): MuseError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new MuseError(`no such file: ${path}`);
  if (code === 'EISDIR') return new MuseError(`${path}: is a folder, not a regular file`);
  return new MuseError(`${path}: cannot read: ${(err as Error).message}`);
}

/**
 * The bytes of a regular file of at most `maxBytes` bytes. Folders, FIFOs, devices and sockets are
 * refused without reading (a FIFO without a writer does not block), and so is a larger file, before
 * anything is read. Errors are MuseErrors naming the file.
 */
export async function readRegularFile(path: string, maxBytes: number, what = 'this file'): Promise<Buffer> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, READ_FLAGS);
  } catch (err) {
    throw openError(path, err);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw notRegular(path, info);
    if (info.size > maxBytes) throw tooLarge(path, info.size, maxBytes, what);
    // Read exactly the size stat gave: a file growing meanwhile cannot make us read more.
    const out = Buffer.allocUnsafe(info.size);
    let got = 0;
    while (got < out.length) {
      const { bytesRead } = await handle.read(out, got, out.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === out.length ? out : out.subarray(0, got);
  } catch (err) {
    if (err instanceof MuseError) throw err;
    throw openError(path, err);
  } finally {
    await handle.close();
  }
}

/** readRegularFile, synchronously. */
export function readRegularFileSync(path: string, maxBytes: number, what = 'this file'): Buffer {
  let fd: number;
  try {
    fd = openSync(path, READ_FLAGS);
  } catch (err) {
    throw openError(path, err);
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) throw notRegular(path, info);
    if (info.size > maxBytes) throw tooLarge(path, info.size, maxBytes, what);
    const out = Buffer.allocUnsafe(info.size);
    let got = 0;
    while (got < out.length) {
      const n = readSync(fd, out, got, out.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return got === out.length ? out : out.subarray(0, got);
  } catch (err) {
    if (err instanceof MuseError) throw err;
    throw openError(path, err);
  } finally {
    closeSync(fd);
  }
}

/** Whether `path` (already resolved) is `root` or lies under it. */
export function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/**
 * The real path of `name`, a file named inside `folder` by an untrusted description (pipeline.json):
 * a relative path, with no `..` part, that resolves (symbolic links followed) to a regular file inside
 * the folder. Anything else throws a MuseError naming `where` and the name.
 */
export function fileInside(folder: string, name: string, where: string): string {
  const quoted = JSON.stringify(name);
  if (name === '' || name.includes('\0')) throw new MuseError(`${where}: ${quoted} is not a file name`);
  if (isAbsolute(name) || name.split(/[\\/]/).includes('..'))
    throw new MuseError(`${where}: ${quoted} must be a path inside the model folder (no "..", not absolute)`);
  let root: string;
  try {
    root = realpathSync(folder);
  } catch (err) {
    throw openError(folder, err);
  }
  const path = join(folder, name);
  let real: string;
  try {
    real = realpathSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new MuseError(`${where} names ${name}, which is not in ${folder}`);
    throw openError(path, err);
  }
  if (!isInside(root, real)) throw new MuseError(`${where}: ${quoted} leads out of the model folder (to ${real})`);
  const info = statSync(real);
  if (!info.isFile()) throw new MuseError(`${where}: ${quoted} is ${fileKind(info)}, not a regular file`);
  return real;
}
