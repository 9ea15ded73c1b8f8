// GenEval-style compositional scores on the shapes dataset: generate an image from each sample's
// caption, then check the claim (objects, counts, colours, positions, attribute binding) from the
// generated pixels alone (shapes-score.ts). In-distribution captions come from the train split,
// held-out compositions from the heldout split (colour–shape pairs and relations never trained).

import type { Sample } from '../data/sample.js';
import type { ShapeSpec } from '../data/shapes.js';
import type { RgbImage } from '../image/image.js';
import type { MuseOptions, MusePipeline } from '../pipeline/pipeline.js';
import { type ShapesReport, scoreMany, scoreShapes, tallyScores } from './shapes-score.js';

export interface ShapesItem {
  caption: string;
  spec: ShapeSpec;
  image: RgbImage;
  ok: boolean;
  reason?: string;
}

export async function evaluateShapes(
  muse: MusePipeline,
  samples: Sample[],
  o: MuseOptions & { batch?: number; onBatch?: (done: number) => void } = {},
): Promise<{ report: ShapesReport; ceiling: ShapesReport; items: ShapesItem[] }> {
  const batch = o.batch ?? 16;
  const items: ShapesItem[] = [];
  const reconstructions: { image: RgbImage; spec: ShapeSpec }[] = [];
  for (let i = 0; i < samples.length; i += batch) {
    const part = samples.slice(i, i + batch);
    const captions = part.map((s) => s.captions[0]);
    const { images } = await muse.generate(captions, { ...o, n: 1, size: muse.imageSize, seed: (o.seed ?? 0) + i });
    // The real images through the tokenizer: what a perfect generator using it could reach.
    const recon = await muse.tokenizer.reconstruct(part.map((s) => s.image));
    part.forEach((s, j) => {
      const spec = s.meta?.spec as ShapeSpec;
      reconstructions.push({ image: recon[j], spec });
      const score = scoreShapes(images[j], spec);
      items.push({ caption: captions[j], spec, image: images[j], ok: score.ok, reason: score.reason });
    });
    o.onBatch?.(items.length);
  }
  return { report: tallyScores(items), ceiling: scoreMany(reconstructions), items };
}
