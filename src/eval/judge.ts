// The emoji judge behind `muse eval emoji`, whichever kind a file holds: the CNN trained on emoji
// (cnn-classifier.ts, the judge since 2026-12) or the linear probe over frozen nsfwjs features
// (feature-classifier.ts, the first one). Both name the emoji an image shows; each file carries its
// own ceiling (top-1/top-5 on real images of styles it never saw for that emoji).
import type { RgbImage } from '../image/rgb.js';
import { loadSafetensors } from '../tensor/safetensors.js';
import { MuseError } from '../util/errors.js';
import { CnnClassifier } from './cnn-classifier.js';
import { FeatureClassifier, topK } from './feature-classifier.js';
import { FrozenFeatures } from './frozen-features.js';

export interface Judge {
  /** "cnn" or "linear probe on mobilenet_v2 features". */
  readonly name: string;
  /** The sample metadata field its classes come from (the emoji code point by default). */
  readonly labelKey: string;
  /** Its accuracy on real images it never saw, as stored in its file (NaN where absent). */
  readonly ceiling: { top1: number; top5: number; data: string };
  /** The classes it names. */
  readonly labels: readonly string[];
  /** For each image, the rank of its target class (0 = top-1; Infinity for a class it does not know). */
  ranks(images: RgbImage[], targets: string[]): number[];
  dispose(): void;
}

export interface JudgeScore {
  images: number;
  top1: number;
  top5: number;
}

export function score(judge: Judge, images: RgbImage[], targets: string[]): JudgeScore {
  const ranks = judge.ranks(images, targets);
  return { images: images.length, top1: topK(ranks, 1), top5: topK(ranks, 5) };
}

function ceilingOf(info: Record<string, string>) {
  return { top1: Number(info.valTop1), top5: Number(info.valTop5), data: info.val ?? 'unknown' };
}

export async function loadJudge(path: string): Promise<Judge> {
  const { metadata } = await loadSafetensors(path);
  if (metadata.kind === 'cnn-classifier') {
    const cnn = await CnnClassifier.load(path);
    return {
      name: 'cnn',
      labelKey: cnn.info.label ?? 'code',
      labels: cnn.labels,
      ceiling: ceilingOf(cnn.info),
      ranks: (images, targets) => cnn.ranks(images, targets),
      dispose: () => cnn.dispose(),
    };
  }
  if (metadata.kind === 'feature-classifier') {
    const probe = await FeatureClassifier.load(path);
    const features = await FrozenFeatures.load(probe.net);
    return {
      name: `linear probe on ${probe.net} features`,
      labelKey: probe.info.label ?? 'code',
      labels: probe.labels,
      ceiling: ceilingOf(probe.info),
      ranks: (images, targets) => probe.ranks(features.features(images), targets),
      dispose: () => features.dispose(),
    };
  }
  throw new MuseError(`${path} is not an emoji judge (made by \`muse train classifier\`)`);
}
