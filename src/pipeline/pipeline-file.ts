// A model folder (diffusers-style): pipeline.json names the components and the decoding defaults; each
// component is a safetensors file beside it.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GuidanceSchedule } from '../decoding/guidance.js';
import type { MaskSchedule } from '../transformer/masking.js';
import { MuseError } from '../util/errors.js';

export interface DecodingDefaults {
  steps: number;
  /** Decoding steps of the super-res stage (paper: 8). */
  superresSteps: number;
  guidance: number;
  guidanceSchedule: GuidanceSchedule;
  temperature: number;
  topK: number;
  choiceTemperature: number;
  schedule: MaskSchedule;
}

export interface PipelineFile {
  format: 'muse-ts-pipeline';
  version: 1;
  /** File names inside the folder. */
  tokenizer: string;
  base: string;
  /** The super-res transformer (optional); the same tokenizer decodes both sizes. */
  superres?: string;
  /** The text encoder the transformers were trained with (its id). */
  textEncoder: string;
  /** Side of the base model's images in pixels. */
  imageSize: number;
  /** Side of the super-res stage's images in pixels (with `superres`). */
  superresSize?: number;
  /** What `generate` makes unless told: imageSize, or superresSize when there is a super-res stage. */
  defaultSize?: number;
  defaults: DecodingDefaults;
}

export const DECODING_DEFAULTS: DecodingDefaults = {
  steps: 12,
  superresSteps: 8,
  guidance: 3,
  guidanceSchedule: 'linear',
  temperature: 1,
  topK: 0,
  choiceTemperature: 4.5,
  schedule: 'cosine',
};

export function readPipelineFile(folder: string): PipelineFile {
  const file = join(folder, 'pipeline.json');
  if (!existsSync(folder)) throw new MuseError(`model folder ${folder} does not exist`);
  if (!existsSync(file)) throw new MuseError(`${folder} is not a model folder: it has no pipeline.json`);
  let raw: Partial<PipelineFile>;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new MuseError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (raw.format !== 'muse-ts-pipeline')
    throw new MuseError(`${file}: not a muse-ts pipeline file (format "${raw.format}")`);
  if (raw.version !== 1) throw new MuseError(`${file}: version ${raw.version} is not supported (this muse-ts reads 1)`);
  for (const key of ['tokenizer', 'base', 'textEncoder'] as const) {
    if (typeof raw[key] !== 'string') throw new MuseError(`${file}: "${key}" must be a string`);
  }
  if (raw.superres !== undefined && typeof raw.superres !== 'string')
    throw new MuseError(`${file}: "superres" must be a string`);
  for (const key of ['tokenizer', 'base', 'superres'] as const) {
    if (raw[key] !== undefined && !existsSync(join(folder, raw[key] as string)))
      throw new MuseError(`${file} names ${raw[key]}, which is not in ${folder}`);
  }
  if (!Number.isInteger(raw.imageSize) || (raw.imageSize as number) < 1)
    throw new MuseError(`${file}: imageSize must be a positive integer`);
  if (
    raw.superres &&
    (!Number.isInteger(raw.superresSize) || (raw.superresSize as number) <= (raw.imageSize as number))
  )
    throw new MuseError(`${file}: superresSize must be an integer larger than imageSize`);
  const sizes = [raw.imageSize, ...(raw.superres ? [raw.superresSize] : [])];
  if (raw.defaultSize !== undefined && !sizes.includes(raw.defaultSize))
    throw new MuseError(`${file}: defaultSize must be one of ${sizes.join(', ')}`);
  return { ...(raw as PipelineFile), defaults: { ...DECODING_DEFAULTS, ...raw.defaults } };
}
