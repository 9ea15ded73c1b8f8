// `muse train base`: the Muse base transformer from a token cache (`muse data encode`).
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend } from '../tensor/backend.js';
import { loadTokenizer } from '../tokenizer/checkpoint.js';
import { codeNeighbours, codeVectors } from '../tokenizer/codes.js';
import type { Scalars } from '../train/harness.js';
import { TRANSFORMER_PRESETS, transformerConfig } from '../transformer/config.js';
import { loadTokenData } from '../transformer/token-data.js';
import { trainBase } from '../transformer/trainer.js';
import { MuseError } from '../util/errors.js';
import { numberOption, subcommandHelp } from './options.js';
import { trainClassifier, trainClassifierHelp } from './train-classifier.js';
import { runTraining, TRAINING_OPTIONS, trainingHelp, trainingUsage, trainingValues } from './training.js';

const DEFAULTS = { lr: 3e-4, weightDecay: 0.045, evalEvery: 500 };

export const trainHelp = `Usage: muse train base|superres|classifier --data CACHE --out RUN [--val CACHE] [--config PRESET]
${trainingUsage({ ...DEFAULTS, lr: '3e-4' }, '    ')}
    [--label-smoothing 0.1] [--text-dropout 0.1] [--ema 0.999] [--init WEIGHTS] [--lowres-noise 0]
    [--lowres-codes TOKENIZER] [--smooth-to-neighbours TOKENIZER] [--neighbour-temperature 1]

  Trains the Muse base transformer on the "base" token grids of a cache made by
  \`muse data encode\`: masking rate cos(π/2·u) per sample, cross-entropy with label smoothing on
  masked tokens only, 10% of samples with the empty prompt (for classifier-free guidance), AdamW
  with warm-up + cosine, gradient clipping, optional EMA weights. --val reports the held-out
  masked-token loss and accuracy. RUN gets base.safetensors, base-ema.safetensors (with --ema),
  history.json, loss.png and the checkpoint: checkpoint.json naming a folder with the weights and the
  optimizer state, saved as one unit, for an exact --resume.
${trainingHelp('  ')}
  \`muse train superres\` trains the super-resolution stage (Muse §2.4) on the "superres" grids of a
  cache encoded with --superres-size, conditioned on its "base" grids (presets superres-small, the
  default, and superres-tiny). --lowres-noise F replaces up to a fraction F of each sample's low-res
  tokens with random codes (default 0), for robustness to the base model's mistakes.
  --lowres-codes TOKENIZER feeds the low-res tokens in as that tokenizer's own code vectors (frozen,
  stored in the weights) through a learnt projection, instead of embeddings learnt from scratch;
  give the tokenizer the cache's base grid was encoded with. Files are superres.safetensors,
  superres-ema.safetensors, ...
  --smooth-to-neighbours TOKENIZER gives label smoothing's share (--label-smoothing) to the codes
  nearest the target in that tokenizer's codebook (the one the learnt grid was encoded with)
  instead of spreading it over all codes: near codes decode alike, so a near miss costs less than a
  far one. --neighbour-temperature T (default 1) widens (> 1) or narrows the neighbourhood, in units
  of the codebook's mean nearest-neighbour distance.
  --init starts a new run (fresh optimizer and schedule) from the weights of a base.safetensors
  with the same config, e.g. to continue a shipped model.

${trainClassifierHelp}`;

async function train(stage: 'base' | 'superres', args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ...TRAINING_OPTIONS,
      data: { type: 'string' },
      val: { type: 'string' },
      config: { type: 'string' },
      'label-smoothing': { type: 'string' },
      'text-dropout': { type: 'string' },
      ema: { type: 'string' },
      init: { type: 'string' },
      'lowres-noise': { type: 'string' },
      'lowres-codes': { type: 'string' },
      'smooth-to-neighbours': { type: 'string' },
      'neighbour-temperature': { type: 'string' },
    },
  });
  if (!values.data) throw new MuseError('--data CACHE is required (made by `muse data encode`)');
  const common = trainingValues(values, DEFAULTS);
  const preset = values.config ?? (stage === 'base' ? 'small' : 'superres-small');
  if (!TRANSFORMER_PRESETS[preset])
    throw new MuseError(`unknown config "${preset}": choose ${Object.keys(TRANSFORMER_PRESETS).join(', ')}`);
  await initBackend();
  const data = await loadTokenData(values.data);
  const validation = values.val ? await loadTokenData(values.val) : undefined;
  const g = data.manifest.grids.find((x) => x.name === stage);
  if (!g)
    throw new MuseError(
      `${values.data} has no "${stage}" token grid${stage === 'superres' ? ' (encode it with `muse data encode --superres-size N`)' : ''}`,
    );
  const low = stage === 'superres' ? data.manifest.grids.find((x) => x.name === 'base') : undefined;
  if (stage === 'superres' && !low) throw new MuseError(`${values.data} has no "base" token grid to condition on`);
  if (values['lowres-codes'] && stage !== 'superres') throw new MuseError('--lowres-codes is for muse train superres');
  const codes = values['lowres-codes'] ? await readCodeVectors(values['lowres-codes'], low?.codebookSize) : undefined;
  const neighbourTemperature = numberOption(values['neighbour-temperature'], 'neighbour-temperature', 1, {
    min: 1e-6,
  });
  const neighbours = values['smooth-to-neighbours']
    ? codeNeighbours(await readCodeVectors(values['smooth-to-neighbours'], g.codebookSize, stage), neighbourTemperature)
    : undefined;
  const config = transformerConfig(preset, {
    codebookSize: g.codebookSize,
    grid: g.grid,
    textDim: data.manifest.textEncoder.dim,
    textTokens: data.manifest.textEncoder.maxTokens,
    lowres: low ? { codebookSize: low.codebookSize, grid: low.grid, codeDim: codes?.dim } : undefined,
  });
  console.error(
    `${data.images} images, ${data.pairImage.length} (image, caption) pairs; model ${preset}, grid ${config.grid.join('×')}, ${config.codebookSize} codes`,
  );
  const view = {
    weights: join(common.out, `${stage}.safetensors`),
    fields: (s: Scalars) => ({ loss: s.loss, acc: s.accuracy, lr: s.lr }),
    validation: (e: Scalars) =>
      `validation loss ${e.loss.toFixed(3)}, masked-token accuracy ${(100 * e.accuracy).toFixed(1)}%`,
  };
  await runTraining(view, (control) =>
    trainBase({
      ...common,
      ...control,
      config,
      data,
      validation,
      grid: stage,
      lowGrid: low ? 'base' : undefined,
      lowresNoise: numberOption(values['lowres-noise'], 'lowres-noise', 0, { max: 1 }),
      labelSmoothing: numberOption(values['label-smoothing'], 'label-smoothing', 0.1, { max: 0.99 }),
      textDropout: numberOption(values['text-dropout'], 'text-dropout', 0.1, { max: 1 }),
      ema: numberOption(values.ema, 'ema', 0, { max: 0.99999 }),
      init: values.init,
      lowresCodebook: codes?.data,
      neighbourTargets: neighbours,
    }),
  );
  return 0;
}

/** The code vectors of the tokenizer a cached grid (`grid`) was encoded with. */
async function readCodeVectors(path: string, codebookSize: number | undefined, grid = 'base') {
  const { config, params } = await loadTokenizer(path);
  try {
    if (config.codebookSize !== codebookSize)
      throw new MuseError(
        `${path} has ${config.codebookSize} codes but the cache's ${grid} grid has ${codebookSize}: give the tokenizer it was encoded with`,
      );
    return codeVectors(config, params);
  } finally {
    for (const v of Object.values(params)) v.dispose();
  }
}

export async function trainCommand(args: string[]): Promise<number> {
  const help = subcommandHelp(args, trainHelp);
  if (help !== undefined) return help;
  const [sub, ...rest] = args;
  if (sub === 'base' || sub === 'superres') return train(sub, rest);
  if (sub === 'classifier') return trainClassifier(rest);
  throw new MuseError(`unknown model to train "${sub}": choose base, superres or classifier`);
}
