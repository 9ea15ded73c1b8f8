// The Hugging Face Hub cache, laid out as the Python tools lay it out (so a model fetched with
// `huggingface-cli download` is found too): <root>/models--{org}--{name}/ holds blobs/<etag>,
// snapshots/<commit>/<path> (relative symlinks into blobs/) and refs/<revision> (the commit).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { MuseError } from '../util/errors.js';

/** The cache root: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
export function hubCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return resolve(env.HF_HUB_CACHE);
  if (env.HF_HOME) return resolve(env.HF_HOME, 'hub');
  const xdg = env.XDG_CACHE_HOME;
  return resolve(xdg ? xdg : join(homedir(), '.cache'), 'huggingface', 'hub');
}

/** How a repo id given on the command line looks: ORG/NAME. */
export const REPO_ID = /^[\w.-]+\/[\w.-]+$/;

/** Checks a repo id (ORG/NAME, no `..`, no `--`, nothing absolute); returns it. */
export function checkRepoId(repo: string): string {
  if (!REPO_ID.test(repo) || repo.includes('..') || repo.includes('--') || repo.length > 200)
    throw new MuseError(
      `"${repo}" is not a Hub model id: give ORG/NAME (letters, digits, "-", "_", "."; no ".." or "--")`,
    );
  for (const part of repo.split('/'))
    if (part.startsWith('.') || part.startsWith('-') || part.endsWith('.') || part.endsWith('-'))
      throw new MuseError(`"${repo}" is not a Hub model id: a part starts or ends with "." or "-"`);
  return repo;
}

/** Checks a revision (a branch, tag or commit; `refs/pr/1` allowed): no `..`, nothing absolute. */
export function checkRevision(revision: string): string {
  if (!/^[\w.-]+(\/[\w.-]+)*$/.test(revision) || revision.split('/').some((p) => p === '..' || p === '.'))
    throw new MuseError(`\`revision\` "${revision}" is not a branch, tag or commit name`);
  return revision;
}

/** The folder of a model repo in the cache (it may not exist). */
export function repoCacheFolder(repo: string, root = hubCacheRoot()): string {
  return join(root, `models--${checkRepoId(repo).replace('/', '--')}`);
}

export const COMMIT = /^[0-9a-f]{40}$/;

/** `child` (a path relative to `folder`, from untrusted input) joined to it, refused when it leaves it. */
export function insideFolder(folder: string, child: string, what: string): string {
  const parts = child.split('/');
  if (
    child === '' ||
    child.length > 1000 ||
    isAbsolute(child) ||
    child.includes('\\') ||
    child.includes('\0') ||
    /^[A-Za-z]:/.test(child) ||
    parts.some((p) => p === '' || p === '.' || p === '..')
  )
    throw new MuseError(`${what} "${child}" is not a plain relative path: refused`);
  const full = resolve(folder, child);
  const rel = relative(resolve(folder), full);
  if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel))
    throw new MuseError(`${what} "${child}" leaves the snapshot folder: refused`);
  return full;
}

/**
 * The snapshot folder of a cached repo at `revision` (a branch or tag through refs/, or a commit),
 * or undefined when it is not in the cache. Nothing is downloaded.
 */
export function resolveCachedRepo(repo: string, revision = 'main', root = hubCacheRoot()): string | undefined {
  const folder = repoCacheFolder(repo, root);
  checkRevision(revision);
  let commit: string | undefined;
  const ref = join(folder, 'refs', ...revision.split('/'));
  if (existsSync(ref) && statSync(ref).isFile()) {
    const text = readFileSync(ref, 'utf8').trim();
    if (/^[\w.-]{1,100}$/.test(text) && text !== '.' && text !== '..') commit = text;
  } else if (COMMIT.test(revision)) commit = revision;
  if (commit === undefined) return undefined;
  const snapshot = join(folder, 'snapshots', commit);
  return existsSync(snapshot) && statSync(snapshot).isDirectory() ? snapshot : undefined;
}

/**
 * What `--model VALUE` names: an existing path as it is; else ORG/NAME from the Hub cache (a
 * one-line error when it has not been pulled); else the value unchanged (the loader says why not).
 */
export function resolveModelArgument(value: string, root = hubCacheRoot()): string {
  if (existsSync(value) || !REPO_ID.test(value)) return value;
  let snapshot: string | undefined;
  try {
    snapshot = resolveCachedRepo(value, 'main', root);
  } catch (err) {
    if (err instanceof MuseError) return value; // not a Hub id after all (e.g. "a/..")
    throw err;
  }
  if (snapshot === undefined) throw new MuseError(`${value} is not downloaded: run muse pull ${value}`);
  return snapshot;
}
