// What generate, inpaint, outpaint and edit share on the command line: the model folder, decoding
// options, reading input images, writing the result (one PNG, or a grid for several) and --frames.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import { imageGrid } from '../data/grid.js';
import { decodeImage, encodePng, type RgbImage, resizeCenterCrop } from '../data/image.js';
import type { GuidanceSchedule } from '../decoding/guidance.js';
import { FrameWriter } from '../pipeline/frames.js';
import { type DecodingOptions, MusePipeline, type PipelineResult } from '../pipeline/pipeline.js';
import { initBackend } from '../tensor/backend.js';
import type { MaskSchedule } from '../transformer/masking.js';
import { MuseError } from '../util/errors.js';
import { packageRoot } from '../util/package-root.js';
import { Progress } from '../util/progress.js';
import { numberOption } from './options.js';

export const decodingHelp = `  --model DIR          model folder with pipeline.json (default: the shipped models/emoji)
  -o, --out FILE        output PNG (default out.png); a grid when there are several images
  -n N                  images per prompt (default 1)
  --size PX             output size: the base size (e.g. 32) or the super-res size (e.g. 64, both
                        stages; the default when the model has a super-res stage)
  --negative TEXT       negative prompt (replaces the empty prompt of guidance)
  --steps N             decoding steps (model default, 12 for emoji)
  --superres-steps N    decoding steps of the super-res stage (default 8)
  --guidance T          classifier-free guidance scale t (0 = off)
  --guidance-schedule linear|constant
  --temperature T       sampling temperature (0 = most likely token)
  --top-k K             sample among the K most likely tokens (0 = all)
  --choice-temperature T  Gumbel noise on confidences, annealed to 0 (default 4.5)
  --schedule cosine|linear|square   how many tokens stay masked after each step
  --seed S              same seed, same images (default 0)
  --scale S             enlarge the saved images S× (nearest neighbour; default 1)
  --frames DIR          write every decoding step as PNG and an animated decoding.gif`;

/** How tokens are drawn (also taken by `muse eval`, which measures a model under them). */
export const samplingArgs = {
  'superres-steps': { type: 'string' },
  negative: { type: 'string' },
  steps: { type: 'string' },
  guidance: { type: 'string' },
  'guidance-schedule': { type: 'string' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'choice-temperature': { type: 'string' },
  schedule: { type: 'string' },
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

export async function openPipeline(values: Values): Promise<MusePipeline> {
  await initBackend();
  return MusePipeline.load(values.model ?? defaultModelFolder());
}

function choice<T extends string>(value: string | undefined, name: string, options: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!options.includes(value as T))
    throw new MuseError(`--${name} must be one of ${options.join(', ')}, got "${value}"`);
  return value as T;
}

/** Decoding options from the command line (undefined = the model's default). */
export function decodingOptions(values: Values): DecodingOptions {
  const maybe = (v: string | undefined, name: string, o: Parameters<typeof numberOption>[3] = {}) =>
    v === undefined ? undefined : numberOption(v, name, 0, o);
  return {
    n: maybe(values.n, 'n', { min: 1, max: 256, integer: true }),
    negative: values.negative,
    size: maybe(values.size, 'size', { min: 1, integer: true }),
    steps: maybe(values.steps, 'steps', { min: 1, integer: true }),
    superresSteps: maybe(values['superres-steps'], 'superres-steps', { min: 1, integer: true }),
    guidance: maybe(values.guidance, 'guidance', { max: 100 }),
    guidanceSchedule: choice<GuidanceSchedule>(values['guidance-schedule'], 'guidance-schedule', [
      'linear',
      'constant',
    ]),
    temperature: maybe(values.temperature, 'temperature', { max: 100 }),
    topK: maybe(values['top-k'], 'top-k', { integer: true }),
    choiceTemperature: maybe(values['choice-temperature'], 'choice-temperature', { max: 100 }),
    schedule: choice<MaskSchedule>(values.schedule, 'schedule', ['cosine', 'linear', 'square']),
    seed: maybe(values.seed, 'seed', { min: -(2 ** 31), max: 2 ** 32, integer: true }),
  };
}

/** Adds a progress line per step and, with --frames, the frame writer; call finish() after. */
function withProgress(values: Values, o: DecodingOptions, label: string) {
  const frames = values.frames ? new FrameWriter(values.frames) : undefined;
  let progress: Progress | undefined;
  const onStep = async (step: number, steps: number, images: () => RgbImage[]) => {
    progress ??= new Progress({ total: steps, label, unit: 'step' });
    progress.tick(1);
    if (frames) await frames.add(step, steps, images());
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

/** Reads an image; one of another size than `sizes` is resized (centre crop) to the last of them. */
export async function readInputImage(path: string, sizes: number[], what: string): Promise<RgbImage> {
  if (!existsSync(path)) throw new MuseError(`no such ${what}: ${path}`);
  const bytes = readFileSync(path);
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
async function writeResult(values: Values, r: PipelineResult, captions: string[]): Promise<void> {
  const out = values.out ?? 'out.png';
  const scale = numberOption(values.scale, 'scale', 1, { min: 1, max: 64, integer: true });
  for (const note of r.notes) console.error(`note: ${note}`);
  const png =
    r.images.length === 1
      ? await encodePng(enlarge(r.images[0], scale))
      : await imageGrid(
          r.images.map((image, i) => ({ image, caption: captions[i] })),
          { columns: Math.min(8, r.images.length), cell: Math.max(64, r.images[0].width * scale) },
        );
  writeFileSync(out, png);
  console.log(
    `${out}: ${r.images.length} image${r.images.length > 1 ? 's' : ''} of ${r.images[0].width}×${r.images[0].height}`,
  );
}

/**
 * Runs one pipeline call with a progress line (and --frames), writes its result and releases the
 * model. `caption` labels every image, or each in turn when it is a list.
 */
export async function runAndWrite(
  values: Values,
  muse: MusePipeline,
  o: DecodingOptions,
  label: string,
  caption: string | string[],
  call: (options: DecodingOptions) => Promise<PipelineResult>,
): Promise<number> {
  const run = withProgress(values, o, label);
  try {
    const r = await call(run.options);
    await run.finish();
    await writeResult(values, r, typeof caption === 'string' ? r.images.map(() => caption) : caption);
  } finally {
    muse.dispose();
  }
  return 0;
}
