// FID-like score (issue 8) of a model folder as a function of its decoding settings: one image per
// held-out caption for each setting, against the same real images (their InceptionV3 features are
// computed once), beside the tokenizer-reconstruction floor. Picks decoding defaults by measurement
// instead of by eye. Usage:
//   node --import tsx bench/fid-decoding.ts MODEL HELDOUT_DATASET [count] [settings.json]
// settings.json: a list of decoding options, e.g. [{"guidance":3},{"guidance":1,"temperature":0.8}].
import { readFileSync } from 'node:fs';
import { openDataset } from '../src/data/dataset.js';
import { SkipReport } from '../src/data/sample.js';
import { fidLike, generateForSamples } from '../src/eval/emoji-eval.js';
import { frechetDistance } from '../src/eval/frechet.js';
import { FrozenFeatures } from '../src/eval/frozen-features.js';
import { spreadSamples } from '../src/eval/spread.js';
import type { DecodingOptions } from '../src/pipeline/pipeline.js';
import { MusePipeline } from '../src/pipeline/pipeline.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';

const [model, heldout, countArg = '500', settingsFile] = process.argv.slice(2);
if (!model || !heldout) throw new Error('usage: bench/fid-decoding.ts MODEL HELDOUT_DATASET [count] [settings.json]');
const settings: DecodingOptions[] = settingsFile
  ? JSON.parse(readFileSync(settingsFile, 'utf8'))
  : [{}, { guidance: 1 }, { guidance: 6 }, { temperature: 0.7 }];
await initBackend();
const muse = await MusePipeline.load(model);
const samples = await spreadSamples(
  openDataset(heldout, { size: muse.imageSize, skip: new SkipReport() }),
  Number(countArg),
);
const inception = await FrozenFeatures.load('inception_v3');
const first = await fidLike(muse, samples, await generateForSamples(muse, samples, settings[0]), inception);
console.log(`${samples.length} held-out images; tokenizer floor ${first.reconstruction.toFixed(3)}`);
const real = inception.features(samples.map((s) => s.image));
console.log(`| decoding (beside the model's defaults) | FID-like | × floor |\n|---|---|---|`);
const row = (o: DecodingOptions, fid: number) =>
  console.log(`| ${JSON.stringify(o)} | ${fid.toFixed(3)} | ${(fid / first.reconstruction).toFixed(2)} |`);
row(settings[0], first.generated);
for (const o of settings.slice(1)) {
  const t0 = performance.now();
  const fid = frechetDistance(inception.features(await generateForSamples(muse, samples, o)), real);
  row(o, fid);
  console.error(`  (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
}
inception.dispose();
muse.dispose();
shutdownBackend();
