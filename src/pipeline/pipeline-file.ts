// A model folder (diffusers-style): pipeline.json names the components and the decoding defaults; each
// component is a safetensors file beside it.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GuidanceSchedule } from '../decoding/guidance.js';
import type { MaskSchedule } from '../transformer/masking.js';
import { MuseError } from '../util/errors.js';

export interface DecodingDefaults {
  steps: number;
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
  /** The text encoder the transformers were trained with (its id). */
  textEncoder: string;
  /** Side of the base model's images in pixels. */
  imageSize: number;
  defaults: DecodingDefaults;
}

export const DECODING_DEFAULTS: DecodingDefaults = {
  steps: 12,
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
  for (const key of ['tokenizer', 'base'] as const) {
    if (!existsSync(join(folder, raw[key] as string)))
      throw new MuseError(`${file} names ${raw[key]}, which is not in ${folder}`);
  }
  if (!Number.isInteger(raw.imageSize) || (raw.imageSize as number) < 1)
    throw new MuseError(`${file}: imageSize must be a positive integer`);
  return { ...(raw as PipelineFile), defaults: { ...DECODING_DEFAULTS, ...raw.defaults } };
}
