// WebDataset shards: tar files whose members are grouped into samples by key (the path up to the
// first dot of the basename: dir/0001.jpg, dir/0001.txt and dir/0001.json make sample dir/0001).
// Tar reading is tar-read.ts (tar-stream, with our limits); this file groups members into samples.
import { stat } from 'node:fs/promises';
import { MuseError } from '../util/errors.js';
import type { Sample } from './sample.js';
import { captionsFrom, checkSize, IMAGE_EXTENSIONS, loadSampleImage, type ReadOptions } from './sample-files.js';
import { expandShards } from './shard-patterns.js';
import { MAX_MEMBER_BYTES, type TarEntry, tarMembers } from './tar-read.js';

export {
  type CaptionFiles,
  type CaptionResult,
  captionsFrom,
  checkSize,
  IMAGE_EXTENSIONS,
  loadSampleImage,
  type ReadOptions,
} from './sample-files.js';
export { expandShards } from './shard-patterns.js';
export { MAX_MEMBER_BYTES, readTarEntries, type TarEntry } from './tar-read.js';
export { type WriteTarOptions, writeTar } from './tar-write.js';

/** Key and extension of a member (`dir/0001.seg.png` → `dir/0001`, `seg.png`); null for names without one. */
function splitMember(name: string): { key: string; ext: string } | null {
  const slash = name.lastIndexOf('/');
  const dot = name.indexOf('.', slash + 1);
  if (dot <= slash + 1) return null; // no extension, or a hidden file like .DS_Store
  return { key: name.slice(0, dot), ext: name.slice(dot + 1).toLowerCase() };
}

const WANTED = new Set<string>([...IMAGE_EXTENSIONS, 'txt', 'json', 'caption']);

async function makeSample(
  shard: string,
  key: string,
  members: Map<string, TarEntry | null>,
  options: ReadOptions,
  oversize: boolean,
): Promise<Sample | null> {
  const where = `${shard}:${key}`;
  if (oversize) {
    options.skip.add(where, `file larger than ${options.maxMemberBytes ?? MAX_MEMBER_BYTES} bytes`);
    return null;
  }
  const imageExt = IMAGE_EXTENSIONS.find((e) => members.get(e));
  if (!imageExt) {
    options.skip.add(where, 'no image');
    return null;
  }
  const imageEntry = members.get(imageExt)!;
  if (imageEntry.data.length === 0) {
    options.skip.add(where, 'empty image file');
    return null;
  }
  const caption = captionsFrom({
    txt: members.get('txt')?.data,
    json: members.get('json')?.data,
    caption: members.get('caption')?.data,
  });
  if (!caption.ok) {
    options.skip.add(where, caption.reason);
    return null;
  }
  const loaded = await loadSampleImage(imageEntry.data, options.size, `${shard}: ${imageEntry.name}`);
  if (!loaded.ok) {
    options.skip.add(where, loaded.reason);
    return null;
  }
  return {
    key,
    image: loaded.image,
    captions: caption.captions,
    meta: { ...caption.meta, shard, source: imageEntry.name },
  };
}

/**
 * Samples of WebDataset shards (paths or brace patterns, see expandShards), in shard order, images
 * resized and centre-cropped to size×size. A sample is the run of consecutive members sharing a key;
 * its image is the member with the first extension of IMAGE_EXTENSIONS it has, its captions follow
 * captionsFrom. Samples without an image, with an unreadable or empty image, or without a caption
 * are recorded in `skip` (key `SHARD:KEY`) and left out. A missing, truncated or corrupt shard
 * throws MuseError. Only one sample's members are held in memory.
 */
export async function* readWebDataset(shards: string[], options: ReadOptions): AsyncGenerator<Sample> {
  checkSize(options.size);
  const paths: string[] = [];
  for (const pattern of shards) {
    // A path that exists is taken as it is, even with braces in its name.
    const exists = await stat(pattern).then(
      (i) => i.isFile(),
      () => false,
    );
    for (const p of exists ? [pattern] : expandShards(pattern)) {
      const info = await stat(p).catch(() => undefined);
      if (!info) throw new MuseError(`no such tar shard: ${p}`);
      if (!info.isFile()) throw new MuseError(`${p}: not a tar shard (not a file)`);
      paths.push(p);
    }
  }
  if (paths.length === 0) throw new MuseError('no WebDataset shards given');
  const limit = options.maxMemberBytes ?? MAX_MEMBER_BYTES;
  for (const shard of paths) {
    let key: string | undefined;
    let members = new Map<string, TarEntry | null>();
    let oversize = false;
    for await (const m of tarMembers(shard, (name) => WANTED.has(splitMember(name)?.ext ?? ''), limit)) {
      const parts = splitMember(m.name);
      if (!parts) continue;
      if (key !== undefined && parts.key !== key) {
        const sample = await makeSample(shard, key, members, options, oversize);
        if (sample) yield sample;
        members = new Map();
        oversize = false;
      }
      key = parts.key;
      if (m.oversize !== undefined) oversize = true;
      members.set(parts.ext, m.data ? { name: m.name, data: m.data } : null);
    }
    if (key !== undefined) {
      const sample = await makeSample(shard, key, members, options, oversize);
      if (sample) yield sample;
    }
  }
}
