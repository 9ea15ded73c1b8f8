// `muse eval`: measurements of a model folder on held-out data, written as JSON, Markdown and PNG.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { openDataset } from '../data/dataset.js';
import { type Sample, SkipReport } from '../data/sample.js';
import { CATEGORIES } from '../data/shapes.js';
import {
  EMOJI_SAMPLE_PROMPTS,
  fidLike,
  generateForSamples,
  inpaintForSamples,
  sampleLabels,
} from '../eval/emoji-eval.js';
import { FrozenFeatures } from '../eval/frozen-features.js';
import { loadJudge, score } from '../eval/judge.js';
import { evaluateShapes } from '../eval/shapes-eval.js';
import type { ShapesReport, Tally } from '../eval/shapes-score.js';
import { spreadSamples } from '../eval/spread.js';
import { evaluateSuperres, superresFid } from '../eval/superres-eval.js';
import { imageGrid } from '../image/grid.js';
import { MuseError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { decodingOptions, openPipeline, samplingArgs } from './decoding-options.js';
import { numberOption, subcommandHelp } from './options.js';

export const evalHelp = `Usage: muse eval emoji --train DATASET --heldout DATASET --out DIR [--model DIR]
           [--classifier FILE] [--count 500] [--prompts FILE] [--seed 0] [decoding options]
       muse eval superres --data DATASET --out DIR [--model DIR] [--count 256] [--seed 0]
       muse eval shapes --train DATASET --heldout DATASET --out DIR [--model DIR] [--count 300] [--seed 0]
           [decoding options]

  superres: on images of the super-res size (e.g. data/emoji64/test_emoji), PSNR and SSIM against
  the real image of (a) bicubic upsampling of the base-size token reconstruction, (b) the super-res
  stage from the same low-res tokens (sampled, and greedy), (c) the tokenizer's own reconstruction at
  the super-res size (the ceiling). Writes superres.json, superres.md and superres.png
  (real | bicubic | super-res) to DIR.

  shapes: GenEval-style accuracy per category (single, two, counting, colors, position, attribute)
  of images generated from captions of the shapes dataset, judged from their pixels alone, for
  in-distribution captions (--train) and held-out compositions (--heldout). Writes shapes.json,
  shapes.md and shapes.png (held-out samples marked ✓/✗) to DIR.

  emoji: (1) prompt accuracy: one image per caption of --train (e.g. data/emoji32/train), named by
  a judge (\`muse train classifier\`; default MODEL/classifier.safetensors; give --classifier more
  than once to report several judges side by side), top-1 and top-5 against the emoji the caption
  names, beside the judge's own accuracy on real images it never saw (the ceiling, in its file). (2) FID-like: Fréchet distance of nsfwjs InceptionV3
  features between images generated from the captions of --heldout (e.g. data/emoji32/test_emoji)
  and the real held-out images, and between the tokenizer's reconstructions and the real images
  (the floor); NOT comparable to published FID (fine-tuned weights, tiny images upsampled to 299 px).
  (3) inpainting: the central half of each --inpaint image (default: --heldout; they must show emoji
  the judge knows, e.g. data/emoji32/test_pair, held-out styles of training emoji) regenerated under
  its own caption and under the empty prompt, both named by the (first) judge.
  --count images for each. Writes emoji.json, emoji.md and samples.png (a fixed prompt list, one
  per line in --prompts) to DIR.

  Decoding options (emoji and shapes; default: the model's pipeline.json): --steps, --guidance,
  --guidance-schedule, --temperature, --top-k, --choice-temperature, --schedule, --negative.`;

async function superres(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      data: { type: 'string' },
      out: { type: 'string' },
      model: { type: 'string' },
      count: { type: 'string' },
      seed: { type: 'string' },
    },
  });
  if (!values.data) throw new MuseError('--data DATASET is required (images of the super-res size)');
  if (!values.out) throw new MuseError('--out DIR is required');
  const count = numberOption(values.count, 'count', 256, { min: 1, integer: true });
  const muse = await openPipeline(values, { output: false });
  if (!muse.superres) throw new MuseError(`${muse.folder} has no super-res stage`);
  const samples = await spreadSamples(openDataset(values.data, { size: muse.sizes[1], skip: new SkipReport() }), count);
  const progress = new Progress({ total: samples.length, label: 'eval superres', unit: 'img' });
  const { scores, examples, pairs } = await evaluateSuperres(muse, samples, {
    count,
    seed: numberOption(values.seed, 'seed', 0, { integer: true }),
    onImage: () => progress.tick(1),
  });
  progress.finish();
  console.log(`InceptionV3 features of ${5 * scores.images} images…`);
  const inception = await FrozenFeatures.load('inception_v3');
  const fid = superresFid(pairs, (images) => inception.features(images));
  inception.dispose();
  mkdirSync(values.out, { recursive: true });
  writeFileSync(
    join(values.out, 'superres.json'),
    `${JSON.stringify({ data: values.data, model: shownPath(muse.folder), ...scores, fidLike: fid }, null, 2)}\n`,
  );
  const row = (name: string, s: { psnr: number; ssim: number }, f: number) =>
    `| ${name} | ${s.psnr.toFixed(2)} dB | ${s.ssim.toFixed(3)} | ${f.toFixed(3)} |`;
  const table = [
    `Super-res on ${scores.images} images of ${values.data} (${muse.imageSize} → ${muse.sizes[1]} px), against the real images:`,
    '',
    '| method | PSNR | SSIM | FID-like (lower is better) |',
    '|---|---|---|---|',
    row(
      `bicubic ×${muse.sizes[1] / muse.imageSize} of the ${muse.imageSize} px reconstruction`,
      scores.bicubic,
      fid.bicubic,
    ),
    row('super-res, pipeline defaults', scores.superres, fid.superres),
    row('super-res, greedy', scores.superresGreedy, fid.superresGreedy),
    row('super-res, mean code (deterministic)', scores.superresMeanCode, fid.superresMeanCode),
    row(`tokenizer reconstruction at ${muse.sizes[1]} px (ceiling)`, scores.reconstruction, fid.reconstruction),
    '',
    'FID-like: nsfwjs InceptionV3 features (fine-tuned weights), not comparable to published FID.',
    '',
  ].join('\n');
  writeFileSync(join(values.out, 'superres.md'), table);
  const items = examples.flatMap((e) => [
    { image: e.real, caption: 'real' },
    { image: e.bicubic, caption: 'bicubic' },
    { image: e.superres, caption: 'super-res' },
  ]);
  writeFileSync(join(values.out, 'superres.png'), await imageGrid(items, { columns: 6, cell: 128 }));
  console.log(table);
  muse.dispose();
  return 0;
}

/** The options of the evaluations that generate from the captions of a training and a held-out dataset. */
const generatingEvalArgs = {
  ...samplingArgs,
  train: { type: 'string' },
  heldout: { type: 'string' },
  out: { type: 'string' },
  model: { type: 'string' },
  count: { type: 'string' },
  seed: { type: 'string' },
} as const;

/** Those options checked: both datasets and --out required, --count at least `minCount`. */
function generatingEval(
  values: { train?: string; heldout?: string; out?: string; count?: string; seed?: string },
  defaultCount: number,
  minCount: number,
) {
  if (!values.train || !values.heldout) throw new MuseError('--train and --heldout datasets are required');
  if (!values.out) throw new MuseError('--out DIR is required');
  return {
    train: values.train,
    heldout: values.heldout,
    out: values.out,
    decoding: decodingOptions(values),
    count: numberOption(values.count, 'count', defaultCount, { min: minCount, integer: true }),
    seed: numberOption(values.seed, 'seed', 0, { integer: true }),
  };
}

async function shapes(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: generatingEvalArgs });
  const { decoding, count, seed, ...o } = generatingEval(values, 300, 1);
  const muse = await openPipeline(values, { output: false });
  const results: Record<string, Awaited<ReturnType<typeof evaluateShapes>>> = {};
  for (const [name, path] of [
    ['in-distribution', o.train],
    ['held-out', o.heldout],
  ] as const) {
    const samples = await spreadSamples(
      openDataset(path, { size: muse.imageSize, skip: new SkipReport() }),
      count,
      (s) => s.meta?.spec !== undefined,
    );
    const progress = new Progress({ total: samples.length, label: `eval shapes ${name}`, unit: 'img' });
    results[name] = await evaluateShapes(muse, samples, {
      ...decoding,
      seed,
      onBatch: (done) => progress.to(done),
    });
    progress.finish();
  }
  mkdirSync(o.out, { recursive: true });
  const reports = Object.fromEntries(
    Object.entries(results).map(([k, v]) => [k, { generated: v.report, tokenizerCeiling: v.ceiling }]),
  );
  writeFileSync(
    join(o.out, 'shapes.json'),
    `${JSON.stringify({ model: shownPath(muse.folder), ...reports }, null, 2)}\n`,
  );
  const pct = (t: Tally) => (t.total ? `${(100 * t.accuracy).toFixed(1)}% (${t.correct}/${t.total})` : '–');
  const columns = Object.entries(results).flatMap(([name, r]) => [
    { name, report: r.report },
    { name: `${name}, real images through the tokenizer (ceiling)`, report: r.ceiling },
  ]);
  const row = (label: string, cell: (r: ShapesReport) => string) =>
    `| ${label} | ${columns.map((c) => cell(c.report)).join(' | ')} |`;
  const lines = [
    `Shapes: accuracy of generated images judged from their pixels (${shownPath(muse.folder)}).`,
    '',
    `| category | ${columns.map((c) => c.name).join(' | ')} |`,
    `|---|${columns.map(() => '---').join('|')}|`,
    ...CATEGORIES.map((c) => row(c, (r) => pct(r.byCategory[c]))),
    row('**overall**', (r) => pct(r.overall)),
    row('category mean (GenEval)', (r) => `${(100 * r.categoryMean).toFixed(1)}%`),
    '',
  ].join('\n');
  writeFileSync(join(o.out, 'shapes.md'), lines);
  const shown = results['held-out'].items.slice(0, 32);
  writeFileSync(
    join(o.out, 'shapes.png'),
    await imageGrid(
      shown.map((i) => ({ image: i.image, caption: `${i.ok ? '✓' : '✗'} ${i.caption}` })),
      { columns: 8, cell: 96, captionHeight: 40 },
    ),
  );
  console.log(lines);
  muse.dispose();
  return 0;
}

async function emoji(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ...generatingEvalArgs,
      classifier: { type: 'string', multiple: true },
      prompts: { type: 'string' },
      inpaint: { type: 'string' },
    },
  });
  const { decoding, count, seed, ...o } = generatingEval(values, 500, 2);
  const prompts = values.prompts ? readPromptList(values.prompts) : EMOJI_SAMPLE_PROMPTS;
  const muse = await openPipeline(values, { output: false });
  const judgePaths = values.classifier?.length ? values.classifier : [join(muse.folder, 'classifier.safetensors')];
  const judges = [];
  for (const path of judgePaths) judges.push({ path, judge: await loadJudge(path) });
  const read = (path: string) =>
    spreadSamples(openDataset(path, { size: muse.imageSize, skip: new SkipReport() }), count);
  const trainSamples = await read(o.train);
  const heldoutSamples = await read(o.heldout);
  // Inpainting is judged, so its images must show emoji the (first) judge was trained to name.
  const inpaintData = values.inpaint ?? o.heldout;
  const firstJudge = judges[0].judge;
  const known = new Set(firstJudge.labels);
  const inpaintSamples = (values.inpaint ? await read(values.inpaint) : heldoutSamples).filter((s) =>
    known.has(String(s.meta?.[firstJudge.labelKey])),
  );
  if (inpaintSamples.length === 0)
    throw new MuseError(
      `--inpaint ${inpaintData}: the judge names none of its emoji (it knows the training emoji only); give held-out pairs of known emoji in unseen styles, e.g. data/emoji32/test_pair`,
    );
  const generate = async (samples: Sample[], label: string) => {
    const progress = new Progress({ total: samples.length, label, unit: 'img' });
    const images = await generateForSamples(muse, samples, {
      ...decoding,
      seed,
      onImages: (done) => progress.to(done),
    });
    progress.finish();
    return images;
  };
  const trainImages = await generate(trainSamples, 'generate (training captions)');
  const accuracies = judges.map(({ path, judge }) => {
    const accuracy = score(judge, trainImages, sampleLabels(trainSamples, judge.labelKey));
    return { judge: judge.name, classifier: shownPath(path), ...accuracy, ceiling: judge.ceiling };
  });
  // Inpainting: the centre of each held-out image regenerated under its caption and under none.
  const inpainted = async (prompt: 'caption' | 'empty') => {
    const progress = new Progress({ total: inpaintSamples.length, label: `inpaint (${prompt})`, unit: 'img' });
    const images = await inpaintForSamples(muse, inpaintSamples, prompt, {
      ...decoding,
      seed,
      onImages: (done) => progress.to(done),
    });
    progress.finish();
    return images;
  };
  const inpaintCaption = await inpainted('caption');
  const inpaintEmpty = await inpainted('empty');
  const inpaintLabels = sampleLabels(inpaintSamples, firstJudge.labelKey);
  const inpainting = {
    data: inpaintData,
    judge: firstJudge.name,
    mask: 'central half of the area (whole tokens)',
    caption: score(firstJudge, inpaintCaption, inpaintLabels),
    empty: score(firstJudge, inpaintEmpty, inpaintLabels),
  };
  for (const { judge } of judges) judge.dispose();
  const heldoutImages = await generate(heldoutSamples, 'generate (held-out captions)');
  console.log(`InceptionV3 features of ${3 * heldoutSamples.length} images…`);
  const inception = await FrozenFeatures.load('inception_v3');
  const fid = await fidLike(muse, heldoutSamples, heldoutImages, inception);
  inception.dispose();
  const report = {
    model: shownPath(muse.folder),
    size: muse.imageSize,
    seed,
    decoding: { ...muse.defaults, ...definedOnly(decoding) },
    promptAccuracy: { data: o.train, ...accuracies[0] },
    ...(accuracies.length > 1 && { otherJudges: accuracies.slice(1) }),
    fidLike: { data: o.heldout, ...fid, ratio: fid.generated / fid.reconstruction },
    inpainting,
  };
  mkdirSync(o.out, { recursive: true });
  writeFileSync(join(o.out, 'emoji.json'), `${JSON.stringify(report, null, 2)}\n`);
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const table = [
    `Emoji model ${report.model} at ${muse.imageSize} px, seed ${seed}, decoding ${JSON.stringify(report.decoding)}.`,
    '',
    '| measure | generated | reference | ratio |',
    '|---|---|---|---|',
    ...accuracies.flatMap((a) => [
      `| prompt accuracy top-1 (${a.images} training captions; judge: ${a.judge}) | ${pct(a.top1)} | ${pct(a.ceiling.top1)} (judge on real ${a.ceiling.data}) | ${(a.top1 / a.ceiling.top1).toFixed(2)} |`,
      `| prompt accuracy top-5 (judge: ${a.judge}) | ${pct(a.top5)} | ${pct(a.ceiling.top5)} | ${(a.top5 / a.ceiling.top5).toFixed(2)} |`,
    ]),
    `| FID-like (${fid.images} held-out captions; lower is better) | ${fid.generated.toFixed(3)} | ${fid.reconstruction.toFixed(3)} (tokenizer reconstructions) | ${report.fidLike.ratio.toFixed(2)} |`,
    `| inpainting top-1 (centre of ${inpainting.caption.images} images of ${inpainting.data} under their caption; judge: ${inpainting.judge}) | ${pct(inpainting.caption.top1)} | ${pct(inpainting.empty.top1)} (under the empty prompt) | ${(inpainting.caption.top1 / Math.max(inpainting.empty.top1, 1e-9)).toFixed(2)} |`,
    `| inpainting top-5 | ${pct(inpainting.caption.top5)} | ${pct(inpainting.empty.top5)} | ${(inpainting.caption.top5 / Math.max(inpainting.empty.top5, 1e-9)).toFixed(2)} |`,
    '',
    'FID-like: nsfwjs InceptionV3 features (fine-tuned weights), not comparable to published FID.',
    '',
  ].join('\n');
  writeFileSync(join(o.out, 'emoji.md'), table);
  const { images } = await muse.generate(prompts, { ...decoding, n: 1, seed, size: muse.imageSize });
  writeFileSync(
    join(o.out, 'samples.png'),
    await imageGrid(
      images.map((image, i) => ({ image, caption: prompts[i] })),
      { columns: 8, cell: 96, captionHeight: 40 },
    ),
  );
  console.log(table);
  muse.dispose();
  return 0;
}

/** A path as the reports show it: relative to the working folder (no machine-specific prefix). */
function shownPath(path: string): string {
  return relative(process.cwd(), path) || '.';
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function readPromptList(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new MuseError(`cannot read the prompt list ${path}`);
  }
  const prompts = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  if (prompts.length === 0) throw new MuseError(`${path} has no prompts (one per line)`);
  return prompts;
}

export async function evalCommand(args: string[]): Promise<number> {
  const help = subcommandHelp(args, evalHelp);
  if (help !== undefined) return help;
  const [sub, ...rest] = args;
  if (sub === 'superres') return superres(rest);
  if (sub === 'shapes') return shapes(rest);
  if (sub === 'emoji') return emoji(rest);
  throw new MuseError(`unknown evaluation "${sub}": choose emoji, shapes or superres`);
}
