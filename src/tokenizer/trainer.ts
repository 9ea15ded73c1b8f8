// Training the VQ tokenizer: L1 + L2 reconstruction, the VQ losses, and (after a warm-up) a
// PatchGAN hinge loss (the VQGAN recipe); AdamW with warm-up + cosine; dead-code restarts.
// A run folder holds its checkpoint (checkpoint.json and the folder it names: tokenizer.safetensors
// and state.safetensors with optimizer moments, discriminator, step, RNG, history: everything an exact
// resume needs, saved as one unit: see src/train/checkpoint-folder.ts), tokenizer.safetensors
// published from it, samples/, loss.png and psnr.png.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { imageGrid } from '../data/grid.js';
import type { RgbImage } from '../data/image.js';
import { psnrFloat, ssimFloat } from '../eval/image-metrics.js';
import { stopGradient } from '../tensor/ops/stop-gradient.js';
import { assignValues } from '../tensor/params.js';
import { Rng, type RngState } from '../tensor/random.js';
import { loadSafetensors, type NamedTensor, saveSafetensors } from '../tensor/safetensors.js';
import { scoped } from '../tensor/scope.js';
import { AdamW, clipByGlobalNorm } from '../train/adamw.js';
import { RunFolder, writeFileAtomic } from '../train/checkpoint-folder.js';
import { namedGrads } from '../train/grads.js';
import { deadline, endOfStep, interruptHandler, momentsFromTensors, momentsToTensors } from '../train/run-state.js';
import { learningRate } from '../train/schedule.js';
import { MuseError } from '../util/errors.js';
import { lineChartPng } from '../util/plot.js';
import { Progress } from '../util/progress.js';
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
import { decodeLatents, initTokenizer, type Params } from './model.js';
import { codeUsage, optimizedParams, quantizeImages, restartDeadCodes } from './quantizer.js';
import { imagesToTensor, tensorToImages } from './tokenizer.js';

export interface TokenizerTrainOptions {
  out: string;
  config: TokenizerConfig;
  /** Training images (any sizes ≥ crop); each batch takes random crop×crop windows. */
  images: RgbImage[];
  /** Held-out images for evaluation (same size as each other). */
  validation: RgbImage[];
  crop: number;
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  /** Step at which the discriminator and adversarial loss start (VQGAN: after reconstruction settles). */
  discStart: number;
  ganWeight: number;
  discriminator?: DiscriminatorConfig;
  seed: number;
  sampleEvery: number;
  checkpointEvery: number;
  evalEvery: number;
  restartEvery: number;
  /** Stop (saving first) after this many minutes of this run. */
  minutes?: number;
  resume: boolean;
  /** Start over in a run folder that holds files (without resume or overwrite such a folder is refused). */
  overwrite?: boolean;
  quiet?: boolean;
  /** For tests: called after every step. */
  onStep?: (step: number, stats: StepStats) => void;
}

export interface StepStats {
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
  lr: number;
}

export interface EvalStats {
  step: number;
  psnr: number;
  ssim: number;
  used: number;
  perplexity: number;
}

interface History {
  train: Array<{ step: number } & StepStats>;
  eval: EvalStats[];
}

const DEAD_THRESHOLD = 0.01;
const CODEBOOK = 'quant.codebook';

/** The EMA statistics of an 'ema' tokenizer: resumed from the run's state, or started from its codebook. */
function emaCodebookFor(
  config: TokenizerConfig,
  params: Params,
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
  params: Params,
  config: TokenizerConfig,
  images: RgbImage[],
  batch = 32,
): Omit<EvalStats, 'step'> {
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

export async function trainTokenizer(
  o: TokenizerTrainOptions,
): Promise<{ step: number; history: History; stoppedEarly: boolean }> {
  const f = downsampleFactor(o.config);
  if (o.crop % f !== 0) throw new MuseError(`--crop ${o.crop} must be a multiple of the tokenizer's factor ${f}`);
  const small = o.images.find((i) => i.width < o.crop || i.height < o.crop);
  if (small) throw new MuseError(`a training image of ${small.width}×${small.height} is smaller than --crop ${o.crop}`);
  if (o.images.length === 0) throw new MuseError('no training images');
  const weightsName = 'tokenizer.safetensors';
  const stateName = 'state.safetensors';
  const run = await RunFolder.open(o.out, {
    resume: o.resume,
    overwrite: o.overwrite,
    kind: 'muse-tokenizer',
    publish: [weightsName],
    runFiles: ['history.json', 'loss.png', 'psnr.png', 'samples'],
    legacy: {
      marker: stateName,
      parts: [weightsName, stateName],
      stepOf: async (path) => Number((await loadSafetensors(path)).metadata.step),
    },
    quiet: o.quiet,
  });
  mkdirSync(join(o.out, 'samples'), { recursive: true });
  const dc = o.discriminator ?? DEFAULT_DISCRIMINATOR;

  let rng = new Rng(o.seed);
  let params: Params;
  let disc: Params;
  let step = 0;
  let history: History = { train: [], eval: [] };
  const opt = new AdamW({ beta1: 0.9, beta2: 0.99, weightDecay: o.weightDecay });
  const dopt = new AdamW({ beta1: 0.5, beta2: 0.9, weightDecay: 0 });
  let usageEma: Float32Array = new Float32Array(o.config.codebookSize).fill(1);
  let resumedState: Record<string, NamedTensor> | undefined;

  const checkpoint = run.checkpoint;
  if (checkpoint) {
    const stateFile = checkpoint.path(stateName);
    const loaded = await loadTokenizer(checkpoint.path(weightsName));
    if (JSON.stringify(loaded.config) !== JSON.stringify(o.config)) {
      throw new MuseError(`${o.out} holds a run with another tokenizer config; use another --out or the same --config`);
    }
    params = loaded.params;
    const { tensors, metadata } = await loadSafetensors(stateFile);
    resumedState = tensors;
    step = checkpoint.step;
    rng = new Rng(JSON.parse(metadata.rng) as RngState);
    history = JSON.parse(metadata.history) as History;
    disc = initDiscriminator(dc, new Rng(0));
    for (const [k, v] of Object.entries(disc)) {
      const t = tensors[k];
      if (!t) throw new MuseError(`${stateFile}: discriminator tensor "${k}" is missing`);
      assignValues(v, Float32Array.from(t.data));
    }
    opt.loadState(momentsFromTensors('opt', tensors, Number(metadata.optStep)));
    dopt.loadState(momentsFromTensors('dopt', tensors, Number(metadata.doptStep)));
    usageEma = (tensors.usage_ema?.data as Float32Array) ?? usageEma;
    if (!o.quiet) console.error(`resuming ${o.out} at step ${step}`);
  } else {
    params = initTokenizer(o.config, rng.fork());
    disc = initDiscriminator(dc, rng.fork());
  }
  // With an EMA codebook the codes are not the optimizer's: they move by running means after each step.
  const ema = emaCodebookFor(o.config, params, resumedState);
  const trainable = optimizedParams(params, o.config);

  const save = async () => {
    await run.save(step, {
      [weightsName]: (path) =>
        saveTokenizer(path, params, o.config, {
          extra: { step: String(step), id: `muse-tokenizer-${o.seed}-${step}` },
        }),
      [stateName]: (path) => saveState(path),
    });
    await writeFileAtomic(join(o.out, 'history.json'), `${JSON.stringify(history)}\n`);
  };
  const saveState = (path: string) =>
    saveSafetensors(
      path,
      {
        ...momentsToTensors('opt', opt, trainable),
        ...momentsToTensors('dopt', dopt, disc),
        ...Object.fromEntries(
          Object.entries(disc).map(([k, v]) => [k, { shape: v.shape, data: v.dataSync() as Float32Array }]),
        ),
        usage_ema: { shape: [usageEma.length], data: usageEma },
        ...(ema && {
          ema_counts: { shape: [ema.size], data: ema.counts },
          ema_sums: { shape: [ema.size, ema.codeDim], data: ema.sums },
        }),
      },
      {
        metadata: {
          step: String(step),
          optStep: String(opt.step),
          doptStep: String(dopt.step),
          rng: JSON.stringify(rng.state()),
          history: JSON.stringify(history),
          options: JSON.stringify({
            ...o,
            images: o.images.length,
            validation: o.validation.length,
            onStep: undefined,
          }),
        },
      },
    );

  const sigint = interruptHandler();
  const outOfTime = deadline(o.minutes);
  const progress = o.quiet
    ? undefined
    : new Progress({ total: o.steps, label: 'tokenizer', unit: 'step', startAt: step });
  let stoppedEarly = false;
  try {
    while (step < o.steps) {
      const lr = learningRate({ peak: o.lr, warmup: o.warmup, total: o.steps }, step);
      const useGan = step >= o.discStart && o.ganWeight > 0;
      const x = sampleBatch(o.images, o.batch, o.crop, rng);
      let rec = 0;
      let mse = 0;
      let vq = 0;
      let gan = 0;
      let indices: Int32Array = new Int32Array();
      let vectors: Float32Array = new Float32Array();
      let fake: tf.Tensor4D | undefined;
      const { value, grads } = namedGrads(() => {
        const q = quantizeImages(params, o.config, x);
        const xr = decodeLatents(params, o.config, q.latents);
        const diff = tf.sub(xr, x);
        const squared = tf.mean(tf.square(diff));
        const recLoss = tf.add(tf.mean(tf.abs(diff)), squared);
        mse = squared.dataSync()[0];
        let total = tf.add(recLoss, q.loss);
        let ganLoss: tf.Scalar | undefined;
        if (useGan) {
          ganLoss = generatorHinge(discriminate(disc, dc, xr));
          total = tf.add(total, tf.mul(ganLoss, o.ganWeight));
        }
        rec = recLoss.dataSync()[0];
        vq = q.loss.dataSync()[0];
        gan = ganLoss?.dataSync()[0] ?? 0;
        indices = q.indices.dataSync() as Int32Array;
        vectors = q.vectors.dataSync() as Float32Array;
        fake = tf.keep(stopGradient(xr));
        return total as tf.Scalar;
      }, trainable);
      const clipped = clipByGlobalNorm(grads, 1);
      opt.apply(trainable, clipped.grads, lr);
      tf.dispose([...Object.values(grads), ...Object.values(clipped.grads)]);
      if (ema) assignValues(params[CODEBOOK], ema.update(indices, vectors));
      let dLoss = 0;
      if (useGan && fake) {
        const real = x;
        const fk = fake;
        const d = namedGrads(() => discriminatorHinge(discriminate(disc, dc, real), discriminate(disc, dc, fk)), disc);
        dLoss = d.value.dataSync()[0];
        dopt.apply(disc, d.grads, lr);
        tf.dispose([d.value, ...Object.values(d.grads)]);
      }
      const loss = value.dataSync()[0];
      tf.dispose([value, x]);
      if (fake) tf.dispose(fake as tf.Tensor);
      if (!Number.isFinite(loss)) throw new Error(`loss became ${loss} at step ${step}: lower --lr`);

      const batchUsage = codeUsage(indices, o.config.codebookSize);
      for (let k = 0; k < usageEma.length; k++) usageEma[k] = 0.99 * usageEma[k] + 0.01 * batchUsage.counts[k];
      step++;
      let restarted: number[] = [];
      if (o.restartEvery > 0 && step % o.restartEvery === 0 && step < o.steps * 0.9) {
        restarted = restartDeadCodes(params, usageEma, vectors, o.config.codeDim, DEAD_THRESHOLD, (n) => rng.int(n));
        if (ema && restarted.length) {
          const book = params[CODEBOOK].dataSync() as Float32Array;
          const d = o.config.codeDim;
          for (const k of restarted) ema.reset(k, book.subarray(k * d, (k + 1) * d));
        }
      }
      const stats: StepStats = {
        loss,
        rec,
        vq,
        gan,
        disc: dLoss,
        // Pixels span [-1, 1]: peak-to-peak 2, so PSNR = 10·log10(2² / MSE).
        psnr: 10 * Math.log10(4 / mse),
        used: batchUsage.used,
        perplexity: batchUsage.perplexity,
        restarted: restarted.length,
        lr,
      };
      if (step % 10 === 0 || step === 1) history.train.push({ step, ...stats });
      o.onStep?.(step, stats);
      progress?.tick(1, { loss, psnr: stats.psnr, ppl: batchUsage.perplexity, lr });

      const last = step === o.steps;
      if (o.evalEvery > 0 && (step % o.evalEvery === 0 || last) && o.validation.length) {
        const e = { step, ...evaluateReconstruction(params, o.config, o.validation) };
        history.eval.push(e);
        if (!o.quiet) {
          console.error(
            `\nstep ${step}: held-out PSNR ${e.psnr.toFixed(2)} dB, SSIM ${e.ssim.toFixed(3)}, codes used ${(100 * e.used).toFixed(1)}%, perplexity ${e.perplexity.toFixed(0)}`,
          );
        }
      }
      if (o.sampleEvery > 0 && (step % o.sampleEvery === 0 || last) && o.validation.length) {
        await writeSamples(o, params, step, history);
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

/** A reconstruction grid (original above, reconstruction below) and the curves, as PNG. */
async function writeSamples(o: TokenizerTrainOptions, params: Params, step: number, history: History): Promise<void> {
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
  await writeFileAtomic(join(o.out, 'samples', `step-${String(step).padStart(6, '0')}.png`), grid);
  await writeFileAtomic(
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
    await writeFileAtomic(
      join(o.out, 'psnr.png'),
      await lineChartPng([{ name: 'held-out PSNR (dB)', points: history.eval.map((e) => [e.step, e.psnr]) }], {
        title: 'held-out reconstruction PSNR',
        xLabel: 'step',
        yLabel: 'dB',
      }),
    );
  }
}
