// `muse data build shapes`: synthetic scenes with ground-truth captions, train and held-out
// compositions, in the folder format (meta carries the category, spec and scene for scoring).
import { MuseError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { forEachLimited, writeBuiltSample, writeSummary } from './build.js';
import {
  CATEGORIES,
  generateShapes,
  HELDOUT_PAIRS,
  HELDOUT_RELATIONS,
  renderShapes,
  type ShapeSample,
} from './shapes.js';

export interface BuildShapesOptions {
  size: number;
  out: string;
  train: number;
  heldout: number;
  seed: number;
  quiet?: boolean;
}

export async function buildShapesDataset(
  options: BuildShapesOptions,
): Promise<{ counts: Record<string, Record<string, number>> }> {
  const { size, out, seed } = options;
  if (!Number.isInteger(size) || size < 16 || size > 1024) {
    throw new MuseError(`size must be an integer from 16 to 1024 for shapes, got ${size}`);
  }
  if (!Number.isFinite(seed)) throw new MuseError(`seed must be a number, got ${seed}`);
  const samples: ShapeSample[] = [
    ...generateShapes({ count: options.train, seed, split: 'train' }),
    ...generateShapes({ count: options.heldout, seed: seed + 1, split: 'heldout' }),
  ];
  const counts: Record<string, Record<string, number>> = {
    train: Object.fromEntries(CATEGORIES.map((c) => [c, 0])),
    heldout: Object.fromEntries(CATEGORIES.map((c) => [c, 0])),
  };
  const progress = options.quiet
    ? undefined
    : new Progress({ total: samples.length, label: 'rendering shapes', unit: 'img' });
  await forEachLimited(samples, 4, async (s) => {
    await writeBuiltSample(out, {
      split: s.split,
      key: s.key,
      image: await renderShapes(s, size),
      captions: s.captions,
      meta: { dataset: 'shapes', category: s.category, split: s.split, spec: s.spec, scene: s.scene },
    });
    counts[s.split][s.category]++;
    progress?.tick();
  });
  writeSummary(out, {
    name: 'shapes',
    size,
    seed,
    counts,
    heldOut: { colourShapePairs: HELDOUT_PAIRS, relations: HELDOUT_RELATIONS },
    splits: { train: 'in-distribution compositions', heldout: 'compositions never seen in training' },
    builtWith: 'muse data build shapes',
  });
  return { counts };
}
