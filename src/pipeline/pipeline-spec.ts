// What a pipeline.json holds and how it is checked, with no file access (so the browser bundle has
// it): pipeline-file.ts reads one from a folder under Node, MusePipeline.load from any ModelSource.
import { MASK_FREE_EDIT_DEFAULTS } from '../decoding/edit.js';
import type { GuidanceSchedule } from '../decoding/guidance.js';
import type { MaskSchedule } from '../transformer/masking.js';
import { MuseError } from '../util/errors.js';
import { checkRelativeName, type ModelSource } from '../util/model-source.js';

/** The largest pipeline.json read (it holds a few names and numbers). */
export const MAX_PIPELINE_FILE_BYTES = 1 << 20;

export interface DecodingDefaults {
  steps: number;
  /** Decoding steps of the super-res stage (paper: 8). */
  superresSteps: number;
  /** How the super-res stage picks tokens (MuseOptions.superresChoice). Default 'sample'. */
  superresChoice: SuperresChoice;
  guidance: number;
  guidanceSchedule: GuidanceSchedule;
  temperature: number;
  topK: number;
  choiceTemperature: number;
  schedule: MaskSchedule;
  /** Mask-free editing (MusePipeline.edit) has its own (paper §3.3). */
  edit: EditDefaults;
}

/** How the super-res stage picks its tokens: drawn, or the code nearest each position's mean code vector. */
export type SuperresChoice = 'sample' | 'mean-code';
export const SUPERRES_CHOICES: readonly SuperresChoice[] = ['sample', 'mean-code'];

export interface EditDefaults {
  /** Resampling rounds. */
  iterations: number;
  /** Share of the tokens resampled per round. */
  fraction: number;
  guidance: number;
  guidanceSchedule: GuidanceSchedule;
  topK: number;
  temperature: number;
}

export interface PipelineFile {
  format: 'muse-ts-pipeline';
  version: 1;
  /** File names inside the folder. */
  tokenizer: string;
  base: string;
  /** The super-res transformer (optional); `tokenizer` decodes both sizes unless superresTokenizer is set. */
  superres?: string;
  /**
   * The super-res stage's own tokenizer (optional, with `superres`): it encodes the stage's low-res
   * conditioning and its high-res tokens, as Muse §2.4 pairs the super-res stage with a second VQ
   * tokenizer. The base stage's tokens are then decoded by `tokenizer` and the image re-encoded by
   * this one before the super-res stage. Both must have the same downsampling factor.
   */
  superresTokenizer?: string;
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
  superresChoice: 'sample',
  guidance: 3,
  guidanceSchedule: 'linear',
  temperature: 1,
  topK: 0,
  choiceTemperature: 4.5,
  schedule: 'cosine',
  edit: { ...MASK_FREE_EDIT_DEFAULTS, guidance: 4, guidanceSchedule: 'constant' },
};

/**
 * Checks and completes the bytes of a pipeline.json (`file` names it in messages); `checkName` is
 * called with each component's file name (it throws when the name is not a file inside the folder).
 */
export function parsePipelineFile(
  bytes: Uint8Array,
  file: string,
  checkName: (name: string, where: string) => void,
): PipelineFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new MuseError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new MuseError(
      `${file}: not a muse-ts pipeline file (a JSON ${parsed === null ? 'null' : Array.isArray(parsed) ? 'array' : typeof parsed}, not an object)`,
    );
  const raw = parsed as Partial<PipelineFile>;
  if (raw.format !== 'muse-ts-pipeline')
    throw new MuseError(`${file}: not a muse-ts pipeline file (format "${raw.format}")`);
  if (raw.version !== 1) throw new MuseError(`${file}: version ${raw.version} is not supported (this muse-ts reads 1)`);
  for (const key of ['tokenizer', 'base', 'textEncoder'] as const) {
    if (typeof raw[key] !== 'string') throw new MuseError(`${file}: "${key}" must be a string`);
  }
  for (const key of ['superres', 'superresTokenizer'] as const)
    if (raw[key] !== undefined && typeof raw[key] !== 'string')
      throw new MuseError(`${file}: "${key}" must be a string`);
  if (raw.superresTokenizer !== undefined && raw.superres === undefined)
    throw new MuseError(`${file}: "superresTokenizer" needs a "superres" stage`);
  // Component files: regular files inside the folder (no "..", no absolute path, no symlink out,
  // no FIFO or device), whatever the folder's author wrote.
  for (const key of ['tokenizer', 'base', 'superres', 'superresTokenizer'] as const) {
    if (raw[key] !== undefined) checkName(raw[key] as string, `${file}: "${key}"`);
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
  if (
    raw.defaults !== undefined &&
    (typeof raw.defaults !== 'object' || raw.defaults === null || Array.isArray(raw.defaults))
  )
    throw new MuseError(`${file}: "defaults" must be an object`);
  const choice = raw.defaults?.superresChoice;
  if (choice !== undefined && !SUPERRES_CHOICES.includes(choice))
    throw new MuseError(`${file}: "defaults.superresChoice" must be one of ${SUPERRES_CHOICES.join(', ')}`);
  const edit = raw.defaults?.edit;
  if (edit !== undefined && (typeof edit !== 'object' || edit === null || Array.isArray(edit)))
    throw new MuseError(`${file}: "defaults.edit" must be an object`);
  return {
    ...(raw as PipelineFile),
    defaults: { ...DECODING_DEFAULTS, ...raw.defaults, edit: { ...DECODING_DEFAULTS.edit, ...edit } },
  };
}

/** The pipeline.json of a ModelSource (a URL, or any source): component names must stay inside it. */
export async function readPipelineFrom(source: ModelSource): Promise<PipelineFile> {
  const bytes = await source.read('pipeline.json', MAX_PIPELINE_FILE_BYTES, 'a pipeline.json');
  return parsePipelineFile(bytes, source.where('pipeline.json'), checkRelativeName);
}
