// The user-facing pipeline: a model folder in, images out. Composes the VQ tokenizer, the frozen text
// encoder and the base transformer with parallel decoding, guidance and the editing modes.
//
//   const muse = await MusePipeline.load('models/emoji');
//   const { images } = await muse.generate('a red apple', { n: 4, seed: 1 });
import { join } from 'node:path';
import type { RgbImage } from '../data/image.js';
import { maskFreeEdit } from '../decoding/edit.js';
import type { GuidanceSchedule } from '../decoding/guidance.js';
import { type GuidedTransformer, guidedTransformer, type PromptBatch } from '../decoding/guided-transformer.js';
import { type Extension, extendCanvas, outpaintCanvas } from '../decoding/outpaint.js';
import { parallelDecode } from '../decoding/parallel-decode.js';
import { decodingSteps } from '../decoding/schedule.js';
import { Rng } from '../tensor/random.js';
import type { TextEncoder } from '../text/encoder.js';
import { USE_LITE_ID, UseLiteEncoder } from '../text/use-lite.js';
import { VqTokenizer } from '../tokenizer/tokenizer.js';
import { loadTransformer } from '../transformer/checkpoint.js';
import { maskTokenId, sequenceLength, type TransformerConfig } from '../transformer/config.js';
import type { MaskSchedule } from '../transformer/masking.js';
import type { Params } from '../transformer/model.js';
import { MuseError } from '../util/errors.js';
import { featherComposite, type PixelMask, tokenMask } from './masks.js';
import { type DecodingDefaults, type PipelineFile, readPipelineFile } from './pipeline-file.js';

export interface DecodingOptions {
  /** Images per prompt. Default 1. */
  n?: number;
  /** Replaces the empty prompt of classifier-free guidance. */
  negative?: string;
  steps?: number;
  guidance?: number;
  guidanceSchedule?: GuidanceSchedule;
  temperature?: number;
  topK?: number;
  choiceTemperature?: number;
  schedule?: MaskSchedule;
  seed?: number;
  /** After each decoding step (or edit iteration): the images so far (masked tokens shown grey). */
  onStep?: (step: number, steps: number, images: () => RgbImage[]) => void | Promise<void>;
}

export interface EditOptions extends DecodingOptions {
  iterations?: number;
  fraction?: number;
}

export interface PipelineResult {
  images: RgbImage[];
  /** Token grids [images, h, w]. */
  tokens: Int32Array;
  grid: [number, number];
  /** Adjustments made to the request, in words (resized inputs, fewer steps, ...). */
  notes: string[];
}

export class MusePipeline {
  private constructor(
    readonly folder: string,
    readonly file: PipelineFile,
    readonly tokenizer: VqTokenizer,
    readonly textEncoder: TextEncoder,
    readonly baseParams: Params,
    readonly baseConfig: TransformerConfig,
  ) {}

  /** Loads a model folder; pass `textEncoder` for one that is not built in (its id must match). */
  static async load(folder: string, options: { textEncoder?: TextEncoder } = {}): Promise<MusePipeline> {
    const file = readPipelineFile(folder);
    const tokenizer = await VqTokenizer.load(join(folder, file.tokenizer));
    const base = await loadTransformer(join(folder, file.base));
    if (base.config.codebookSize !== tokenizer.codebookSize)
      throw new MuseError(
        `${folder}: the base model has ${base.config.codebookSize} codes, the tokenizer ${tokenizer.codebookSize}`,
      );
    const [h, w] = base.config.grid;
    if (file.imageSize !== h * tokenizer.downsample || file.imageSize !== w * tokenizer.downsample)
      throw new MuseError(
        `${folder}: imageSize ${file.imageSize} does not match the ${h}×${w} grid of an f=${tokenizer.downsample} tokenizer`,
      );
    let text = options.textEncoder;
    if (!text) {
      if (file.textEncoder !== USE_LITE_ID)
        throw new MuseError(`${folder} needs the text encoder ${file.textEncoder}: pass it to MusePipeline.load`);
      text = await UseLiteEncoder.load({ maxTokens: base.config.textTokens });
    }
    if (text.id !== file.textEncoder)
      throw new MuseError(`${folder} was trained with the text encoder ${file.textEncoder}, not ${text.id}`);
    if (text.dim !== base.config.textDim || text.maxTokens > base.config.textTokens)
      throw new MuseError(
        `${folder}: the text encoder gives ${text.maxTokens}×${text.dim}, the model takes ${base.config.textTokens}×${base.config.textDim}`,
      );
    return new MusePipeline(folder, file, tokenizer, text, base.params, base.config);
  }

  get imageSize(): number {
    return this.file.imageSize;
  }

  get grid(): [number, number] {
    return this.baseConfig.grid;
  }

  get defaults(): DecodingDefaults {
    return this.file.defaults;
  }

  /** Text-to-image: n images per prompt, decoded in one batch. */
  async generate(prompt: string | string[], o: DecodingOptions = {}): Promise<PipelineResult> {
    const prompts = this.repeatPrompts(prompt, o.n);
    const [h, w] = this.grid;
    const start = new Int32Array(prompts.length * h * w).fill(maskTokenId(this.baseConfig));
    return this.decodeGrids(prompts, start, o, []);
  }

  /**
   * Regenerates the masked part of an image (of the model's size) under the prompt; every pixel outside
   * the mask stays the original's, the seam feathered over `feather` pixels inside the mask.
   */
  async inpaint(
    image: RgbImage,
    mask: PixelMask,
    prompt: string,
    o: DecodingOptions & { feather?: number } = {},
  ): Promise<PipelineResult> {
    this.checkImage(image);
    if (mask.width !== image.width || mask.height !== image.height)
      throw new MuseError(`the mask is ${mask.width}×${mask.height}, the image ${image.width}×${image.height}`);
    const prompts = this.repeatPrompts(prompt, o.n);
    const tm = tokenMask(mask, this.tokenizer.downsample);
    const known = await this.tokenizer.encode([image]);
    const n = known.length;
    const start = new Int32Array(prompts.length * n);
    for (let b = 0; b < prompts.length; b++)
      for (let i = 0; i < n; i++) start[b * n + i] = tm[i] ? maskTokenId(this.baseConfig) : known[i];
    const result = await this.decodeGrids(prompts, start, o, []);
    result.images = result.images.map((g) => featherComposite(image, g, mask, o.feather ?? 2));
    return result;
  }

  /**
   * Extends an image (of the model's size) by the given pixels on each side (rounded up to whole tokens),
   * generating window by window; the original pixels are kept.
   */
  async outpaint(image: RgbImage, pixels: Extension, prompt: string, o: DecodingOptions = {}): Promise<PipelineResult> {
    this.checkImage(image);
    const f = this.tokenizer.downsample;
    const notes: string[] = [];
    const ext = { top: 0, bottom: 0, left: 0, right: 0 };
    for (const side of ['top', 'bottom', 'left', 'right'] as const) {
      const px = pixels[side];
      if (!Number.isInteger(px) || px < 0)
        throw new MuseError(`outpaint: ${side} must be a whole number of pixels ≥ 0, got ${px}`);
      ext[side] = Math.ceil(px / f);
      if (px % f) notes.push(`${side}: ${px} px rounded up to ${ext[side] * f} px (whole ${f}-px tokens)`);
    }
    const prompts = this.repeatPrompts(prompt, o.n);
    const B = prompts.length;
    const [h, w] = this.grid;
    const known = await this.tokenizer.encode([image]);
    const repeated = new Int32Array(B * known.length);
    for (let b = 0; b < B; b++) repeated.set(known, b * known.length);
    const canvas = extendCanvas(repeated, B, h, w, ext, maskTokenId(this.baseConfig));
    const model = await this.guided(prompts, o);
    const rng = new Rng(o.seed ?? 0);
    const d = this.decodingOptions(o);
    try {
      const maskId = maskTokenId(this.baseConfig);
      const done = await outpaintCanvas(
        canvas,
        this.grid,
        { row: ext.top, col: ext.left },
        maskId,
        (win, index, count, place) => {
          const { steps } = decodingSteps(d.steps, win.subarray(0, h * w).filter((t) => t === maskId).length);
          return parallelDecode(model.logits, this.problem(win, B), {
            ...d,
            steps,
            rng,
            onStep: o.onStep
              ? (s, _, t) => {
                  const c = place(t);
                  return o.onStep?.(index * d.steps + s, count * d.steps, () =>
                    this.tokensToImages(c.tokens, c.height, c.width),
                  );
                }
              : undefined,
          });
        },
      );
      const images = this.tokenizer
        .decode(done.tokens, done.height, done.width)
        .map((img) => pasteImage(img, image, ext.left * f, ext.top * f));
      return { images, tokens: done.tokens, grid: [done.height, done.width], notes };
    } finally {
      model.dispose();
    }
  }

  /** Mask-free editing (Muse §3.3): the image moves toward the new prompt, keeping its layout. */
  async edit(image: RgbImage, prompt: string, o: EditOptions = {}): Promise<PipelineResult> {
    this.checkImage(image);
    const prompts = this.repeatPrompts(prompt, o.n);
    const known = await this.tokenizer.encode([image]);
    const start = new Int32Array(prompts.length * known.length);
    for (let b = 0; b < prompts.length; b++) start.set(known, b * known.length);
    const model = await this.guided(prompts, {
      ...o,
      guidance: o.guidance ?? 4,
      guidanceSchedule: o.guidanceSchedule ?? 'constant',
    });
    const [h, w] = this.grid;
    try {
      const tokens = await maskFreeEdit(model.logits, this.problem(start, prompts.length), {
        iterations: o.iterations,
        fraction: o.fraction,
        topK: o.topK ?? 3,
        temperature: o.temperature,
        rng: new Rng(o.seed ?? 0),
        onIteration: o.onStep ? (i, n, t) => o.onStep?.(i, n, () => this.tokensToImages(t, h, w)) : undefined,
      });
      return { images: this.tokenizer.decode(tokens, h, w), tokens, grid: [h, w], notes: [] };
    } finally {
      model.dispose();
    }
  }

  /** Images of token grids [B, h, w]; still-masked tokens are painted mid-grey. */
  tokensToImages(tokens: Int32Array, h: number, w: number): RgbImage[] {
    const maskId = maskTokenId(this.baseConfig);
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
    for (const v of Object.values(this.baseParams)) v.dispose();
  }

  // -------------------------------------------------------------------------------------------------

  private checkImage(image: RgbImage): void {
    if (image.width !== this.imageSize || image.height !== this.imageSize)
      throw new MuseError(
        `this model edits ${this.imageSize}×${this.imageSize} images, got ${image.width}×${image.height} (resize it first)`,
      );
  }

  private repeatPrompts(prompt: string | string[], n = 1): string[] {
    if (!Number.isInteger(n) || n < 1 || n > 256)
      throw new MuseError(`n (images per prompt) must be an integer from 1 to 256, got ${n}`);
    const list = typeof prompt === 'string' ? [prompt] : prompt;
    if (list.length === 0) throw new MuseError('no prompts given');
    return list.flatMap((p) => Array.from({ length: n }, () => p));
  }

  private decodingOptions(o: DecodingOptions) {
    const d = this.defaults;
    return {
      steps: o.steps ?? d.steps,
      temperature: o.temperature ?? d.temperature,
      topK: o.topK ?? d.topK,
      choiceTemperature: o.choiceTemperature ?? d.choiceTemperature,
      schedule: o.schedule ?? d.schedule,
    };
  }

  private problem(tokens: Int32Array, batch: number) {
    return { tokens, batch, codebookSize: this.baseConfig.codebookSize, maskId: maskTokenId(this.baseConfig) };
  }

  private async encodePrompts(prompts: string[]): Promise<PromptBatch> {
    return this.textEncoder.encode(prompts);
  }

  private async guided(prompts: string[], o: DecodingOptions): Promise<GuidedTransformer> {
    const text = await this.encodePrompts(prompts);
    const negative =
      o.negative !== undefined ? await this.encodePrompts(prompts.map(() => o.negative as string)) : undefined;
    return guidedTransformer(this.baseParams, this.baseConfig, text, {
      scale: o.guidance ?? this.defaults.guidance,
      schedule: o.guidanceSchedule ?? this.defaults.guidanceSchedule,
      negative,
    });
  }

  private async decodeGrids(
    prompts: string[],
    start: Int32Array,
    o: DecodingOptions,
    notes: string[],
  ): Promise<PipelineResult> {
    const [h, w] = this.grid;
    const n = sequenceLength(this.baseConfig);
    const d = this.decodingOptions(o);
    if (!Number.isInteger(d.steps) || d.steps < 1 || d.steps > n)
      throw new MuseError(`steps must be an integer from 1 to ${n} (the tokens of a ${h}×${w} grid), got ${d.steps}`);
    let fewest = n;
    for (let b = 0; b < prompts.length; b++)
      fewest = Math.min(
        fewest,
        start.subarray(b * n, (b + 1) * n).filter((t) => t === maskTokenId(this.baseConfig)).length,
      );
    const { steps, note } = decodingSteps(d.steps, fewest);
    if (note) notes.push(note);
    const model = await this.guided(prompts, o);
    try {
      const tokens = await parallelDecode(model.logits, this.problem(start, prompts.length), {
        ...d,
        steps,
        rng: new Rng(o.seed ?? 0),
        onStep: o.onStep ? (s, total, t) => o.onStep?.(s, total, () => this.tokensToImages(t, h, w)) : undefined,
      });
      return { images: this.tokenizer.decode(tokens, h, w), tokens, grid: [h, w], notes };
    } finally {
      model.dispose();
    }
  }
}

/** `inner` pasted into `outer` with its top-left corner at (x, y). */
function pasteImage(outer: RgbImage, inner: RgbImage, x: number, y: number): RgbImage {
  const data = Uint8Array.from(outer.data);
  for (let r = 0; r < inner.height; r++)
    data.set(inner.data.subarray(r * inner.width * 3, (r + 1) * inner.width * 3), ((y + r) * outer.width + x) * 3);
  return { width: outer.width, height: outer.height, data };
}
