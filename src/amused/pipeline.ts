// aMUSEd (the open reproduction of Muse: CLIP text tower → masked-token U-ViT → VQ-GAN) as a muse-ts
// pipeline, read from a diffusers-layout folder (model_index.json and one folder per component).
//
// Decoding follows diffusers' AmusedPipeline / AmusedImg2ImgPipeline / AmusedInpaintPipeline step for
// step (12 steps, aMUSEd's scheduler with its cosine masking and the (2 → 0) confidence-noise
// temperature), so the same random draws give the same tokens. Differences, by design:
//  - guidance keeps muse-ts's meaning: logits = (1 + t)·cond − t·uncond, computed as
//    uncond + (1 + t)·(cond − uncond), exactly diffusers' guidance_scale s = 1 + t (default t = 9 ↔ s = 10);
//  - `temperature` (muse-ts's sampling temperature) divides the logits before the scheduler samples
//    (1 = the reference; 0 = greedy argmax); aMUSEd's own temperature is `choiceTemperature`;
//  - random draws come from muse-ts's seeded Rng, one stream per image (image i of a batch equals a
//    single run with seed + i), not from torch's generator.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { MASK_FREE_EDIT_DEFAULTS, maskFreeEdit } from '../decoding/edit.js';
import {
  type Extension,
  extendCanvas,
  outpaintCanvas,
  type TokenCanvas,
  validateExtension,
  windowsToFill,
} from '../decoding/outpaint.js';
import type { PixelMask, RgbImage } from '../image/image.js';
import { featherComposite } from '../pipeline/masks.js';
import type { GenerationOptions } from '../pipeline/options.js';
import { StepCounter } from '../pipeline/step-counter.js';
import { initBackend } from '../tensor/backend.js';
import { Rng } from '../tensor/random.js';
import { MuseError } from '../util/errors.js';
import { ClipTextModel } from './clip-text.js';
import { ClipTokenizer } from './clip-tokenizer.js';
import { readJsonObject } from './component.js';
import { AmusedScheduler, type SchedulerRandom, SeededSchedulerRandom } from './scheduler.js';
import { UVit } from './uvit.js';
import { toRgb8, VQModel } from './vqgan.js';

const PIPELINE_CLASSES = ['AmusedPipeline', 'AmusedImg2ImgPipeline', 'AmusedInpaintPipeline'];
const COMPONENTS: Record<string, string> = {
  tokenizer: 'CLIPTokenizer',
  text_encoder: 'CLIPTextModelWithProjection',
  transformer: 'UVit2DModel',
  vqvae: 'VQModel',
  scheduler: 'AmusedScheduler',
};

/** The defaults of diffusers' aMUSEd pipelines, in muse-ts's terms. */
export const AMUSED_DEFAULTS = {
  steps: 12,
  /** muse-ts guidance t; diffusers' guidance_scale 10 = 1 + t. */
  guidance: 9,
  /** aMUSEd's confidence-noise temperature, annealed linearly to `choiceTemperatureEnd`. */
  choiceTemperature: 2,
  choiceTemperatureEnd: 0,
  /** Sampling temperature of the logits (1 = sample from softmax(logits), as the reference). */
  temperature: 1,
  aestheticScore: 6,
  crop: [0, 0] as [number, number],
  img2imgStrength: 0.5,
  inpaintStrength: 1,
};

export interface MicroConditioning {
  /** Original image size (width, height) the model is told; default: the output size. */
  originalSize?: [number, number];
  /** Crop coordinates (top, left); default (0, 0). */
  crop?: [number, number];
  /** LAION aesthetic score; default 6. */
  aestheticScore?: number;
}

/**
 * The shared pipeline options (pipeline/options.ts) with aMUSEd's meanings and defaults: one size (the
 * model's); guidance t ≥ 0 (diffusers' guidance_scale is 1 + t; default 9); guidanceSchedule
 * 'constant' (default, as diffusers) or 'linear'; temperature 1 (the reference) or 0 (greedy);
 * choiceTemperature: aMUSEd's confidence noise, annealed linearly to 0 (default 2); schedule: the
 * scheduler's masking schedule (the model's, cosine, unless given).
 */
export interface AmusedOptions extends GenerationOptions {
  microConditioning?: MicroConditioning;
  /** Replaces the seeded random draws (tests replay the reference's; generate then runs one batch). */
  random?: SchedulerRandom;
  /** generate: most images decoded in one batch (default: as many as the memory estimate allows). */
  maxBatch?: number;
}

/** Mask-free editing's own options (as MusePipeline's EditOptions). */
export interface AmusedEditOptions extends AmusedOptions {
  /** Resampling rounds (default 100). */
  iterations?: number;
  /** Share of the tokens resampled per round (default 0.08). */
  fraction?: number;
}

/**
 * Mask-free editing's defaults on aMUSEd: the paper's rounds, share, top-k and temperature
 * (MASK_FREE_EDIT_DEFAULTS) with its constant guidance 4 (muse-ts's t; diffusers' scale 5).
 */
export const AMUSED_EDIT_DEFAULTS = { ...MASK_FREE_EDIT_DEFAULTS, guidance: 4 } as const;

/** Memory one generate batch (or one outpainting canvas decode) may use, beside the weights. */
const AMUSED_BATCH_BUDGET_BYTES = 1.5e9;

/** Most uploaded U-ViT weights a call keeps between passes when they are streamed (the full models). */
const AMUSED_WEIGHT_CACHE_BYTES = 1e9;

/** The checked sampling settings of one call. */
interface Settings {
  steps: number;
  guidance: number;
  temperature: number;
  choice: number;
  topK: number;
  /** Guidance ramped linearly over the steps (else constant). */
  ramp: boolean;
  schedule?: 'cosine' | 'linear';
}

/** The text and micro-conditioning rows of a call (guided: uncond rows first). */
interface Conditioning {
  hidden: tf.Tensor3D;
  pooled: tf.Tensor2D;
  microConds: tf.Tensor2D;
  guided: boolean;
  rows: number;
  dispose(): void;
}

export interface AmusedResult {
  images: RgbImage[];
  /** Final tokens [batch, h·w]. */
  tokens: Int32Array;
  grid: [number, number];
  /** Things the user should know (a truncated prompt). */
  notes: string[];
}

interface StartState {
  tokens: Int32Array;
  /** First scheduler step to run. */
  startStep: number;
  startingMaskRatio: number;
  /** Masking schedule override (the inpainting pipeline uses linear). */
  schedule?: 'cosine' | 'linear';
}

function readModelIndex(folder: string): Record<string, unknown> {
  const file = join(folder, 'model_index.json');
  if (!existsSync(folder)) throw new MuseError(`model folder ${folder} does not exist`);
  const index = readJsonObject(file, `${folder} is not a diffusers pipeline folder: it has no model_index.json`);
  const cls = (index as Record<string, unknown>)._class_name;
  if (!PIPELINE_CLASSES.includes(cls as string))
    throw new MuseError(
      `${file}: _class_name ${JSON.stringify(cls)} is not an aMUSEd pipeline (${PIPELINE_CLASSES.join(', ')})`,
    );
  for (const [name, wanted] of Object.entries(COMPONENTS)) {
    const entry = (index as Record<string, unknown>)[name];
    if (!Array.isArray(entry) || entry[1] !== wanted)
      throw new MuseError(`${file}: component "${name}" must be ${wanted}, got ${JSON.stringify(entry ?? null)}`);
    const sub = join(folder, name);
    if (!existsSync(sub) || !statSync(sub).isDirectory())
      throw new MuseError(`${folder}: the ${name}/ folder is missing (model_index.json names it)`);
  }
  return index as Record<string, unknown>;
}

/** True when `folder` holds a diffusers aMUSEd pipeline (model_index.json). */
export function isAmusedFolder(folder: string): boolean {
  return existsSync(join(folder, 'model_index.json'));
}

/** One independent random stream per image: image i of a batch equals a single run with seed + i. */
class PerImageRandom implements SchedulerRandom {
  private readonly streams: SeededSchedulerRandom[];
  constructor(seed: number, images: number) {
    this.streams = Array.from({ length: images }, (_, i) => new SeededSchedulerRandom((seed + i) >>> 0));
  }
  multinomial(probs: Float32Array, rows: number, k: number): Int32Array {
    const per = rows / this.streams.length;
    const out = new Int32Array(rows);
    this.streams.forEach((s, i) => {
      out.set(s.multinomial(probs.subarray(i * per * k, (i + 1) * per * k), per, k), i * per);
    });
    return out;
  }
  gumbel(n: number): Float32Array {
    const per = n / this.streams.length;
    const out = new Float32Array(n);
    this.streams.forEach((s, i) => {
      out.set(s.gumbel(per), i * per);
    });
    return out;
  }
}

/** Greedy draws (temperature 0): the most probable code at every position; the noise is left as it is. */
class GreedyRandom implements SchedulerRandom {
  constructor(private readonly inner: SchedulerRandom) {}
  multinomial(probs: Float32Array, rows: number, k: number): Int32Array {
    const out = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      let best = 0;
      for (let j = 1; j < k; j++) if (probs[r * k + j] > probs[r * k + best]) best = j;
      out[r] = best;
    }
    return out;
  }
  gumbel(n: number): Float32Array {
    return this.inner.gumbel(n);
  }
}

function checkNumber(name: string, v: number, min: number, max: number, integer = false): number {
  if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v)))
    throw new MuseError(`${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${v}`);
  return v;
}

export class AmusedPipeline {
  readonly kind = 'amused';

  private constructor(
    readonly folder: string,
    readonly tokenizer: ClipTokenizer,
    readonly textEncoder: ClipTextModel,
    readonly transformer: UVit,
    readonly vqvae: VQModel,
    readonly scheduler: AmusedScheduler,
  ) {
    if (transformer.config.codebookSize !== vqvae.config.codebookSize)
      throw new MuseError(
        `${folder}: the transformer predicts ${transformer.config.codebookSize} codes, the VQ-GAN has ${vqvae.config.codebookSize}`,
      );
  }

  /** Loads every component (starting the default tensor backend if none is). */
  static async load(folder: string): Promise<AmusedPipeline> {
    readModelIndex(folder);
    await initBackend();
    const tokenizer = ClipTokenizer.load(join(folder, 'tokenizer'));
    const scheduler = AmusedScheduler.fromFolder(join(folder, 'scheduler'));
    const loaded: { dispose(): void }[] = [];
    try {
      const textEncoder = await ClipTextModel.load(join(folder, 'text_encoder'));
      loaded.push(textEncoder);
      const transformer = await UVit.load(join(folder, 'transformer'));
      loaded.push(transformer);
      const vqvae = await VQModel.load(join(folder, 'vqvae'));
      loaded.push(vqvae);
      return new AmusedPipeline(folder, tokenizer, textEncoder, transformer, vqvae, scheduler);
    } catch (err) {
      for (const m of loaded) m.dispose();
      throw err;
    }
  }

  /** Token grid [h, w] (the transformer's sample_size). */
  get grid(): [number, number] {
    const s = this.transformer.config.sampleSize;
    return [s, s];
  }

  /** Pixels per token side (the VQ-GAN's downsampling factor). */
  get factor(): number {
    return this.vqvae.config.factor;
  }

  /** Side of the images in pixels. */
  get imageSize(): number {
    return this.grid[0] * this.factor;
  }

  get maskId(): number {
    return this.scheduler.maskTokenId;
  }

  /**
   * Text-to-image: n images per prompt. The images are decoded in batches whose estimated memory fits
   * (batchLimit, or `maxBatch`); image i draws from its own generator seeded seed + i, so the split
   * never changes an image, and image i equals the only image of the same call with seed + i, n = 1.
   */
  async generate(prompt: string | string[], o: AmusedOptions = {}): Promise<AmusedResult> {
    const prompts = typeof prompt === 'string' ? [prompt] : prompt;
    if (prompts.length === 0) throw new MuseError('no prompts given');
    const n = checkNumber('n', o.n ?? 1, 1, 256, true);
    const list = prompts.flatMap((p) => Array(n).fill(p) as string[]);
    const s = this.settings(o);
    if (o.maxBatch !== undefined) checkNumber('maxBatch', o.maxBatch, 1, 256, true);
    // Injected draws (tests replaying the reference) are one stream for the whole call: no split.
    const limit = o.random ? list.length : Math.min(this.batchLimit(), o.maxBatch ?? Number.POSITIVE_INFINITY);
    const seed = checkNumber('seed', o.seed ?? 0, 0, 2 ** 32 - 1, true);
    const [h, w] = this.grid;
    const chunks = Math.ceil(list.length / limit);
    const progress = new StepCounter(chunks * s.steps, o.onStep);
    const images: RgbImage[] = [];
    const tokens = new Int32Array(list.length * h * w);
    const notes: string[] = [];
    for (let first = 0; first < list.length; first += limit) {
      const chunk = list.slice(first, first + limit);
      const random = o.random ?? new PerImageRandom((seed + first) >>> 0, chunk.length);
      const start = new Int32Array(chunk.length * h * w).fill(this.maskId);
      const r = await this.run(chunk, o, s, { tokens: start, startStep: 0, startingMaskRatio: 1 }, random, progress);
      images.push(...r.images);
      tokens.set(r.tokens, first * h * w);
      for (const note of r.notes) if (!notes.includes(note)) notes.push(note);
    }
    return { images, tokens, grid: [h, w], notes };
  }

  /**
   * How many images one generate batch may hold: the estimated memory of an image (the guided U-ViT
   * pass, the logits, the VQ-GAN decoder at full resolution) against a budget well under the 4 GB a
   * wasm heap can reach beside the weights.
   */
  batchLimit(): number {
    return Math.max(1, Math.floor(AMUSED_BATCH_BUDGET_BYTES / this.imageBytes()));
  }

  /** Estimated peak bytes per image (an upper estimate from the configs, with a 1.5× margin). */
  imageBytes(): number {
    const c = this.transformer.config;
    const full = c.sampleSize * c.sampleSize;
    const inner = c.downsample ? full / 4 : full;
    const perRow =
      4 *
      (inner * (12 * c.hiddenSize + 4 * c.intermediateSize) +
        3 * c.numAttentionHeads * inner * inner +
        full * 8 * c.blockOutChannels * 4 +
        3 * c.blockNumHeads * full * full +
        4 * full * c.codebookSize);
    const side = this.imageSize;
    const decoder = side * side * this.vqvae.config.blockOutChannels[0] * 4 * 8;
    return 1.5 * (2 * perRow + decoder);
  }

  /**
   * Bytes of the streamed U-ViT's uploaded weights a call over `images` images keeps between passes:
   * what the heap budget leaves beside the estimated activations (0 when they need it all, as at
   * 512 px), at most AMUSED_WEIGHT_CACHE_BYTES (MUSE_AMUSED_CACHE_BYTES overrides).
   */
  weightCacheBytes(images: number): number {
    const env = Number(process.env.MUSE_AMUSED_CACHE_BYTES);
    const cap = process.env.MUSE_AMUSED_CACHE_BYTES !== undefined && env >= 0 ? env : AMUSED_WEIGHT_CACHE_BYTES;
    return Math.max(0, Math.min(cap, AMUSED_BATCH_BUDGET_BYTES - images * this.imageBytes()));
  }

  /**
   * Image-to-image (diffusers' AmusedImg2ImgPipeline): the image's tokens, a `strength` share of the
   * steps re-run after masking tokens as the schedule does at that step (strength 1 ignores the image).
   */
  async img2img(image: RgbImage, prompt: string, o: AmusedOptions & { strength?: number } = {}): Promise<AmusedResult> {
    const strength = checkNumber('strength', o.strength ?? AMUSED_DEFAULTS.img2imgStrength, 0, 1);
    const s = this.settings(o);
    const run = Math.floor(s.steps * strength);
    if (run === 0) throw new MuseError(`strength ${strength} of ${s.steps} steps runs no step: raise it or the steps`);
    const start = s.steps - run;
    const n = checkNumber('n', o.n ?? 1, 1, 256, true);
    const ids = await this.encodeImage(image);
    const random = this.random(o, n);
    // add_noise: every token masked with probability mask_ratio(start) (the draws of one uniform each).
    const ratio = this.maskRatioAt(start, s.steps);
    const tokens = new Int32Array(n * ids.length);
    for (let i = 0; i < n; i++) tokens.set(ids, i * ids.length);
    const u = random.gumbel(tokens.length); // Gumbel draws are monotone in the uniform: compare through it
    const threshold = -Math.log(-Math.log(Math.max(ratio, 1e-20)));
    for (let i = 0; i < tokens.length; i++) if (u[i] < threshold) tokens[i] = this.maskId;
    const progress = new StepCounter(run, o.onStep);
    return this.run(Array(n).fill(prompt), o, s, { tokens, startStep: start, startingMaskRatio: 1 }, random, progress);
  }

  /**
   * Inpainting (diffusers' AmusedInpaintPipeline): tokens under the mask (white = regenerate; a token
   * is masked when at least half of its pixels are) are decoded again with the linear schedule,
   * scaled by the masked share; `strength` < 1 runs only the last steps.
   */
  async inpaint(
    image: RgbImage,
    mask: PixelMask,
    prompt: string,
    o: AmusedOptions & { strength?: number; feather?: number } = {},
  ): Promise<AmusedResult> {
    const strength = checkNumber('strength', o.strength ?? AMUSED_DEFAULTS.inpaintStrength, 0, 1);
    const s = this.settings(o);
    const run = Math.floor(s.steps * strength);
    if (run === 0) throw new MuseError(`strength ${strength} of ${s.steps} steps runs no step: raise it or the steps`);
    const n = checkNumber('n', o.n ?? 1, 1, 256, true);
    const size = this.imageSize;
    if (mask.width !== size || mask.height !== size)
      throw new MuseError(`the mask is ${mask.width}×${mask.height} px; this model works at ${size}×${size}`);
    const ids = await this.encodeImage(image);
    const [h, w] = this.grid;
    const f = this.factor;
    let masked = 0;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        let on = 0;
        for (let dy = 0; dy < f; dy++)
          for (let dx = 0; dx < f; dx++) on += mask.data[(y * f + dy) * size + x * f + dx] ? 1 : 0;
        if (on * 2 >= f * f) {
          ids[y * w + x] = this.maskId;
          masked++;
        }
      }
    if (masked === 0) throw new MuseError('the mask covers no token (at least half of a token’s pixels must be white)');
    const tokens = new Int32Array(n * ids.length);
    for (let i = 0; i < n; i++) tokens.set(ids, i * ids.length);
    const r = await this.run(
      Array(n).fill(prompt),
      o,
      s,
      {
        tokens,
        startStep: s.steps - run,
        startingMaskRatio: Math.fround(masked / ids.length),
        schedule: 'linear',
      },
      this.random(o, n),
      new StepCounter(run, o.onStep),
    );
    // With `feather`, pixels outside the mask stay the original's (the VQ-GAN would redraw them).
    if (o.feather !== undefined) r.images = r.images.map((g) => featherComposite(image, g, mask, o.feather as number));
    return r;
  }

  /**
   * Outpainting: the canvas grows by whole tokens (`pixels` rounded up to the VQ-GAN's factor) and the
   * new area is decoded window by window at the model's grid (src/decoding/outpaint.ts: half-window
   * lattice, nearest windows first), each window an inpainting problem (linear schedule scaled by its
   * masked share) that sees the tokens already known under it. The original's tokens are kept and
   * its pixels pasted back; image i draws from seed + i.
   */
  async outpaint(
    image: RgbImage,
    pixels: Partial<Extension>,
    prompt: string,
    o: AmusedOptions = {},
  ): Promise<AmusedResult> {
    const n = checkNumber('n', o.n ?? 1, 1, 256, true);
    const s = this.settings(o);
    const f = this.factor;
    const notes: string[] = [];
    const ext: Extension = { top: 0, bottom: 0, left: 0, right: 0 };
    for (const side of ['top', 'bottom', 'left', 'right'] as const) {
      const px = pixels[side] ?? 0;
      if (!Number.isInteger(px) || px < 0)
        throw new MuseError(`outpaint: ${side} must be a whole number of pixels ≥ 0, got ${px}`);
      ext[side] = Math.ceil(px / f);
      if (px % f) notes.push(`${side}: ${px} px rounded up to ${ext[side] * f} px (whole ${f}-px tokens)`);
    }
    validateExtension(ext);
    const [h, w] = this.grid;
    const height = h + ext.top + ext.bottom;
    const width = w + ext.left + ext.right;
    this.checkCanvas(width * f, height * f, n);
    const ids = await this.encodeImage(image);
    const known = new Int32Array(n * ids.length);
    for (let i = 0; i < n; i++) known.set(ids, i * ids.length);
    const canvas = extendCanvas(known, n, h, w, ext, this.maskId);
    const origin = { row: ext.top, col: ext.left };
    const windows = windowsToFill(canvas, [h, w], origin, this.maskId).length;
    const progress = new StepCounter(windows * s.steps, o.onStep);
    const random = this.random(o, n);
    const cond = this.condition(Array(n).fill(prompt), o, s, notes);
    let ran = 0;
    let done: TokenCanvas;
    try {
      done = await outpaintCanvas(canvas, [h, w], origin, this.maskId, async (win, _i, _n, place) => {
        let masked = 0;
        for (let j = 0; j < h * w; j++) if (win[j] === this.maskId) masked++;
        const r = await this.decodeLoop(
          cond,
          s,
          { tokens: win, startStep: 0, startingMaskRatio: Math.fround(masked / (h * w)), schedule: 'linear' },
          random,
          (t) => {
            const c = place(t);
            return progress.step(() => this.preview(c.tokens, [c.height, c.width]), c.tokens);
          },
        );
        ran += r.ran;
        return r.tokens;
      });
    } finally {
      cond.dispose();
    }
    progress.ranFewer(windows * s.steps, ran);
    const images = (await this.decodeTokens(done.tokens, [done.height, done.width])).map((img) =>
      pasteImage(img, image, ext.left * f, ext.top * f),
    );
    return { images, tokens: done.tokens, grid: [done.height, done.width], notes };
  }

  /**
   * Mask-free editing (Muse §3.3, src/decoding/edit.ts): each iteration masks a random `fraction` of
   * the image's tokens and resamples them under the new prompt (guided U-ViT logits, top-k, temperature),
   * so the image drifts toward the prompt and keeps its layout. Defaults: the paper's 100 iterations,
   * 8%, top-k 3, with aMUSEd's constant guidance t = 4 (see AMUSED_EDIT_DEFAULTS).
   */
  async edit(image: RgbImage, prompt: string, o: AmusedEditOptions = {}): Promise<AmusedResult> {
    const n = checkNumber('n', o.n ?? 1, 1, 256, true);
    const d = AMUSED_EDIT_DEFAULTS;
    const s = this.settings({ ...o, guidance: o.guidance ?? d.guidance });
    const iterations = checkNumber('iterations', o.iterations ?? d.iterations, 1, 10_000, true);
    const ids = await this.encodeImage(image);
    const start = new Int32Array(n * ids.length);
    for (let i = 0; i < n; i++) start.set(ids, i * ids.length);
    const notes: string[] = [];
    const cond = this.condition(Array(n).fill(prompt), o, s, notes);
    const progress = new StepCounter(iterations, o.onStep);
    let tokens: Int32Array;
    try {
      tokens = await maskFreeEdit(
        (t, _batch, it, its) => this.guidedLogits(cond, s, t, it, its, false),
        { tokens: start, batch: n, codebookSize: this.transformer.config.codebookSize, maskId: this.maskId },
        {
          iterations,
          fraction: o.fraction ?? d.fraction,
          topK: o.topK ?? d.topK,
          temperature: o.temperature ?? d.temperature,
          rng: new Rng(checkNumber('seed', o.seed ?? 0, 0, 2 ** 32 - 1, true)),
          onIteration: (_i, _n, t) => progress.step(() => this.preview(t), t),
        },
      );
    } finally {
      cond.dispose();
    }
    return { images: await this.decodeTokens(tokens), tokens, grid: this.grid, notes };
  }

  /** aMUSEd has a single stage: there is nothing to upscale with. */
  async upscale(_image: RgbImage, _prompt: string, _o: AmusedOptions = {}): Promise<AmusedResult> {
    throw new MuseError(`${this.folder} is an aMUSEd model: it has no super-res stage to upscale with`);
  }

  /** Token ids [h·w] of an image at the model's size (VQ-GAN encoder, nearest codes). */
  async encodeImage(image: RgbImage): Promise<Int32Array> {
    const size = this.imageSize;
    if (image.width !== size || image.height !== size)
      throw new MuseError(`the image is ${image.width}×${image.height} px; this model works at ${size}×${size}`);
    const x = tf.tidy(() => tf.div(tf.tensor4d(Float32Array.from(image.data), [1, size, size, 3]), 255)) as tf.Tensor4D;
    try {
      const { ids, latents } = await this.vqvae.encode(x);
      latents.dispose();
      return ids;
    } finally {
      x.dispose();
    }
  }

  /**
   * Tokens [batch, h·w] (grids of `grid`, default the model's) → 8-bit images. Read asynchronously:
   * tfjs-webgpu's synchronous read returns zeros in headless Chromium (docs/ARCHITECTURE.md).
   */
  async decodeTokens(tokens: Int32Array, grid: [number, number] = this.grid): Promise<RgbImage[]> {
    const [h, w] = grid;
    const batch = tokens.length / (h * w);
    const raw = this.vqvae.decode(tokens, [batch, h, w]);
    let pixels: Uint8Array;
    try {
      pixels = toRgb8((await raw.data()) as Float32Array);
    } finally {
      raw.dispose();
    }
    const f = this.factor;
    const per = h * f * w * f * 3;
    return Array.from({ length: batch }, (_, b) => ({
      width: w * f,
      height: h * f,
      data: pixels.slice(b * per, (b + 1) * per),
    }));
  }

  dispose(): void {
    this.textEncoder.dispose();
    this.transformer.dispose();
    this.vqvae.dispose();
  }

  private random(o: AmusedOptions, images: number): SchedulerRandom {
    if (o.random) return o.random;
    const seed = checkNumber('seed', o.seed ?? 0, 0, 2 ** 32 - 1, true);
    return new PerImageRandom(seed, images);
  }

  private maskRatioAt(stepIndex: number, steps: number): number {
    const r = Math.fround((stepIndex + 1) / steps);
    return this.scheduler.maskingSchedule === 'cosine'
      ? Math.fround(Math.cos(Math.fround(Math.fround(r * Math.fround(Math.PI)) / 2)))
      : Math.fround(1 - r);
  }

  /**
   * Refuses an outpainting canvas whose VQ-GAN decoding would not fit in memory (the decoder runs on
   * the whole canvas of every image at once).
   */
  private checkCanvas(width: number, height: number, images: number): void {
    const perPixel = this.vqvae.config.blockOutChannels[0] * 4 * 8 * 1.5;
    const maxPixels = Math.floor(AMUSED_BATCH_BUDGET_BYTES / perPixel);
    if (width * height * images > maxPixels) {
      const side = Math.floor(Math.sqrt(maxPixels / images));
      throw new MuseError(
        `outpaint: a ${width}×${height} px canvas${images > 1 ? ` × ${images} images` : ''} needs about ` +
          `${((width * height * images * perPixel) / 1e9).toFixed(1)} GB to decode; the limit is ` +
          `${(maxPixels / 1e6).toFixed(2)} megapixels in all (e.g. ${side}×${side} px per image)`,
      );
    }
  }

  /** The checked sampling settings of one call. */
  private settings(o: AmusedOptions): Settings {
    const steps = checkNumber('steps', o.steps ?? AMUSED_DEFAULTS.steps, 1, 1000, true);
    const guidance = checkNumber('guidance', o.guidance ?? AMUSED_DEFAULTS.guidance, 0, 100);
    const temperature = checkNumber('temperature', o.temperature ?? AMUSED_DEFAULTS.temperature, 0, 100);
    const choice = checkNumber('choiceTemperature', o.choiceTemperature ?? AMUSED_DEFAULTS.choiceTemperature, 0, 100);
    const topK = checkNumber('topK', o.topK ?? 0, 0, this.transformer.config.codebookSize, true);
    if (o.size !== undefined && o.size !== this.imageSize)
      throw new MuseError(`size ${o.size}: this aMUSEd model makes ${this.imageSize} px images`);
    if (o.schedule !== undefined && o.schedule !== 'cosine' && o.schedule !== 'linear')
      throw new MuseError(`schedule ${o.schedule}: aMUSEd's scheduler masks by cosine or linear`);
    return {
      steps,
      guidance,
      temperature,
      choice,
      topK,
      ramp: (o.guidanceSchedule ?? 'constant') === 'linear',
      schedule: o.schedule as 'cosine' | 'linear' | undefined,
    };
  }

  /**
   * CLIP's states for one row per image (guided: the negative or empty prompt's rows first, as
   * diffusers concatenates them) and the micro-conditioning rows; dispose() after the call.
   */
  private condition(perImage: string[], o: AmusedOptions, s: Settings, notes: string[]): Conditioning {
    const guided = s.guidance > 0;
    const texts = guided ? [...Array(perImage.length).fill(o.negative ?? ''), ...perImage] : perImage;
    const rows = texts.map((p) => {
      const e = this.tokenizer.encode(p);
      const note = `the prompt "${p.slice(0, 40)}…" is longer than 77 tokens: the rest was cut`;
      if (e.truncated && !notes.includes(note)) notes.push(note);
      return e.ids;
    });
    const out = this.textEncoder.forward(rows);
    const hidden = out.hiddenStates[out.hiddenStates.length - 2];
    for (const t of [out.lastHiddenState, out.pooledOutput, ...out.hiddenStates]) if (t !== hidden) t.dispose();
    const pooled = out.textEmbeds;
    const micro = o.microConditioning ?? {};
    const size = this.imageSize;
    const [ow, oh] = micro.originalSize ?? [size, size];
    const [ct, cl] = micro.crop ?? AMUSED_DEFAULTS.crop;
    const conds = [ow, oh, ct, cl, micro.aestheticScore ?? AMUSED_DEFAULTS.aestheticScore];
    const microConds = tf.tensor2d(
      Float32Array.from({ length: texts.length * 5 }, (_, i) => conds[i % 5]),
      [texts.length, 5],
    );
    // Streamed U-ViT weights: keep what the heap has room for during this call's passes.
    this.transformer.keepWeights(this.weightCacheBytes(perImage.length));
    return {
      hidden,
      pooled,
      microConds,
      guided,
      rows: texts.length,
      dispose: () => {
        tf.dispose([hidden, pooled, microConds]);
        this.transformer.releaseWeights();
      },
    };
  }

  /**
   * Logits [images, h·w, codebook] of token grids under the call's conditioning: guided
   * uncond + (1 + t)(cond − uncond) (t ramped over `steps` when linear); `shape` applies top-k and
   * the sampling temperature (the decoding loop's; mask-free editing samples itself).
   */
  private async guidedLogits(
    cond: Conditioning,
    s: Settings,
    tokens: Int32Array,
    step: number,
    steps: number,
    shape = true,
  ): Promise<Float32Array> {
    const k = this.transformer.config.codebookSize;
    const images = cond.guided ? cond.rows / 2 : cond.rows;
    const cells = tokens.length / images;
    const [h, w] = this.grid;
    if (cells !== h * w) throw new Error(`guidedLogits: ${tokens.length} tokens are not ${images} grids of ${h}×${w}`);
    const logits = tf.tidy(() => {
      const ids = tf.tensor3d(
        cond.guided ? Int32Array.from([...tokens, ...tokens]) : tokens,
        [cond.rows, h, w],
        'int32',
      );
      const all = this.transformer.forward({
        inputIds: ids,
        encoderHiddenStates: cond.hidden,
        pooledTextEmb: cond.pooled,
        microConds: cond.microConds,
      });
      let out: tf.Tensor = all;
      if (cond.guided) {
        const t = s.ramp ? (s.guidance * (step + 1)) / steps : s.guidance;
        const [uncond, c] = tf.split(all, 2, 0);
        out = tf.add(uncond, tf.mul(tf.scalar(1 + t), tf.sub(c, uncond)));
      }
      if (!shape) return out;
      if (s.topK > 0 && s.topK < k) {
        // Codes below the K-th largest logit of their position get −∞ (probability 0).
        const kth = tf.min(tf.topk(out, s.topK).values, -1, true);
        out = tf.where(tf.less(out, kth), tf.fill(out.shape, -Infinity), out);
      }
      return s.temperature > 0 && s.temperature !== 1 ? tf.div(out, s.temperature) : out;
    });
    const values = (await logits.data()) as Float32Array;
    logits.dispose();
    // −∞ is top-k's "never"; NaN or +∞ means broken weights or inputs.
    if (values.some((v) => Number.isNaN(v) || v === Number.POSITIVE_INFINITY))
      throw new MuseError(`decoding step ${step + 1} of ${steps}: the model's logits hold NaN or Inf`);
    return values;
  }

  /** aMUSEd's scheduler loop from `start` over token grids [images, h·w]; `onStep` after each step. */
  private async decodeLoop(
    cond: Conditioning,
    s: Settings,
    start: StartState,
    random: SchedulerRandom,
    onStep?: (tokens: Int32Array) => Promise<void>,
  ): Promise<{ tokens: Int32Array; ran: number }> {
    const n = cond.guided ? cond.rows / 2 : cond.rows;
    const k = this.transformer.config.codebookSize;
    const draws = s.temperature === 0 ? new GreedyRandom(random) : random;
    const scheduler = new AmusedScheduler({
      maskTokenId: this.maskId,
      maskingSchedule: start.schedule ?? s.schedule ?? this.scheduler.maskingSchedule,
    });
    scheduler.setTimesteps(s.steps, [s.choice, AMUSED_DEFAULTS.choiceTemperatureEnd]);
    let tokens = Int32Array.from(start.tokens);
    let ran = 0;
    for (let step = start.startStep; step < s.steps; step++) {
      const values = await this.guidedLogits(cond, s, tokens, step, s.steps);
      const r = scheduler.step({
        logits: values,
        layout: 'BNK',
        tokens,
        batch: n,
        codebookSize: k,
        stepIndex: step,
        random: draws,
        startingMaskRatio: start.startingMaskRatio,
      });
      tokens = Int32Array.from(r.prevSample);
      ran++;
      await onStep?.(tokens);
    }
    return { tokens, ran };
  }

  /** One decoding call over grids of the model's size: one prompt per image, the images decoded. */
  private async run(
    perImage: string[],
    o: AmusedOptions,
    s: Settings,
    start: StartState,
    random: SchedulerRandom,
    progress: StepCounter,
  ): Promise<AmusedResult> {
    const notes: string[] = [];
    const cond = this.condition(perImage, o, s, notes);
    let tokens: Int32Array;
    try {
      ({ tokens } = await this.decodeLoop(cond, s, start, random, (t) => progress.step(() => this.preview(t), t)));
    } finally {
      cond.dispose();
    }
    return { images: await this.decodeTokens(tokens), tokens, grid: this.grid, notes };
  }

  /** Images of partly decoded tokens: masked tokens decode as code 0 and are painted grey. */
  async preview(tokens: Int32Array, grid: [number, number] = this.grid): Promise<RgbImage[]> {
    const shown = tokens.map((t) => (t === this.maskId ? 0 : t));
    const images = await this.decodeTokens(shown, grid);
    const [h, w] = grid;
    const f = this.factor;
    const side = w * f;
    images.forEach((img, b) => {
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) {
          if (tokens[b * h * w + y * w + x] !== this.maskId) continue;
          for (let dy = 0; dy < f; dy++)
            img.data.fill(128, ((y * f + dy) * side + x * f) * 3, ((y * f + dy) * side + x * f + f) * 3);
        }
    });
    return images;
  }

  /** The sizes this model makes (one: aMUSEd has a single stage). */
  get sizes(): number[] {
    return [this.imageSize];
  }

  /** CLIP's byte-level BPE reads every prompt: nothing to warn about. */
  promptWarnings(_prompts: string[]): string[] {
    return [];
  }
}

/** `inner` pasted into `outer` with its top-left corner at (x, y). */
function pasteImage(outer: RgbImage, inner: RgbImage, x: number, y: number): RgbImage {
  const data = Uint8Array.from(outer.data);
  for (let r = 0; r < inner.height; r++)
    data.set(inner.data.subarray(r * inner.width * 3, (r + 1) * inner.width * 3), ((y + r) * outer.width + x) * 3);
  return { width: outer.width, height: outer.height, data };
}
