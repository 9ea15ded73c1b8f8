// A request to compute, checked before it is queued (every bad value is a 4xx with one message) and
// turned into the work a job runs.
import { randomInt } from 'node:crypto';
import { AmusedPipeline } from '../amused/pipeline.js';
import { encodePng, type PixelMask, type RgbImage } from '../image/image.js';
import type { DecodingOptions } from '../pipeline/pipeline.js';
import { HttpError } from './errors.js';
import type { JobImage, JobResult, JobWork } from './jobs.js';
import type { ServedModel, Verb } from './models.js';
import { modelInfo } from './models.js';

export interface ServerLimits {
  /** Characters in a prompt or negative prompt. */
  maxPromptChars: number;
  /** Images per request. */
  maxImages: number;
  /** Decoding steps (each stage). */
  maxSteps: number;
  /** Iterations of mask-free editing. */
  maxEditIterations: number;
  /** Pixels added on one side by outpainting. */
  maxOutpaintPixels: number;
  /** Bytes of one uploaded image (decoded from base64 or a multipart file). */
  maxImageBytes: number;
  /** Bytes of a request body (JSON with base64 images). */
  maxBodyBytes: number;
  /** Side in pixels of an uploaded image, from its header (before decoding). */
  maxInputSide: number;
  /** Jobs waiting behind the running one. */
  maxQueued: number;
  /** How long images answered as URLs stay served, in ms. */
  fileTtlMs: number;
  /** Most images served as URLs at once (the oldest go first). */
  maxFiles: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxPromptChars: 1000,
  maxImages: 8,
  maxSteps: 64,
  maxEditIterations: 300,
  maxOutpaintPixels: 256,
  maxImageBytes: 8 * 1024 * 1024,
  maxBodyBytes: 12 * 1024 * 1024,
  maxInputSide: 2048,
  maxQueued: 8,
  fileTtlMs: 60 * 60_000,
  maxFiles: 512,
};

/** The decoding options a request may set, after checking. */
export interface RequestOptions {
  n: number;
  size?: number;
  seed: number;
  steps?: number;
  superresSteps?: number;
  superresChoice?: 'sample' | 'mean-code';
  guidance?: number;
  guidanceSchedule?: 'linear' | 'constant';
  temperature?: number;
  topK?: number;
  choiceTemperature?: number;
  schedule?: 'cosine' | 'linear' | 'square';
  negative?: string;
  feather?: number;
  strength?: number;
  iterations?: number;
  fraction?: number;
  left?: number;
  right?: number;
  top?: number;
  bottom?: number;
}

export function number(
  value: unknown,
  name: string,
  range: { min: number; max: number; integer?: boolean },
): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const v = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (
    typeof v !== 'number' ||
    !Number.isFinite(v) ||
    v < range.min ||
    v > range.max ||
    (range.integer && !Number.isInteger(v))
  )
    throw new HttpError(
      400,
      `${name} must be ${range.integer ? 'an integer' : 'a number'} from ${range.min} to ${range.max}, got ${JSON.stringify(value)}`,
    );
  return v;
}

export function text(value: unknown, name: string, limits: ServerLimits, required = false): string | undefined {
  if (value === undefined || value === null) {
    if (required) throw new HttpError(400, `${name} is required`);
    return undefined;
  }
  if (typeof value !== 'string') throw new HttpError(400, `${name} must be a string, got ${typeof value}`);
  if (value.length > limits.maxPromptChars)
    throw new HttpError(400, `${name} has ${value.length} characters; at most ${limits.maxPromptChars} are allowed`);
  return value;
}

function choice<T extends string>(value: unknown, name: string, options: readonly T[]): T | undefined {
  if (value === undefined || value === null) return undefined;
  if (!options.includes(value as T))
    throw new HttpError(400, `${name} must be one of ${options.join(', ')}, got ${JSON.stringify(value)}`);
  return value as T;
}

const OPTION_NAMES = [
  'n',
  'size',
  'seed',
  'steps',
  'superresSteps',
  'superresChoice',
  'guidance',
  'guidanceSchedule',
  'temperature',
  'topK',
  'choiceTemperature',
  'schedule',
  'negative',
  'feather',
  'strength',
  'iterations',
  'fraction',
  'left',
  'right',
  'top',
  'bottom',
];

/** Checks the options of a native job request (unknown names and out-of-range values are 400s). */
export function parseOptions(raw: unknown, model: ServedModel, limits: ServerLimits): RequestOptions {
  if (raw === undefined || raw === null) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new HttpError(400, 'options must be a JSON object');
  const o = raw as Record<string, unknown>;
  for (const key of Object.keys(o))
    if (!OPTION_NAMES.includes(key))
      throw new HttpError(400, `unknown option ${JSON.stringify(key)}; options are ${OPTION_NAMES.join(', ')}`);
  const info = modelInfo(model);
  const size = number(o.size, 'size', { min: 1, max: 1 << 16, integer: true });
  if (size !== undefined && !info.sizes.includes(size))
    throw new HttpError(400, `size ${size}: model ${model.name} makes ${info.sizes.join(' or ')} px images`);
  const steps = { min: 1, max: limits.maxSteps, integer: true };
  const side = { min: 0, max: limits.maxOutpaintPixels, integer: true };
  return {
    n: number(o.n, 'n', { min: 1, max: limits.maxImages, integer: true }) ?? 1,
    size,
    seed: number(o.seed, 'seed', { min: 0, max: 2 ** 32 - 1, integer: true }) ?? randomInt(0, 2 ** 31),
    steps: number(o.steps, 'steps', steps),
    superresSteps: number(o.superresSteps, 'superresSteps', steps),
    superresChoice: choice(o.superresChoice, 'superresChoice', ['sample', 'mean-code'] as const),
    guidance: number(o.guidance, 'guidance', { min: 0, max: 100 }),
    guidanceSchedule: choice(o.guidanceSchedule, 'guidanceSchedule', ['linear', 'constant'] as const),
    temperature: number(o.temperature, 'temperature', { min: 0, max: 100 }),
    topK: number(o.topK, 'topK', { min: 0, max: 1 << 20, integer: true }),
    choiceTemperature: number(o.choiceTemperature, 'choiceTemperature', { min: 0, max: 100 }),
    schedule: choice(o.schedule, 'schedule', ['cosine', 'linear', 'square'] as const),
    negative: text(o.negative, 'negative', limits),
    feather: number(o.feather, 'feather', { min: 0, max: 64 }),
    strength: number(o.strength, 'strength', { min: 0, max: 1 }),
    iterations: number(o.iterations, 'iterations', { min: 1, max: limits.maxEditIterations, integer: true }),
    fraction: number(o.fraction, 'fraction', { min: 1e-6, max: 1 }),
    left: number(o.left, 'left', side),
    right: number(o.right, 'right', side),
    top: number(o.top, 'top', side),
    bottom: number(o.bottom, 'bottom', side),
  };
}

export interface ComputeRequest {
  verb: Verb;
  model: ServedModel;
  prompt: string;
  options: RequestOptions;
  image?: RgbImage;
  mask?: PixelMask;
}

/** Checks that the verb fits the model and has its inputs (before queueing). */
export function checkRequest(r: ComputeRequest): void {
  const info = modelInfo(r.model);
  if (!info.verbs.includes(r.verb))
    throw new HttpError(
      400,
      `model ${r.model.name} (${info.kind}) does not run ${r.verb}; it runs ${info.verbs.join(', ')}`,
    );
  if (r.verb !== 'generate' && !r.image) throw new HttpError(400, `${r.verb} needs an image`);
  if (r.verb === 'inpaint' && !r.mask) throw new HttpError(400, 'inpaint needs a mask (white = regenerate)');
  if (r.verb === 'outpaint') {
    const o = r.options;
    if (!((o.left ?? 0) + (o.right ?? 0) + (o.top ?? 0) + (o.bottom ?? 0)))
      throw new HttpError(400, 'outpaint needs left, right, top and/or bottom in pixels');
  }
  if (r.verb === 'upscale' && r.image && r.image.width !== info.sizes[0])
    throw new HttpError(400, `upscale takes a ${info.sizes[0]} px image, got ${r.image.width} px`);
}

/** Up to this many images are shown in a progress preview. */
const PREVIEW_IMAGES = 4;

/** The work of a job: runs the verb with an onStep that reports progress (and stops a cancelled job). */
export function workFor(r: ComputeRequest): JobWork {
  return async ({ progress }) => {
    const o = r.options;
    const onStep = (step: number, steps: number, images: () => RgbImage[] | Promise<RgbImage[]>) =>
      progress(step, steps, async () =>
        Promise.all(
          (await images()).slice(0, PREVIEW_IMAGES).map(async (im) => (await encodePng(im)).toString('base64')),
        ),
      );
    const decoding: DecodingOptions = {
      n: o.n,
      size: o.size,
      seed: o.seed,
      steps: o.steps,
      superresSteps: o.superresSteps,
      superresChoice: o.superresChoice,
      guidance: o.guidance,
      guidanceSchedule: o.guidanceSchedule,
      temperature: o.temperature,
      topK: o.topK,
      choiceTemperature: o.choiceTemperature,
      schedule: o.schedule,
      negative: o.negative,
      onStep,
    };
    const p = r.model.pipeline;
    if (!p) throw new Error(`model ${r.model.name} is not loaded in this process`);
    const image = r.image as RgbImage;
    let out: { images: RgbImage[]; notes: string[] };
    if (p instanceof AmusedPipeline) {
      const { superresSteps: _, superresChoice: _choice, ...a } = decoding;
      if (r.verb === 'generate') out = await p.generate(r.prompt, a);
      else if (r.verb === 'inpaint')
        out = await p.inpaint(image, r.mask as PixelMask, r.prompt, {
          ...a,
          strength: o.strength,
          feather: o.feather ?? 2,
        });
      else if (r.verb === 'outpaint')
        out = await p.outpaint(image, { left: o.left, right: o.right, top: o.top, bottom: o.bottom }, r.prompt, a);
      else if (r.verb === 'edit')
        out = await p.edit(image, r.prompt, { ...a, iterations: o.iterations, fraction: o.fraction });
      else out = await p.img2img(image, r.prompt, { ...a, strength: o.strength });
    } else if (r.verb === 'generate') out = await p.generate(r.prompt, decoding);
    else if (r.verb === 'inpaint')
      out = await p.inpaint(image, r.mask as PixelMask, r.prompt, { ...decoding, feather: o.feather });
    else if (r.verb === 'outpaint')
      out = await p.outpaint(image, { left: o.left, right: o.right, top: o.top, bottom: o.bottom }, r.prompt, decoding);
    else if (r.verb === 'edit')
      out = await p.edit(image, r.prompt, { ...decoding, iterations: o.iterations, fraction: o.fraction });
    else out = await p.upscale(image, r.prompt, decoding);
    const perImageSeed = r.verb === 'generate' && !(p instanceof AmusedPipeline);
    const images: JobImage[] = await Promise.all(
      out.images.map(async (im, i) => ({
        png: await encodePng(im),
        width: im.width,
        height: im.height,
        seed: perImageSeed ? (o.seed + i) % 2 ** 32 : o.seed,
      })),
    );
    return { images, notes: out.notes } satisfies JobResult;
  };
}

/** What a job record says about its request (no image bytes). */
export function requestSummary(r: ComputeRequest): Record<string, unknown> {
  const { n, seed, size, steps, guidance, negative } = r.options;
  return { verb: r.verb, model: r.model.name, prompt: r.prompt, options: { n, seed, size, steps, guidance, negative } };
}
