// `muse tokenizer train|encode|decode|reconstruct|eval`.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { builtSize } from '../data/build.js';
import { openDataset } from '../data/dataset.js';
import { SkipReport } from '../data/sample.js';
import { imageGrid } from '../image/grid.js';
import { decodeImage, encodePng, type RgbImage, resizeCenterCrop } from '../image/image.js';
import { initBackend } from '../tensor/backend.js';
import { type TokenizerConfig, tokenizerPreset, validateTokenizerConfig } from '../tokenizer/config.js';
import { VqTokenizer } from '../tokenizer/tokenizer.js';
import { evaluateReconstruction, type ReconstructionStats, trainTokenizer } from '../tokenizer/trainer.js';
import type { Scalars } from '../train/harness.js';
import { MuseError } from '../util/errors.js';
import { numberOption, subcommandHelp } from './options.js';
import { runTraining, TRAINING_OPTIONS, trainingHelp, trainingUsage, trainingValues } from './training.js';

const DEFAULTS = { lr: 2e-4, weightDecay: 1e-4, evalEvery: 1000 };

export const tokenizerHelp = `Usage: muse tokenizer <train|encode|decode|reconstruct|eval> ...

  muse tokenizer train --data DIR[:SIZE] [--data DIR2[:SIZE]] --out RUN [--val DIR[:SIZE]]
      [--config small-ema|small|compact|tiny|small-f8|FILE.json] [--crop 32] [--disc-start 5000]
      [--gan-weight 0.1] [--sample-every 500]
${trainingUsage({ lr: '2e-4', weightDecay: '1e-4', evalEvery: DEFAULTS.evalEvery }, '      ')}
      Trains the VQ tokenizer on random crop×crop windows of every image (each dataset read at its
      SIZE, default its dataset.json size or 32). RUN gets tokenizer.safetensors, samples/step-*.png,
      loss.png, psnr.png and the checkpoint (checkpoint.json naming a folder with the weights and the
      optimizer state, saved as one unit) for an exact --resume.
${trainingHelp('      ')}

  muse tokenizer encode IMAGE --model FILE [-o tokens.json]
  muse tokenizer decode TOKENS.json --model FILE -o image.png
  muse tokenizer reconstruct IMAGE [IMAGE...] --model FILE [-o side-by-side.png] [--size 32]
  muse tokenizer eval --model FILE --data DIR[:SIZE] [--limit N] [--json]
      PSNR, SSIM, fraction of the codebook used and code perplexity on a dataset.`;

/** "DIR" or "DIR:SIZE"; SIZE defaults to DIR/dataset.json's size, then 32. */
function parseDataArg(arg: string): { path: string; size: number } {
  const m = /^(.*):(\d+)$/.exec(arg);
  const path = m ? m[1] : arg;
  // A split folder (DIR/train) takes the size recorded for its dataset (DIR).
  const size = m ? Number(m[2]) : (builtSize(path) ?? builtSize(join(path, '..')));
  return { path, size: size ?? 32 };
}

async function loadImages(args: string[], limit = Number.POSITIVE_INFINITY): Promise<RgbImage[]> {
  const images: RgbImage[] = [];
  for (const arg of args) {
    const { path, size } = parseDataArg(arg);
    const skip = new SkipReport();
    for await (const s of openDataset(path, { size, skip })) {
      images.push(s.image);
      if (images.length >= limit) break;
    }
    if (skip.total) console.error(`${path}: ${skip.summary()}`);
  }
  return images;
}

function configFrom(value: string | undefined): TokenizerConfig {
  if (!value) return tokenizerPreset('small-ema');
  if (value.endsWith('.json')) {
    if (!existsSync(value)) throw new MuseError(`no such config file: ${value}`);
    return validateTokenizerConfig(JSON.parse(readFileSync(value, 'utf8')) as TokenizerConfig);
  }
  return tokenizerPreset(value);
}

const reconstructionLine = (e: ReconstructionStats) =>
  `held-out PSNR ${e.psnr.toFixed(2)} dB, SSIM ${e.ssim.toFixed(3)}, codes used ${(100 * e.used).toFixed(1)}%, perplexity ${e.perplexity.toFixed(0)}`;

async function train(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ...TRAINING_OPTIONS,
      data: { type: 'string', multiple: true },
      val: { type: 'string', multiple: true },
      config: { type: 'string' },
      crop: { type: 'string' },
      'disc-start': { type: 'string' },
      'gan-weight': { type: 'string' },
      'sample-every': { type: 'string' },
      'val-count': { type: 'string' },
    },
  });
  if (!values.data?.length)
    throw new MuseError('--data DIR is required (e.g. a folder made by `muse data build emoji`)');
  const common = trainingValues(values, DEFAULTS);
  const config = configFrom(values.config);
  await initBackend();
  const images = await loadImages(values.data);
  const validation = values.val?.length
    ? await loadImages(values.val, numberOption(values['val-count'], 'val-count', 256, { min: 1, integer: true }))
    : [];
  console.error(`${images.length} training images, ${validation.length} held-out images`);
  const crop = numberOption(values.crop, 'crop', 32, { min: 4, integer: true });
  const discStart = numberOption(values['disc-start'], 'disc-start', Math.floor(common.steps / 4), { integer: true });
  const ganWeight = numberOption(values['gan-weight'], 'gan-weight', 0.1);
  const sampleEvery = numberOption(values['sample-every'], 'sample-every', 500, { integer: true });
  const view = {
    weights: join(common.out, 'tokenizer.safetensors'),
    fields: (s: Scalars) => ({ loss: s.loss, psnr: s.psnr, ppl: s.perplexity, lr: s.lr }),
    validation: (e: Scalars) => reconstructionLine(e as unknown as ReconstructionStats),
  };
  await runTraining(view, (control) =>
    trainTokenizer({
      ...common,
      ...control,
      config,
      images,
      validation,
      crop,
      discStart,
      ganWeight,
      sampleEvery,
      restartEvery: 200,
    }),
  );
  return 0;
}

async function loadModel(path: string | undefined): Promise<VqTokenizer> {
  if (!path) throw new MuseError('--model FILE.safetensors is required');
  if (!existsSync(path)) throw new MuseError(`no such file: ${path}`);
  await initBackend();
  return VqTokenizer.load(path);
}

async function readImage(path: string, size: number | undefined, multiple: number): Promise<RgbImage> {
  if (!existsSync(path)) throw new MuseError(`no such file: ${path}`);
  const bytes = readFileSync(path);
  if (size) return resizeCenterCrop(bytes, size, path);
  const img = await decodeImage(bytes, path);
  if (img.width % multiple || img.height % multiple) {
    throw new MuseError(
      `${path} is ${img.width}×${img.height}: pass --size N (a multiple of ${multiple}) to resize it`,
    );
  }
  return img;
}

async function encode(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { model: { type: 'string' }, out: { type: 'string', short: 'o' }, size: { type: 'string' } },
  });
  if (!positionals[0]) throw new MuseError('muse tokenizer encode needs an image');
  const tok = await loadModel(values.model);
  const img = await readImage(
    positionals[0],
    values.size ? numberOption(values.size, 'size', 0, { min: 1, integer: true }) : undefined,
    tok.downsample,
  );
  const tokens = await tok.encode([img]);
  const h = img.height / tok.downsample;
  const w = img.width / tok.downsample;
  const grid = Array.from({ length: h }, (_, y) => Array.from(tokens.subarray(y * w, (y + 1) * w)));
  const json = `${JSON.stringify({ height: h, width: w, codebookSize: tok.codebookSize, tokens: grid })}\n`;
  if (values.out) writeFileSync(values.out, json);
  else process.stdout.write(json);
  return 0;
}

async function decode(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { model: { type: 'string' }, out: { type: 'string', short: 'o' } },
  });
  const file = positionals[0];
  if (!file) throw new MuseError('muse tokenizer decode needs a tokens .json file');
  if (!existsSync(file)) throw new MuseError(`no such file: ${file}`);
  if (!values.out) throw new MuseError('-o image.png is required');
  let grid: number[][];
  try {
    grid = (JSON.parse(readFileSync(file, 'utf8')) as { tokens: number[][] }).tokens;
    if (!Array.isArray(grid) || !grid.every((r) => Array.isArray(r) && r.length === grid[0].length))
      throw new Error('tokens must be a rectangular list of rows');
  } catch (err) {
    throw new MuseError(`${file}: ${(err as Error).message}`);
  }
  const tok = await loadModel(values.model);
  const [img] = await tok.decode(Int32Array.from(grid.flat()), grid.length, grid[0].length);
  writeFileSync(values.out, await encodePng(img));
  console.log(`wrote ${values.out} (${img.width}×${img.height})`);
  return 0;
}

async function reconstruct(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { model: { type: 'string' }, out: { type: 'string', short: 'o' }, size: { type: 'string' } },
  });
  if (!positionals.length) throw new MuseError('muse tokenizer reconstruct needs at least one image');
  const tok = await loadModel(values.model);
  const size = values.size ? numberOption(values.size, 'size', 0, { min: 1, integer: true }) : undefined;
  const images = await Promise.all(positionals.map((p) => readImage(p, size, tok.downsample)));
  const items = [];
  for (const img of images) {
    const [r] = await tok.reconstruct([img]);
    items.push({ image: img, caption: 'original' }, { image: r, caption: 'reconstruction' });
  }
  const out = values.out ?? 'reconstruction.png';
  writeFileSync(out, await imageGrid(items, { columns: 2, cell: 128 }));
  console.log(`wrote ${out}`);
  return 0;
}

async function evaluate(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      data: { type: 'string', multiple: true },
      limit: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (!values.data?.length) throw new MuseError('--data DIR is required');
  const tok = await loadModel(values.model);
  const images = await loadImages(
    values.data,
    values.limit ? numberOption(values.limit, 'limit', 0, { min: 1, integer: true }) : undefined,
  );
  if (!images.length) throw new MuseError('no images to evaluate');
  const stats = evaluateReconstruction(tok.params, tok.config, images);
  if (values.json) console.log(JSON.stringify({ images: images.length, ...stats }));
  else {
    console.log(
      `${images.length} images: PSNR ${stats.psnr.toFixed(2)} dB, SSIM ${stats.ssim.toFixed(3)}, codebook used ${(100 * stats.used).toFixed(1)}%, perplexity ${stats.perplexity.toFixed(1)}`,
    );
  }
  return 0;
}

export async function tokenizerCommand(args: string[]): Promise<number> {
  const help = subcommandHelp(args, tokenizerHelp);
  if (help !== undefined) return help;
  const [sub, ...rest] = args;
  const verbs: Record<string, (a: string[]) => Promise<number>> = {
    train,
    encode,
    decode,
    reconstruct,
    eval: evaluate,
  };
  const verb = verbs[sub];
  if (!verb) throw new MuseError(`unknown tokenizer command "${sub}": choose ${Object.keys(verbs).join(', ')}`);
  return verb(rest);
}
