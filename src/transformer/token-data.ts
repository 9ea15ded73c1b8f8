// A token cache (src/data/cache.ts) in memory, for transformer training: every shard's grids,
// text embeddings and (image, caption) pairs concatenated. Token grids are small; the text
// embeddings are the bulk (F16 on disk, F32 here).
import { type CacheManifest, loadCacheShard, readManifest } from '../data/cache.js';
import { MuseError } from '../util/errors.js';

export interface TokenData {
  manifest: CacheManifest;
  /** Token grids per cached grid name: [images · h · w]. */
  tokens: Record<string, Int32Array>;
  grids: Record<string, [number, number]>;
  images: number;
  keys: string[];
  /** Text embeddings [texts · T · D], lengths [texts], strings. */
  text: Float32Array;
  textLength: Int32Array;
  texts: string[];
  /** (image, text) training pairs. */
  pairImage: Int32Array;
  pairText: Int32Array;
}

export async function loadTokenData(dir: string): Promise<TokenData> {
  const manifest = readManifest(dir);
  if (!manifest.complete)
    throw new MuseError(`${dir}: the cache is incomplete; finish it with \`muse data encode\` (it resumes)`);
  const { maxTokens: T, dim: D } = manifest.textEncoder;
  const images = manifest.shards.reduce((a, s) => a + s.images, 0);
  const texts = manifest.shards.reduce((a, s) => a + s.texts, 0);
  const pairs = manifest.shards.reduce((a, s) => a + s.pairs, 0);
  const tokens: Record<string, Int32Array> = {};
  const grids: Record<string, [number, number]> = {};
  for (const g of manifest.grids) {
    tokens[g.name] = new Int32Array(images * g.grid[0] * g.grid[1]);
    grids[g.name] = g.grid;
  }
  const out: TokenData = {
    manifest,
    tokens,
    grids,
    images,
    keys: [],
    text: new Float32Array(texts * T * D),
    textLength: new Int32Array(texts),
    texts: [],
    pairImage: new Int32Array(pairs),
    pairText: new Int32Array(pairs),
  };
  let image0 = 0;
  let text0 = 0;
  let pair0 = 0;
  for (let i = 0; i < manifest.shards.length; i++) {
    const s = await loadCacheShard(dir, i);
    for (const g of manifest.grids) tokens[g.name].set(s.tokens[g.name], image0 * g.grid[0] * g.grid[1]);
    out.text.set(s.text, text0 * T * D);
    out.textLength.set(s.textLength, text0);
    for (let p = 0; p < s.pairImage.length; p++) {
      out.pairImage[pair0 + p] = image0 + s.pairImage[p];
      out.pairText[pair0 + p] = text0 + s.pairText[p];
    }
    out.keys.push(...s.keys);
    out.texts.push(...s.texts);
    image0 += s.keys.length;
    text0 += s.textLength.length;
    pair0 += s.pairImage.length;
  }
  return out;
}
