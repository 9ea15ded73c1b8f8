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
import type { PixelMask, RgbImage } from '../image/image.js';
import { featherComposite } from '../pipeline/masks.js';
import type { GenerationOptions } from '../pipeline/options.js';
import { initBackend } from '../tensor/backend.js';
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
  /** Replaces the seeded random draws (tests replay the reference's). */
  random?: SchedulerRandom;
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

  /** Text-to-image. */
  async generate(prompt: string | string[], o: AmusedOptions = {}): Promise<AmusedResult> {
    const prompts = typeof prompt === 'string' ? [prompt] : prompt;
    const n = checkNumber('n', o.n ?? 1, 1, 256, true);
    const batch = prompts.length * n;
    const [h, w] = this.grid;
    const tokens = new Int32Array(batch * h * w).fill(this.maskId);
    return this.run(prompts, o, { tokens, startStep: 0, startingMaskRatio: 1 });
  }

  /**
   * Image-to-image (diffusers' AmusedImg2ImgPipeline): the image's tokens, a `strength` share of the
   * steps re-run after masking tokens as the schedule does at that step (strength 1 ignores the image).
   */
  async img2img(image: RgbImage, prompt: string, o: AmusedOptions & { strength?: number } = {}): Promise<AmusedResult> {
    const strength = checkNumber('strength', o.strength ?? AMUSED_DEFAULTS.img2imgStrength, 0, 1);
    const steps = this.steps(o);
    const run = Math.floor(steps * strength);
    if (run === 0) throw new MuseError(`strength ${strength} of ${steps} steps runs no step: raise it or the steps`);
    const start = steps - run;
    const n = checkNumber('n', o.n ?? 1, 1, 256, true);
    const ids = await this.encodeImage(image);
    const random = this.random(o, n);
    // add_noise: every token masked with probability mask_ratio(start) (the draws of one uniform each).
    const ratio = this.maskRatioAt(start, steps);
    const tokens = new Int32Array(n * ids.length);
    for (let i = 0; i < n; i++) tokens.set(ids, i * ids.length);
    const u = random.gumbel(tokens.length); // Gumbel draws are monotone in the uniform: compare through it
    const threshold = -Math.log(-Math.log(Math.max(ratio, 1e-20)));
    for (let i = 0; i < tokens.length; i++) if (u[i] < threshold) tokens[i] = this.maskId;
    return this.run([prompt], { ...o, random }, { tokens, startStep: start, startingMaskRatio: 1 });
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
    const steps = this.steps(o);
    const run = Math.floor(steps * strength);
    if (run === 0) throw new MuseError(`strength ${strength} of ${steps} steps runs no step: raise it or the steps`);
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
    const r = await this.run([prompt], o, {
      tokens,
      startStep: steps - run,
      startingMaskRatio: Math.fround(masked / ids.length),
      schedule: 'linear',
    });
    // With `feather`, pixels outside the mask stay the original's (the VQ-GAN would redraw them).
    if (o.feather !== undefined) r.images = r.images.map((g) => featherComposite(image, g, mask, o.feather as number));
    return r;
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

  /** Tokens [batch, h·w] → 8-bit images. */
  decodeTokens(tokens: Int32Array): RgbImage[] {
    const [h, w] = this.grid;
    const batch = tokens.length / (h * w);
    const raw = this.vqvae.decode(tokens, [batch, h, w]);
    const pixels = toRgb8(raw.dataSync() as Float32Array);
    raw.dispose();
    const side = this.imageSize;
    const per = side * side * 3;
    return Array.from({ length: batch }, (_, b) => ({
      width: side,
      height: side,
      data: pixels.slice(b * per, (b + 1) * per),
    }));
  }

  dispose(): void {
    this.textEncoder.dispose();
    this.transformer.dispose();
    this.vqvae.dispose();
  }

  private steps(o: AmusedOptions): number {
    return checkNumber('steps', o.steps ?? AMUSED_DEFAULTS.steps, 1, 1000, true);
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

  /** CLIP: the penultimate hidden states and the projected pooled embedding of each prompt. */
  private encodeText(prompts: string[], notes: string[]): { hidden: tf.Tensor3D; pooled: tf.Tensor2D } {
    const rows = prompts.map((p) => {
      const e = this.tokenizer.encode(p);
      if (e.truncated) notes.push(`the prompt "${p.slice(0, 40)}…" is longer than 77 tokens: the rest was cut`);
      return e.ids;
    });
    const out = this.textEncoder.forward(rows);
    const hidden = out.hiddenStates[out.hiddenStates.length - 2];
    for (const t of [out.lastHiddenState, out.pooledOutput, ...out.hiddenStates]) if (t !== hidden) t.dispose();
    return { hidden, pooled: out.textEmbeds };
  }

  private async run(prompts: string[], o: AmusedOptions, start: StartState): Promise<AmusedResult> {
    const steps = this.steps(o);
    const guidance = checkNumber('guidance', o.guidance ?? AMUSED_DEFAULTS.guidance, 0, 100);
    const temperature = checkNumber('temperature', o.temperature ?? AMUSED_DEFAULTS.temperature, 0, 100);
    const choice = checkNumber('choiceTemperature', o.choiceTemperature ?? AMUSED_DEFAULTS.choiceTemperature, 0, 100);
    const topK = checkNumber('topK', o.topK ?? 0, 0, this.transformer.config.codebookSize, true);
    if (o.size !== undefined && o.size !== this.imageSize)
      throw new MuseError(`size ${o.size}: this aMUSEd model makes ${this.imageSize} px images`);
    if (o.schedule !== undefined && o.schedule !== 'cosine' && o.schedule !== 'linear')
      throw new MuseError(`schedule ${o.schedule}: aMUSEd's scheduler masks by cosine or linear`);
    const ramp = (o.guidanceSchedule ?? 'constant') === 'linear';
    const [h, w] = this.grid;
    const n = start.tokens.length / (h * w);
    const perPrompt = n / prompts.length;
    const guided = guidance > 0;
    const notes: string[] = [];
    let random = this.random(o, n);
    if (temperature === 0) random = new GreedyRandom(random);
    const scheduler = new AmusedScheduler({
      maskTokenId: this.maskId,
      maskingSchedule:
        start.schedule ?? (o.schedule as 'cosine' | 'linear' | undefined) ?? this.scheduler.maskingSchedule,
    });
    scheduler.setTimesteps(steps, [choice, AMUSED_DEFAULTS.choiceTemperatureEnd]);

    // Rows: [negatives…, prompts…] when guided (as diffusers concatenates them), each repeated per image.
    const repeated = prompts.flatMap((p) => Array(perPrompt).fill(p) as string[]);
    const texts = guided ? [...Array(n).fill(o.negative ?? ''), ...repeated] : repeated;
    const { hidden, pooled } = this.encodeText(texts, notes);
    const micro = o.microConditioning ?? {};
    const size = this.imageSize;
    const [ow, oh] = micro.originalSize ?? [size, size];
    const [ct, cl] = micro.crop ?? AMUSED_DEFAULTS.crop;
    const conds = [ow, oh, ct, cl, micro.aestheticScore ?? AMUSED_DEFAULTS.aestheticScore];
    const microConds = tf.tensor2d(
      Float32Array.from({ length: texts.length * 5 }, (_, i) => conds[i % 5]),
      [texts.length, 5],
    );
    let tokens = Int32Array.from(start.tokens);
    const k = this.transformer.config.codebookSize;
    try {
      for (let s = start.startStep; s < steps; s++) {
        const logits = tf.tidy(() => {
          const ids = tf.tensor3d(
            guided ? Int32Array.from([...tokens, ...tokens]) : tokens,
            [texts.length, h, w],
            'int32',
          );
          const all = this.transformer.forward({
            inputIds: ids,
            encoderHiddenStates: hidden,
            pooledTextEmb: pooled,
            microConds,
          });
          let out: tf.Tensor = all;
          if (guided) {
            const t = ramp ? (guidance * (s + 1)) / steps : guidance;
            const [uncond, cond] = tf.split(all, 2, 0);
            out = tf.add(uncond, tf.mul(tf.scalar(1 + t), tf.sub(cond, uncond)));
          }
          if (topK > 0 && topK < k) {
            // Codes below the K-th largest logit of their position get −∞ (probability 0).
            const kth = tf.min(tf.topk(out, topK).values, -1, true);
            out = tf.where(tf.less(out, kth), tf.fill(out.shape, -Infinity), out);
          }
          return temperature > 0 && temperature !== 1 ? tf.div(out, temperature) : out;
        });
        const values = (await logits.data()) as Float32Array;
        logits.dispose();
        // −∞ is top-k's "never"; NaN or +∞ means broken weights or inputs.
        if (values.some((v) => Number.isNaN(v) || v === Number.POSITIVE_INFINITY))
          throw new MuseError(`decoding step ${s + 1} of ${steps}: the model's logits hold NaN or Inf`);
        const r = scheduler.step({
          logits: values,
          layout: 'BNK',
          tokens,
          batch: n,
          codebookSize: k,
          stepIndex: s,
          random,
          startingMaskRatio: start.startingMaskRatio,
        });
        tokens = Int32Array.from(r.prevSample);
        const now = tokens;
        await o.onStep?.(s - start.startStep + 1, steps - start.startStep, () => this.preview(now), now);
      }
    } finally {
      tf.dispose([hidden, pooled, microConds]);
    }
    return { images: this.decodeTokens(tokens), tokens, grid: [h, w], notes };
  }

  /** Images of partly decoded tokens: masked tokens decode as code 0 and are painted grey. */
  preview(tokens: Int32Array): RgbImage[] {
    const shown = tokens.map((t) => (t === this.maskId ? 0 : t));
    const images = this.decodeTokens(shown);
    const [h, w] = this.grid;
    const f = this.factor;
    const side = this.imageSize;
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
