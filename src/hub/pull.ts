// Downloads a Hugging Face Hub model repo into the standard cache (hub-cache.ts): the file list from
// the hub API, each file to blobs/<etag>.incomplete (resumed with an HTTP Range request after an
// interruption), checked (sha256 against an LFS etag, else the size), renamed, then linked from
// snapshots/<commit>/<path>. Everything the server sends is untrusted: ids, names and sizes checked.
import { createHash } from 'node:crypto';
import {
  createReadStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { copyFile, open, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { MuseError } from '../util/errors.js';
import { COMMIT, checkRepoId, checkRevision, hubCacheRoot, insideFolder, repoCacheFolder } from './hub-cache.js';

export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, '');
}

export interface PullProgress {
  file: string;
  /** Files finished (downloaded or already there) and how many there are. */
  filesDone: number;
  files: number;
  /** Bytes of the current file so far and its size when known. */
  bytes: number;
  size?: number;
}

export interface PullOptions {
  revision?: string;
  /** Prefer `<stem>.<variant>.safetensors` over `<stem>.safetensors` (e.g. fp16). */
  variant?: string;
  endpoint?: string;
  cacheRoot?: string;
  /** Attempts per file when the connection breaks or stalls (each resumes where the last stopped). */
  attempts?: number;
  /**
   * Seconds without a byte (or an answer) after which a request counts as broken: a stalled download
   * is cut and resumed like a broken one. Default 60; env MUSE_PULL_TIMEOUT.
   */
  stallSeconds?: number;
  /** Called while another pull holds a file's lock (with that pull's process id). */
  onWait?: (file: string, pid: number) => void;
  onProgress?: (p: PullProgress) => void;
}

export interface PullResult {
  snapshot: string;
  commit: string;
  files: string[];
  /** Files fetched from the server this time (the rest were in the cache). */
  downloaded: string[];
  bytes: number;
}

const MAX_LISTING_BYTES = 16 * 1024 * 1024;
const MAX_FILES = 10_000;

/** The files a diffusers aMUSEd pipeline reads: configs, tokenizer texts, safetensors weights (one variant). */
export function selectFiles(names: string[], variant?: string): string[] {
  const wanted = names.filter((n) => /\.(json|txt|safetensors)$/.test(n));
  const variantOf = (n: string) => /^(.*)\.([A-Za-z0-9_]+)\.safetensors$/.exec(n);
  const present = new Set(wanted);
  return wanted.filter((n) => {
    if (!n.endsWith('.safetensors')) return true;
    const m = variantOf(n);
    if (m) return variant !== undefined && m[2] === variant;
    if (variant === undefined) return true;
    return !present.has(`${n.slice(0, -'.safetensors'.length)}.${variant}.safetensors`);
  });
}

function stallDefault(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.MUSE_PULL_TIMEOUT);
  return env.MUSE_PULL_TIMEOUT !== undefined && v > 0 ? v : 60;
}

async function request(url: string, init: RequestInit, what: string, stallMs: number): Promise<Response> {
  // Headers must come within the stall time; a body's own stalls are watched by its reader.
  const signal = init.signal ?? AbortSignal.timeout(stallMs);
  try {
    return await fetch(url, { ...init, signal });
  } catch (err) {
    if ((err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError')
      throw new MuseError(`${what}: no answer from ${url} for ${stallMs / 1000} s`);
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new MuseError(`${what}: cannot reach ${url} (${cause?.code ?? cause?.message ?? (err as Error).message})`);
  }
}

/** Reads a body chunk, or fails when none comes within the stall time (the caller resumes). */
async function readWithin(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  abort: AbortController,
  stallMs: number,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`no data for ${stallMs / 1000} s`)); // first: this is the reason reported
      abort.abort();
    }, stallMs);
  });
  try {
    return await Promise.race([reader.read(), stalled]);
  } finally {
    clearTimeout(timer);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Runs `fn` holding `lock` (a file made with O_EXCL holding our process id), so two pulls of the same
 * model never write the same blob: the second waits while the holder lives, then finds the blob. A
 * lock left by a process that is gone (killed mid-download) is taken over.
 */
async function withLock<T>(lock: string, onWait: (pid: number) => void, fn: () => Promise<T>): Promise<T> {
  mkdirSync(dirname(lock), { recursive: true });
  let told = false;
  for (;;) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new MuseError(`cannot make the lock ${lock}: ${(err as Error).message}`);
    }
    let pid = Number.NaN;
    let age = 0;
    try {
      pid = Number.parseInt(readFileSync(lock, 'utf8'), 10);
      age = Date.now() - statSync(lock).mtimeMs;
    } catch {
      continue; // released meanwhile
    }
    // A lock with no pid yet is being written: stale only if it stays so.
    if (Number.isInteger(pid) ? !alive(pid) : age > 10_000) {
      rmSync(lock, { force: true });
      continue;
    }
    if (!told) onWait(pid);
    told = true;
    await new Promise((r) => setTimeout(r, 200));
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

function httpError(res: Response, url: string, repo: string): MuseError {
  if (res.status === 401 || res.status === 403)
    return new MuseError(`${repo}: the hub refused access (${res.status}); a gated or private model is not supported`);
  if (res.status === 404) return new MuseError(`${repo}: not found on the hub (${url})`);
  return new MuseError(`${repo}: the hub answered ${res.status} ${res.statusText} for ${url}`);
}

async function readLimited(res: Response, limit: number, what: string): Promise<string> {
  const length = Number(res.headers.get('content-length') ?? 0);
  if (length > limit) throw new MuseError(`${what}: ${length} bytes is too large (limit ${limit})`);
  const reader = res.body?.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (reader)
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        await reader.cancel();
        throw new MuseError(`${what}: more than ${limit} bytes: refused`);
      }
      chunks.push(value);
    }
  return Buffer.concat(chunks).toString('utf8');
}

interface Listing {
  commit: string;
  files: string[];
}

/** The commit a revision names and every file in it (names checked to stay inside a snapshot). */
async function listRepo(endpoint: string, repo: string, revision: string, stallMs: number): Promise<Listing> {
  const url = `${endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}`;
  const res = await request(url, { headers: { accept: 'application/json' } }, repo, stallMs);
  if (!res.ok) throw httpError(res, url, repo);
  let info: unknown;
  try {
    info = JSON.parse(await readLimited(res, MAX_LISTING_BYTES, `${repo}: the file list`));
  } catch (err) {
    if (err instanceof MuseError) throw err;
    throw new MuseError(`${repo}: the hub's file list is not JSON`);
  }
  const { sha, siblings } = (info ?? {}) as { sha?: unknown; siblings?: unknown };
  if (typeof sha !== 'string' || !COMMIT.test(sha))
    throw new MuseError(`${repo}: the hub's answer has no commit hash (sha)`);
  if (!Array.isArray(siblings) || siblings.length > MAX_FILES)
    throw new MuseError(`${repo}: the hub's answer has no usable file list (siblings)`);
  const files: string[] = [];
  const probe = '/snapshot';
  for (const s of siblings) {
    const name = (s as { rfilename?: unknown })?.rfilename;
    if (typeof name !== 'string') throw new MuseError(`${repo}: a file in the hub's list has no name`);
    insideFolder(probe, name, `${repo}: the file name`);
    files.push(name);
  }
  return { commit: sha, files };
}

/** An etag header as the Python tools store it: no W/ prefix, no quotes; refused unless a plain name. */
function normalizeEtag(raw: string | null, what: string): string {
  const etag = (raw ?? '').replace(/^W\//, '').replace(/^"|"$/g, '');
  if (!/^[\w-][\w.-]{0,127}$/.test(etag)) throw new MuseError(`${what}: the hub sent no usable etag`);
  return etag;
}

interface FileMeta {
  etag: string;
  size?: number;
}

async function fileMeta(url: string, what: string, repo: string, stallMs: number): Promise<FileMeta> {
  // Not following redirects: an LFS file's etag (its sha256) and size come with the redirect.
  const res = await request(
    url,
    { method: 'HEAD', redirect: 'manual', headers: { 'accept-encoding': 'identity' } },
    what,
    stallMs,
  );
  if (!(res.ok || (res.status >= 300 && res.status < 400))) throw httpError(res, url, repo);
  const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'), what);
  const sizeText = res.headers.get('x-linked-size') ?? (res.ok ? res.headers.get('content-length') : null);
  const size = sizeText !== null && /^\d+$/.test(sizeText) ? Number(sizeText) : undefined;
  return { etag, size };
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Downloads `url` into `partial`, appending from where an earlier attempt stopped. */
async function downloadInto(
  url: string,
  partial: string,
  meta: FileMeta,
  what: string,
  repo: string,
  attempts: number,
  stallMs: number,
  progress: (bytes: number) => void,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const have = existsSync(partial) ? statSync(partial).size : 0;
    if (meta.size !== undefined && have === meta.size) return;
    if (meta.size !== undefined && have > meta.size) rmSync(partial, { force: true });
    const start = meta.size !== undefined && have > meta.size ? 0 : have;
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (start > 0) headers.range = `bytes=${start}-`;
    let failure: unknown;
    const abort = new AbortController();
    const connect = setTimeout(() => abort.abort(), stallMs);
    const res = await request(url, { headers, signal: abort.signal }, what, stallMs).catch((err) => {
      failure = err;
      return undefined;
    });
    clearTimeout(connect);
    if (res) {
      if (res.status === 416 && start > 0) {
        rmSync(partial, { force: true }); // the server cannot resume from there: start again
        continue;
      }
      if (!res.ok) throw httpError(res, url, repo);
      const append = res.status === 206 && start > 0;
      const handle = await open(partial, append ? 'a' : 'w');
      let bytes = append ? start : 0;
      try {
        const reader = res.body?.getReader();
        if (reader)
          for (;;) {
            const { done, value } = await readWithin(reader, abort, stallMs);
            if (done) break;
            bytes += value.byteLength;
            if (meta.size !== undefined && bytes > meta.size)
              throw new MuseError(`${what}: the server sent more than the ${meta.size} bytes announced: refused`);
            await handle.write(value);
            progress(bytes);
          }
        if (meta.size === undefined || bytes >= meta.size) return;
        failure = new Error(`the connection closed after ${bytes} of ${meta.size} bytes`);
      } catch (err) {
        if (err instanceof MuseError) throw err;
        failure = err;
      } finally {
        await handle.close();
      }
    }
    if (attempt >= attempts) {
      const e = failure as { cause?: { code?: string }; message?: string };
      throw new MuseError(
        `${what}: the download broke off ${attempts} times (${e?.cause?.code ?? e?.message}); run muse pull again to resume`,
      );
    }
  }
}

/**
 * Links snapshots/<commit>/<name> to the blob (relative symlink, as the Python tools do; a copy where
 * links fail), made under a temporary name and renamed into place, so a concurrent pull never sees
 * (or writes through) a half-made link.
 */
async function linkSnapshot(blob: string, target: string): Promise<void> {
  mkdirSync(dirname(target), { recursive: true });
  const tmp = `${target}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    symlinkSync(relative(dirname(target), blob), tmp);
  } catch {
    await copyFile(blob, tmp);
  }
  renameSync(tmp, target);
}

/** Downloads (or finds) a Hub model repo in the cache; returns its snapshot folder. */
export async function pullRepo(repoId: string, options: PullOptions = {}): Promise<PullResult> {
  const repo = checkRepoId(repoId);
  const revision = checkRevision(options.revision ?? 'main');
  if (options.variant !== undefined && !/^[A-Za-z0-9_]+$/.test(options.variant))
    throw new MuseError(`\`variant\` "${options.variant}" is not a variant name (e.g. fp16)`);
  const endpoint = (options.endpoint ?? hubEndpoint()).replace(/\/+$/, '');
  const root = options.cacheRoot ?? hubCacheRoot();
  const folder = repoCacheFolder(repo, root);
  const stall = options.stallSeconds ?? stallDefault();
  if (!(stall > 0)) throw new MuseError(`the stall timeout must be a positive number of seconds, got ${stall}`);
  const stallMs = stall * 1000;
  const listing = await listRepo(endpoint, repo, revision, stallMs);
  const files = selectFiles(listing.files, options.variant);
  if (files.length === 0) throw new MuseError(`${repo}: no .json, .txt or .safetensors files at ${revision}`);
  const snapshot = join(folder, 'snapshots', listing.commit);
  const blobs = join(folder, 'blobs');
  try {
    mkdirSync(blobs, { recursive: true });
    mkdirSync(snapshot, { recursive: true });
  } catch (err) {
    throw new MuseError(`cannot make the cache folder ${folder}: ${(err as Error).message}`);
  }
  const downloaded: string[] = [];
  let total = 0;
  for (const [i, name] of files.entries()) {
    const target = insideFolder(snapshot, name, `${repo}: the file name`);
    const what = `${repo}/${name}`;
    const report = (bytes: number, size?: number) =>
      options.onProgress?.({ file: name, filesDone: i, files: files.length, bytes, size });
    if (existsSync(target)) {
      report(0);
      continue; // a file of this commit is immutable: nothing to ask the server
    }
    const url = `${endpoint}/${repo}/resolve/${listing.commit}/${name.split('/').map(encodeURIComponent).join('/')}`;
    const meta = await fileMeta(url, what, repo, stallMs);
    const blob = join(blobs, meta.etag);
    /** Downloads, checks and renames one blob; its size. */
    const fetchBlob = async (): Promise<number> => {
      const partial = `${blob}.incomplete`;
      await downloadInto(url, partial, meta, what, repo, options.attempts ?? 5, stallMs, (b) => report(b, meta.size));
      const size = statSync(partial).size;
      if (/^[0-9a-f]{64}$/.test(meta.etag)) {
        const sha = await sha256File(partial);
        if (sha !== meta.etag) {
          rmSync(partial, { force: true });
          throw new MuseError(`${what}: the content's sha256 ${sha} is not the hub's ${meta.etag}: refused`);
        }
      } else if (meta.size !== undefined && size !== meta.size) {
        rmSync(partial, { force: true });
        throw new MuseError(`${what}: ${size} bytes arrived, the hub announced ${meta.size}: refused`);
      }
      renameSync(partial, blob);
      return size;
    };
    // The Python tools' place for locks: <cache>/.locks/models--org--name/<etag>.lock.
    const lock = join(root, '.locks', relative(root, folder), `${meta.etag}.lock`);
    const fetched = existsSync(blob)
      ? 0
      : await withLock(
          lock,
          (pid) => options.onWait?.(name, pid),
          async () => (existsSync(blob) ? 0 : await fetchBlob()),
        );
    if (fetched > 0) {
      downloaded.push(name);
      total += fetched;
    }
    await linkSnapshot(blob, target);
    report(statSync(blob).size, meta.size);
  }
  options.onProgress?.({ file: '', filesDone: files.length, files: files.length, bytes: 0 });
  if (revision !== listing.commit) {
    const ref = insideFolder(join(folder, 'refs'), revision, '`revision`');
    mkdirSync(dirname(ref), { recursive: true });
    const tmp = `${ref}.${process.pid}.tmp`;
    await writeFile(tmp, listing.commit);
    renameSync(tmp, ref);
  }
  return { snapshot, commit: listing.commit, files, downloaded, bytes: total };
}
