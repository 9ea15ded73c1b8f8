// A training run's folder and its checkpoint as one unit, independent of the model.
//
// A checkpoint is several files (weights, EMA weights, optimizer state, ...) that only make sense
// together. They are written into a fresh folder inside the run folder, each fsynced, and then
// committed by one atomic rename of checkpoint.json, the manifest: it names that folder, the step and
// every part with its byte size and SHA-256. Until that rename the previous checkpoint (and its
// manifest) is untouched, so a SIGKILL, a second Ctrl-C or a full disk at any moment leaves either the
// old or the new checkpoint, never a mix. The previous folder is removed only after the new manifest
// is in place. Parts that other tools read from the run folder (the weights) are then published at
// its top level by hard link (or copy) + rename; those copies are for readers, resume never uses them.
//
//   RUN/checkpoint.json                      the commit record (written last)
//   RUN/checkpoint-000500-k3f9a1/<part>...   the parts it names
//   RUN/<published part>                     e.g. base.safetensors, for `muse assemble` and friends
//
// Opening a run folder removes stale temporary files and folders, verifies the checkpoint (every part
// present, at the manifest's step, of the recorded size and hash) and refuses a non-empty folder
// unless the run is resumed or explicitly overwritten.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { MuseError } from '../util/errors.js';
import { writeFileDurably } from '../util/files.js';

export const MANIFEST = 'checkpoint.json';
const FORMAT = 'muse-checkpoint';
const VERSION = 1;
/** Committed checkpoint folders and the temporary ones being written. */
const CHECKPOINT_FOLDER = /^checkpoint-(\d{6,}-[0-9a-z]+|tmp-[0-9a-z]+)$/;
/** Temporary files of an atomic write here or by saveSafetensors: NAME.tmp-PID-RANDOM. */
const TEMP_FILE = /\.tmp-\d+-[0-9a-z]+$/;

export interface CheckpointManifest {
  format: typeof FORMAT;
  version: typeof VERSION;
  /** What wrote it (e.g. "muse-base"): a run folder of another kind is refused on resume. */
  kind?: string;
  step: number;
  /** The folder (inside the run folder) that holds the parts. */
  folder: string;
  parts: Record<string, { step: number; bytes: number; sha256: string }>;
}

/** A verified checkpoint: read its parts from path(name). */
export interface Checkpoint {
  step: number;
  parts: string[];
  has(part: string): boolean;
  /** The file of a part; a MuseError naming the part when the checkpoint has none. */
  path(part: string): string;
}

export interface RunFolderOptions {
  /** Continue the checkpoint in the folder (none there: start fresh). */
  resume: boolean;
  /** Start over in a folder that holds files: removes the checkpoint and the runFiles first. */
  overwrite?: boolean;
  /** What is training (e.g. "muse-base"), recorded in the manifest and checked on resume. */
  kind?: string;
  /** Parts published at the run folder's top level after each save (where other tools read them). */
  publish?: string[];
  /** Other files and folders a run writes into its folder (curves, samples): removed by overwrite. */
  runFiles?: string[];
  /**
   * The layout before checkpoint.json: parts written one by one at the top level. Resumed only when
   * all its parts present are at one step (stepOf reads a part's step); marker says one is there.
   */
  legacy?: { marker: string; parts: string[]; stepOf: (path: string) => Promise<number> };
}

/** A short reason for a file system error (ENOSPC: "no space left on device"). */
function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOSPC') return 'no space left on device';
  if (e.code === 'EDQUOT') return 'disk quota exceeded';
  return e.message ?? String(err);
}

const suffix = () => randomBytes(6).readUIntBE(0, 6).toString(36);

async function syncPath(path: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(path, 'r');
    await handle.sync();
  } catch (err) {
    // Folders cannot be opened on every platform (Windows); a file that cannot be synced is an error.
    if (!statSync(path).isDirectory()) throw err;
  } finally {
    await handle?.close();
  }
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A run's file (manifest, history, curves, samples) written durably; errors as one MuseError line. */
export async function writeRunFile(path: string, bytes: Uint8Array | string): Promise<void> {
  try {
    await writeFileDurably(path, bytes);
  } catch (err) {
    throw new MuseError(`cannot write ${path}: ${reason(err)}`);
  }
}

function readManifest(dir: string): CheckpointManifest | undefined {
  const path = join(dir, MANIFEST);
  if (!existsSync(path)) return undefined;
  let m: CheckpointManifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as CheckpointManifest;
  } catch (err) {
    throw new MuseError(`${path} is not a checkpoint manifest: ${(err as Error).message}`);
  }
  if (m?.format !== FORMAT || typeof m.step !== 'number' || typeof m.folder !== 'string' || !m.parts)
    throw new MuseError(`${path} is not a checkpoint manifest (format ${JSON.stringify(m?.format)})`);
  if (m.version !== VERSION)
    throw new MuseError(`${path}: checkpoint format version ${m.version}, this muse-ts reads ${VERSION}`);
  if (!CHECKPOINT_FOLDER.test(m.folder)) throw new MuseError(`${path} names an odd folder "${m.folder}"`);
  return m;
}

function checkpointOf(step: number, files: Record<string, string>, where: string): Checkpoint {
  const parts = Object.keys(files);
  return {
    step,
    parts,
    has: (part) => part in files,
    path: (part) => {
      if (!(part in files))
        throw new MuseError(
          `the checkpoint of step ${step} in ${where} has no ${part} (it has ${parts.join(', ') || 'no parts'})`,
        );
      return files[part];
    },
  };
}

export class RunFolder {
  /** The checkpoint resumed from (undefined: a fresh run). */
  readonly checkpoint: Checkpoint | undefined;
  /** The committed checkpoint folder (undefined: none, or the legacy layout) and the last step saved. */
  private current: string | undefined;
  private savedStep: number | undefined;

  private constructor(
    readonly dir: string,
    private readonly o: RunFolderOptions,
    checkpoint: Checkpoint | undefined,
    current: string | undefined,
    /** Whether opening removed an earlier run's files (`overwrite` of a folder that held some). */
    readonly overwritten = false,
  ) {
    this.checkpoint = checkpoint;
    this.current = current;
    this.savedStep = checkpoint?.step;
  }

  /**
   * Prepares `dir` for a run: refuses a non-empty folder unless resuming or overwriting, removes
   * stale temporary files, and (resuming) verifies and returns the checkpoint there.
   */
  static async open(dir: string, o: RunFolderOptions): Promise<RunFolder> {
    if (o.resume && o.overwrite) throw new MuseError('resume and overwrite exclude each other: choose one');
    await fs.mkdir(dir, { recursive: true });
    const entries = readdirSync(dir);
    if (entries.length && !o.resume && !o.overwrite) {
      const m = existsSync(join(dir, MANIFEST)) ? readManifestQuietly(dir) : undefined;
      const listed = `${entries.slice(0, 4).join(', ')}${entries.length > 4 ? ', …' : ''}`;
      const what = m
        ? `a run at step ${m.step}`
        : `${entries.length} ${entries.length === 1 ? 'entry' : 'entries'}: ${listed}`;
      throw new MuseError(
        `${dir} is not empty: it holds ${what}. Continue it with \`resume\`, start over with \`overwrite\`, or choose another \`out\``,
      );
    }
    if (o.overwrite && entries.length) {
      const own = new Set([MANIFEST, ...(o.publish ?? []), ...(o.runFiles ?? []), ...(o.legacy?.parts ?? [])]);
      for (const name of entries)
        if (own.has(name) || CHECKPOINT_FOLDER.test(name) || TEMP_FILE.test(name))
          await fs.rm(join(dir, name), { recursive: true, force: true });
      return new RunFolder(dir, o, undefined, undefined, true);
    }
    const manifest = readManifest(dir);
    await removeStale(dir, manifest?.folder);
    if (!o.resume) return new RunFolder(dir, o, undefined, undefined);
    if (manifest) {
      const checkpoint = await verify(dir, manifest, o.kind);
      const folder = new RunFolder(dir, o, checkpoint, manifest.folder);
      await folder.publish(manifest.folder, manifest.step);
      return folder;
    }
    if (o.legacy && existsSync(join(dir, o.legacy.marker))) {
      return new RunFolder(dir, o, await verifyLegacy(dir, o.legacy), undefined);
    }
    return new RunFolder(dir, o, undefined, undefined);
  }

  /**
   * Saves a checkpoint: each writer writes its part to the path it is given. Commits all of them at
   * once; on failure the previous checkpoint stays as it was and the error is one MuseError.
   */
  async save(step: number, parts: Record<string, (path: string) => Promise<void>>): Promise<void> {
    const { dir } = this;
    const previous = this.savedStep === undefined ? '' : ` (the checkpoint of step ${this.savedStep} is intact)`;
    const temp = join(dir, `checkpoint-tmp-${suffix()}`);
    const folder = `checkpoint-${String(step).padStart(6, '0')}-${suffix()}`;
    const manifest: CheckpointManifest = { format: FORMAT, version: VERSION, step, folder, parts: {} };
    if (this.o.kind) manifest.kind = this.o.kind;
    let stage = 'write';
    try {
      await fs.mkdir(temp);
      for (const [name, write] of Object.entries(parts)) {
        if (name.includes('/') || name.includes('\\') || name === MANIFEST) throw new Error(`bad part name "${name}"`);
        const path = join(temp, name);
        await write(path);
        await syncPath(path);
        manifest.parts[name] = { step, bytes: statSync(path).size, sha256: await sha256(path) };
      }
      await syncPath(temp);
      await fs.rename(temp, join(dir, folder));
      stage = 'commit';
      await writeRunFile(join(dir, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
      await syncPath(dir);
    } catch (err) {
      await fs.rm(temp, { recursive: true, force: true }).catch(() => {});
      if (stage === 'commit') await fs.rm(join(dir, folder), { recursive: true, force: true }).catch(() => {});
      const why = err instanceof MuseError ? err.message.replace(/^cannot write \S+: /, '') : reason(err);
      throw new MuseError(`cannot save the checkpoint of step ${step} in ${dir}: ${why}${previous}`);
    }
    const old = this.current;
    this.current = folder;
    this.savedStep = step;
    await this.publish(folder, step);
    // Only now that the new checkpoint is committed and published: the old one and legacy files go.
    if (old) await fs.rm(join(dir, old), { recursive: true, force: true }).catch(() => {});
    for (const name of this.o.legacy?.parts ?? [])
      if (!this.o.publish?.includes(name)) await fs.rm(join(dir, name), { force: true }).catch(() => {});
  }

  /** Publishes parts of a committed checkpoint at the top level: hard link (or copy), then rename. */
  private async publish(folder: string, step: number): Promise<void> {
    for (const name of this.o.publish ?? []) {
      const from = join(this.dir, folder, name);
      if (!existsSync(from)) continue;
      const to = join(this.dir, name);
      if (existsSync(to) && sameFile(from, to)) continue;
      const temp = `${to}.tmp-${process.pid}-${suffix()}`;
      try {
        await fs.link(from, temp).catch(() => fs.copyFile(from, temp));
        await fs.rename(temp, to);
      } catch (err) {
        await fs.rm(temp, { force: true }).catch(() => {});
        throw new MuseError(
          `the checkpoint of step ${step} is saved in ${join(this.dir, folder)}, but copying ${name} to ${this.dir} failed: ${reason(err)}`,
        );
      }
    }
    await syncPath(this.dir).catch(() => {});
  }
}

function sameFile(a: string, b: string): boolean {
  const [x, y] = [statSync(a), statSync(b)];
  return x.ino === y.ino && x.dev === y.dev;
}

function readManifestQuietly(dir: string): CheckpointManifest | undefined {
  try {
    return readManifest(dir);
  } catch {
    return undefined;
  }
}

/** Removes checkpoint folders other than the committed one and the temporary files of interrupted writes. */
async function removeStale(dir: string, keep: string | undefined): Promise<void> {
  for (const name of readdirSync(dir)) {
    if (name === keep) continue;
    if (CHECKPOINT_FOLDER.test(name) || TEMP_FILE.test(name))
      await fs.rm(join(dir, name), { recursive: true, force: true });
  }
}

async function verify(dir: string, m: CheckpointManifest, kind: string | undefined): Promise<Checkpoint> {
  const where = join(dir, MANIFEST);
  if (kind && m.kind && m.kind !== kind) throw new MuseError(`${dir} holds a ${m.kind} run, not ${kind}`);
  const folder = join(dir, m.folder);
  if (!existsSync(folder)) throw new MuseError(`${where} names ${m.folder}, which is missing`);
  const files: Record<string, string> = {};
  for (const [name, p] of Object.entries(m.parts)) {
    const path = join(folder, name);
    if (p.step !== m.step)
      throw new MuseError(`${where}: ${name} is at step ${p.step} but the checkpoint at step ${m.step}`);
    if (!existsSync(path)) throw new MuseError(`the checkpoint of step ${m.step} lacks ${path}`);
    const bytes = statSync(path).size;
    if (bytes !== p.bytes)
      throw new MuseError(`${path} has ${bytes} bytes, but the checkpoint of step ${m.step} recorded ${p.bytes}`);
    if ((await sha256(path)) !== p.sha256)
      throw new MuseError(`${path} differs from what the checkpoint of step ${m.step} recorded (SHA-256)`);
    files[name] = path;
  }
  return checkpointOf(m.step, files, dir);
}

async function verifyLegacy(dir: string, legacy: NonNullable<RunFolderOptions['legacy']>): Promise<Checkpoint> {
  const files: Record<string, string> = {};
  const steps: Record<string, number> = {};
  for (const name of legacy.parts) {
    const path = join(dir, name);
    if (!existsSync(path)) continue;
    files[name] = path;
    steps[name] = await legacy.stepOf(path);
  }
  const distinct = new Set(Object.values(steps));
  if (distinct.size !== 1 || [...distinct].some((s) => !Number.isInteger(s)))
    throw new MuseError(
      `${dir} holds a checkpoint whose parts are at different steps (${Object.entries(steps)
        .map(([k, s]) => `${k} at step ${s}`)
        .join(', ')}): it was interrupted while saving and cannot be resumed exactly; start over with \`overwrite\``,
    );
  return checkpointOf([...distinct][0], files, dir);
}
