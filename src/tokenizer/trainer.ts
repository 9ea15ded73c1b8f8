// Training the VQ tokenizer: L1 + L2 reconstruction, the VQ losses, and (after a warm-up) a
// PatchGAN hinge loss (the VQGAN recipe); AdamW with warm-up + cosine; dead-code restarts.
// A run folder holds its checkpoint (checkpoint.json and the folder it names: tokenizer.safetensors
// and state.safetensors with optimizer moments, discriminator, step, RNG, history: everything an exact
// resume needs, saved as one unit: see src/train/checkpoint-folder.ts), tokenizer.safetensors
// published from it, samples/, loss.png and psnr.png. The loop is src/train/harness.ts's.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { imageGrid } from '../image/grid.js';
import type { RgbImage } from '../image/image.js';
import { psnrFloat, ssimFloat } from '../image/metrics.js';
import { stopGradient } from '../tensor/ops/stop-gradient.js';
import { assignValues } from '../tensor/params.js';
import { Rng } from '../tensor/random.js';
import type { NamedTensor } from '../tensor/safetensors.js';
import { scoped } from '../tensor/scope.js';
import { AdamW, clipByGlobalNorm } from '../train/adamw.js';
import { writeRunFile } from '../train/checkpoint-folder.js';
import { namedGrads, namedGradsWithAux } from '../train/grads.js';
import { type History, STATE, type StepContext, type TrainOptions, type TrainResult, train } from '../train/harness.js';
import { MuseError } from '../util/errors.js';
import { lineChartPng } from '../util/plot.js';
import { loadTokenizer, saveTokenizer } from './checkpoint.js';
import { downsampleFactor, quantizerKind, type TokenizerConfig } from './config.js';
import {
  DEFAULT_DISCRIMINATOR,
  type DiscriminatorConfig,
  discriminate,
  discriminatorHinge,
  generatorHinge,
  initDiscriminator,
} from './discriminator.js';
import { EmaCodebook } from './ema-codebook.js';
import { decodeLatents, initTokenizer, type TokenizerParams } from './model.js';
import { codeUsage, optimizedParams, quantizeImages, restartDeadCodes } from './quantizer.js';
import { imagesToTensor, tensorToImages } from './tokenizer.js';

export interface TokenizerTrainOptions extends TrainOptions<StepStats> {
  config: TokenizerConfig;
  /** Training images (any sizes ≥ crop); each batch takes random crop×crop windows. */
  images: RgbImage[];
  /** Held-out images for evaluation (same size as each other). */
  validation: RgbImage[];
  crop: number;
  batch: number;
  weightDecay: number;
  /** Step at which the discriminator and adversarial loss start (VQGAN: after reconstruction settles). */
  discStart: number;
  ganWeight: number;
  discriminator?: DiscriminatorConfig;
  sampleEvery: number;
  restartEvery: number;
}

/** The scalars of one step (the harness adds lr). */
export type TokenizerStepStats = {
  loss: number;
  rec: number;
  vq: number;
  gan: number;
  disc: number;
  psnr: number;
  used: number;
  perplexity: number;
  /** Dead codes restarted at this step (restarts happen every restartEvery steps). */
  restarted: number;
};

export type StepStats = TokenizerStepStats & { lr: number };

export type ReconstructionStats = {
  psnr: number;
  ssim: number;
  used: number;
  perplexity: number;
};

export type EvalStats = ReconstructionStats & { step: number };

type TokenizerHistory = History<TokenizerStepStats, ReconstructionStats>;

const DEAD_THRESHOLD = 0.01;
const CODEBOOK = 'quant.codebook';

/** The EMA statistics of an 'ema' tokenizer: resumed from the run's state, or started from its codebook. */
function emaCodebookFor(
  config: TokenizerConfig,
  params: TokenizerParams,
  state: Record<string, NamedTensor> | undefined,
): EmaCodebook | undefined {
  if (quantizerKind(config) !== 'ema') return undefined;
  if (state) {
    const counts = state.ema_counts;
    const sums = state.ema_sums;
    if (!counts || !sums) throw new MuseError('the run state has no EMA codebook statistics (ema_counts, ema_sums)');
    return EmaCodebook.fromState(Float32Array.from(counts.data), Float32Array.from(sums.data), config.codeDim);
  }
  return EmaCodebook.fromCodebook(params[CODEBOOK].dataSync() as Float32Array, config.codeDim);
}

/** A batch of random crops with random horizontal flips, in [-1, 1]. */
function sampleBatch(images: RgbImage[], n: number, crop: number, rng: Rng): tf.Tensor4D {
  const data = new Float32Array(n * crop * crop * 3);
  for (let i = 0; i < n; i++) {
    const img = images[rng.int(images.length)];
    const x0 = rng.int(img.width - crop + 1);
    const y0 = rng.int(img.height - crop + 1);
    const flip = rng.uniform() < 0.5;
    let o = i * crop * crop * 3;
    for (let y = 0; y < crop; y++) {
      for (let x = 0; x < crop; x++) {
        const sx = flip ? x0 + crop - 1 - x : x0 + x;
        const s = ((y0 + y) * img.width + sx) * 3;
        data[o++] = img.data[s] / 127.5 - 1;
        data[o++] = img.data[s + 1] / 127.5 - 1;
        data[o++] = img.data[s + 2] / 127.5 - 1;
      }
    }
  }
  return tf.tensor4d(data, [n, crop, crop, 3]);
}

/** Reconstruction quality and code usage of the validation images. */
export function evaluateReconstruction(
  params: TokenizerParams,
  config: TokenizerConfig,
  images: RgbImage[],
  batch = 32,
): ReconstructionStats {
  let psnr = 0;
  let ssim = 0;
  const indices: number[] = [];
  for (let i = 0; i < images.length; i += batch) {
    const part = images.slice(i, i + batch);
    scoped(() => {
      const x = imagesToTensor(part);
      const q = quantizeImages(params, config, x);
      const xr = tf.clipByValue(decodeLatents(params, config, q.latents), -1, 1);
      const a = x.dataSync() as Float32Array;
      const b = xr.dataSync() as Float32Array;
      const [, h, w] = x.shape;
      const n = h * w * 3;
      for (let j = 0; j < part.length; j++) {
        psnr += psnrFloat(a.subarray(j * n, (j + 1) * n), b.subarray(j * n, (j + 1) * n), w, h);
        ssim += ssimFloat(a.subarray(j * n, (j + 1) * n), b.subarray(j * n, (j + 1) * n), w, h);
      }
      indices.push(...(q.indices.dataSync() as Int32Array));
    });
  }
  const usage = codeUsage(Int32Array.from(indices), config.codebookSize);
  return { psnr: psnr / images.length, ssim: ssim / images.length, used: usage.used, perplexity: usage.perplexity };
}

/** What the tokenizer's training step needs besides the weights. */
export type TokenizerStepOptions = Pick<
  TokenizerTrainOptions,
  'config' | 'discriminator' | 'discStart' | 'ganWeight' | 'restartEvery' | 'steps' | 'weightDecay'
>;

/**
 * The tokenizer's optimisation state (optimizers, EMA codebook, code usage) and the training step
 * the harness runs (and `npm run bench tokenizer` times): reconstruction + VQ (+ GAN) loss, clipped
 * AdamW, the EMA codebook, the discriminator's step, code usage and dead-code restarts.
 */
export class TokenizerTraining {
  readonly opt: AdamW;
  readonly dopt = new AdamW({ beta1: 0.5, beta2: 0.9, weightDecay: 0 });
  /** The parameters the optimizer updates (with an EMA codebook, not the codes). */
  readonly trainable: Record<string, tf.Variable>;
  /** With an EMA codebook the codes move by running means after each step, not by the optimizer. */
  readonly ema: EmaCodebook | undefined;
  readonly usageEma: Float32Array;
  private readonly dc: DiscriminatorConfig;

  /** `state`: the tensors of a resumed run's state file. */
  constructor(
    private readonly o: TokenizerStepOptions,
    readonly params: TokenizerParams,
    readonly disc: TokenizerParams,
    state?: Record<string, NamedTensor>,
  ) {
    this.dc = o.discriminator ?? DEFAULT_DISCRIMINATOR;
    this.opt = new AdamW({ beta1: 0.9, beta2: 0.99, weightDecay: o.weightDecay });
    this.usageEma = (state?.usage_ema?.data as Float32Array) ?? new Float32Array(o.config.codebookSize).fill(1);
    this.ema = emaCodebookFor(o.config, params, state);
    this.trainable = optimizedParams(params, o.config);
  }

  /** One step on a batch of images in [-1, 1] (not disposed); `step`: the steps done before it. */
  step(x: tf.Tensor4D, { step, lr, rng }: StepContext): TokenizerStepStats {
    const { o, params, disc, dc, ema } = this;
    const useGan = step >= o.discStart && o.ganWeight > 0;
    const { value, grads, aux } = namedGradsWithAux(() => {
      const q = quantizeImages(params, o.config, x);
      const xr = decodeLatents(params, o.config, q.latents);
      const diff = tf.sub(xr, x);
      const mse = tf.mean(tf.square(diff));
      const rec = tf.add(tf.mean(tf.abs(diff)), mse);
      let loss = tf.add(rec, q.loss);
      const gan = useGan ? generatorHinge(discriminate(disc, dc, xr)) : undefined;
      if (gan) loss = tf.add(loss, tf.mul(gan, o.ganWeight));
      const fake = useGan ? stopGradient(xr) : undefined;
      const aux = { mse, rec, vq: q.loss, gan, indices: q.indices, vectors: q.vectors, fake };
      return { loss: loss as tf.Scalar, aux };
    }, this.trainable);
    const clipped = clipByGlobalNorm(grads, 1);
    this.opt.apply(this.trainable, clipped.grads, lr);
    tf.dispose([...Object.values(grads), ...Object.values(clipped.grads)]);
    const indices = aux.indices.dataSync() as Int32Array;
    const vectors = aux.vectors.dataSync() as Float32Array;
    if (ema) assignValues(params[CODEBOOK], ema.update(indices, vectors));
    let dLoss = 0;
    if (aux.fake) {
      const fake = aux.fake as tf.Tensor4D;
      const d = namedGrads(() => discriminatorHinge(discriminate(disc, dc, x), discriminate(disc, dc, fake)), disc);
      dLoss = d.value.dataSync()[0];
      this.dopt.apply(disc, d.grads, lr);
      tf.dispose([d.value, ...Object.values(d.grads)]);
    }
    const loss = value.dataSync()[0];
    const [mse, rec, vq] = [aux.mse, aux.rec, aux.vq].map((t) => t.dataSync()[0]);
    const gan = aux.gan?.dataSync()[0] ?? 0;
    const usage = codeUsage(indices, o.config.codebookSize);
    const { usageEma } = this;
    for (let k = 0; k < usageEma.length; k++) usageEma[k] = 0.99 * usageEma[k] + 0.01 * usage.counts[k];
    const done = step + 1;
    let restarted: number[] = [];
    if (o.restartEvery > 0 && done % o.restartEvery === 0 && done < o.steps * 0.9) {
      restarted = restartDeadCodes(params, usageEma, vectors, o.config.codeDim, DEAD_THRESHOLD, (n) => rng.int(n));
      if (ema && restarted.length) {
        const book = params[CODEBOOK].dataSync() as Float32Array;
        const d = o.config.codeDim;
        for (const k of restarted) ema.reset(k, book.subarray(k * d, (k + 1) * d));
      }
    }
    tf.dispose([value, ...Object.values(aux).filter((t) => t !== undefined)]);
    return {
      loss,
      rec,
      vq,
      gan,
      disc: dLoss,
      // Pixels span [-1, 1]: peak-to-peak 2, so PSNR = 10·log10(2² / MSE).
      psnr: 10 * Math.log10(4 / mse),
      used: usage.used,
      perplexity: usage.perplexity,
      restarted: restarted.length,
    };
  }

  /** What an exact resume needs besides the weights and the optimizer moments. */
  stateTensors(): Record<string, NamedTensor> {
    const { disc, ema, usageEma } = this;
    return {
      ...Object.fromEntries(
        Object.entries(disc).map(([k, v]) => [k, { shape: v.shape, data: v.dataSync() as Float32Array }]),
      ),
      usage_ema: { shape: [usageEma.length], data: usageEma },
      ...(ema && {
        ema_counts: { shape: [ema.size], data: ema.counts },
        ema_sums: { shape: [ema.size, ema.codeDim], data: ema.sums },
      }),
    };
  }
}

export async function trainTokenizer(
  o: TokenizerTrainOptions,
): Promise<TrainResult<TokenizerStepStats, ReconstructionStats>> {
  const f = downsampleFactor(o.config);
  if (o.crop % f !== 0) throw new MuseError(`crop ${o.crop} must be a multiple of the tokenizer's factor ${f}`);
  const small = o.images.find((i) => i.width < o.crop || i.height < o.crop);
  if (small)
    throw new MuseError(`a training image of ${small.width}×${small.height} is smaller than the crop ${o.crop}`);
  if (o.images.length === 0) throw new MuseError('no training images');
  const weightsName = 'tokenizer.safetensors';
  const dc = o.discriminator ?? DEFAULT_DISCRIMINATOR;
  return train<tf.Tensor4D, TokenizerStepStats, ReconstructionStats>(o, {
    kind: 'muse-tokenizer',
    label: 'tokenizer',
    publish: [weightsName],
    runFiles: ['loss.png', 'psnr.png', 'samples'],
    create: async ({ checkpoint, state, rng }) => {
      mkdirSync(join(o.out, 'samples'), { recursive: true });
      let params: TokenizerParams;
      let disc: TokenizerParams;
      if (checkpoint && state) {
        const loaded = await loadTokenizer(checkpoint.path(weightsName));
        if (JSON.stringify(loaded.config) !== JSON.stringify(o.config)) {
          throw new MuseError(
            `${o.out} holds a run with another tokenizer config; use another \`out\` or the same \`config\``,
          );
        }
        params = loaded.params;
        disc = initDiscriminator(dc, new Rng(0));
        for (const [k, v] of Object.entries(disc)) {
          const t = state.tensors[k];
          if (!t) throw new MuseError(`${checkpoint.path(STATE)}: discriminator tensor "${k}" is missing`);
          assignValues(v, Float32Array.from(t.data));
        }
      } else {
        params = initTokenizer(o.config, rng.fork());
        disc = initDiscriminator(dc, rng.fork());
      }
      const t = new TokenizerTraining(o, params, disc, state?.tensors);
      const { validation } = o;
      return {
        optimizers: { opt: { opt: t.opt, params: t.trainable }, dopt: { opt: t.dopt, params: disc } },
        batch: (r) => sampleBatch(o.images, o.batch, o.crop, r),
        step: (x, ctx) => t.step(x, ctx),
        disposeBatch: (x) => x.dispose(),
        evaluate: validation.length ? () => evaluateReconstruction(params, o.config, validation) : undefined,
        weights: (step) => ({
          [weightsName]: (path) =>
            saveTokenizer(path, params, o.config, {
              extra: { step: String(step), id: `muse-tokenizer-${o.seed}-${step}` },
            }),
        }),
        stateTensors: () => t.stateTensors(),
        stateMetadata: () => ({
          options: JSON.stringify({
            ...o,
            images: o.images.length,
            validation: o.validation.length,
            onStep: undefined,
            onEvent: undefined,
            signal: undefined,
          }),
        }),
        afterStep: async (step, last, history) => {
          if (o.sampleEvery > 0 && (step % o.sampleEvery === 0 || last) && validation.length)
            await writeSamples(o, params, step, history);
        },
      };
    },
  });
}

/** A reconstruction grid (original above, reconstruction below) and the curves, as PNG. */
async function writeSamples(
  o: TokenizerTrainOptions,
  params: TokenizerParams,
  step: number,
  history: TokenizerHistory,
): Promise<void> {
  const shown = o.validation.slice(0, 16);
  const recon = scoped(() => {
    const x = imagesToTensor(shown);
    const q = quantizeImages(params, o.config, x);
    return tensorToImages(tf.clipByValue(decodeLatents(params, o.config, q.latents), -1, 1));
  });
  const grid = await imageGrid([...shown.map((image) => ({ image })), ...recon.map((image) => ({ image }))], {
    columns: shown.length,
    cell: 64,
    title: `step ${step}: held-out originals (top) and reconstructions (bottom)`,
  });
  await writeRunFile(join(o.out, 'samples', `step-${String(step).padStart(6, '0')}.png`), grid);
  await writeRunFile(
    join(o.out, 'loss.png'),
    await lineChartPng([{ name: 'reconstruction loss (L1 + L2)', points: history.train.map((h) => [h.step, h.rec]) }], {
      title: 'tokenizer training loss',
      xLabel: 'step',
      yLabel: 'loss',
      logY: true,
      smooth: 0.9,
    }),
  );
  if (history.eval.length) {
    await writeRunFile(
      join(o.out, 'psnr.png'),
      await lineChartPng([{ name: 'held-out PSNR (dB)', points: history.eval.map((e) => [e.step, e.psnr]) }], {
        title: 'held-out reconstruction PSNR',
        xLabel: 'step',
        yLabel: 'dB',
      }),
    );
  }
}
