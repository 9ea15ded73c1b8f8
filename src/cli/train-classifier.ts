// `muse train classifier`: the judge of `muse eval emoji`'s prompt accuracy.
import { parseArgs } from 'node:util';
import { openDataset } from '../data/dataset.js';
import type { Sample } from '../data/sample.js';
import { SkipReport } from '../data/sample.js';
import { CNN_DEFAULT, CnnClassifier } from '../eval/cnn-classifier.js';
import { sampleLabels } from '../eval/emoji-eval.js';
import { FeatureClassifier, topK } from '../eval/feature-classifier.js';
import { type FeatureNet, FrozenFeatures } from '../eval/frozen-features.js';
import { initBackend } from '../tensor/backend.js';
import { MuseError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { numberOption } from './options.js';

export const trainClassifierHelp = `  muse train classifier --data DATASET --val DATASET --out FILE.safetensors [--size 32]
      [--label code] [--net cnn|mobilenet_v2|inception_v3] [--epochs 30] [--lr] [--seed 0]
      The judge of \`muse eval emoji\`: one class per value of each sample's metadata field --label
      (the emoji code point by default). --net cnn (default): a small convolutional network trained
      from scratch with augmentation (shift, zoom, blur, brightness); --net mobilenet_v2 or
      inception_v3: a softmax layer over frozen nsfwjs features (the first judge). --val measures it
      on images it never saw (for emoji: data/emoji32/test_pair, known emoji in a style held out for
      them); its top-1/top-5 there is stored in the file as the ceiling of \`muse eval emoji\`.`;

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
      data: { type: 'string' },
      val: { type: 'string' },
      out: { type: 'string' },
      size: { type: 'string' },
      label: { type: 'string' },
      net: { type: 'string' },
      epochs: { type: 'string' },
      lr: { type: 'string' },
      seed: { type: 'string' },
    },
  });
  if (!values.data || !values.val) throw new MuseError('--data and --val datasets are required');
  if (!values.out) throw new MuseError('--out FILE.safetensors is required');
  const size = numberOption(values.size, 'size', 32, { min: 8, integer: true });
  const labelKey = values.label ?? 'code';
  const netName = values.net ?? 'cnn';
  if (!['cnn', 'mobilenet_v2', 'inception_v3'].includes(netName))
    throw new MuseError(`--net must be cnn, mobilenet_v2 or inception_v3, got "${netName}"`);
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
  if (netName === 'cnn') {
    const epochs = numberOption(values.epochs, 'epochs', 30, { min: 1, integer: true });
    const batch = Math.min(64, train.length);
    const progress = new Progress({
      total: Math.floor(train.length / batch) * epochs,
      label: 'judge (cnn)',
      unit: 'step',
    });
    let smoothLoss = Number.NaN;
    const t0 = performance.now();
    const judge = CnnClassifier.train(
      train.map((s) => s.image),
      trainLabels,
      {
        epochs,
        lr: numberOption(values.lr, 'lr', 2e-3, { min: 0 }),
        batch,
        seed,
        onStep: (step, _, loss) => {
          smoothLoss = Number.isNaN(smoothLoss) ? loss : 0.95 * smoothLoss + 0.05 * loss;
          progress.to(step, { loss: smoothLoss.toFixed(3) });
        },
      },
      { ...CNN_DEFAULT, size },
    );
    progress.finish();
    const ranks = judge.ranks(
      val.map((s) => s.image),
      valLabels,
    );
    const trainTop1 = topK(
      judge.ranks(
        train.map((s) => s.image),
        trainLabels,
      ),
      1,
    );
    const unknown = valLabels.filter((l) => !judge.labels.includes(l)).length;
    await judge.save(values.out, {
      ...common,
      epochs: String(epochs),
      minutes: ((performance.now() - t0) / 60000).toFixed(1),
      trainTop1: trainTop1.toFixed(4),
      valTop1: topK(ranks, 1).toFixed(4),
      valTop5: topK(ranks, 5).toFixed(4),
    });
    console.log(
      `${judge.labels.length} classes from ${train.length} images; train top-1 ${(100 * trainTop1).toFixed(1)}%; ` +
        `${values.val}: top-1 ${(100 * topK(ranks, 1)).toFixed(1)}%, top-5 ${(100 * topK(ranks, 5)).toFixed(1)}% ` +
        `(${unknown} of ${val.length} images of classes it has no examples of) → ${values.out}`,
    );
    judge.dispose();
    return 0;
  }
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
