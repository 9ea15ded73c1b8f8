// Evaluation pieces of issue 8: frozen nsfwjs features (checked against the tfjs cpu backend), the
// feature classifier behind prompt accuracy (hand-made clusters, ranks by hand, save/load), and
// `muse train classifier` + `muse eval emoji` end to end on a tiny model folder.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { buildShapesDataset } from '../src/data/build-shapes.js';
import { centralHalfMask, inpaintForSamples } from '../src/eval/emoji-eval.js';
import { FeatureClassifier, topK } from '../src/eval/feature-classifier.js';
import type { FeatureSet } from '../src/eval/frechet.js';
import { FrozenFeatures } from '../src/eval/frozen-features.js';
import { encodePng, type RgbImage } from '../src/image/image.js';
import { MusePipeline } from '../src/pipeline/pipeline.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { Rng } from '../src/tensor/random.js';
import { tokenizerPreset } from '../src/tokenizer/config.js';
import { saveTransformer } from '../src/transformer/checkpoint.js';
import { transformerConfig } from '../src/transformer/config.js';
import { initTransformer } from '../src/transformer/model.js';
import { MuseError } from '../src/util/errors.js';
import { relativeError } from './helpers/compare.js';
import { writeTinyPipeline } from './helpers/tiny-pipeline.js';

const dir = mkdtempSync(join(tmpdir(), 'muse-eval-'));

function picture(seed: number, size = 16): RgbImage {
  const rng = new Rng(seed);
  // Smooth-ish colour blocks, closer to real images than noise.
  const block = Array.from({ length: 16 }, () => [rng.int(256), rng.int(256), rng.int(256)]);
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++)
      data.set(block[Math.floor((y * 4) / size) * 4 + Math.floor((x * 4) / size)], (y * size + x) * 3);
  return { width: size, height: size, data };
}

before(async () => {
  await initBackend();
});

after(() => shutdownBackend());

test('frozen features: MobileNetV2 on the default backend matches the tfjs cpu backend; InceptionV3 is 2,048-d, batch-independent', async () => {
  const mobilenet = await FrozenFeatures.load('mobilenet_v2');
  const images = [picture(1), picture(2, 24)];
  const fast = mobilenet.features(images);
  assert.equal(fast.d, 1280);
  const backend = tf.getBackend();
  tf.setBackend('cpu');
  let reference: FeatureSet;
  try {
    reference = mobilenet.features(images);
  } finally {
    tf.setBackend(backend);
  }
  assert.ok(
    relativeError(fast.data, reference.data) < 1e-3,
    `relative error ${relativeError(fast.data, reference.data)}`,
  );
  mobilenet.dispose();

  const inception = await FrozenFeatures.load('inception_v3');
  const both = inception.features([picture(3), picture(4)], 2);
  const alone = inception.features([picture(4)]);
  assert.equal(both.d, 2048);
  assert.ok(relativeError(both.data.subarray(2048), alone.data) < 1e-4);
  // Pooled ReLU outputs: non-negative, finite, and different for different images.
  assert.ok(both.data.every((v) => Number.isFinite(v) && v >= 0));
  assert.ok(relativeError(both.data.subarray(0, 2048), both.data.subarray(2048)) > 0.05);
  inception.dispose();
  await assert.rejects(FrozenFeatures.load('resnet' as never), MuseError);
});

function clusters(perClass: number, seed: number): { f: FeatureSet; labels: string[] } {
  const rng = new Rng(seed);
  const centres = [
    [4, 0, 0, 1],
    [0, 4, 0, 1],
    [0, 0, 4, 1],
  ];
  const labels: string[] = [];
  const data = new Float32Array(3 * perClass * 4);
  for (let c = 0; c < 3; c++)
    for (let i = 0; i < perClass; i++) {
      const row = labels.length;
      for (let k = 0; k < 4; k++) data[row * 4 + k] = centres[c][k] + rng.normal();
      labels.push(['apple', 'bee', 'cat'][c]);
    }
  return { f: { n: labels.length, d: 4, data }, labels };
}

test('feature classifier: learns separable clusters, ranks targets, misses unknown labels, saves and loads', async () => {
  const train = clusters(40, 1);
  const c = FeatureClassifier.train('mobilenet_v2', train.f, train.labels, { epochs: 40, batch: 32 });
  assert.deepEqual(c.labels, ['apple', 'bee', 'cat']);
  const test = clusters(20, 2);
  const ranks = c.ranks(test.f, test.labels);
  assert.ok(topK(ranks, 1) > 0.95, `top-1 ${topK(ranks, 1)}`);
  assert.equal(topK(ranks, 3), 1);
  // Ranks by hand from the logits of one row.
  const one: FeatureSet = { n: 1, d: 4, data: Float32Array.from([0, 0, 4, 1]) };
  const logits = c.logits(one);
  const order = [0, 1, 2].sort((a, b) => logits[b] - logits[a]);
  assert.deepEqual(
    c.ranks({ n: 3, d: 4, data: Float32Array.from([...one.data, ...one.data, ...one.data]) }, ['apple', 'bee', 'cat']),
    [order.indexOf(0), order.indexOf(1), order.indexOf(2)],
  );
  assert.deepEqual(c.ranks(one, ['dog']), [Number.POSITIVE_INFINITY]);
  assert.equal(topK([0, 3, Number.POSITIVE_INFINITY, 4], 4), 0.5);

  const path = join(dir, 'clf.safetensors');
  await c.save(path, { valTop1: '0.5' });
  const back = await FeatureClassifier.load(path);
  assert.equal(back.info.valTop1, '0.5');
  assert.deepEqual(back.ranks(test.f, test.labels), ranks); // F16 weights: same ranking on these clusters
  assert.throws(() => back.logits({ n: 1, d: 3, data: new Float32Array(3) }), /4-d features/);
  assert.throws(() => FeatureClassifier.train('mobilenet_v2', train.f, train.labels.slice(1)), MuseError);
});

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

async function writeEmojiLikeDataset(folder: string, items: { code: string; caption: string; seed: number }[]) {
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'dataset.json'), JSON.stringify({ name: 'test', size: 16 }));
  for (const [i, it] of items.entries()) {
    writeFileSync(join(folder, `img-${i}.png`), await encodePng(picture(it.seed)));
    writeFileSync(join(folder, `img-${i}.json`), JSON.stringify({ caption: it.caption, code: it.code }));
  }
}

test('muse train classifier, then muse eval emoji: JSON, Markdown and sample grid in one folder', async () => {
  const model = join(dir, 'model');
  await writeTinyPipeline(model, 16);
  const classes = ['1f34e', '1f41d', '1f431'];
  const names = ['a red apple', 'a bee', 'a cat face'];
  const item = (c: number, seed: number) => ({ code: classes[c], caption: names[c], seed });
  await writeEmojiLikeDataset(
    join(dir, 'train'),
    [0, 1, 2, 0, 1, 2].map((c, i) => item(c, 10 + c + 3 * (i >> 2))),
  );
  await writeEmojiLikeDataset(
    join(dir, 'pairs'),
    [0, 1, 2].map((c) => item(c, 10 + c)),
  );
  await writeEmojiLikeDataset(
    join(dir, 'heldout'),
    [0, 1, 2, 0].map((c, i) => item(c, 40 + i)),
  );
  const run = join(dir, 'judge-run');
  const classifier = join(run, 'classifier.safetensors');
  const t = cli(
    'train',
    'classifier',
    '--data',
    join(dir, 'train'),
    '--val',
    join(dir, 'pairs'),
    '--size',
    '16',
    '--out',
    run,
    '--steps',
    '30',
    '--batch',
    '6',
    '--width',
    '8',
    '--eval-every',
    '15',
  );
  assert.equal(t.code, 0, t.err);
  assert.match(t.err, /3 classes from 6 images/);
  assert.match(t.out, /finished at step 30/);
  assert.match(t.out, /held-out top-1 \d+\.\d%, top-5 100\.0%/);
  assert.ok(existsSync(classifier));
  // The first judge (a linear probe over frozen MobileNetV2 features), reported beside the CNN.
  const probe = join(dir, 'probe.safetensors');
  const tp = cli(
    'train',
    'classifier',
    '--net',
    'mobilenet_v2',
    '--data',
    join(dir, 'train'),
    '--val',
    join(dir, 'pairs'),
    '--size',
    '16',
    '--out',
    probe,
    '--epochs',
    '20',
  );
  assert.equal(tp.code, 0, tp.err);

  const prompts = join(dir, 'prompts.txt');
  writeFileSync(prompts, 'a red apple\n\na bee\n');
  const out = join(dir, 'eval');
  const r = cli(
    'eval',
    'emoji',
    '--model',
    model,
    '--classifier',
    classifier,
    '--classifier',
    probe,
    '--train',
    join(dir, 'train'),
    '--heldout',
    join(dir, 'heldout'),
    '--count',
    '4',
    '--prompts',
    prompts,
    '--guidance',
    '0.5',
    '--out',
    out,
  );
  assert.equal(r.code, 0, r.err);
  const report = JSON.parse(readFileSync(join(out, 'emoji.json'), 'utf8'));
  assert.equal(report.promptAccuracy.images, 4);
  assert.equal(report.decoding.guidance, 0.5);
  assert.equal(report.decoding.steps, 6); // the model's default
  assert.ok(report.promptAccuracy.top5 >= report.promptAccuracy.top1);
  assert.equal(report.promptAccuracy.top5, 1); // 3 classes: every target is within the top 5
  assert.equal(report.promptAccuracy.judge, 'cnn');
  assert.equal(report.otherJudges[0].judge, 'linear probe on mobilenet_v2 features');
  assert.equal(report.otherJudges[0].images, 4);
  assert.ok(Number.isFinite(report.promptAccuracy.ceiling.top1));
  assert.equal(report.fidLike.images, 4);
  assert.ok(report.fidLike.generated > 0 && report.fidLike.reconstruction > 0);
  assert.equal(report.inpainting.caption.images, 4);
  assert.equal(report.inpainting.empty.images, 4);
  assert.equal(report.inpainting.judge, 'cnn');
  for (const k of ['caption', 'empty']) assert.ok(report.inpainting[k].top1 >= 0 && report.inpainting[k].top1 <= 1);
  const md = readFileSync(join(out, 'emoji.md'), 'utf8');
  assert.match(md, /FID-like/);
  assert.match(md, /inpainting top-1 \(centre of 4 images of .*heldout under their caption; judge: cnn\)/);
  assert.match(md, /judge: cnn/);
  assert.match(md, /judge: linear probe on mobilenet_v2 features/);
  assert.ok(existsSync(join(out, 'samples.png')));

  const bad = cli(
    'eval',
    'emoji',
    '--model',
    model,
    '--classifier',
    join(dir, 'none.safetensors'),
    '--train',
    join(dir, 'train'),
    '--heldout',
    join(dir, 'heldout'),
    '--out',
    out,
  );
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /none\.safetensors/);
  // Inpainting images of emoji the judge never learnt cannot be judged: one clear line, before any work.
  await writeEmojiLikeDataset(join(dir, 'unknown'), [{ code: '1f600', caption: 'a grinning face', seed: 50 }]);
  const unknown = cli(
    'eval',
    'emoji',
    '--model',
    model,
    '--classifier',
    classifier,
    '--train',
    join(dir, 'train'),
    '--heldout',
    join(dir, 'heldout'),
    '--inpaint',
    join(dir, 'unknown'),
    '--out',
    out,
  );
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.err, /--inpaint .*unknown: the judge names none of its emoji/);
});

test('the inpainting mask is the central half of the area in whole tokens; the rest of each image is kept', async () => {
  // 32 px with 4 px tokens: the central 6×6 tokens (24×24 px, 56%); 64 px: 12×12 tokens (56%).
  for (const [size, side] of [
    [32, 24],
    [64, 48],
  ]) {
    const m = centralHalfMask(size, 4);
    const on = m.data.reduce((a, v) => a + v, 0);
    assert.equal(on, side * side);
    const from = (size - side) / 2;
    assert.equal(m.data[from * size + from], 1);
    assert.equal(m.data[(from - 1) * size + from], 0);
    assert.equal(m.data[(from + side) * size + from + side - 1], 0);
  }
  const model = join(dir, 'model-inpaint');
  await writeTinyPipeline(model, 16);
  const muse = await MusePipeline.load(model);
  try {
    const rng = new Rng(3);
    const image: RgbImage = { width: 16, height: 16, data: Uint8Array.from({ length: 768 }, () => rng.int(256)) };
    const sample = { key: 'k', image, captions: ['a red apple'], meta: { code: '1f34e' } };
    const [a] = await inpaintForSamples(muse, [sample], 'caption', { seed: 1, steps: 2 });
    const [b] = await inpaintForSamples(muse, [sample], 'empty', { seed: 1, steps: 2 });
    const mask = centralHalfMask(16, muse.tokenizer.downsample);
    for (const out of [a, b])
      for (let i = 0; i < 256; i++)
        if (!mask.data[i])
          for (let c = 0; c < 3; c++) assert.equal(out.data[i * 3 + c], image.data[i * 3 + c], 'outside the mask');
    assert.notDeepEqual(a.data, b.data, 'the caption changes the centre');
  } finally {
    muse.dispose();
  }
});

test('muse eval superres: PSNR, SSIM and FID-like for bicubic, each super-res decoding and the ceiling', async () => {
  // The tiny folder plus a tiny super-res stage (16 px → 32 px), evaluated on 32 px images.
  const model = join(dir, 'model-sr');
  await writeTinyPipeline(model, 16);
  const tc = tokenizerPreset('tiny');
  const sc = transformerConfig('superres-tiny', {
    codebookSize: tc.codebookSize,
    grid: [8, 8],
    lowres: { codebookSize: tc.codebookSize, grid: [4, 4] },
  });
  const sp = initTransformer(sc, new Rng(3));
  await saveTransformer(join(model, 'superres.safetensors'), sp, sc, { kind: 'muse-superres' });
  tf.dispose(Object.values(sp));
  const file = JSON.parse(readFileSync(join(model, 'pipeline.json'), 'utf8'));
  writeFileSync(
    join(model, 'pipeline.json'),
    JSON.stringify({
      ...file,
      superres: 'superres.safetensors',
      superresSize: 32,
      // A pipeline whose default is the mean-code choice: the greedy row must still draw greedily.
      defaults: { ...file.defaults, superresChoice: 'mean-code', choiceTemperature: 0 },
    }),
  );
  const data = join(dir, 'sr-data');
  mkdirSync(data, { recursive: true });
  for (let i = 0; i < 3; i++) {
    writeFileSync(join(data, `img-${i}.png`), await encodePng(picture(60 + i, 32)));
    writeFileSync(join(data, `img-${i}.txt`), 'a red apple');
  }
  const out = join(dir, 'eval-sr');
  const r = cli('eval', 'superres', '--model', model, '--data', data, '--count', '3', '--out', out);
  assert.equal(r.code, 0, r.err);
  const report = JSON.parse(readFileSync(join(out, 'superres.json'), 'utf8'));
  assert.equal(report.images, 3);
  for (const k of ['bicubic', 'superres', 'superresGreedy', 'superresMeanCode', 'reconstruction']) {
    assert.ok(Number.isFinite(report[k].psnr) && report[k].ssim <= 1, `${k} psnr/ssim`);
    assert.ok(Number.isFinite(report.fidLike[k]) && report.fidLike[k] >= 0, `${k} FID-like`);
  }
  assert.equal(report.superres.psnr, report.superresMeanCode.psnr, 'the defaults are the mean-code choice');
  assert.notEqual(report.superresGreedy.psnr, report.superresMeanCode.psnr, 'greedy is not the mean-code choice');
  const md = readFileSync(join(out, 'superres.md'), 'utf8');
  assert.match(md, /\| method \| PSNR \| SSIM \| FID-like \(lower is better\) \|/);
  assert.match(md, /super-res, mean code \(deterministic\)/);
  assert.ok(existsSync(join(out, 'superres.png')));
});

test('muse eval shapes: generated and tokenizer-ceiling accuracy per category, JSON/Markdown/PNG', async () => {
  const model = join(dir, 'model-shapes');
  await writeTinyPipeline(model, 16);
  const data = join(dir, 'shapes');
  await buildShapesDataset({ size: 16, out: data, train: 12, heldout: 12, seed: 3, quiet: true });
  const out = join(dir, 'eval');
  const r = cli(
    'eval',
    'shapes',
    '--model',
    model,
    '--train',
    join(data, 'train'),
    '--heldout',
    join(data, 'heldout'),
    '--count',
    '6',
    '--out',
    out,
  );
  assert.equal(r.code, 0, r.err);
  const report = JSON.parse(readFileSync(join(out, 'shapes.json'), 'utf8'));
  for (const split of ['in-distribution', 'held-out']) {
    assert.equal(report[split].generated.overall.total, 6);
    assert.equal(report[split].tokenizerCeiling.overall.total, 6);
  }
  assert.match(readFileSync(join(out, 'shapes.md'), 'utf8'), /ceiling/);
  assert.ok(existsSync(join(out, 'shapes.png')));
});
