// Training the Muse base transformer exactly as the paper (§2.3, §2.6): per sample a masking rate
// r = cos(π/2·u), u ~ U(0, 1); cross-entropy with label smoothing on masked tokens only; 10% of
// samples see the empty prompt (classifier-free guidance); AdamW with warm-up + cosine and
// gradient clipping; optional EMA weights. Streams token grids and text embeddings from a cache.
// The super-res stage (§2.4) trains the same way on the high-res grids, conditioned on the low-res ones.
// A run folder holds its checkpoint (checkpoint.json and the folder it names: weights, EMA weights
// and state.safetensors for an exact resume, saved as one unit: see src/train/checkpoint-folder.ts),
// base.safetensors and base-ema.safetensors (EMA weights, if enabled) published from it (superres.*
// for the super-res stage), history.json and loss.png. The loop is src/train/harness.ts's.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { assignValues, newVariable } from '../tensor/params.js';
import { Rng } from '../tensor/random.js';
import { AdamW, clipByGlobalNorm } from '../train/adamw.js';
import { writeRunFile } from '../train/checkpoint-folder.js';
import { namedGrads } from '../train/grads.js';
import { type History, type StepContext, type TrainOptions, type TrainResult, train } from '../train/harness.js';
import { MuseError } from '../util/errors.js';
import { lineChartPng } from '../util/plot.js';
import { loadTransformer, saveTransformer } from './checkpoint.js';
import { maskTokenId, sequenceLength, type TransformerConfig } from './config.js';
import { maskedCrossEntropy } from './loss.js';
import { applyMask, sampleTrainingMasks } from './masking.js';
import { forward, initTransformer, type TransformerParams, trainableParams } from './model.js';
import type { TokenData } from './token-data.js';

export interface BaseTrainOptions extends TrainOptions<BaseStats> {
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
  batch: number;
  weightDecay: number;
  labelSmoothing: number;
  /**
   * Where label smoothing puts its mass: [K × K] rows, a distribution over codes for each target
   * code (codeNeighbours: near codes of the tokenizer); absent: uniform over all codes.
   */
  neighbourTargets?: Float32Array;
  /** Fraction of samples trained with the empty prompt. */
  textDropout: number;
  /** EMA decay of the weights (0: no EMA). */
  ema: number;
  /** Start a fresh run from these weights (a base.safetensors of the same config) instead of random ones. */
  init?: string;
  /**
   * Super-res with config.lowres.codeDim: the low-res tokenizer's code vectors
   * [codebookSize × codeDim], copied into the frozen lowres.codebook of a fresh model.
   */
  lowresCodebook?: Float32Array;
}

export type BaseStats = {
  loss: number;
  accuracy: number;
};

export type BaseHistory = History<BaseStats, BaseStats>;

export interface BaseBatch {
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
): BaseBatch {
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
  params: TransformerParams,
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

async function loadInitWeights(path: string, config: TransformerConfig): Promise<TransformerParams> {
  if (!existsSync(path)) throw new MuseError(`init ${path}: no such file`);
  const loaded = await loadTransformer(path, { allowZeroInitAdditions: true });
  if (JSON.stringify(loaded.config) !== JSON.stringify(config))
    throw new MuseError(`init ${path}: its model config differs from this run's (${JSON.stringify(loaded.config)})`);
  return loaded.params;
}

/** The base transformer's optimizer: no weight decay on embeddings, biases, gains and the null text. */
export function baseOptimizer(weightDecay: number): AdamW {
  const decays = (name: string, p: tf.Variable) => p.rank >= 2 && !name.includes('emb') && name !== 'text.null';
  return new AdamW({ beta1: 0.9, beta2: 0.96, weightDecay, decays });
}

/**
 * The training step the harness runs (and `npm run bench base` times): masked-token cross-entropy,
 * gradients clipped to norm 1, AdamW, then the EMA weights (if any). The batch stays the caller's.
 */
export function baseStep(
  o: Pick<BaseTrainOptions, 'config' | 'labelSmoothing' | 'ema' | 'neighbourTargets'>,
  params: TransformerParams,
  opt: AdamW,
  ema?: TransformerParams,
): (b: BaseBatch, ctx: Pick<StepContext, 'lr'>) => BaseStats {
  return (b, { lr }) => {
    let accuracy = 0;
    // Frozen tensors (the low-res codes) are read by the forward pass but get no gradient.
    const { value, grads } = namedGrads(() => {
      const r = maskedCrossEntropy(
        forward(params, o.config, b.tokens, b.text, b.lengths, b.low),
        b.targets,
        b.mask,
        o.labelSmoothing,
        o.neighbourTargets,
      );
      accuracy = r.accuracy;
      return r.loss;
    }, trainableParams(params));
    const clipped = clipByGlobalNorm(grads, 1);
    opt.apply(params, clipped.grads, lr);
    const loss = value.dataSync()[0];
    tf.dispose([value, ...Object.values(grads), ...Object.values(clipped.grads)]);
    if (ema) {
      for (const [k, v] of Object.entries(ema))
        tf.tidy(() => v.assign(tf.add(tf.mul(v, o.ema), tf.mul(params[k], 1 - o.ema))));
    }
    return { loss, accuracy };
  };
}

function lossCurve(stage: string, history: BaseHistory): Promise<Uint8Array> {
  return lineChartPng(
    [
      { name: 'train (masked tokens)', points: history.train.map((h) => [h.step, h.loss]) },
      { name: 'validation', points: history.eval.map((h) => [h.step, h.loss]), smooth: 0, color: '#d62728' },
    ],
    { title: `${stage} transformer: masked-token cross-entropy`, xLabel: 'step', yLabel: 'loss', smooth: 0.9 },
  );
}

export async function trainBase(o: BaseTrainOptions): Promise<TrainResult<BaseStats, BaseStats>> {
  checkData(o, o.data, 'the training cache');
  if (o.validation) checkData(o, o.validation, 'the validation cache');
  const stage = o.config.lowres ? 'superres' : 'base';
  const kind = o.config.lowres ? 'muse-superres' : 'muse-base';
  const weightsName = `${stage}.safetensors`;
  const emaName = `${stage}-ema.safetensors`;
  const textEncoder = o.data.manifest.textEncoder.id;
  const save =
    (params: TransformerParams, step: number, extra: Record<string, string> = {}) =>
    (path: string) =>
      saveTransformer(path, params, o.config, { kind, extra: { step: String(step), ...extra, textEncoder } });
  return train<BaseBatch, BaseStats, BaseStats>(o, {
    kind,
    label: stage,
    publish: [weightsName, emaName],
    runFiles: ['loss.png'],
    create: async ({ checkpoint, rng, emit }) => {
      let params: TransformerParams;
      let ema: TransformerParams | undefined;
      if (checkpoint) {
        const loaded = await loadTransformer(checkpoint.path(weightsName));
        if (JSON.stringify(loaded.config) !== JSON.stringify(o.config))
          throw new MuseError(`${o.out} holds a run with another model config`);
        params = loaded.params;
        if (o.ema > 0) ema = (await loadTransformer(checkpoint.path(emaName))).params;
      } else {
        params = o.init ? await loadInitWeights(o.init, o.config) : initTransformer(o.config, rng.fork());
        if (o.init) emit({ type: 'message', text: `starting from the weights of ${o.init}` });
        if (o.config.lowres?.codeDim && !o.init) {
          const codes = o.lowresCodebook;
          const want = o.config.lowres.codebookSize * o.config.lowres.codeDim;
          if (!codes || codes.length !== want)
            throw new MuseError(
              `this super-res config reads the low-res tokenizer's codes: ${want} values needed, got ${codes?.length ?? 'none'}`,
            );
          assignValues(params['lowres.codebook'], codes);
        }
        if (o.ema > 0)
          ema = Object.fromEntries(
            Object.entries(params).map(([k, v]) => [k, newVariable(v.clone(), undefined, false)]),
          );
      }
      const opt = baseOptimizer(o.weightDecay);
      const step = baseStep(o, params, opt, ema);
      const { validation } = o;
      return {
        optimizers: { opt: { opt, params: trainableParams(params) } },
        batch: (r) => makeBatch(o.data, o, o.config, o.batch, r, o.textDropout),
        step,
        disposeBatch: (b) => tf.dispose([b.tokens, b.text, ...(b.low ? [b.low] : [])]),
        evaluate: validation
          ? () => evaluateBase(ema ?? params, o.config, validation, o.grid, 256, 32, o.lowGrid)
          : undefined,
        weights: (s) => ({
          [weightsName]: save(params, s),
          ...(ema && { [emaName]: save(ema, s, { ema: String(o.ema) }) }),
        }),
        afterSave: async (history) => writeRunFile(join(o.out, 'loss.png'), await lossCurve(stage, history)),
      };
    },
  });
}
