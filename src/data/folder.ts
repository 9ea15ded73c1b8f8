// A folder of images with same-named caption files (cat.jpg + cat.txt or cat.json), the layout
// most people have before they make WebDataset shards. Only file names are listed up front; each
// image is read when its sample is reached.
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { MuseError } from '../util/errors.js';
import type { Sample } from './sample.js';
import {
  type CaptionFiles,
  captionsFrom,
  checkSize,
  IMAGE_EXTENSIONS,
  loadSampleImage,
  type ReadOptions,
} from './webdataset.js';

/** Options for readImageFolder. */
export interface ImageFolderOptions extends ReadOptions {
  /** Look in subfolders too (default true). */
  recursive?: boolean;
}

const IMAGES = new Set<string>(IMAGE_EXTENSIONS);
const CAPTIONS = ['txt', 'json', 'caption'] as const;

/** Relative paths ('/'-separated) of the files under `dir`, hidden files and folders left out. */
async function listFiles(dir: string, recursive: boolean): Promise<string[]> {
  const out: string[] = [];
  const walk = async (folder: string): Promise<void> => {
    const entries = await readdir(folder, { withFileTypes: true });
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const full = join(folder, e.name);
      let isFile = e.isFile();
      let isDir = e.isDirectory();
      if (e.isSymbolicLink()) {
        const info = await stat(full).catch(() => undefined);
        isFile = info?.isFile() ?? false;
        isDir = false; // symlinked folders are not followed (no cycles)
      }
      if (isFile) out.push(relative(dir, full).split(sep).join('/'));
      else if (isDir && recursive) await walk(full);
    }
  };
  await walk(dir);
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
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
  const files = await listFiles(dir, options.recursive ?? true);

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
  if (images.length === 0) {
    const tars = files.some((f) => /\.(tar|tgz|tar\.gz)$/i.test(f));
    throw new MuseError(
      `no images in folder: ${dir} (looked for ${IMAGE_EXTENSIONS.map((e) => `.${e}`).join(', ')})` +
        (tars ? '; it holds .tar files: open it as a WebDataset' : ''),
    );
  }

  for (const rel of images) {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(join(dir, rel)));
    } catch {
      options.skip.add(rel, 'unreadable image');
      continue;
    }
    if (bytes.length === 0) {
      options.skip.add(rel, 'empty image file');
      continue;
    }
    const names = captionFiles.get(splitExt(rel).stem) ?? {};
    let caption: ReturnType<typeof captionsFrom>;
    try {
      const files: CaptionFiles = {};
      for (const ext of CAPTIONS) {
        const name = names[ext];
        if (name !== undefined) files[ext] = new Uint8Array(await readFile(join(dir, name)));
      }
      caption = captionsFrom(files);
    } catch {
      caption = { ok: false, reason: 'unreadable caption' };
    }
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
