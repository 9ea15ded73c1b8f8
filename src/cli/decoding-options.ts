// What generate, inpaint, outpaint and edit share on the command line: the model folder, decoding
// options, reading input images, writing the result (one PNG, or a grid for several) and --frames.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import sharp, { type Metadata } from 'sharp';
import { AmusedPipeline, isAmusedFolder, type MicroConditioning } from '../amused/pipeline.js';
import type { GuidanceSchedule } from '../decoding/guidance.js';
import { resolveModelArgument } from '../hub/hub-cache.js';
import { imageGrid } from '../image/grid.js';
import { decodeImage, encodePng, type RgbImage, resizeCenterCrop } from '../image/image.js';
import { FrameWriter } from '../pipeline/frames.js';
import { type MuseOptions, MusePipeline, type PipelineResult } from '../pipeline/pipeline.js';
import { readPipelineFile } from '../pipeline/pipeline-file.js';
import { SUPERRES_CHOICES, type SuperresChoice } from '../pipeline/pipeline-spec.js';
import type { MaskSchedule } from '../transformer/masking.js';
import { MuseError } from '../util/errors.js';
import { checkOutputFile, makeFolder, writeFileAtomic } from '../util/files.js';
import { packageRoot } from '../util/package-root.js';
import { Progress } from '../util/progress.js';
import { backendHelp, numberOption } from './options.js';

export const decodingHelp = `  --model DIR          model folder with pipeline.json (default: the shipped models/emoji), or a
                        diffusers aMUSEd folder (model_index.json; every verb but upscale),
                        or ORG/NAME fetched with muse pull (e.g. amused/amused-256)
  -o, --out FILE        output PNG (default out.png); a grid when there are several images
  -n N                  images per prompt (default 1)
  --size PX             output size: the base size (e.g. 32) or the super-res size (e.g. 64, both
                        stages); default: the model's defaultSize in pipeline.json (32 for emoji)
  --negative TEXT       negative prompt (replaces the empty prompt of guidance)
  --steps N             decoding steps (model default, 12 for emoji)
  --superres-steps N    decoding steps of the super-res stage (default 8)
  --superres-choice sample|mean-code   how the super-res stage picks tokens: drawn (sample), or
                        each position the code nearest its mean code vector (deterministic; the
                        least expected pixel error; the model's default in pipeline.json)
  --guidance T          classifier-free guidance t (0 = off): (1 + t)·cond − t·uncond; for aMUSEd,
                        diffusers' guidance_scale s is t = s − 1 (its default 10 is t = 9)
  --guidance-schedule linear|constant
  --temperature T       sampling temperature (0 = most likely token)
  --top-k K             sample among the K most likely tokens (0 = all)
  --choice-temperature T  Gumbel noise on confidences, annealed to 0 (default 4.5; aMUSEd 2)
  --aesthetic-score A   aMUSEd micro-conditioning: LAION aesthetic score (default 6)
  --crop TOP,LEFT       aMUSEd micro-conditioning: crop coordinates (default 0,0)
  --original-size W,H   aMUSEd micro-conditioning: original image size (default: the output size)
  --schedule cosine|linear|square   how many tokens stay masked after each step
  --seed S              0 to 4294967295; same seed, same images (default 0); image i of a run
                        uses seed S + i
  --scale S             enlarge the saved images S× (nearest neighbour; default 1)
  --frames DIR          write every decoding step as PNG and an animated decoding.gif
${backendHelp}`;

/** How tokens are drawn (also taken by `muse eval`, which measures a model under them). */
export const samplingArgs = {
  'superres-steps': { type: 'string' },
  'superres-choice': { type: 'string' },
  negative: { type: 'string' },
  steps: { type: 'string' },
  guidance: { type: 'string' },
  'guidance-schedule': { type: 'string' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'choice-temperature': { type: 'string' },
  schedule: { type: 'string' },
  'aesthetic-score': { type: 'string' },
  crop: { type: 'string' },
  'original-size': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export const decodingArgs = {
  ...samplingArgs,
  model: { type: 'string' },
  out: { type: 'string', short: 'o' },
  n: { type: 'string', short: 'n' },
  size: { type: 'string' },
  seed: { type: 'string' },
  scale: { type: 'string' },
  frames: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

type Values = { [K in keyof typeof decodingArgs]?: string };

export function defaultModelFolder(): string {
  return join(packageRoot(), 'models', 'emoji');
}

/** The --model folder: a path, or ORG/NAME pulled into the Hugging Face cache (muse pull); default emoji. */
export function modelFolder(values: Values): string {
  return values.model === undefined ? defaultModelFolder() : resolveModelArgument(values.model);
}

/**
 * Checks what can be checked before any weights load (the --size against pipeline.json, the output
 * file and --frames folder), then starts the backend and loads the model folder.
 */
export async function openPipeline(values: Values, options: { output?: boolean } = {}): Promise<MusePipeline> {
  const folder = modelFolder(values);
  if (isAmusedFolder(folder))
    throw new MuseError(
      `${folder} is an aMUSEd model: it runs generate, inpaint, outpaint, edit and img2img; this verb needs a muse-ts model (pipeline.json)`,
    );
  const file = readPipelineFile(folder);
  if (values.size !== undefined) {
    const size = numberOption(values.size, 'size', 0, { min: 1, integer: true });
    const sizes = [file.imageSize, ...(file.superres ? [file.superresSize as number] : [])];
    if (!sizes.includes(size))
      throw new MuseError(
        `--size ${size}: ${folder} makes ${sizes.join(' or ')} px images${file.superres ? '' : ' (it has no super-res stage)'}`,
      );
  }
  if (options.output !== false) checkOutputs(values);
  return MusePipeline.load(folder); // which starts the backend (with the CLI's --backend/--threads)
}

/** A muse-ts model folder (pipeline.json) or a diffusers aMUSEd folder (model_index.json). */
export type AnyPipeline = MusePipeline | AmusedPipeline;

/** openPipeline for the verbs every model family runs (generate, inpaint, outpaint, edit). */
export async function openAnyPipeline(values: Values): Promise<AnyPipeline> {
  const folder = modelFolder(values);
  if (!isAmusedFolder(folder)) return openPipeline(values);
  checkOutputs(values);
  return AmusedPipeline.load(folder);
}

/** The output file and --frames folder are usable (checked before any compute). */
function checkOutputs(values: Values): void {
  checkOutputFile(values.out ?? 'out.png');
  if (values.frames !== undefined) {
    if (existsSync(values.frames) && !statSync(values.frames).isDirectory())
      throw new MuseError(`--frames ${values.frames} is a file: give a folder for the frames`);
    makeFolder(values.frames, '--frames');
  }
}

function choice<T extends string>(value: string | undefined, name: string, options: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!options.includes(value as T))
    throw new MuseError(`--${name} must be one of ${options.join(', ')}, got "${value}"`);
  return value as T;
}

/** Decoding options from the command line (undefined = the model's default). */
export function decodingOptions(values: Values): MuseOptions & { microConditioning?: MicroConditioning } {
  const maybe = (v: string | undefined, name: string, o: Parameters<typeof numberOption>[3] = {}) =>
    v === undefined ? undefined : numberOption(v, name, 0, o);
  return {
    n: maybe(values.n, 'n', { min: 1, max: 256, integer: true }),
    negative: values.negative,
    size: maybe(values.size, 'size', { min: 1, integer: true }),
    steps: maybe(values.steps, 'steps', { min: 1, integer: true }),
    superresSteps: maybe(values['superres-steps'], 'superres-steps', { min: 1, integer: true }),
    superresChoice: choice<SuperresChoice>(values['superres-choice'], 'superres-choice', SUPERRES_CHOICES),
    guidance: maybe(values.guidance, 'guidance', { max: 100 }),
    guidanceSchedule: choice<GuidanceSchedule>(values['guidance-schedule'], 'guidance-schedule', [
      'linear',
      'constant',
    ]),
    temperature: maybe(values.temperature, 'temperature', { max: 100 }),
    topK: maybe(values['top-k'], 'top-k', { integer: true }),
    choiceTemperature: maybe(values['choice-temperature'], 'choice-temperature', { max: 100 }),
    schedule: choice<MaskSchedule>(values.schedule, 'schedule', ['cosine', 'linear', 'square']),
    seed: maybe(values.seed, 'seed', { min: 0, max: 2 ** 32 - 1, integer: true }),
    ...microConditioning(values),
  };
}

function pair(value: string | undefined, name: string): [number, number] | undefined {
  if (value === undefined) return undefined;
  const parts = value.split(',').map((v) => numberOption(v.trim(), name, 0, { min: 0, max: 100_000, integer: true }));
  if (parts.length !== 2) throw new MuseError(`--${name} takes two numbers separated by a comma, got "${value}"`);
  return [parts[0], parts[1]];
}

/** aMUSEd's micro-conditioning options (only those given). */
function microConditioning(values: Values): { microConditioning?: MicroConditioning } {
  const m: MicroConditioning = {};
  if (values['aesthetic-score'] !== undefined)
    m.aestheticScore = numberOption(values['aesthetic-score'], 'aesthetic-score', 6, { min: 0, max: 10 });
  const crop = pair(values.crop, 'crop');
  if (crop) m.crop = crop;
  const size = pair(values['original-size'], 'original-size');
  if (size) m.originalSize = size;
  return Object.keys(m).length ? { microConditioning: m } : {};
}

/** Adds a progress line per step and, with --frames, the frame writer; call finish() after. */
function withProgress(values: Values, o: MuseOptions, label: string) {
  const frames = values.frames ? new FrameWriter(values.frames) : undefined;
  let progress: Progress | undefined;
  const onStep = async (step: number, steps: number, images: () => RgbImage[] | Promise<RgbImage[]>) => {
    progress ??= new Progress({ total: steps, label, unit: 'step' });
    progress.tick(1);
    if (frames) await frames.add(step, steps, await images());
  };
  return {
    options: { ...o, onStep },
    finish: async () => {
      progress?.finish();
      const gif = await frames?.finish();
      if (gif) console.error(`frames and animation: ${gif}`);
    },
  };
}

/** Input images larger than this are refused before decoding (a 16000² PNG is 746 KB, 1.24 GB decoded). */
export const MAX_INPUT_PIXELS = 4096 * 4096;

/** The bytes of an input image whose header says it is at most MAX_INPUT_PIXELS; one line otherwise. */
export async function readImageBytes(path: string, what: string): Promise<Buffer> {
  if (!existsSync(path)) throw new MuseError(`no such ${what}: ${path}`);
  if (statSync(path).isDirectory()) throw new MuseError(`${what} ${path} is a folder, not an image`);
  const bytes = readFileSync(path);
  let meta: Metadata;
  try {
    meta = await sharp(bytes).metadata();
  } catch (err) {
    throw new MuseError(`${path}: not a readable image (${(err as Error).message})`);
  }
  const pixels = (meta.width ?? 0) * (meta.height ?? 0);
  if (pixels > MAX_INPUT_PIXELS)
    throw new MuseError(
      `${path}: ${meta.width}×${meta.height} px is more than the ${MAX_INPUT_PIXELS / 1e6} megapixels (4096×4096) muse reads; shrink it first`,
    );
  return bytes;
}

/** Reads an image; one of another size than `sizes` is resized (centre crop) to the last of them. */
export async function readInputImage(path: string, sizes: number[], what: string): Promise<RgbImage> {
  const bytes = await readImageBytes(path, what);
  const img = await decodeImage(bytes, path);
  if (img.width === img.height && sizes.includes(img.width)) return img;
  const size = sizes[sizes.length - 1];
  console.error(`${path}: ${img.width}×${img.height} resized to ${size}×${size} (centre crop), the model's size`);
  return resizeCenterCrop(bytes, size, path);
}

function enlarge(img: RgbImage, s: number): RgbImage {
  if (s === 1) return img;
  const width = img.width * s;
  const data = new Uint8Array(width * img.height * s * 3);
  for (let y = 0; y < img.height * s; y++) {
    for (let x = 0; x < width; x++) {
      const src = (Math.floor(y / s) * img.width + Math.floor(x / s)) * 3;
      data.set(img.data.subarray(src, src + 3), (y * width + x) * 3);
    }
  }
  return { width, height: img.height * s, data };
}

/** Writes one PNG, or a captioned grid when there are several images; prints notes and the path. */
async function writeResult(values: Values, r: PipelineResult, captions: string[], warned: string[]): Promise<void> {
  const out = values.out ?? 'out.png';
  const scale = numberOption(values.scale, 'scale', 1, { min: 1, max: 64, integer: true });
  for (const note of r.notes) if (!warned.includes(note)) console.error(`note: ${note}`);
  const png =
    r.images.length === 1
      ? await encodePng(enlarge(r.images[0], scale))
      : await imageGrid(
          r.images.map((image, i) => ({ image, caption: captions[i] })),
          { columns: Math.min(8, r.images.length), cell: Math.max(64, r.images[0].width * scale) },
        );
  writeFileAtomic(out, png);
  const { width, height } = r.images[0];
  const saved = scale > 1 ? ` (saved ${scale}× as ${width * scale}×${height * scale})` : '';
  console.log(`${out}: ${r.images.length} image${r.images.length > 1 ? 's' : ''} of ${width}×${height}${saved}`);
}

/**
 * Runs one pipeline call with a progress line (and --frames), writes its result and releases the
 * model. `caption` labels every image, or each in turn when it is a list.
 */
export async function runAndWrite(
  values: Values,
  muse: { promptWarnings(prompts: string[]): string[]; dispose(): void },
  o: MuseOptions,
  label: string,
  caption: string | string[],
  call: (options: MuseOptions) => Promise<PipelineResult>,
): Promise<number> {
  numberOption(values.scale, 'scale', 1, { min: 1, max: 64, integer: true });
  const warned = muse.promptWarnings([
    ...(typeof caption === 'string' ? [caption] : caption),
    ...(o.negative !== undefined ? [o.negative] : []),
  ]);
  for (const w of warned) console.error(`warning: ${w}`);
  const run = withProgress(values, o, label);
  try {
    const r = await call(run.options);
    await run.finish();
    await writeResult(values, r, typeof caption === 'string' ? r.images.map(() => caption) : caption, warned);
  } catch (err) {
    try {
      muse.dispose();
    } catch {
      // After a failure (e.g. the wasm heap ran out) releasing the model may fail too: the first
      // error is the one to report.
    }
    throw err;
  }
  muse.dispose();
  return 0;
}
