// `muse train classifier`: the judge of `muse eval emoji`'s prompt accuracy.

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openDataset } from '../data/dataset.js';
import type { Sample } from '../data/sample.js';
import { SkipReport } from '../data/sample.js';
import { CNN_DEFAULT } from '../eval/cnn-classifier.js';
import { JUDGE_FILE, trainJudge } from '../eval/cnn-trainer.js';
import { sampleLabels } from '../eval/emoji-eval.js';
import { FeatureClassifier, topK } from '../eval/feature-classifier.js';
import { type FeatureNet, FrozenFeatures } from '../eval/frozen-features.js';
import { initBackend } from '../tensor/backend.js';
import type { Scalars } from '../train/harness.js';
import { MuseError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { numberOption } from './options.js';
import { runTraining, TRAINING_OPTIONS, trainingHelp, trainingUsage, trainingValues } from './training.js';

const JUDGE_DEFAULTS = { lr: 2e-3, weightDecay: 5e-4, evalEvery: 500, steps: 6000, batch: 64, warmup: 200 };

export const trainClassifierHelp = `  muse train classifier --data DATASET --val DATASET --out RUN [--size 32] [--label code]
      [--width 48] [--net cnn]
${trainingUsage({ lr: '2e-3', weightDecay: '5e-4', evalEvery: 500 }, '      ').replace('[--steps 20000] [--batch 32]', '[--steps 6000] [--batch 64]').replace('[--warmup 500]', '[--warmup 200]')}
      The judge of \`muse eval emoji\`: one class per value of each sample's metadata field --label
      (the emoji code point by default). A small convolutional network (three stages of width W, 2W,
      4W) trained from scratch on views of the training images with random shift, zoom, blur and
      brightness; RUN gets classifier.safetensors and a checkpoint for an exact --resume. --val
      measures it on images it never saw (for emoji: data/emoji32/test_pair, known emoji in a style
      held out for them); its latest top-1/top-5 there is stored in the file as the ceiling of
      \`muse eval emoji\`.
${trainingHelp('      ')}
  muse train classifier --net mobilenet_v2|inception_v3 --data DATASET --val DATASET
      --out FILE.safetensors [--size 32] [--label code] [--epochs 30] [--lr 1e-3] [--seed 0]
      The first judge: a softmax layer over frozen nsfwjs features (seconds to train; weaker).`;

async function readAll(path: string, size: number): Promise<Sample[]> {
  const skip = new SkipReport();
  const samples: Sample[] = [];
  for await (const s of openDataset(path, { size, skip })) samples.push(s);
  if (skip.total > 0) console.log(`${path}: ${skip.summary()}`);
  if (samples.length === 0) throw new MuseError(`${path}: no images`);
  return samples;
}

function featuresWithProgress(net: FrozenFeatures, samples: Sample[], label: string) {
  const progress = new Progress({ total: samples.length, label, unit: 'img' });
  const out = new Float32Array(samples.length * net.dims);
  for (let i = 0; i < samples.length; i += 64) {
    const part = samples.slice(i, i + 64);
    out.set(net.features(part.map((s) => s.image)).data, i * net.dims);
    progress.tick(part.length);
  }
  progress.finish();
  return { n: samples.length, d: net.dims, data: out };
}

export async function trainClassifier(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ...TRAINING_OPTIONS,
      width: { type: 'string' },
      data: { type: 'string' },
      val: { type: 'string' },
      size: { type: 'string' },
      label: { type: 'string' },
      net: { type: 'string' },
      epochs: { type: 'string' },
    },
  });
  if (!values.data || !values.val) throw new MuseError('--data and --val datasets are required');
  if (!values.out) throw new MuseError('--out is required: a run folder (--net cnn) or a file (the feature probes)');
  const size = numberOption(values.size, 'size', 32, { min: 8, integer: true });
  const labelKey = values.label ?? 'code';
  const netName = values.net ?? 'cnn';
  if (!['cnn', 'mobilenet_v2', 'inception_v3'].includes(netName))
    throw new MuseError(`--net must be cnn, mobilenet_v2 or inception_v3, got "${netName}"`);
  if (netName === 'cnn' && values.epochs !== undefined)
    throw new MuseError('--epochs is for the feature probes: the cnn judge trains for --steps');
  await initBackend();
  const train = await readAll(values.data, size);
  const val = await readAll(values.val, size);
  const trainLabels = sampleLabels(train, labelKey);
  const valLabels = sampleLabels(val, labelKey);
  const common = {
    data: values.data,
    val: values.val,
    size: String(size),
    label: labelKey,
    valImages: String(val.length),
  };
  const seed = numberOption(values.seed, 'seed', 0, { integer: true });
  if (netName === 'cnn') return trainCnnJudge(values, train, val, trainLabels, valLabels, common);
  const net = await FrozenFeatures.load(netName as FeatureNet);
  const trainF = featuresWithProgress(net, train, `${net.net} features (train)`);
  const valF = featuresWithProgress(net, val, `${net.net} features (val)`);
  const epochs = numberOption(values.epochs, 'epochs', 30, { min: 1, integer: true });
  const progress = new Progress({ total: epochs, label: 'classifier', unit: 'epoch' });
  const classifier = FeatureClassifier.train(net.net, trainF, trainLabels, {
    epochs,
    lr: numberOption(values.lr, 'lr', 1e-3, { min: 0 }),
    seed,
    onEpoch: (_, loss) => progress.tick(1, { loss }),
  });
  progress.finish();
  const known = new Set(classifier.labels);
  const ranks = classifier.ranks(valF, valLabels);
  const ceiling = {
    images: val.length,
    unknownLabels: valLabels.filter((l) => !known.has(l)).length,
    top1: topK(ranks, 1),
    top5: topK(ranks, 5),
  };
  const trainTop1 = topK(classifier.ranks(trainF, trainLabels), 1);
  await classifier.save(values.out, {
    ...common,
    epochs: String(epochs),
    trainTop1: trainTop1.toFixed(4),
    valTop1: ceiling.top1.toFixed(4),
    valTop5: ceiling.top5.toFixed(4),
  });
  console.log(
    `${classifier.labels.length} classes from ${train.length} images; train top-1 ${(100 * trainTop1).toFixed(1)}%; ` +
      `${values.val}: top-1 ${(100 * ceiling.top1).toFixed(1)}%, top-5 ${(100 * ceiling.top5).toFixed(1)}% ` +
      `(${ceiling.unknownLabels} of ${val.length} images of classes it has no examples of) → ${values.out}`,
  );
  net.dispose();
  return 0;
}

async function trainCnnJudge(
  values: Record<string, string | boolean | undefined>,
  train: Sample[],
  val: Sample[],
  trainLabels: string[],
  valLabels: string[],
  common: Record<string, string>,
): Promise<number> {
  const options = trainingValues(values, JUDGE_DEFAULTS);
  const width = numberOption(values.width as string | undefined, 'width', 48, { min: 4, max: 512, integer: true });
  const size = Number(common.size);
  const config = { ...CNN_DEFAULT, size, widths: [width, 2 * width, 4 * width] as [number, number, number] };
  const weights = join(options.out, JUDGE_FILE);
  console.error(
    `${new Set(trainLabels).size} classes from ${train.length} images; judge of width ${width} at ${size} px; ${val.length} held-out images`,
  );
  const view = {
    weights,
    fields: (s: Scalars) => ({ loss: s.loss, acc: s.accuracy, lr: s.lr }),
    validation: (e: Scalars) => `held-out top-1 ${(100 * e.top1).toFixed(1)}%, top-5 ${(100 * e.top5).toFixed(1)}%`,
  };
  await runTraining(view, (control) =>
    trainJudge({
      ...options,
      ...control,
      config,
      images: train.map((s) => s.image),
      labels: trainLabels,
      validation: { images: val.map((s) => s.image), labels: valLabels },
      info: { ...common, width: String(width) },
    }),
  );
  return 0;
}
