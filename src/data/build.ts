// Writing built datasets to disk in the project's folder format: <out>/<split>/<key>.png with a
// <key>.json beside it ({ caption, captions, ...meta }), a dataset.json summary written last (its
// presence marks a complete build) and, where licences ask for it, ATTRIBUTION.md. The same
// folder reads back through readImageFolder like any user dataset.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodePng, type RgbImage } from '../image/image.js';

export interface BuiltSample {
  split: string;
  key: string;
  image: RgbImage;
  captions: string[];
  meta: Record<string, unknown>;
}

function writeAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

export async function writeBuiltSample(out: string, s: BuiltSample): Promise<void> {
  const dir = join(out, s.split);
  mkdirSync(dir, { recursive: true });
  writeAtomic(join(dir, `${s.key}.png`), await encodePng(s.image));
  writeAtomic(
    join(dir, `${s.key}.json`),
    `${JSON.stringify({ caption: s.captions[0], captions: s.captions, ...s.meta })}\n`,
  );
}

export function writeSummary(out: string, summary: Record<string, unknown>, attribution?: string): void {
  mkdirSync(out, { recursive: true });
  if (attribution) writeAtomic(join(out, 'ATTRIBUTION.md'), attribution);
  writeAtomic(join(out, 'dataset.json'), `${JSON.stringify(summary, null, 2)}\n`);
}

/** Runs fn over items with at most `limit` in flight, in order of start. */
export async function forEachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** The image size `muse data build` recorded in DIR/dataset.json, if DIR is such a folder. */
export function builtSize(dir: string): number | undefined {
  const file = join(dir, 'dataset.json');
  if (!existsSync(file)) return undefined;
  try {
    const size = (JSON.parse(readFileSync(file, 'utf8')) as { size?: unknown }).size;
    return typeof size === 'number' ? size : undefined;
  } catch {
    return undefined;
  }
}
