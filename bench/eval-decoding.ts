// The emoji model's two generation scores (issue 8) as a function of its decoding settings, to pick
// the defaults by measurement rather than by eye (guidance trades diversity, i.e. FID, for prompt
// fidelity). For each setting: FID-like of one image per held-out caption against the real held-out
// images (their InceptionV3 features computed once; the tokenizer-reconstruction floor printed
// first), and prompt accuracy (top-1/top-5, judged by MODEL/classifier.safetensors) of one image per training
// caption. Usage:
//   node --import tsx bench/eval-decoding.ts MODEL TRAIN_DATASET HELDOUT_DATASET [count] [settings.json]
// settings.json: a list of decoding options, e.g. [{"guidance":3},{"guidance":1,"temperature":0.8}].
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDataset } from '../src/data/dataset.js';
import { SkipReport } from '../src/data/sample.js';
import { generateForSamples, sampleLabels } from '../src/eval/emoji-eval.js';
import { frechetDistance } from '../src/eval/frechet.js';
import { FrozenFeatures } from '../src/eval/frozen-features.js';
import { loadJudge, score } from '../src/eval/judge.js';
import { spreadSamples } from '../src/eval/spread.js';
import type { MuseOptions } from '../src/pipeline/pipeline.js';
import { MusePipeline } from '../src/pipeline/pipeline.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';

const [model, train, heldout, countArg = '500', settingsFile] = process.argv.slice(2);
if (!model || !train || !heldout)
  throw new Error('usage: bench/eval-decoding.ts MODEL TRAIN_DATASET HELDOUT_DATASET [count] [settings.json]');
const settings: MuseOptions[] = settingsFile
  ? JSON.parse(readFileSync(settingsFile, 'utf8'))
  : [{}, { guidance: 0 }, { guidance: 1 }, { guidance: 2 }];
await initBackend();
const muse = await MusePipeline.load(model);
const read = (path: string) =>
  spreadSamples(openDataset(path, { size: muse.imageSize, skip: new SkipReport() }), Number(countArg));
const heldoutSamples = await read(heldout);
const trainSamples = await read(train);
const judge = await loadJudge(join(model, 'classifier.safetensors'));
const labels = sampleLabels(trainSamples, judge.labelKey);
const inception = await FrozenFeatures.load('inception_v3');
const realImages = heldoutSamples.map((s) => s.image);
const real = inception.features(realImages);
const floor = frechetDistance(inception.features(await muse.tokenizer.reconstruct(realImages)), real);
console.log(
  `${heldoutSamples.length} held-out / ${trainSamples.length} training captions; judge (${judge.name}) ceiling top-1 ${judge.ceiling.top1}, top-5 ${judge.ceiling.top5}`,
);
console.log('| decoding (beside the defaults) | FID-like | × floor | top-1 | top-5 |\n|---|---|---|---|---|');
for (const o of settings) {
  const t0 = performance.now();
  const generated = await generateForSamples(muse, heldoutSamples, o);
  const fid = frechetDistance(inception.features(generated), real);
  const acc = score(judge, await generateForSamples(muse, trainSamples, o), labels);
  console.log(
    `| ${JSON.stringify(o)} | ${fid.toFixed(3)} | ${(fid / floor).toFixed(2)} | ${(100 * acc.top1).toFixed(1)}% | ${(100 * acc.top5).toFixed(1)}% |`,
  );
  console.error(`  (${((performance.now() - t0) / 1000).toFixed(0)} s; floor ${floor.toFixed(3)})`);
}
inception.dispose();
judge.dispose();
muse.dispose();
shutdownBackend();
