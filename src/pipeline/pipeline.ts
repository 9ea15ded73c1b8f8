// The user-facing pipeline: a model folder in, images out. Composes the VQ tokenizer, the frozen text
// encoder, its stages (the base transformer, then any super-res transformers) with parallel decoding,
// guidance and the editing modes (Muse §2.4–2.7, §3.3).
//
//   const muse = await MusePipeline.load('models/emoji');
//   const { images } = await muse.generate('a red apple', { n: 4, seed: 1 });
import { maskFreeEdit } from '../decoding/edit.js';
import type { PromptBatch } from '../decoding/guided-transformer.js';
import {
  type Extension,
  extendCanvas,
  outpaintCanvas,
  type TokenCanvas,
  validateExtension,
  windowsToFill,
  windowTokens,
} from '../decoding/outpaint.js';
import type { CodeSpace } from '../decoding/sampling.js';
import { downsampleImage, downsampleMask } from '../image/resample.js';
import type { PixelMask, RgbImage } from '../image/rgb.js';
import { initBackend } from '../tensor/backend.js';
import { Rng } from '../tensor/random.js';
import type { TextEncoderModel } from '../text/encoder.js';
import { USE_LITE_ID, UseLiteEncoder } from '../text/use-lite.js';
import { codeVectors } from '../tokenizer/codes.js';
import { VqTokenizer } from '../tokenizer/tokenizer.js';
import { loadTransformer } from '../transformer/checkpoint.js';
import type { TransformerConfig } from '../transformer/config.js';
import type { TransformerParams } from '../transformer/model.js';
import { MuseError } from '../util/errors.js';
import type { ModelSource } from '../util/model-source.js';
import { featherComposite, tokenMask } from './masks.js';
import { openModel } from './model-folder.js';
import type { GenerationOptions } from './options.js';
import {
  type DecodingDefaults,
  type PipelineFile,
  readPipelineFrom,
  SUPERRES_CHOICES,
  type SuperresChoice,
} from './pipeline-spec.js';
import { Stage, type StageGuidance, type StageList } from './stage.js';
import { StepCounter } from './step-counter.js';

/** What MusePipeline's calls take: the options of every pipeline, and this one's own. */
export interface MuseOptions extends GenerationOptions {
  /** Steps of the super-res stage. */
  superresSteps?: number;
  /**
   * How the super-res stage picks its tokens: 'sample' (drawn at `temperature`, as the base stage) or
   * 'mean-code' (deterministic: each position the code nearest the mean code vector of its
   * distribution, `decoding/sampling.ts` meanCodeToken — the least expected latent error).
   */
  superresChoice?: SuperresChoice;
  /** Most images decoded in one batch (default: as many as the memory estimate allows). */
  maxBatch?: number;
}

/** @deprecated Renamed MuseOptions (the options shared with other pipelines: GenerationOptions). */
export type DecodingOptions = MuseOptions;

export interface EditOptions extends MuseOptions {
  /** Resampling rounds (default: the model's defaults.edit). */
  iterations?: number;
  /** Share of the tokens resampled per round (default: the model's defaults.edit). */
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

/** The sampling settings of one call: its options over the model's defaults. */
type Sampling = Pick<
  DecodingDefaults,
  'steps' | 'superresSteps' | 'superresChoice' | 'temperature' | 'topK' | 'choiceTemperature' | 'schedule'
>;

interface Request {
  prompts: string[];
  text: PromptBatch;
  guidance: StageGuidance;
  sampling: Sampling;
  rng: Rng;
  /** One generator per image (image i of a call: seed + i), where the batch may be split in chunks. */
  rngs?: Rng[];
  notes: string[];
}

interface RequestOptions {
  /** Refuse more images than fit one batch's memory at this size (generate splits its batch instead). */
  fitSize?: number;
  /** One generator per image, for a batch split in chunks. */
  rngs?: Rng[];
}

/** One stage's outpainting: its canvas, where the original sits on it, and the windows to decode. */
interface OutpaintPlan {
  stage: Stage;
  canvas: TokenCanvas;
  origin: { row: number; col: number };
  windows: number;
}

/** Memory one decoding batch may use (the wasm heap stops at 4 GB; weights and caches need room). */
const BATCH_BUDGET_BYTES = 1.5e9;

export class MusePipeline {
  private constructor(
    readonly folder: string,
    readonly file: PipelineFile,
    readonly tokenizer: VqTokenizer,
    readonly textEncoder: TextEncoderModel,
    /** The base stage, then the super-res stages. */
    readonly stages: StageList,
  ) {}

  /**
   * Loads a model folder (a path under Node, a URL in a browser) or any ModelSource (a FetchSource:
   * files read with fetch); pass `textEncoder` for one that is not built in (its id must match), or
   * `textEncoderFiles` for where the built-in one's files are. Starts the default tensor backend when
   * none is started (forgetting initBackend used to mean tfjs's slow cpu backend).
   */
  static async load(
    from: string | ModelSource,
    options: { textEncoder?: TextEncoderModel; textEncoderFiles?: ModelSource } = {},
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
      // Muse §2.4: the super-res stage may have its own tokenizer (its low-res conditioning too).
      const srTokenizer = file.superresTokenizer
        ? await VqTokenizer.load({ source, name: file.superresTokenizer })
        : tokenizer;
      if (srTokenizer.downsample !== f)
        throw new MuseError(
          `${folder}: the super-res tokenizer downsamples by ${srTokenizer.downsample}, the base tokenizer by ${f} (they must match)`,
        );
      const sr = await loadTransformer({ source, name: file.superres });
      checkStage(folder, 'superres', sr.config, srTokenizer.codebookSize, (file.superresSize as number) / f);
      if (!sr.config.lowres || sr.config.lowres.grid.join() !== base.config.grid.join())
        throw new MuseError(
          `${folder}: the super-res model is not conditioned on the base model's ${base.config.grid.join('×')} grid`,
        );
      if (sr.config.lowres.codebookSize !== srTokenizer.codebookSize)
        throw new MuseError(`${folder}: the super-res model's low-res codebook differs from its tokenizer's`);
      if (sr.config.textDim !== base.config.textDim || sr.config.textTokens !== base.config.textTokens)
        throw new MuseError(`${folder}: the base and super-res models expect different text embeddings`);
      superres = new Stage('superres', sr.params, sr.config, file.superresSize as number, srTokenizer);
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
    const baseStage = new Stage('base', base.params, base.config, file.imageSize, tokenizer);
    return new MusePipeline(folder, file, tokenizer, text, superres ? [baseStage, superres] : [baseStage]);
  }

  get base(): Stage {
    return this.stages[0];
  }

  /** The first super-res stage, if any. */
  get superres(): Stage | undefined {
    return this.stages[1];
  }

  /** The base model's image side in pixels. */
  get imageSize(): number {
    return this.base.size;
  }

  /** Output sizes this folder can make: one per stage. */
  get sizes(): number[] {
    return this.stages.map((s) => s.size);
  }

  get defaultSize(): number {
    return this.file.defaultSize ?? this.sizes[this.sizes.length - 1];
  }

  get grid(): [number, number] {
    return this.base.grid;
  }

  get baseParams(): TransformerParams {
    return this.base.params;
  }

  get baseConfig(): TransformerConfig {
    return this.base.config;
  }

  get defaults(): DecodingDefaults {
    return this.file.defaults;
  }

  /**
   * Text-to-image: n images per prompt through the stages up to the size asked. The images are decoded
   * in batches whose estimated memory fits (see batchLimit); image i draws from its own generator,
   * seeded seed + i, so the batching never changes an image, and image i of a call equals the only
   * image of the same call with seed + i and n = 1.
   */
  async generate(prompt: string | string[], o: MuseOptions = {}): Promise<PipelineResult> {
    const size = this.outputSize(o.size);
    const stages = this.stagesTo(size);
    const list = this.promptList(prompt, o);
    const limit = Math.min(this.batchLimit(size), o.maxBatch ?? Number.POSITIVE_INFINITY);
    if (!(limit >= 1)) throw new MuseError(`maxBatch must be ≥ 1, got ${o.maxBatch}`);
    const chunks: string[][] = [];
    for (let i = 0; i < list.length; i += limit) chunks.push(list.slice(i, i + limit));
    const seed = o.seed ?? 0;
    const results: PipelineResult[] = [];
    let progress: StepCounter | undefined;
    for (let c = 0; c < chunks.length; c++) {
      const first = c * limit;
      const rngs = chunks[c].map((_, i) => new Rng((seed + first + i) % 2 ** 32));
      const r = await this.request(chunks[c], { ...o, n: 1 }, { rngs });
      progress ??= new StepCounter(chunks.length * plannedSteps(stages, r.sampling), o.onStep);
      const tokens = await this.runStages(stages, r, progress, (stage) => stage.blank(r.prompts.length));
      results.push(await this.finish(tokens, last(stages), r));
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
    const stage = this.stages.find((s) => s.size >= size) ?? last(this.stages);
    const c = stage.config;
    const n = stage.tokenCount;
    const context = c.textTokens + 1 + (c.lowres ? c.lowres.grid[0] * c.lowres.grid[1] : 0);
    // Two rows per image (guidance), floats per token per layer; measured 27.6 MB per 32 px image.
    const transformer =
      2 * n * 4 * (c.layers * (3 * c.width + 2 * c.mlp + 2 * c.heads * (n + context)) + 3 * (c.codebookSize + 1));
    const decoder = size * size * decoderBytesPerPixel(stage.tokenizer);
    return 2.5 * transformer + decoder;
  }

  /** Super-res of a user's image of the base size: its tokens condition the super-res stages. */
  async upscale(image: RgbImage, prompt: string, o: MuseOptions = {}): Promise<PipelineResult> {
    this.requireSuperres('upscale');
    this.checkImage(image, [this.imageSize]);
    const stages = this.stages.slice(1);
    const r = await this.request(prompt, o, { fitSize: last(stages).size });
    const progress = new StepCounter(plannedSteps(stages, r.sampling), o.onStep);
    const low = this.repeat(await stages[0].tokenizer.encode([image]), r.prompts.length);
    const tokens = await this.runStages(stages, r, progress, (stage) => stage.blank(r.prompts.length), low);
    return this.finish(tokens, last(stages), r);
  }

  /**
   * Regenerates the masked part of an image under the prompt; every pixel outside the mask stays the
   * original's, the seam feathered over `feather` pixels inside the mask. An image of a super-res
   * size is inpainted at every scale up to its own (paper §3.3): low-res first, then the same region
   * at each larger size.
   */
  async inpaint(
    image: RgbImage,
    mask: PixelMask,
    prompt: string,
    o: MuseOptions & { feather?: number } = {},
  ): Promise<PipelineResult> {
    this.checkImage(image, this.sizes);
    if (mask.width !== image.width || mask.height !== image.height)
      throw new MuseError(`the mask is ${mask.width}×${mask.height}, the image ${image.width}×${image.height}`);
    const stages = this.stagesTo(image.width);
    const r = await this.request(prompt, o, { fitSize: image.width });
    const progress = new StepCounter(plannedSteps(stages, r.sampling), o.onStep);
    const tokens = await this.runStages(stages, r, progress, async (stage) =>
      this.masked(
        stage,
        await stage.tokenizer.encode([imageAt(image, stage.size)]),
        tokenMask(stage.size === mask.width ? mask : downsampleMask(mask, stage.size), stage.tokenizer.downsample),
        r.prompts.length,
      ),
    );
    const result = await this.finish(tokens, last(stages), r);
    result.images = result.images.map((g) => featherComposite(image, g, mask, o.feather ?? 2));
    return result;
  }

  /**
   * Extends an image by the given pixels on each side, generating window by window at the model's grid
   * size; the original pixels are kept. An image of a super-res size is outpainted at every scale up
   * to its own: the low-res canvas first, then each larger canvas window by window, each window
   * conditioned on the tokens under it one scale down. Sides are rounded up to whole tokens of every
   * scale.
   */
  async outpaint(
    image: RgbImage,
    pixels: Partial<Extension>,
    prompt: string,
    o: MuseOptions = {},
  ): Promise<PipelineResult> {
    this.checkImage(image, this.sizes);
    const stages = this.stagesTo(image.width);
    const ratio = image.width / this.imageSize;
    const unit = this.tokenizer.downsample * ratio;
    const ext = { top: 0, bottom: 0, left: 0, right: 0 };
    const r = await this.request(prompt, o, { fitSize: this.imageSize });
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
    const plans: OutpaintPlan[] = [];
    for (const stage of stages) {
      const scale = stage.size / this.imageSize;
      const stageExt = {
        top: ext.top * scale,
        bottom: ext.bottom * scale,
        left: ext.left * scale,
        right: ext.right * scale,
      };
      const known = this.repeat(await stage.tokenizer.encode([imageAt(image, stage.size)]), B);
      const canvas = extendCanvas(known, B, ...stage.grid, stageExt, stage.maskId);
      const origin = { row: stageExt.top, col: stageExt.left };
      plans.push({ stage, canvas, origin, windows: windowsToFill(canvas, stage.grid, origin, stage.maskId).length });
    }
    const progress = new StepCounter(
      plans.reduce((sum, p) => sum + p.windows * stageSteps(p.stage, r.sampling), 0),
      o.onStep,
    );
    let done = await this.outpaintStage(plans[0], r, progress);
    for (let i = 1; i < plans.length; i++) {
      const below = {
        stage: plans[i - 1].stage,
        canvas: await this.translateCanvas(done, plans[i - 1].stage, plans[i].stage),
      };
      done = await this.outpaintStage(plans[i], r, progress, below);
    }
    const images = (await last(plans).stage.tokenizer.decode(done.tokens, done.height, done.width)).map((img) =>
      pasteImage(img, image, ext.left * unit, ext.top * unit),
    );
    return { images, tokens: done.tokens, grid: [done.height, done.width], notes: r.notes };
  }

  /** Fills a stage's canvas window by window; super-res windows are conditioned on the canvas below. */
  private async outpaintStage(
    plan: OutpaintPlan,
    r: Request,
    progress: StepCounter,
    below?: { stage: Stage; canvas: TokenCanvas },
  ): Promise<TokenCanvas> {
    const { stage } = plan;
    const steps = stageSteps(stage, r.sampling);
    const ratio = below ? stage.size / below.stage.size : 1;
    const B = r.prompts.length;
    const shared = below ? undefined : stage.model(r.text, r.guidance);
    let ran = 0;
    try {
      const canvas = await outpaintCanvas(
        plan.canvas,
        stage.grid,
        plan.origin,
        stage.maskId,
        async (win, _i, _n, place, at) => {
          const model =
            shared ??
            stage.model(
              r.text,
              r.guidance,
              below && windowTokens(below.canvas, at.row / ratio, at.col / ratio, below.stage.grid),
            );
          try {
            const out = await stage.decodeWith(model, win, B, {
              ...r.sampling,
              steps,
              rng: r.rng,
              onStep: (_s, _n, t) => {
                const c = place(t);
                return progress.step(
                  () => this.tokensToImages(c.tokens, c.height, c.width, stage.maskId, stage.tokenizer),
                  c.tokens,
                );
              },
            });
            ran += out.steps;
            if (out.note && !r.notes.includes(out.note)) r.notes.push(out.note);
            return out.tokens;
          } finally {
            if (!shared) model.dispose();
          }
        },
      );
      progress.ranFewer(plan.windows * steps, ran);
      return canvas;
    } finally {
      shared?.dispose();
    }
  }

  /**
   * Mask-free editing (Muse §3.3): the image moves toward the new prompt, keeping its layout. An image
   * of a super-res size is edited at the base size, then super-resolved (as the paper does).
   */
  async edit(image: RgbImage, prompt: string, o: EditOptions = {}): Promise<PipelineResult> {
    this.checkImage(image, this.sizes);
    const e = this.defaults.edit;
    const stages = this.stagesTo(image.width);
    const r = await this.request(
      prompt,
      { ...o, guidance: o.guidance ?? e.guidance, guidanceSchedule: o.guidanceSchedule ?? e.guidanceSchedule },
      { fitSize: image.width },
    );
    const iterations = o.iterations ?? e.iterations;
    const superres = stages.slice(1);
    const progress = new StepCounter(iterations + plannedSteps(superres, r.sampling), o.onStep);
    const start = this.repeat(await this.base.tokenizer.encode([imageAt(image, this.imageSize)]), r.prompts.length);
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
          iterations,
          fraction: o.fraction ?? e.fraction,
          topK: o.topK ?? e.topK,
          temperature: o.temperature ?? e.temperature,
          rng: r.rng,
          onIteration: (_i, _n, t) => progress.step(() => this.tokensToImages(t, h, w, this.base.maskId), t),
        },
      );
    } finally {
      model.dispose();
    }
    tokens = await this.runStages(superres, r, progress, (stage) => stage.blank(r.prompts.length), tokens, this.base);
    return this.finish(tokens, last(stages), r);
  }

  /**
   * Images of token grids [B, h, w] of `tokenizer` (the base stage's unless given); still-masked
   * tokens (maskId) are painted mid-grey.
   */
  async tokensToImages(
    tokens: Int32Array,
    h: number,
    w: number,
    maskId: number,
    tokenizer: VqTokenizer = this.tokenizer,
  ): Promise<RgbImage[]> {
    const images = await tokenizer.decode(
      tokens.map((t) => (t === maskId ? 0 : t)),
      h,
      w,
    );
    const f = tokenizer.downsample;
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

  /** The tokenizer of the last stage (the one decoding the largest images). */
  get superresTokenizer(): VqTokenizer {
    return last(this.stages).tokenizer;
  }

  dispose(): void {
    for (const t of new Set([this.tokenizer, ...this.stages.map((s) => s.tokenizer)])) t.dispose();
    for (const stage of this.stages) stage.dispose();
  }

  // -------------------------------------------------------------------------------------------------

  private outputSize(size: number | undefined): number {
    const s = size ?? this.defaultSize;
    if (!this.sizes.includes(s))
      throw new MuseError(
        `this model makes ${this.sizes.join(' or ')} px images, not ${s}${this.stages.length > 1 ? '' : ' (it has no super-res stage)'}`,
      );
    return s;
  }

  /** The stages that make an image of `size` px (one of `sizes`): the base stage up to that size's. */
  private stagesTo(size: number): readonly Stage[] {
    return this.stages.slice(0, this.stages.findIndex((s) => s.size === size) + 1);
  }

  /**
   * Refuses an outpainting canvas whose decoding would not fit in memory: the tokenizer decodes the
   * whole canvas of each image at once (about 9 KB per pixel with the emoji tokenizer).
   */
  private checkCanvas(width: number, height: number, images: number): void {
    const perPixel = Math.max(...this.stages.map((s) => decoderBytesPerPixel(s.tokenizer)));
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

  /** Prompts × n, their embeddings, guidance, sampling settings and generators for one call. */
  private async request(
    prompt: string | string[],
    o: MuseOptions,
    { fitSize, rngs }: RequestOptions = {},
  ): Promise<Request> {
    const prompts = this.promptList(prompt, o);
    if (fitSize !== undefined && prompts.length > this.batchLimit(fitSize))
      throw new MuseError(
        `${prompts.length} images at once would need about ${((prompts.length * this.imageBytes(fitSize)) / 1e9).toFixed(1)} GB; ` +
          `at most ${this.batchLimit(fitSize)} images of ${fitSize} px fit in one batch's memory: ask for fewer (-n)`,
      );
    const sampling = this.sampling(o);
    const superresTokens = Math.min(...this.stages.slice(1).map((s) => s.tokenCount));
    for (const [steps, tokens, name] of [
      [sampling.steps, this.base.tokenCount, 'steps'],
      [sampling.superresSteps, superresTokens, 'superres steps'],
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
    const rng = rngs?.[0] ?? new Rng(o.seed ?? 0);
    const notes = this.promptWarnings([...prompts, ...(o.negative !== undefined ? [o.negative] : [])]);
    return { prompts, text, guidance, sampling, rng, rngs, notes };
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
  private promptList(prompt: string | string[], o: MuseOptions): string[] {
    const n = o.n ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > 256)
      throw new MuseError(`n (images per prompt) must be an integer from 1 to 256, got ${n}`);
    const list = typeof prompt === 'string' ? [prompt] : prompt;
    if (list.length === 0) throw new MuseError('no prompts given');
    return list.flatMap((p) => Array.from({ length: n }, () => p));
  }

  private sampling(o: MuseOptions): Sampling {
    const d = this.defaults;
    if (o.superresChoice !== undefined && !SUPERRES_CHOICES.includes(o.superresChoice))
      throw new MuseError(`\`superresChoice\` must be one of ${SUPERRES_CHOICES.join(', ')}, got ${o.superresChoice}`);
    return {
      steps: o.steps ?? d.steps,
      superresSteps: o.superresSteps ?? d.superresSteps,
      superresChoice: o.superresChoice ?? d.superresChoice,
      temperature: o.temperature ?? d.temperature,
      topK: o.topK ?? d.topK,
      choiceTemperature: o.choiceTemperature ?? d.choiceTemperature,
      schedule: o.schedule ?? d.schedule,
    };
  }

  /**
   * Runs `stages` in turn, each conditioned on the tokens of the one before (the first on `low`, made
   * by `lowFrom`'s tokenizer, or by its own when not given), translated between tokenizers.
   */
  private async runStages(
    stages: readonly Stage[],
    r: Request,
    progress: StepCounter,
    start: (stage: Stage) => Int32Array | Promise<Int32Array>,
    low?: Int32Array,
    lowFrom?: Stage,
  ): Promise<Int32Array> {
    let tokens = low;
    // The stage whose tokenizer made `tokens`: `lowFrom` for `low` (none: the first stage's own).
    let from = lowFrom;
    for (const stage of stages) {
      if (tokens && from) tokens = await this.translate(tokens, from, stage);
      tokens = await this.runStage(stage, await start(stage), r, progress, tokens);
      from = stage;
    }
    return tokens as Int32Array;
  }

  /**
   * `from`'s token grids as `to`'s tokenizer reads the same images: unchanged when the stages share a
   * tokenizer; otherwise decoded by `from`'s and re-encoded by `to`'s (Muse's super-res stage has its
   * own tokenizer; both downsample by the same factor, so the grid keeps its size).
   */
  private async translate(tokens: Int32Array, from: Stage, to: Stage, grid = from.grid): Promise<Int32Array> {
    if (from.tokenizer === to.tokenizer) return tokens;
    return to.tokenizer.encode(await from.tokenizer.decode(tokens, grid[0], grid[1]));
  }

  /** An outpainting canvas of `from`'s tokens in `to`'s tokenizer (see translate). */
  private async translateCanvas(canvas: TokenCanvas, from: Stage, to: Stage): Promise<TokenCanvas> {
    if (from.tokenizer === to.tokenizer) return canvas;
    return { ...canvas, tokens: await this.translate(canvas.tokens, from, to, [canvas.height, canvas.width]) };
  }

  private async runStage(
    stage: Stage,
    start: Int32Array,
    r: Request,
    progress: StepCounter,
    lowTokens?: Int32Array,
  ): Promise<Int32Array> {
    const steps = stageSteps(stage, r.sampling);
    const [h, w] = stage.grid;
    const meanCode = stage.name === 'superres' && r.sampling.superresChoice === 'mean-code';
    const decoded = await stage.decode(
      start,
      r.text,
      r.guidance,
      {
        ...r.sampling,
        ...(meanCode ? { meanCode: this.codeSpace(stage.tokenizer) } : {}),
        steps,
        rng: r.rng,
        rngs: r.rngs,
        onStep: (_s, _n, t) => progress.step(() => this.tokensToImages(t, h, w, stage.maskId, stage.tokenizer), t),
      },
      lowTokens,
    );
    if (decoded.note) r.notes.push(decoded.note);
    progress.ranFewer(steps, decoded.steps);
    return decoded.tokens;
  }

  private readonly codes = new Map<VqTokenizer, CodeSpace>();

  /** A tokenizer's code vectors (for the mean-code choice), read once. */
  private codeSpace(tokenizer: VqTokenizer): CodeSpace {
    let codes = this.codes.get(tokenizer);
    if (!codes) {
      codes = codeVectors(tokenizer.config, tokenizer.params);
      this.codes.set(tokenizer, codes);
    }
    return codes;
  }

  private async finish(tokens: Int32Array, stage: Stage, r: Request): Promise<PipelineResult> {
    const [h, w] = stage.grid;
    return { images: await stage.tokenizer.decode(tokens, h, w), tokens, grid: [h, w], notes: r.notes };
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

/** Decoding steps of a stage under the call's settings. */
function stageSteps(stage: Stage, s: Sampling): number {
  return stage.name === 'base' ? s.steps : s.superresSteps;
}

function plannedSteps(stages: readonly Stage[], s: Sampling): number {
  return stages.reduce((sum, stage) => sum + stageSteps(stage, s), 0);
}

function last<T>(list: readonly T[]): T {
  return list[list.length - 1];
}

/** Bytes a tokenizer's decoder needs per output pixel (calibrated on the emoji tokenizer, with a margin). */
function decoderBytesPerPixel(tokenizer: VqTokenizer): number {
  const t = tokenizer.config;
  return t.channels * Math.max(...t.channelMult) * 72;
}

/** The image at a stage's size: itself, or downsampled to a smaller stage. */
function imageAt(image: RgbImage, size: number): RgbImage {
  return size === image.width ? image : downsampleImage(image, size);
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
