// The user-facing pipeline: a model folder in, images out. Composes the VQ tokenizer, the frozen text
// encoder, the base transformer and (optionally) the super-res transformer with parallel decoding,
// guidance and the editing modes (Muse §2.4–2.7, §3.3).
//
//   const muse = await MusePipeline.load('models/emoji');
//   const { images } = await muse.generate('a red apple', { n: 4, seed: 1 });
import { maskFreeEdit } from '../decoding/edit.js';
import type { GuidanceSchedule } from '../decoding/guidance.js';
import type { PromptBatch } from '../decoding/guided-transformer.js';
import {
  type Extension,
  extendCanvas,
  outpaintCanvas,
  type TokenCanvas,
  validateExtension,
  windowTokens,
} from '../decoding/outpaint.js';
import type { PixelMask, RgbImage } from '../image/rgb.js';
import { downsampleImage, downsampleMask } from '../image/resample.js';
import { initBackend } from '../tensor/backend.js';
import { Rng } from '../tensor/random.js';
import type { TextEncoder } from '../text/encoder.js';
import { USE_LITE_ID, UseLiteEncoder } from '../text/use-lite.js';
import { VqTokenizer } from '../tokenizer/tokenizer.js';
import { loadTransformer } from '../transformer/checkpoint.js';
import type { TransformerConfig } from '../transformer/config.js';
import type { MaskSchedule } from '../transformer/masking.js';
import type { Params } from '../transformer/model.js';
import { MuseError } from '../util/errors.js';
import type { ModelSource } from '../util/model-source.js';
import { featherComposite, tokenMask } from './masks.js';
import { openModel } from './model-folder.js';
import { type DecodingDefaults, type PipelineFile, readPipelineFrom } from './pipeline-spec.js';
import { Stage, type StageGuidance } from './stage.js';

export interface DecodingOptions {
  /** Images per prompt. Default 1. */
  n?: number;
  /** Output side in pixels: the base size, or the super-res size (both stages). */
  size?: number;
  /** Replaces the empty prompt of classifier-free guidance. */
  negative?: string;
  steps?: number;
  /** Steps of the super-res stage. */
  superresSteps?: number;
  guidance?: number;
  guidanceSchedule?: GuidanceSchedule;
  temperature?: number;
  topK?: number;
  choiceTemperature?: number;
  schedule?: MaskSchedule;
  /** Seed of the first image (0 to 2^32 − 1); image i of a generate call uses seed + i. Default 0. */
  seed?: number;
  /** Most images decoded in one batch (default: as many as the memory estimate allows). */
  maxBatch?: number;
  /** After each decoding step (or edit iteration): the images so far (masked tokens shown grey). */
  onStep?: (step: number, steps: number, images: () => RgbImage[]) => void | Promise<void>;
}

export interface EditOptions extends DecodingOptions {
  iterations?: number;
  fraction?: number;
}

export interface PipelineResult {
  images: RgbImage[];
  /** Token grids [images, h, w] of the last stage. */
  tokens: Int32Array;
  grid: [number, number];
  /** Adjustments made to the request, in words (fewer steps, rounded sizes, ...). */
  notes: string[];
}

interface Request {
  prompts: string[];
  text: PromptBatch;
  guidance: StageGuidance;
  rng: Rng;
  /** One generator per image (image i of a call: seed + i), where the batch may be split in chunks. */
  rngs?: Rng[];
  /** Steps so far and in all, for progress across stages. */
  progress: { done: number; total: number };
  notes: string[];
}

/** Memory one decoding batch may use (the wasm heap stops at 4 GB; weights and caches need room). */
const BATCH_BUDGET_BYTES = 1.5e9;

export class MusePipeline {
  private constructor(
    readonly folder: string,
    readonly file: PipelineFile,
    readonly tokenizer: VqTokenizer,
    readonly textEncoder: TextEncoder,
    readonly base: Stage,
    readonly superres: Stage | undefined,
  ) {}

  /**
   * Loads a model folder (a path under Node, a URL in a browser) or any ModelSource (a FetchSource:
   * files read with fetch); pass `textEncoder` for one that is not built in (its id must match), or
   * `textEncoderFiles` for where the built-in one's files are. Starts the default tensor backend when
   * none is started (forgetting initBackend used to mean tfjs's slow cpu backend).
   */
  static async load(
    from: string | ModelSource,
    options: { textEncoder?: TextEncoder; textEncoderFiles?: ModelSource } = {},
  ): Promise<MusePipeline> {
    const { source, file } =
      typeof from === 'string' ? await openModel(from) : { source: from, file: await readPipelineFrom(from) };
    const folder = source.location;
    await initBackend();
    const tokenizer = await VqTokenizer.load({ source, name: file.tokenizer });
    const f = tokenizer.downsample;
    const base = await loadTransformer({ source, name: file.base });
    checkStage(folder, 'base', base.config, tokenizer.codebookSize, file.imageSize / f);
    let superres: Stage | undefined;
    if (file.superres) {
      const sr = await loadTransformer({ source, name: file.superres });
      checkStage(folder, 'superres', sr.config, tokenizer.codebookSize, (file.superresSize as number) / f);
      if (!sr.config.lowres || sr.config.lowres.grid.join() !== base.config.grid.join())
        throw new MuseError(
          `${folder}: the super-res model is not conditioned on the base model's ${base.config.grid.join('×')} grid`,
        );
      if (sr.config.lowres.codebookSize !== tokenizer.codebookSize)
        throw new MuseError(`${folder}: the super-res model's low-res codebook differs from the tokenizer's`);
      if (sr.config.textDim !== base.config.textDim || sr.config.textTokens !== base.config.textTokens)
        throw new MuseError(`${folder}: the base and super-res models expect different text embeddings`);
      superres = new Stage('superres', sr.params, sr.config);
    }
    let text = options.textEncoder;
    if (!text) {
      if (file.textEncoder !== USE_LITE_ID)
        throw new MuseError(`${folder} needs the text encoder ${file.textEncoder}: pass it to MusePipeline.load`);
      text = await UseLiteEncoder.load({ maxTokens: base.config.textTokens, files: options.textEncoderFiles });
    }
    if (text.id !== file.textEncoder)
      throw new MuseError(`${folder} was trained with the text encoder ${file.textEncoder}, not ${text.id}`);
    if (text.dim !== base.config.textDim || text.maxTokens > base.config.textTokens)
      throw new MuseError(
        `${folder}: the text encoder gives ${text.maxTokens}×${text.dim}, the model takes ${base.config.textTokens}×${base.config.textDim}`,
      );
    return new MusePipeline(folder, file, tokenizer, text, new Stage('base', base.params, base.config), superres);
  }

  /** The base model's image side in pixels. */
  get imageSize(): number {
    return this.file.imageSize;
  }

  /** Output sizes this folder can make: the base size and, with a super-res stage, its size. */
  get sizes(): number[] {
    return this.superres ? [this.imageSize, this.file.superresSize as number] : [this.imageSize];
  }

  get defaultSize(): number {
    return this.file.defaultSize ?? this.sizes[this.sizes.length - 1];
  }

  get grid(): [number, number] {
    return this.base.grid;
  }

  get baseParams(): Params {
    return this.base.params;
  }

  get baseConfig(): TransformerConfig {
    return this.base.config;
  }

  get defaults(): DecodingDefaults {
    return this.file.defaults;
  }

  /**
   * Text-to-image: n images per prompt (then super-res for the larger size). The images are decoded
   * in batches whose estimated memory fits (see batchLimit); image i draws from its own generator,
   * seeded seed + i, so the batching never changes an image, and image i of a call equals the only
   * image of the same call with seed + i and n = 1.
   */
  async generate(prompt: string | string[], o: DecodingOptions = {}): Promise<PipelineResult> {
    const size = this.outputSize(o.size);
    const list = this.promptList(prompt, o);
    const limit = Math.min(this.batchLimit(size), o.maxBatch ?? Number.POSITIVE_INFINITY);
    if (!(limit >= 1)) throw new MuseError(`maxBatch must be ≥ 1, got ${o.maxBatch}`);
    const chunks: string[][] = [];
    for (let i = 0; i < list.length; i += limit) chunks.push(list.slice(i, i + limit));
    const seed = o.seed ?? 0;
    const results: PipelineResult[] = [];
    let progress: Request['progress'] | undefined;
    for (let c = 0; c < chunks.length; c++) {
      const first = c * limit;
      const rngs = chunks[c].map((_, i) => new Rng((seed + first + i) % 2 ** 32));
      const r = await this.request(chunks[c], { ...o, n: 1 }, size > this.imageSize, undefined, rngs);
      if (progress) r.progress = progress;
      else {
        progress = r.progress;
        progress.total *= chunks.length;
      }
      const low = await this.runStage(this.base, this.base.blank(r.prompts.length), r, o);
      results.push(
        size === this.imageSize
          ? this.finish(low, this.base, r)
          : this.finish(await this.superresolve(low, r, o), this.superres as Stage, r),
      );
    }
    if (results.length === 1) return results[0];
    const tokens = new Int32Array(results.reduce((a, x) => a + x.tokens.length, 0));
    let at = 0;
    for (const x of results) {
      tokens.set(x.tokens, at);
      at += x.tokens.length;
    }
    return {
      images: results.flatMap((x) => x.images),
      tokens,
      grid: results[0].grid,
      notes: [...new Set(results.flatMap((x) => x.notes))],
    };
  }

  /**
   * How many images of `size` px one batch may hold: the estimated memory of an image (the guided
   * transformer passes of each stage and the tokenizer's decoder) against a budget well under the
   * 4 GB a wasm heap can reach (-n 256 in one batch needed more and aborted).
   */
  batchLimit(size: number): number {
    return Math.max(1, Math.floor(BATCH_BUDGET_BYTES / this.imageBytes(size)));
  }

  /** Estimated peak bytes per image of `size` px (calibrated on the emoji model, with a margin). */
  imageBytes(size: number): number {
    const stage = size > this.imageSize && this.superres ? this.superres : this.base;
    const c = stage.config;
    const n = stage.tokens;
    const context = c.textTokens + 1 + (c.lowres ? c.lowres.grid[0] * c.lowres.grid[1] : 0);
    // Two rows per image (guidance), floats per token per layer; measured 27.6 MB per 32 px image.
    const transformer =
      2 * n * 4 * (c.layers * (3 * c.width + 2 * c.mlp + 2 * c.heads * (n + context)) + 3 * (c.codebookSize + 1));
    const t = this.tokenizer.config;
    const decoder = size * size * t.channels * Math.max(...t.channelMult) * 72;
    return 2.5 * transformer + decoder;
  }

  /** Super-res of a user's image of the base size: its tokens condition the super-res stage. */
  async upscale(image: RgbImage, prompt: string, o: DecodingOptions = {}): Promise<PipelineResult> {
    const sr = this.requireSuperres('upscale');
    this.checkImage(image, [this.imageSize]);
    const r = await this.request(prompt, o, true, 0);
    const low = this.repeat(await this.tokenizer.encode([image]), r.prompts.length);
    return this.finish(await this.superresolve(low, r, o), sr, r);
  }

  /**
   * Regenerates the masked part of an image under the prompt; every pixel outside the mask stays the
   * original's, the seam feathered over `feather` pixels inside the mask. An image of the super-res
   * size is inpainted at both scales (paper §3.3): low-res first, then the same region at high-res.
   */
  async inpaint(
    image: RgbImage,
    mask: PixelMask,
    prompt: string,
    o: DecodingOptions & { feather?: number } = {},
  ): Promise<PipelineResult> {
    this.checkImage(image, this.sizes);
    if (mask.width !== image.width || mask.height !== image.height)
      throw new MuseError(`the mask is ${mask.width}×${mask.height}, the image ${image.width}×${image.height}`);
    const twoScale = image.width !== this.imageSize;
    const r = await this.request(prompt, o, twoScale);
    const lowImage = twoScale ? downsampleImage(image, this.imageSize) : image;
    const lowMask = twoScale ? downsampleMask(mask, this.imageSize) : mask;
    const lowStart = this.masked(
      this.base,
      await this.tokenizer.encode([lowImage]),
      tokenMask(lowMask, this.tokenizer.downsample),
      r.prompts.length,
    );
    let tokens = await this.runStage(this.base, lowStart, r, o);
    let stage = this.base;
    if (twoScale) {
      stage = this.superres as Stage;
      const highStart = this.masked(
        stage,
        await this.tokenizer.encode([image]),
        tokenMask(mask, this.tokenizer.downsample),
        r.prompts.length,
      );
      tokens = await this.superresolve(tokens, r, o, highStart);
    }
    const result = this.finish(tokens, stage, r);
    result.images = result.images.map((g) => featherComposite(image, g, mask, o.feather ?? 2));
    return result;
  }

  /**
   * Extends an image by the given pixels on each side, generating window by window at the model's grid
   * size; the original pixels are kept. An image of the super-res size is outpainted at both scales:
   * the low-res canvas first, then the high-res canvas window by window, each window conditioned on
   * the low-res tokens under it. Sides are rounded up to whole tokens of both scales.
   */
  async outpaint(
    image: RgbImage,
    pixels: Partial<Extension>,
    prompt: string,
    o: DecodingOptions = {},
  ): Promise<PipelineResult> {
    this.checkImage(image, this.sizes);
    const twoScale = image.width !== this.imageSize;
    const ratio = twoScale ? image.width / this.imageSize : 1;
    const unit = this.tokenizer.downsample * ratio;
    const ext = { top: 0, bottom: 0, left: 0, right: 0 };
    const r = await this.request(prompt, o, false, 0);
    for (const side of ['top', 'bottom', 'left', 'right'] as const) {
      const px = pixels[side] ?? 0;
      if (!Number.isInteger(px) || px < 0)
        throw new MuseError(`outpaint: ${side} must be a whole number of pixels ≥ 0, got ${px}`);
      ext[side] = Math.ceil(px / unit);
      if (px % unit) r.notes.push(`${side}: ${px} px rounded up to ${ext[side] * unit} px (whole ${unit}-px tokens)`);
    }
    validateExtension(ext);
    const B = r.prompts.length;
    this.checkCanvas(image.width + (ext.left + ext.right) * unit, image.height + (ext.top + ext.bottom) * unit, B);
    const lowImage = twoScale ? downsampleImage(image, this.imageSize) : image;
    const lowKnown = this.repeat(await this.tokenizer.encode([lowImage]), B);
    const lowCanvas = await this.outpaintStage(
      this.base,
      extendCanvas(lowKnown, B, ...this.grid, ext, this.base.maskId),
      ext,
      r,
      o,
    );
    let done = lowCanvas;
    if (twoScale) {
      const sr = this.superres as Stage;
      const hiExt = {
        top: ext.top * ratio,
        bottom: ext.bottom * ratio,
        left: ext.left * ratio,
        right: ext.right * ratio,
      };
      const hiKnown = this.repeat(await this.tokenizer.encode([image]), B);
      done = await this.outpaintStage(
        sr,
        extendCanvas(hiKnown, B, ...sr.grid, hiExt, sr.maskId),
        hiExt,
        r,
        o,
        lowCanvas,
        ratio,
      );
    }
    const images = this.tokenizer
      .decode(done.tokens, done.height, done.width)
      .map((img) => pasteImage(img, image, ext.left * unit, ext.top * unit));
    return { images, tokens: done.tokens, grid: [done.height, done.width], notes: r.notes };
  }

  /** Fills a stage's canvas window by window; super-res windows are conditioned on the low canvas. */
  private async outpaintStage(
    stage: Stage,
    canvas: TokenCanvas,
    ext: Extension,
    r: Request,
    o: DecodingOptions,
    lowCanvas?: TokenCanvas,
    ratio = 1,
  ): Promise<TokenCanvas> {
    const d = this.sampling(o);
    const steps = stage === this.base ? d.steps : d.superresSteps;
    const B = r.prompts.length;
    const shared = lowCanvas ? undefined : stage.model(r.text, r.guidance);
    try {
      return await outpaintCanvas(
        canvas,
        stage.grid,
        { row: ext.top, col: ext.left },
        stage.maskId,
        async (win, index, count, place, at) => {
          const model =
            shared ??
            stage.model(
              r.text,
              r.guidance,
              windowTokens(lowCanvas as TokenCanvas, at.row / ratio, at.col / ratio, this.grid),
            );
          try {
            const out = await stage.decodeWith(model, win, B, {
              ...d,
              steps,
              rng: r.rng,
              onStep: o.onStep
                ? (s, _, t) => {
                    const c = place(t);
                    return o.onStep?.(index * steps + s, count * steps, () =>
                      this.tokensToImages(c.tokens, c.height, c.width, stage.maskId),
                    );
                  }
                : undefined,
            });
            if (out.note && !r.notes.includes(out.note)) r.notes.push(out.note);
            return out.tokens;
          } finally {
            if (!shared) model.dispose();
          }
        },
      );
    } finally {
      shared?.dispose();
    }
  }

  /**
   * Mask-free editing (Muse §3.3): the image moves toward the new prompt, keeping its layout. An image
   * of the super-res size is edited at the base size, then super-resolved (as the paper does).
   */
  async edit(image: RgbImage, prompt: string, o: EditOptions = {}): Promise<PipelineResult> {
    this.checkImage(image, this.sizes);
    const twoScale = image.width !== this.imageSize;
    const guidance = o.guidance ?? 4;
    const schedule = o.guidanceSchedule ?? 'constant';
    const r = await this.request(prompt, { ...o, guidance, guidanceSchedule: schedule }, twoScale, o.iterations ?? 100);
    const lowImage = twoScale ? downsampleImage(image, this.imageSize) : image;
    const start = this.repeat(await this.tokenizer.encode([lowImage]), r.prompts.length);
    const model = this.base.model(r.text, r.guidance);
    const [h, w] = this.grid;
    let tokens: Int32Array;
    try {
      tokens = await maskFreeEdit(
        model.logits,
        {
          tokens: start,
          batch: r.prompts.length,
          codebookSize: this.base.config.codebookSize,
          maskId: this.base.maskId,
        },
        {
          iterations: o.iterations,
          fraction: o.fraction,
          topK: o.topK ?? 3,
          temperature: o.temperature,
          rng: r.rng,
          onIteration: (_i, _n, t) => this.reportStep(r, o, () => this.tokensToImages(t, h, w, this.base.maskId)),
        },
      );
    } finally {
      model.dispose();
    }
    if (!twoScale) return this.finish(tokens, this.base, r);
    return this.finish(await this.superresolve(tokens, r, o), this.superres as Stage, r);
  }

  /** Images of token grids [B, h, w]; still-masked tokens (maskId) are painted mid-grey. */
  tokensToImages(tokens: Int32Array, h: number, w: number, maskId: number): RgbImage[] {
    const images = this.tokenizer.decode(
      tokens.map((t) => (t === maskId ? 0 : t)),
      h,
      w,
    );
    const f = this.tokenizer.downsample;
    images.forEach((img, b) => {
      for (let i = 0; i < h * w; i++) {
        if (tokens[b * h * w + i] !== maskId) continue;
        const ty = Math.floor(i / w);
        const tx = i % w;
        for (let y = ty * f; y < (ty + 1) * f; y++)
          img.data.fill(128, (y * img.width + tx * f) * 3, (y * img.width + (tx + 1) * f) * 3);
      }
    });
    return images;
  }

  dispose(): void {
    this.tokenizer.dispose();
    this.base.dispose();
    this.superres?.dispose();
  }

  // -------------------------------------------------------------------------------------------------

  private outputSize(size: number | undefined): number {
    const s = size ?? this.defaultSize;
    if (!this.sizes.includes(s))
      throw new MuseError(
        `this model makes ${this.sizes.join(' or ')} px images, not ${s}${this.superres ? '' : ' (it has no super-res stage)'}`,
      );
    return s;
  }

  /**
   * Refuses an outpainting canvas whose decoding would not fit in memory: the tokenizer decodes the
   * whole canvas of each image at once (about 9 KB per pixel with the emoji tokenizer).
   */
  private checkCanvas(width: number, height: number, images: number): void {
    const t = this.tokenizer.config;
    const perPixel = t.channels * Math.max(...t.channelMult) * 72;
    const maxPixels = Math.floor(BATCH_BUDGET_BYTES / perPixel);
    if (width * height * images > maxPixels) {
      const side = Math.floor(Math.sqrt(maxPixels / images));
      throw new MuseError(
        `outpaint: a ${width}×${height} px canvas${images > 1 ? ` × ${images} images` : ''} needs about ` +
          `${((width * height * images * perPixel) / 1e9).toFixed(1)} GB to decode; the limit is ` +
          `${(maxPixels / 1e6).toFixed(2)} megapixels in all (e.g. ${side}×${side} px per image)`,
      );
    }
  }

  private requireSuperres(what: string): Stage {
    if (!this.superres) throw new MuseError(`${what} needs a super-res stage, and ${this.folder} has none`);
    return this.superres;
  }

  private checkImage(image: RgbImage, sizes: number[]): void {
    if (image.width !== image.height || !sizes.includes(image.width))
      throw new MuseError(
        `this takes ${sizes.map((s) => `${s}×${s}`).join(' or ')} images, got ${image.width}×${image.height} (resize it first)`,
      );
  }

  /** Prompts × n, their embeddings, guidance, seed and the progress bookkeeping of one call. */
  private async request(
    prompt: string | string[],
    o: DecodingOptions,
    withSuperres: boolean,
    baseSteps?: number,
    rngs?: Rng[],
  ): Promise<Request> {
    const prompts = this.promptList(prompt, o);
    if (withSuperres) this.requireSuperres(`${this.file.superresSize ?? 'a larger'} px output`);
    const size = withSuperres ? (this.file.superresSize as number) : this.imageSize;
    const limit = this.batchLimit(size);
    if (!rngs && prompts.length > limit)
      throw new MuseError(
        `${prompts.length} images at once would need about ${((prompts.length * this.imageBytes(size)) / 1e9).toFixed(1)} GB; ` +
          `at most ${limit} images of ${size} px fit in one batch's memory: ask for fewer (-n)`,
      );
    const d = this.sampling(o);
    for (const [steps, tokens, name] of [
      [d.steps, this.base.tokens, 'steps'],
      [d.superresSteps, this.superres?.tokens ?? Number.POSITIVE_INFINITY, 'superres steps'],
    ] as const) {
      if (!Number.isInteger(steps) || steps < 1 || steps > tokens)
        throw new MuseError(`${name} must be an integer from 1 to ${tokens} (the tokens of a grid), got ${steps}`);
    }
    const text = await this.textEncoder.encode(prompts);
    const negative =
      o.negative !== undefined ? await this.textEncoder.encode(prompts.map(() => o.negative as string)) : undefined;
    const guidance: StageGuidance = {
      scale: o.guidance ?? this.defaults.guidance,
      schedule: o.guidanceSchedule ?? this.defaults.guidanceSchedule,
      negative,
    };
    const total = (baseSteps ?? d.steps) + (withSuperres ? d.superresSteps : 0);
    const rng = rngs?.[0] ?? new Rng(o.seed ?? 0);
    const notes = this.promptWarnings([...prompts, ...(o.negative !== undefined ? [o.negative] : [])]);
    return { prompts, text, guidance, rng, rngs, progress: { done: 0, total }, notes };
  }

  /**
   * One line per prompt with words the text encoder cannot read (Chinese, emoji, some accented
   * letters for USE-lite): they are dropped, and a prompt of only such words is unconditional.
   */
  promptWarnings(prompts: string[]): string[] {
    const out: string[] = [];
    for (const p of new Set(prompts)) {
      const unknown = this.textEncoder.unknownWords?.(p) ?? [];
      if (unknown.length === 0) continue;
      const all = unknown.length === p.split(/\s+/).filter((w) => w).length;
      out.push(
        `the text encoder cannot read ${unknown.map((w) => `"${w}"`).join(', ')} in the prompt "${p}"` +
          (all ? ': nothing of it is understood, the image is unconditional' : ': those words are ignored'),
      );
    }
    return out;
  }

  /** Each prompt n times. */
  private promptList(prompt: string | string[], o: DecodingOptions): string[] {
    const n = o.n ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > 256)
      throw new MuseError(`n (images per prompt) must be an integer from 1 to 256, got ${n}`);
    const list = typeof prompt === 'string' ? [prompt] : prompt;
    if (list.length === 0) throw new MuseError('no prompts given');
    return list.flatMap((p) => Array.from({ length: n }, () => p));
  }

  private sampling(o: DecodingOptions) {
    const d = this.defaults;
    return {
      steps: o.steps ?? d.steps,
      superresSteps: o.superresSteps ?? d.superresSteps,
      temperature: o.temperature ?? d.temperature,
      topK: o.topK ?? d.topK,
      choiceTemperature: o.choiceTemperature ?? d.choiceTemperature,
      schedule: o.schedule ?? d.schedule,
    };
  }

  private async reportStep(r: Request, o: DecodingOptions, images: () => RgbImage[]): Promise<void> {
    r.progress.done++;
    await o.onStep?.(r.progress.done, r.progress.total, images);
  }

  private async runStage(
    stage: Stage,
    start: Int32Array,
    r: Request,
    o: DecodingOptions,
    lowTokens?: Int32Array,
  ): Promise<Int32Array> {
    const d = this.sampling(o);
    const steps = stage === this.base ? d.steps : d.superresSteps;
    const [h, w] = stage.grid;
    const decoded = await stage.decode(
      start,
      r.text,
      r.guidance,
      {
        ...d,
        steps,
        rng: r.rng,
        rngs: r.rngs,
        onStep: (_s, _n, t) => this.reportStep(r, o, () => this.tokensToImages(t, h, w, stage.maskId)),
      },
      lowTokens,
    );
    if (decoded.note) r.notes.push(decoded.note);
    r.progress.total -= steps - decoded.steps;
    return decoded.tokens;
  }

  private superresolve(low: Int32Array, r: Request, o: DecodingOptions, start?: Int32Array): Promise<Int32Array> {
    const sr = this.requireSuperres('super-resolution');
    return this.runStage(sr, start ?? sr.blank(r.prompts.length), r, o, low);
  }

  private finish(tokens: Int32Array, stage: Stage, r: Request): PipelineResult {
    const [h, w] = stage.grid;
    return { images: this.tokenizer.decode(tokens, h, w), tokens, grid: [h, w], notes: r.notes };
  }

  /** `known` repeated for `batch` grids with the masked tokens set to the stage's mask id. */
  private masked(stage: Stage, known: Int32Array, mask: Uint8Array, batch: number): Int32Array {
    const out = this.repeat(known, batch);
    for (let i = 0; i < out.length; i++) if (mask[i % known.length]) out[i] = stage.maskId;
    return out;
  }

  private repeat(grid: Int32Array, batch: number): Int32Array {
    const out = new Int32Array(batch * grid.length);
    for (let b = 0; b < batch; b++) out.set(grid, b * grid.length);
    return out;
  }
}

function checkStage(folder: string, name: string, c: TransformerConfig, codebookSize: number, side: number): void {
  if (c.codebookSize !== codebookSize)
    throw new MuseError(`${folder}: the ${name} model has ${c.codebookSize} codes, the tokenizer ${codebookSize}`);
  if (c.grid[0] !== side || c.grid[1] !== side)
    throw new MuseError(
      `${folder}: the ${name} model's ${c.grid.join('×')} grid does not match its image size (${side}×${side} tokens)`,
    );
}

/** `inner` pasted into `outer` with its top-left corner at (x, y). */
function pasteImage(outer: RgbImage, inner: RgbImage, x: number, y: number): RgbImage {
  const data = Uint8Array.from(outer.data);
  for (let r = 0; r < inner.height; r++)
    data.set(inner.data.subarray(r * inner.width * 3, (r + 1) * inner.width * 3), ((y + r) * outer.width + x) * 3);
  return { width: outer.width, height: outer.height, data };
}
