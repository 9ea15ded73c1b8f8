// A folder of images with same-named caption files (cat.jpg + cat.txt or cat.json), the layout
// most people have before they make WebDataset shards. Only file names are listed up front; each
// image is read when its sample is reached.
import { readdir, realpath, stat } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { MuseError } from '../util/errors.js';
import { FileRefused, fileKind, isInside, readRegularFile } from '../util/untrusted.js';
import type { Sample } from './sample.js';
import {
  type CaptionFiles,
  captionsFrom,
  checkSize,
  IMAGE_EXTENSIONS,
  loadSampleImage,
  type ReadOptions,
} from './sample-files.js';
import { MAX_MEMBER_BYTES } from './tar-read.js';

/** Options for readImageFolder. */
export interface ImageFolderOptions extends ReadOptions {
  /** Look in subfolders too (default true). */
  recursive?: boolean;
}

const IMAGES = new Set<string>(IMAGE_EXTENSIONS);
const CAPTIONS = ['txt', 'json', 'caption'] as const;

/**
 * Relative paths ('/'-separated) of the regular files under `dir`, hidden files and folders left
 * out, and the image and caption names refused with their reason: a symbolic link leading out of the
 * folder (or nowhere), or anything that is not a regular file (FIFO, device, socket). A symbolic
 * link to a regular file inside the folder is listed; symlinked folders are not followed (no cycles).
 */
async function listFiles(
  dir: string,
  recursive: boolean,
  reported: (ext: string) => boolean,
): Promise<{ files: string[]; refused: Map<string, string> }> {
  const root = await realpath(dir);
  const files: string[] = [];
  const refused = new Map<string, string>();
  const walk = async (folder: string): Promise<void> => {
    const entries = await readdir(folder, { withFileTypes: true });
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const full = join(folder, e.name);
      const rel = relative(dir, full).split(sep).join('/');
      if (e.isDirectory()) {
        if (recursive) await walk(full);
        continue;
      }
      let problem: string | undefined;
      if (e.isSymbolicLink()) {
        const real = await realpath(full).catch(() => undefined);
        const info = real === undefined ? undefined : await stat(real).catch(() => undefined);
        if (!real || !info) problem = 'a symbolic link to nothing';
        else if (!isInside(root, real)) problem = 'a symbolic link out of the dataset folder';
        else if (info.isDirectory()) continue;
        else if (!info.isFile()) problem = `a symbolic link to ${fileKind(info)}`;
      } else if (!e.isFile()) {
        problem = `${fileKind(await stat(full))}, not a regular file`;
      }
      if (problem === undefined) files.push(rel);
      else if (reported(splitExt(rel).ext)) refused.set(rel, problem);
    }
  };
  await walk(dir);
  return { files: files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), refused };
}

/** A listed file's bytes, or why it is not read (a file swapped since listing, or over the limit). */
async function readListed(path: string, limit: number): Promise<Uint8Array | { reason: string }> {
  try {
    return new Uint8Array(await readRegularFile(path, limit, 'a dataset file'));
  } catch (err) {
    if (err instanceof FileRefused)
      return { reason: err.size === undefined ? err.reason : `larger than ${limit} bytes (${err.size} bytes)` };
    return { reason: 'unreadable' };
  }
}

/** `dir/cat.JPG` → `dir/cat`, `jpg`. */
function splitExt(rel: string): { stem: string; ext: string } {
  const ext = extname(rel);
  return { stem: rel.slice(0, rel.length - ext.length), ext: ext.slice(1).toLowerCase() };
}

/**
 * Samples of an image folder, sorted by relative path: every image (IMAGE_EXTENSIONS, any case)
 * with a caption file of the same stem (`.txt`, else `.json`, else `.caption`; rules of
 * captionsFrom), resized and centre-cropped to size×size. Key and meta.source are the image's path
 * relative to `dir`; a json's other fields are in meta too. Unreadable or empty images and missing or
 * empty captions are recorded in `skip` (key: the relative image path) and left out. A missing
 * folder, or one without images, throws MuseError.
 */
export async function* readImageFolder(dir: string, options: ImageFolderOptions): AsyncGenerator<Sample> {
  checkSize(options.size);
  const info = await stat(dir).catch(() => undefined);
  if (!info) throw new MuseError(`no such folder: ${dir}`);
  if (!info.isDirectory()) throw new MuseError(`not a folder: ${dir}`);
  const limit = options.maxMemberBytes ?? MAX_MEMBER_BYTES;
  const { files, refused } = await listFiles(
    dir,
    options.recursive ?? true,
    (ext) => IMAGES.has(ext) || (CAPTIONS as readonly string[]).includes(ext),
  );
  // Only regular files inside the folder are read; every image or caption refused is reported.
  const refusedCaptions = new Map<string, string>();
  for (const [rel, problem] of refused) {
    const { stem, ext } = splitExt(rel);
    if (IMAGES.has(ext)) options.skip.add(rel, `image is ${problem}`);
    else refusedCaptions.set(stem, `caption is ${problem}`);
  }

  const images: string[] = [];
  const captionFiles = new Map<string, Partial<Record<(typeof CAPTIONS)[number], string>>>();
  for (const rel of files) {
    const { stem, ext } = splitExt(rel);
    if (IMAGES.has(ext)) images.push(rel);
    else if ((CAPTIONS as readonly string[]).includes(ext)) {
      const byExt = captionFiles.get(stem) ?? {};
      byExt[ext as (typeof CAPTIONS)[number]] ??= rel;
      captionFiles.set(stem, byExt);
    }
  }
  const imageStems = new Set(images.map((rel) => splitExt(rel).stem));
  for (const [stem, reason] of refusedCaptions) {
    // A refused caption of a listed image is reported with that image; of nothing else, by its own name.
    if (!imageStems.has(stem)) options.skip.add(stem, reason);
  }
  if (images.length === 0) {
    const tars = files.some((f) => /\.(tar|tgz|tar\.gz)$/i.test(f));
    throw new MuseError(
      `no images in folder: ${dir} (looked for ${IMAGE_EXTENSIONS.map((e) => `.${e}`).join(', ')})` +
        (tars ? '; it holds .tar files: open it as a WebDataset' : ''),
    );
  }

  for (const rel of images) {
    const image = await readListed(join(dir, rel), limit);
    if (!(image instanceof Uint8Array)) {
      options.skip.add(rel, image.reason === 'unreadable' ? 'unreadable image' : `image file ${image.reason}`);
      continue;
    }
    const bytes = image;
    const refusedCaption = refusedCaptions.get(splitExt(rel).stem);
    if (refusedCaption) {
      options.skip.add(rel, refusedCaption);
      continue;
    }
    if (bytes.length === 0) {
      options.skip.add(rel, 'empty image file');
      continue;
    }
    const names = captionFiles.get(splitExt(rel).stem) ?? {};
    let caption: ReturnType<typeof captionsFrom> | undefined;
    const files: CaptionFiles = {};
    for (const ext of CAPTIONS) {
      const name = names[ext];
      if (name === undefined) continue;
      const read = await readListed(join(dir, name), limit);
      if (read instanceof Uint8Array) files[ext] = read;
      else {
        caption = {
          ok: false,
          reason: read.reason === 'unreadable' ? 'unreadable caption' : `caption file ${read.reason}`,
        };
        break;
      }
    }
    caption ??= captionsFrom(files);
    if (!caption.ok) {
      options.skip.add(rel, caption.reason);
      continue;
    }
    const loaded = await loadSampleImage(bytes, options.size, join(dir, rel));
    if (!loaded.ok) {
      options.skip.add(rel, loaded.reason);
      continue;
    }
    yield { key: rel, image: loaded.image, captions: caption.captions, meta: { ...caption.meta, source: rel } };
  }
}
