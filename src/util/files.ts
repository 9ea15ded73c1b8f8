// Output files and folders the CLI writes: checked before any compute (so a bad path costs nothing),
// written to a temporary file beside the target and renamed (so a failed write, e.g. a full disk,
// never replaces a good file with a broken one), and every I/O error as one MuseError line.
import { accessSync, constants, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { MuseError } from './errors.js';

function ioReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const reasons: Record<string, string> = {
    ENOSPC: 'the disk is full',
    EDQUOT: 'the disk quota is exceeded',
    EACCES: 'permission denied',
    EPERM: 'not permitted',
    EROFS: 'the file system is read-only',
    ENOENT: 'no such file or folder',
    ENOTDIR: 'a part of the path is not a folder',
    EISDIR: 'it is a folder',
    EEXIST: 'it already exists',
  };
  return (e?.code && reasons[e.code]) ?? e?.message ?? String(err);
}

function writableFolder(folder: string, what: string): void {
  if (!existsSync(folder)) throw new MuseError(`${what}: the folder ${folder} does not exist`);
  if (!statSync(folder).isDirectory()) throw new MuseError(`${what}: ${folder} is not a folder`);
  try {
    accessSync(folder, constants.W_OK);
  } catch {
    throw new MuseError(`${what}: the folder ${folder} is not writable`);
  }
}

/** Refuses an output file path that cannot be written: missing or unwritable folder, a folder as target. */
export function checkOutputFile(path: string, option = '-o'): void {
  const what = `${option} ${path}`;
  if (path === '' || path.endsWith('/')) throw new MuseError(`${what}: give a file name, not a folder`);
  if (existsSync(path) && statSync(path).isDirectory()) throw new MuseError(`${what} is a folder: give a file name`);
  writableFolder(dirname(resolve(path)), what);
}

/** Writes a file through a temporary file in the same folder and a rename; one-line errors. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const tmp = join(dirname(resolve(path)), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new MuseError(`could not write ${path}: ${ioReason(err)}`);
  }
}

/**
 * Replaces a file durably: a temporary file beside it is written and fsynced, renamed over `path`, and
 * the folder is synced (best effort), so a crash or a full disk leaves the old file or the new one,
 * never a mix. Errors are the file system's own (the temporary file is removed first): callers word them.
 */
export async function writeFileDurably(path: string, data: Uint8Array | string): Promise<void> {
  const fs = await import('node:fs/promises');
  const temp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  try {
    const handle = await fs.open(temp, 'wx');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temp, path);
  } catch (err) {
    await fs.rm(temp, { force: true }).catch(() => {});
    throw err;
  }
  try {
    const folder = await fs.open(dirname(resolve(path)), 'r');
    await folder.sync().finally(() => folder.close());
  } catch {
    // ignored: not every platform can open a folder (Windows)
  }
}

/**
 * Makes a folder and its missing parents one level at a time (Node's recursive mkdir loops forever
 * under /proc), refusing a path that is a file or under an unwritable folder. `option` is how messages
 * name the path: the library option in backticks (the CLI shows its flag, see cli/errors.ts), or a
 * CLI's own flag or argument.
 */
export function makeFolder(path: string, option = '`out`'): void {
  const what = `${option} ${path}`;
  const full = resolve(path);
  if (existsSync(full)) {
    if (!statSync(full).isDirectory()) throw new MuseError(`${what} is a file, not a folder`);
    return;
  }
  const missing: string[] = [];
  let at = full;
  while (!existsSync(at)) {
    missing.unshift(at);
    const parent = dirname(at);
    if (parent === at) break;
    at = parent;
  }
  if (!statSync(at).isDirectory()) throw new MuseError(`${what}: ${at} is a file, not a folder`);
  for (const folder of missing) {
    try {
      mkdirSync(folder);
    } catch (err) {
      throw new MuseError(`${what}: cannot make the folder ${folder} (${ioReason(err)})`);
    }
  }
}
