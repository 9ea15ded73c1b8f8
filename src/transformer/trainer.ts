// Training the Muse base transformer exactly as the paper (§2.3, §2.6): per sample a masking rate
// r = cos(π/2·u), u ~ U(0, 1); cross-entropy with label smoothing on masked tokens only; 10% of
// samples see the empty prompt (classifier-free guidance); AdamW with warm-up + cosine and
// gradient clipping; optional EMA weights. Streams token grids and text embeddings from a cache.
// The super-res stage (§2.4) trains the same way on the high-res grids, conditioned on the low-res ones.
// A run folder holds its checkpoint (checkpoint.json and the folder it names: weights, EMA weights
// and state.safetensors for an exact resume, saved as one unit: see src/train/checkpoint-folder.ts),
// base.safetensors and base-ema.safetensors (EMA weights, if enabled) published from it (superres.*
// for the super-res stage), history.json and loss.png.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { newVariable } from '../tensor/params.js';
import { Rng, type RngState } from '../tensor/random.js';
import { loadSafetensors, saveSafetensors } from '../tensor/safetensors.js';
import { AdamW, clipByGlobalNorm } from '../train/adamw.js';
import { RunFolder, writeFileAtomic } from '../train/checkpoint-folder.js';
import { namedGrads } from '../train/grads.js';
import { deadline, endOfStep, interruptHandler, momentsFromTensors, momentsToTensors } from '../train/run-state.js';
import { learningRate } from '../train/schedule.js';
import { MuseError } from '../util/errors.js';
import { lineChartPng } from '../util/plot.js';
import { Progress } from '../util/progress.js';
import { loadTransformer, saveTransformer } from './checkpoint.js';
import { maskTokenId, sequenceLength, type TransformerConfig } from './config.js';
import { maskedCrossEntropy } from './loss.js';
import { applyMask, sampleTrainingMasks } from './masking.js';
import { forward, initTransformer, type Params } from './model.js';
import type { TokenData } from './token-data.js';

export interface BaseTrainOptions {
  out: string;
  config: TransformerConfig;
  data: TokenData;
  validation?: TokenData;
  /** Which cached grid to learn ("base", or "superres" for the super-res stage). */
  grid: string;
  /** Super-res stage: the cached grid of its low-res tokens ("base"). */
  lowGrid?: string;
  /**
   * Super-res stage: up to this fraction of the low-res tokens of a sample (uniform in [0, max]) are
   * replaced by random codes, so the model learns to cope with the base model's imperfect grids.
   */
  lowresNoise?: number;
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  labelSmoothing: number;
  /** Fraction of samples trained with the empty prompt. */
  textDropout: number;
  /** EMA decay of the weights (0: no EMA). */
  ema: number;
  seed: number;
  evalEvery: number;
  checkpointEvery: number;
  minutes?: number;
  resume: boolean;
  /** Start over in a run folder that holds files (without resume or overwrite such a folder is refused). */
  overwrite?: boolean;
  /** Start a fresh run from these weights (a base.safetensors of the same config) instead of random ones. */
  init?: string;
  quiet?: boolean;
  onStep?: (step: number, stats: { loss: number; accuracy: number }) => void;
}

export interface BaseHistory {
  train: Array<{ step: number; loss: number; accuracy: number; lr: number }>;
  eval: Array<{ step: number; loss: number; accuracy: number }>;
}

interface Batch {
  tokens: tf.Tensor2D;
  low?: tf.Tensor2D;
  targets: Int32Array;
  mask: Uint8Array;
  text: tf.Tensor3D;
  lengths: Int32Array;
}

/** B (image, caption) pairs: masked token grids, targets, masks, text (some dropped). */
function makeBatch(
  d: TokenData,
  grids: { grid: string; lowGrid?: string; lowresNoise?: number },
  c: TransformerConfig,
  b: number,
  rng: Rng,
  dropout: number,
  pairs?: Int32Array,
): Batch {
  const { grid } = grids;
  const n = sequenceLength(c);
  const nLow = c.lowres ? c.lowres.grid[0] * c.lowres.grid[1] : 0;
  const low = new Int32Array(b * nLow);
  const { maxTokens: T, dim: D } = d.manifest.textEncoder;
  const targets = new Int32Array(b * n);
  const text = new Float32Array(b * T * D);
  const lengths = new Int32Array(b);
  for (let i = 0; i < b; i++) {
    const pair = pairs ? pairs[i] : rng.int(d.pairImage.length);
    const img = d.pairImage[pair];
    const txt = d.pairText[pair];
    targets.set(d.tokens[grid].subarray(img * n, (img + 1) * n), i * n);
    if (c.lowres && grids.lowGrid) {
      low.set(d.tokens[grids.lowGrid].subarray(img * nLow, (img + 1) * nLow), i * nLow);
      const corrupt = (grids.lowresNoise ?? 0) * rng.uniform();
      for (let j = i * nLow; j < (i + 1) * nLow; j++)
        if (rng.uniform() < corrupt) low[j] = rng.int(c.lowres.codebookSize);
    }
    if (rng.uniform() >= dropout) {
      text.set(d.text.subarray(txt * T * D, (txt + 1) * T * D), i * T * D);
      lengths[i] = d.textLength[txt];
    }
  }
  const mask = sampleTrainingMasks(b, n, rng);
  return {
    tokens: tf.tensor2d(applyMask(targets, mask, maskTokenId(c)), [b, n], 'int32'),
    low: c.lowres ? tf.tensor2d(low, [b, nLow], 'int32') : undefined,
    targets,
    mask,
    text: tf.tensor3d(text, [b, T, D]),
    lengths,
  };
}

/** Masked-token loss and accuracy on held-out pairs with fixed masks (same every evaluation). */
export function evaluateBase(
  params: Params,
  c: TransformerConfig,
  d: TokenData,
  grid: string,
  pairs = 256,
  batch = 32,
  lowGrid?: string,
  lowresNoise = 0,
): { loss: number; accuracy: number } {
  const rng = new Rng(1234);
  const chosen = Int32Array.from({ length: Math.min(pairs, d.pairImage.length) }, (_, i) => i);
  let loss = 0;
  let correct = 0;
  let masked = 0;
  for (let i = 0; i < chosen.length; i += batch) {
    const part = chosen.subarray(i, i + batch);
    const b = makeBatch(d, { grid, lowGrid, lowresNoise }, c, part.length, rng, 0, part);
    tf.tidy(() => {
      const r = maskedCrossEntropy(forward(params, c, b.tokens, b.text, b.lengths, b.low), b.targets, b.mask, 0);
      const m = b.mask.reduce((a, v) => a + v, 0);
      loss += r.loss.dataSync()[0] * m;
      correct += r.accuracy * m;
      masked += m;
    });
    tf.dispose([b.tokens, b.text, ...(b.low ? [b.low] : [])]);
  }
  return { loss: loss / masked, accuracy: correct / masked };
}

function checkData(o: BaseTrainOptions, d: TokenData, name: string): void {
  if (o.config.lowres) {
    const low = o.lowGrid ? d.grids[o.lowGrid] : undefined;
    if (!o.lowGrid || !low)
      throw new MuseError(`${name} has no "${o.lowGrid ?? '(none given)'}" low-res token grid for the super-res model`);
    if (low.join() !== o.config.lowres.grid.join())
      throw new MuseError(
        `${name}: low-res grid ${low.join('×')} but the model expects ${o.config.lowres.grid.join('×')}`,
      );
  }
  const grid = d.grids[o.grid];
  if (!grid) throw new MuseError(`${name} has no "${o.grid}" token grid (it has ${Object.keys(d.grids).join(', ')})`);
  if (grid.join() !== o.config.grid.join())
    throw new MuseError(`${name}: grid ${grid.join('×')} but the model expects ${o.config.grid.join('×')}`);
  const cached = d.manifest.grids.find((g) => g.name === o.grid);
  if (cached && cached.codebookSize !== o.config.codebookSize) {
    throw new MuseError(
      `${name}: codebook of ${cached.codebookSize} codes but the model expects ${o.config.codebookSize}`,
    );
  }
  if (d.manifest.textEncoder.dim !== o.config.textDim || d.manifest.textEncoder.maxTokens !== o.config.textTokens) {
    throw new MuseError(
      `${name}: text embeddings ${d.manifest.textEncoder.maxTokens}×${d.manifest.textEncoder.dim} but the model expects ${o.config.textTokens}×${o.config.textDim}`,
    );
  }
}

async function loadInitWeights(path: string, config: TransformerConfig): Promise<Params> {
  if (!existsSync(path)) throw new MuseError(`--init ${path}: no such file`);
  const loaded = await loadTransformer(path, { allowZeroInitAdditions: true });
  if (JSON.stringify(loaded.config) !== JSON.stringify(config))
    throw new MuseError(`--init ${path}: its model config differs from this run's (${JSON.stringify(loaded.config)})`);
  return loaded.params;
}

/** The step a safetensors file of a run records in its metadata (NaN: none). */
async function safetensorsStep(path: string): Promise<number> {
  return Number((await loadSafetensors(path)).metadata.step);
}

export async function trainBase(
  o: BaseTrainOptions,
): Promise<{ step: number; history: BaseHistory; stoppedEarly: boolean }> {
  checkData(o, o.data, 'the training cache');
  if (o.validation) checkData(o, o.validation, 'the validation cache');
  const stage = o.config.lowres ? 'superres' : 'base';
  const kind = o.config.lowres ? 'muse-superres' : 'muse-base';
  const weightsName = `${stage}.safetensors`;
  const emaName = `${stage}-ema.safetensors`;
  const stateName = 'state.safetensors';
  const run = await RunFolder.open(o.out, {
    resume: o.resume,
    overwrite: o.overwrite,
    kind,
    publish: [weightsName, emaName],
    runFiles: ['history.json', 'loss.png'],
    legacy: { marker: stateName, parts: [weightsName, emaName, stateName], stepOf: safetensorsStep },
    quiet: o.quiet,
  });
  let rng = new Rng(o.seed);
  let params: Params;
  let ema: Params | undefined;
  let step = 0;
  let history: BaseHistory = { train: [], eval: [] };
  const decays = (name: string, p: tf.Variable) => p.rank >= 2 && !name.includes('emb') && name !== 'text.null';
  const opt = new AdamW({ beta1: 0.9, beta2: 0.96, weightDecay: o.weightDecay, decays });
  const checkpoint = run.checkpoint;
  if (checkpoint) {
    const loaded = await loadTransformer(checkpoint.path(weightsName));
    if (JSON.stringify(loaded.config) !== JSON.stringify(o.config))
      throw new MuseError(`${o.out} holds a run with another model config`);
    params = loaded.params;
    if (o.ema > 0) ema = (await loadTransformer(checkpoint.path(emaName))).params;
    const { tensors, metadata } = await loadSafetensors(checkpoint.path(stateName));
    step = checkpoint.step;
    rng = new Rng(JSON.parse(metadata.rng) as RngState);
    history = JSON.parse(metadata.history) as BaseHistory;
    opt.loadState(momentsFromTensors('opt', tensors, Number(metadata.optStep)));
    if (!o.quiet) console.error(`resuming ${o.out} at step ${step}`);
  } else {
    params = o.init ? await loadInitWeights(o.init, o.config) : initTransformer(o.config, rng.fork());
    if (o.init && !o.quiet) console.error(`starting from the weights of ${o.init}`);
    if (o.ema > 0)
      ema = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, newVariable(v.clone(), undefined, false)]));
  }

  const save = async () => {
    const textEncoder = o.data.manifest.textEncoder.id;
    await run.save(step, {
      [weightsName]: (path) =>
        saveTransformer(path, params, o.config, { kind, extra: { step: String(step), textEncoder } }),
      ...(ema && {
        [emaName]: (path: string) =>
          saveTransformer(path, ema, o.config, {
            kind,
            extra: { step: String(step), ema: String(o.ema), textEncoder },
          }),
      }),
      [stateName]: (path) =>
        saveSafetensors(path, momentsToTensors('opt', opt, params), {
          metadata: {
            step: String(step),
            optStep: String(opt.step),
            rng: JSON.stringify(rng.state()),
            history: JSON.stringify(history),
          },
        }),
    });
    await writeFileAtomic(join(o.out, 'history.json'), `${JSON.stringify(history)}\n`);
    await writeFileAtomic(
      join(o.out, 'loss.png'),
      await lineChartPng(
        [
          { name: 'train (masked tokens)', points: history.train.map((h) => [h.step, h.loss]) },
          { name: 'validation', points: history.eval.map((h) => [h.step, h.loss]), smooth: 0, color: '#d62728' },
        ],
        { title: `${stage} transformer: masked-token cross-entropy`, xLabel: 'step', yLabel: 'loss', smooth: 0.9 },
      ),
    );
  };

  const sigint = interruptHandler();
  const outOfTime = deadline(o.minutes);
  const progress = o.quiet ? undefined : new Progress({ total: o.steps, label: stage, unit: 'step', startAt: step });
  let stoppedEarly = false;
  try {
    while (step < o.steps) {
      const lr = learningRate({ peak: o.lr, warmup: o.warmup, total: o.steps }, step);
      const b = makeBatch(o.data, o, o.config, o.batch, rng, o.textDropout);
      let accuracy = 0;
      const { value, grads } = namedGrads(() => {
        const r = maskedCrossEntropy(
          forward(params, o.config, b.tokens, b.text, b.lengths, b.low),
          b.targets,
          b.mask,
          o.labelSmoothing,
        );
        accuracy = r.accuracy;
        return r.loss;
      }, params);
      const clipped = clipByGlobalNorm(grads, 1);
      opt.apply(params, clipped.grads, lr);
      const loss = value.dataSync()[0];
      tf.dispose([
        value,
        b.tokens,
        b.text,
        ...(b.low ? [b.low] : []),
        ...Object.values(grads),
        ...Object.values(clipped.grads),
      ]);
      if (!Number.isFinite(loss)) throw new Error(`loss became ${loss} at step ${step}: lower --lr`);
      if (ema) {
        for (const [k, v] of Object.entries(ema))
          tf.tidy(() => v.assign(tf.add(tf.mul(v, o.ema), tf.mul(params[k], 1 - o.ema))));
      }
      step++;
      if (step % 10 === 0 || step === 1) history.train.push({ step, loss, accuracy, lr });
      o.onStep?.(step, { loss, accuracy });
      progress?.tick(1, { loss, acc: accuracy, lr });
      const last = step === o.steps;
      if (o.validation && o.evalEvery > 0 && (step % o.evalEvery === 0 || last)) {
        const e = { step, ...evaluateBase(ema ?? params, o.config, o.validation, o.grid, 256, 32, o.lowGrid) };
        history.eval.push(e);
        if (!o.quiet)
          console.error(
            `\nstep ${step}: validation loss ${e.loss.toFixed(3)}, masked-token accuracy ${(100 * e.accuracy).toFixed(1)}%`,
          );
      }
      const end = endOfStep(step, last, o.checkpointEvery, await sigint.interrupted(), outOfTime());
      if (end.save) await save();
      if (end.stop) {
        stoppedEarly = !last;
        break;
      }
    }
  } finally {
    sigint.dispose();
  }
  progress?.finish();
  return { step, history, stoppedEarly };
}
