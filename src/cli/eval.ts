// `muse eval`: measurements of a model folder on held-out data, written as JSON, Markdown and PNG.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openDataset } from '../data/dataset.js';
import { imageGrid } from '../data/grid.js';
import { SkipReport } from '../data/sample.js';
import { CATEGORIES } from '../data/shapes.js';
import { evaluateShapes } from '../eval/shapes-eval.js';
import type { Tally } from '../eval/shapes-score.js';
import { spreadSamples } from '../eval/spread.js';
import { evaluateSuperres } from '../eval/superres-eval.js';
import { MuseError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { openPipeline } from './decoding-options.js';
import { numberOption, subcommandHelp } from './options.js';

export const evalHelp = `Usage: muse eval superres --data DATASET --out DIR [--model DIR] [--count 256] [--seed 0]
       muse eval shapes --train DATASET --heldout DATASET --out DIR [--model DIR] [--count 300] [--seed 0]

  superres: on images of the super-res size (e.g. data/emoji64/test_emoji), PSNR and SSIM against
  the real image of (a) bicubic upsampling of the base-size token reconstruction, (b) the super-res
  stage from the same low-res tokens (sampled, and greedy), (c) the tokenizer's own reconstruction at
  the super-res size (the ceiling). Writes superres.json, superres.md and superres.png
  (real | bicubic | super-res) to DIR.

  shapes: GenEval-style accuracy per category (single, two, counting, colors, position, attribute)
  of images generated from captions of the shapes dataset, judged from their pixels alone, for
  in-distribution captions (--train) and held-out compositions (--heldout). Writes shapes.json,
  shapes.md and shapes.png (held-out samples marked ✓/✗) to DIR.`;

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
  const muse = await openPipeline(values);
  if (!muse.superres) throw new MuseError(`${muse.folder} has no super-res stage`);
  const samples = await spreadSamples(openDataset(values.data, { size: muse.sizes[1], skip: new SkipReport() }), count);
  const progress = new Progress({ total: samples.length, label: 'eval superres', unit: 'img' });
  const { scores, examples } = await evaluateSuperres(muse, samples, {
    count,
    seed: numberOption(values.seed, 'seed', 0, { integer: true }),
    onImage: () => progress.tick(1),
  });
  progress.finish();
  mkdirSync(values.out, { recursive: true });
  writeFileSync(
    join(values.out, 'superres.json'),
    `${JSON.stringify({ data: values.data, model: muse.folder, ...scores }, null, 2)}\n`,
  );
  const row = (name: string, s: { psnr: number; ssim: number }) =>
    `| ${name} | ${s.psnr.toFixed(2)} dB | ${s.ssim.toFixed(3)} |`;
  const table = [
    `Super-res on ${scores.images} images of ${values.data} (${muse.imageSize} → ${muse.sizes[1]} px), against the real images:`,
    '',
    '| method | PSNR | SSIM |',
    '|---|---|---|',
    row(`bicubic ×${muse.sizes[1] / muse.imageSize} of the ${muse.imageSize} px reconstruction`, scores.bicubic),
    row('super-res, sampled (pipeline defaults)', scores.superres),
    row('super-res, greedy', scores.superresGreedy),
    row(`tokenizer reconstruction at ${muse.sizes[1]} px (ceiling)`, scores.reconstruction),
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

async function shapes(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      train: { type: 'string' },
      heldout: { type: 'string' },
      out: { type: 'string' },
      model: { type: 'string' },
      count: { type: 'string' },
      seed: { type: 'string' },
    },
  });
  if (!values.train || !values.heldout) throw new MuseError('--train and --heldout datasets are required');
  if (!values.out) throw new MuseError('--out DIR is required');
  const count = numberOption(values.count, 'count', 300, { min: 1, integer: true });
  const seed = numberOption(values.seed, 'seed', 0, { integer: true });
  const muse = await openPipeline(values);
  const results: Record<string, Awaited<ReturnType<typeof evaluateShapes>>> = {};
  for (const [name, path] of [
    ['in-distribution', values.train],
    ['held-out', values.heldout],
  ] as const) {
    const samples = await spreadSamples(
      openDataset(path, { size: muse.imageSize, skip: new SkipReport() }),
      count,
      (s) => s.meta?.spec !== undefined,
    );
    const progress = new Progress({ total: samples.length, label: `eval shapes ${name}`, unit: 'img' });
    let last = 0;
    results[name] = await evaluateShapes(muse, samples, {
      seed,
      onBatch: (done) => {
        progress.tick(done - last);
        last = done;
      },
    });
    progress.finish();
  }
  mkdirSync(values.out, { recursive: true });
  const reports = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.report]));
  writeFileSync(join(values.out, 'shapes.json'), `${JSON.stringify({ model: muse.folder, ...reports }, null, 2)}\n`);
  const pct = (t: Tally) => (t.total ? `${(100 * t.accuracy).toFixed(1)}% (${t.correct}/${t.total})` : '–');
  const lines = [
    `Shapes: accuracy of generated images judged from their pixels (${muse.folder}).`,
    '',
    `| category | ${Object.keys(results).join(' | ')} |`,
    `|---|${Object.keys(results)
      .map(() => '---')
      .join('|')}|`,
    ...CATEGORIES.map(
      (c) =>
        `| ${c} | ${Object.values(results)
          .map((r) => pct(r.report.byCategory[c]))
          .join(' | ')} |`,
    ),
    `| **overall** | ${Object.values(results)
      .map((r) => pct(r.report.overall))
      .join(' | ')} |`,
    `| category mean (GenEval) | ${Object.values(results)
      .map((r) => `${(100 * r.report.categoryMean).toFixed(1)}%`)
      .join(' | ')} |`,
    '',
  ].join('\n');
  writeFileSync(join(values.out, 'shapes.md'), lines);
  const shown = results['held-out'].items.slice(0, 32);
  writeFileSync(
    join(values.out, 'shapes.png'),
    await imageGrid(
      shown.map((i) => ({ image: i.image, caption: `${i.ok ? '✓' : '✗'} ${i.caption}` })),
      { columns: 8, cell: 96, captionHeight: 40 },
    ),
  );
  console.log(lines);
  muse.dispose();
  return 0;
}

export async function evalCommand(args: string[]): Promise<number> {
  const help = subcommandHelp(args, evalHelp);
  if (help !== undefined) return help;
  const [sub, ...rest] = args;
  if (sub === 'superres') return superres(rest);
  if (sub === 'shapes') return shapes(rest);
  throw new MuseError(`unknown evaluation "${sub}": choose superres or shapes`);
}
