// Does the super-res stage add real detail? On held-out images at the super-res size (issue 7):
//   bicubic:        the real image → base size → tokens → decoded → bicubic back up
//   super-res:      the same low-res tokens → super-res decoding (prompt = the image's caption)
//   reconstruction: the real image → tokens at the super-res size → decoded (the tokenizer's ceiling)
// each against the real image (PSNR, SSIM). Super-res is decoded three ways: the pipeline's defaults,
// greedy (temperature 0, no confidence noise: the most likely tokens), and mean-code (each position
// the code nearest its mean code vector, no confidence noise: the least expected latent error).

import type { Sample } from '../data/sample.js';
import { type RgbImage, resizeRgb } from '../image/image.js';
import { type ImagePair, meanPsnr, meanSsim } from '../image/metrics.js';
import type { MusePipeline } from '../pipeline/pipeline.js';
import { MuseError } from '../util/errors.js';
import { type FeatureSet, frechetDistance } from './frechet.js';

export interface SuperresScores {
  images: number;
  bicubic: { psnr: number; ssim: number };
  superres: { psnr: number; ssim: number };
  superresGreedy: { psnr: number; ssim: number };
  superresMeanCode: { psnr: number; ssim: number };
  reconstruction: { psnr: number; ssim: number };
}

/** Fréchet distance of InceptionV3 features to the real images (FID-like; lower is better). */
export interface SuperresFid {
  bicubic: number;
  superres: number;
  superresGreedy: number;
  superresMeanCode: number;
  reconstruction: number;
}

export interface SuperresExample {
  real: RgbImage;
  bicubic: RgbImage;
  superres: RgbImage;
  caption: string;
}

export async function evaluateSuperres(
  muse: MusePipeline,
  samples: Iterable<Sample> | AsyncIterable<Sample>,
  o: { count: number; seed?: number; onImage?: (done: number) => void; examples?: number },
): Promise<{ scores: SuperresScores; examples: SuperresExample[]; pairs: Record<SuperresMethod, ImagePair[]> }> {
  if (!muse.superres) throw new MuseError(`${muse.folder} has no super-res stage`);
  const high = muse.sizes[1];
  const low = muse.imageSize;
  const pairs: Record<SuperresMethod, ImagePair[]> = {
    bicubic: [] as ImagePair[],
    superres: [] as ImagePair[],
    greedy: [] as ImagePair[],
    meanCode: [] as ImagePair[],
    recon: [] as ImagePair[],
  };
  const examples: SuperresExample[] = [];
  for await (const s of samples) {
    if (pairs.bicubic.length >= o.count) break;
    if (s.image.width !== high || s.image.height !== high)
      throw new MuseError(`${s.key}: ${s.image.width}×${s.image.height}, expected ${high}×${high} images`);
    const real = s.image;
    const small = await resizeRgb(real, low);
    // The super-res stage's tokenizer (its low-res conditioning is that tokenizer's reading of `small`).
    const [lowRecon] = await muse.superresTokenizer.reconstruct([small]);
    const bicubic = await resizeRgb(lowRecon, high, 'cubic');
    const caption = s.captions[0] ?? '';
    const seed = (o.seed ?? 0) + pairs.bicubic.length;
    const sr = (await muse.upscale(small, caption, { seed })).images[0];
    // Greedy draws (the most likely token), whatever choice the pipeline's defaults make.
    const greedy = (
      await muse.upscale(small, caption, { seed, superresChoice: 'sample', temperature: 0, choiceTemperature: 0 })
    ).images[0];
    const meanCode = (await muse.upscale(small, caption, { seed, superresChoice: 'mean-code', choiceTemperature: 0 }))
      .images[0];
    const [recon] = await muse.superresTokenizer.reconstruct([real]);
    pairs.bicubic.push([bicubic, real]);
    pairs.superres.push([sr, real]);
    pairs.greedy.push([greedy, real]);
    pairs.meanCode.push([meanCode, real]);
    pairs.recon.push([recon, real]);
    if (examples.length < (o.examples ?? 8)) examples.push({ real, bicubic, superres: greedy, caption });
    o.onImage?.(pairs.bicubic.length);
  }
  if (pairs.bicubic.length === 0) throw new MuseError('no images to evaluate');
  const score = (p: ImagePair[]) => ({ psnr: meanPsnr(p), ssim: meanSsim(p) });
  return {
    scores: {
      images: pairs.bicubic.length,
      bicubic: score(pairs.bicubic),
      superres: score(pairs.superres),
      superresGreedy: score(pairs.greedy),
      superresMeanCode: score(pairs.meanCode),
      reconstruction: score(pairs.recon),
    },
    examples,
    pairs,
  };
}

export type SuperresMethod = 'bicubic' | 'superres' | 'greedy' | 'meanCode' | 'recon';

/**
 * FID-like scores of each method's images against the real images (one InceptionV3 feature set each,
 * `features` computing them): the second test — super-res must also look more like real 64 px
 * images than bicubic does, not only match them pixel by pixel.
 */
export function superresFid(
  pairs: Record<SuperresMethod, ImagePair[]>,
  features: (images: RgbImage[]) => FeatureSet,
): SuperresFid {
  const real = features(pairs.bicubic.map(([, r]) => r));
  const fid = (m: SuperresMethod) => frechetDistance(features(pairs[m].map(([im]) => im)), real);
  return {
    bicubic: fid('bicubic'),
    superres: fid('superres'),
    superresGreedy: fid('greedy'),
    superresMeanCode: fid('meanCode'),
    reconstruction: fid('recon'),
  };
}
