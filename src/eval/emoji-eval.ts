// The emoji model's two generation scores (issue 8):
// - prompt accuracy: images generated from training-set captions, named by a judge trained on real
//   emoji (judge.ts); top-1 / top-5 against the emoji the caption names;
// - FID-like: the Fréchet distance between InceptionV3 features of images generated from held-out
//   captions and of the real held-out images, beside the same distance for the tokenizer's
//   reconstructions of those images (the floor a generator using this tokenizer can reach).
// - inpainting (issue 19): the centre of held-out emoji regenerated under their own caption and under
//   the empty prompt, both named by the judge: the caption must make the difference.

import type { Sample } from '../data/sample.js';
import type { RgbImage } from '../image/image.js';
import type { PixelMask } from '../image/rgb.js';
import type { MuseOptions, MusePipeline } from '../pipeline/pipeline.js';
import { MuseError } from '../util/errors.js';
import { frechetDistance } from './frechet.js';
import type { FrozenFeatures } from './frozen-features.js';

export interface EvalOptions extends MuseOptions {
  batch?: number;
  /** Meta field holding a sample's class (default "code", the emoji code point). */
  labelKey?: string;
  onImages?: (done: number) => void;
}

export interface FidLike {
  images: number;
  /** Generated from held-out captions vs the real held-out images. */
  generated: number;
  /** Tokenizer reconstructions of the real images vs the real images. */
  reconstruction: number;
}

/** One image per sample, generated from its first caption, in batches (seed + sample index). */
export async function generateForSamples(muse: MusePipeline, samples: Sample[], o: EvalOptions): Promise<RgbImage[]> {
  const batch = o.batch ?? 16;
  const images: RgbImage[] = [];
  for (let i = 0; i < samples.length; i += batch) {
    const captions = samples.slice(i, i + batch).map((s) => s.captions[0] ?? '');
    const out = await muse.generate(captions, { ...o, n: 1, size: muse.imageSize, seed: (o.seed ?? 0) + i });
    images.push(...out.images);
    o.onImages?.(images.length);
  }
  return images;
}

export function sampleLabels(samples: Sample[], key = 'code'): string[] {
  return samples.map((s) => {
    const label = s.meta?.[key];
    if (typeof label !== 'string') throw new MuseError(`${s.key}: no "${key}" label in its metadata`);
    return label;
  });
}

export async function fidLike(
  muse: MusePipeline,
  samples: Sample[],
  generated: RgbImage[],
  inception: FrozenFeatures,
): Promise<FidLike> {
  if (generated.length !== samples.length) throw new MuseError('one generated image per held-out sample is needed');
  if (samples.length < 2) throw new MuseError('the FID-like score needs at least 2 images');
  const size = muse.imageSize;
  const real = samples.map((s) => {
    if (s.image.width !== size || s.image.height !== size)
      throw new MuseError(`${s.key}: ${s.image.width}×${s.image.height}, expected ${size}×${size}`);
    return s.image;
  });
  const realF = inception.features(real);
  return {
    images: real.length,
    generated: frechetDistance(inception.features(generated), realF),
    reconstruction: frechetDistance(inception.features(await muse.tokenizer.reconstruct(real)), realF),
  };
}

/** The fixed prompts of the evaluation's sample grid (the README's picture). */
export const EMOJI_SAMPLE_PROMPTS = [
  'a red apple',
  'thumbs up',
  'a red heart',
  'a smiling face with sunglasses',
  'a cat face',
  'a dog face',
  'a rocket',
  'a slice of pizza',
  'a sunflower',
  'a birthday cake',
  'a snowman',
  'a ghost',
  'a police car',
  'a grinning face',
  'a crying face',
  'a star',
];

/**
 * The centre of a size×size image covering half its area, rounded out to whole tokens of `cell`
 * pixels: for 32 px and 4 px tokens the central 24×24 (6×6 of 8×8 tokens, 56% of the pixels).
 */
export function centralHalfMask(size: number, cell: number): PixelMask {
  const tokens = size / cell;
  const side = Math.min(tokens, Math.ceil(tokens / Math.SQRT2 / 2) * 2 - (tokens % 2));
  const from = ((tokens - side) / 2) * cell;
  const to = from + side * cell;
  const data = new Uint8Array(size * size);
  for (let y = from; y < to; y++) data.fill(1, y * size + from, y * size + to);
  return { width: size, height: size, data };
}

/**
 * Each sample's image with its centre (centralHalfMask) regenerated under its first caption
 * (`prompt: 'caption'`) or the empty prompt ('empty'), one seeded image per sample (seed + index).
 */
export async function inpaintForSamples(
  muse: MusePipeline,
  samples: Sample[],
  prompt: 'caption' | 'empty',
  o: EvalOptions,
): Promise<RgbImage[]> {
  const size = muse.imageSize;
  const mask = centralHalfMask(size, muse.tokenizer.downsample);
  const images: RgbImage[] = [];
  for (const [i, s] of samples.entries()) {
    if (s.image.width !== size || s.image.height !== size)
      throw new MuseError(`${s.key}: ${s.image.width}×${s.image.height}, expected ${size}×${size}`);
    const text = prompt === 'caption' ? (s.captions[0] ?? '') : '';
    const out = await muse.inpaint(s.image, mask, text, { ...o, n: 1, seed: (o.seed ?? 0) + i });
    images.push(out.images[0]);
    o.onImages?.(images.length);
  }
  return images;
}
