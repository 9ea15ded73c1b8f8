// One entry point for a user's training data, whatever its layout: WebDataset shards (a .tar, a
// brace pattern, or a folder of .tar files) or a folder of images with caption files.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MuseError } from '../util/errors.js';
import { readImageFolder } from './folder.js';
import type { Sample } from './sample.js';
import { IMAGE_EXTENSIONS, type ReadOptions } from './sample-files.js';
import { expandShards } from './shard-patterns.js';
import { readWebDataset } from './webdataset.js';

const TAR = /\.(tar|tgz|tar\.gz)$/i;
const IMAGE = new RegExp(`\\.(${IMAGE_EXTENSIONS.join('|')})$`, 'i');

/**
 * Samples of the dataset at `path`:
 * - a brace pattern (`data/shard-{000000..000009}.tar`, `a.tar::b.tar`) or a `.tar`/`.tgz` file →
 *   WebDataset;
 * - a folder with .tar files and no images at its top level → WebDataset over those shards (sorted);
 * - any other folder → image folder (images with same-named .txt/.json captions, recursive).
 * A missing path, or a file that is neither, throws MuseError naming it.
 */
export async function* openDataset(path: string, options: ReadOptions): AsyncGenerator<Sample> {
  const info = await stat(path).catch(() => undefined);
  if (!info) {
    const shards = expandShards(path);
    if (shards.length > 1 || shards[0] !== path) {
      yield* readWebDataset(shards, options);
      return;
    }
    throw new MuseError(`no such dataset: ${path}`);
  }
  if (info.isFile()) {
    if (!TAR.test(path)) {
      throw new MuseError(
        `${path}: not a dataset (give a folder of images with captions, a .tar WebDataset shard, or a shard pattern like shard-{000000..000009}.tar)`,
      );
    }
    yield* readWebDataset([path], options);
    return;
  }
  if (!info.isDirectory()) throw new MuseError(`${path}: not a dataset (neither a file nor a folder)`);
  const names = (await readdir(path, { withFileTypes: true }))
    .filter((e) => !e.name.startsWith('.') && (e.isFile() || e.isSymbolicLink()))
    .map((e) => e.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const tars = names.filter((n) => TAR.test(n));
  if (tars.length > 0 && !names.some((n) => IMAGE.test(n))) {
    yield* readWebDataset(
      tars.map((n) => join(path, n)),
      options,
    );
    return;
  }
  yield* readImageFolder(path, options);
}
