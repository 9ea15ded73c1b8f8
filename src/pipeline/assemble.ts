// A model folder from training runs: every component re-saved in F16 (with its training metadata and
// last validation figures) and a pipeline.json with decoding defaults (diffusers-style layout).
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadTokenizer, saveTokenizer } from '../tokenizer/checkpoint.js';
import { downsampleFactor } from '../tokenizer/config.js';
import { loadTransformer, saveTransformer } from '../transformer/checkpoint.js';
import { MuseError } from '../util/errors.js';
import { DECODING_DEFAULTS, type DecodingDefaults, type PipelineFile } from './pipeline-file.js';

export interface AssembleOptions {
  tokenizer: string;
  base: string;
  superres?: string;
  /** The super-res stage's own tokenizer (Muse §2.4), when it is not `tokenizer`. */
  superresTokenizer?: string;
  out: string;
  defaults?: Partial<DecodingDefaults>;
  /** What `generate` makes unless told (default: the largest size). */
  defaultSize?: number;
  /** The text encoder's id, when the base file does not record it. */
  textEncoder?: string;
  /** Free-form facts recorded in every component (data split, machine, ...). */
  notes?: Record<string, string>;
}

/** The last validation entry of the run folder next to a weights file (history.json), if any. */
function lastValidation(weights: string): string | undefined {
  const file = join(dirname(weights), 'history.json');
  if (!existsSync(file)) return undefined;
  const h = JSON.parse(readFileSync(file, 'utf8')) as { eval?: Array<Record<string, number>> };
  const e = h.eval?.at(-1);
  return e ? JSON.stringify(e) : undefined;
}

export async function assemblePipeline(o: AssembleOptions): Promise<PipelineFile> {
  for (const f of [o.tokenizer, o.base, o.superres, o.superresTokenizer])
    if (f && !existsSync(f)) throw new MuseError(`no such file: ${f}`);
  if (o.superresTokenizer && !o.superres) throw new MuseError('a super-res tokenizer needs a super-res stage');
  mkdirSync(o.out, { recursive: true });
  const notes = o.notes ?? {};
  const tok = await loadTokenizer(o.tokenizer);
  const f = downsampleFactor(tok.config);
  await saveTokenizerF16(join(o.out, 'tokenizer.safetensors'), tok, o.tokenizer, notes);
  const base = await loadTransformer(o.base);
  if (base.config.codebookSize !== tok.config.codebookSize)
    throw new MuseError(
      `${o.base}: ${base.config.codebookSize} codes, but the tokenizer has ${tok.config.codebookSize}`,
    );
  const textEncoder = base.metadata.textEncoder ?? o.textEncoder;
  if (!textEncoder)
    throw new MuseError(
      `${o.base} does not say which text encoder it was trained with: pass its id (the textEncoder option)`,
    );
  if (o.textEncoder && textEncoder !== o.textEncoder)
    throw new MuseError(`${o.base} was trained with the text encoder ${textEncoder}, not ${o.textEncoder}`);
  await saveStage(join(o.out, 'base.safetensors'), base, 'muse-base', o.base, { ...notes, textEncoder });
  const file: PipelineFile = {
    format: 'muse-ts-pipeline',
    version: 1,
    tokenizer: 'tokenizer.safetensors',
    base: 'base.safetensors',
    textEncoder,
    imageSize: base.config.grid[0] * f,
    defaults: { ...DECODING_DEFAULTS, ...o.defaults },
  };
  if (o.superres) {
    const sr = await loadTransformer(o.superres);
    if (!sr.config.lowres) throw new MuseError(`${o.superres} is not a super-res model`);
    await saveStage(join(o.out, 'superres.safetensors'), sr, 'muse-superres', o.superres, notes);
    file.superres = 'superres.safetensors';
    let srCodes = tok.config.codebookSize;
    if (o.superresTokenizer) {
      const srTok = await loadTokenizer(o.superresTokenizer);
      if (downsampleFactor(srTok.config) !== f)
        throw new MuseError(
          `${o.superresTokenizer} downsamples by ${downsampleFactor(srTok.config)}, the base tokenizer by ${f} (they must match)`,
        );
      await saveTokenizerF16(join(o.out, 'superres-tokenizer.safetensors'), srTok, o.superresTokenizer, notes);
      file.superresTokenizer = 'superres-tokenizer.safetensors';
      srCodes = srTok.config.codebookSize;
    }
    if (sr.config.codebookSize !== srCodes || sr.config.lowres.codebookSize !== srCodes)
      throw new MuseError(
        `${o.superres}: ${sr.config.codebookSize} codes (low-res ${sr.config.lowres.codebookSize}), but its tokenizer has ${srCodes}`,
      );
    file.superresSize = sr.config.grid[0] * f;
    file.defaultSize = file.superresSize;
  }
  if (o.defaultSize !== undefined) {
    const sizes = [file.imageSize, ...(file.superresSize ? [file.superresSize] : [])];
    if (!sizes.includes(o.defaultSize))
      throw new MuseError(`default size ${o.defaultSize}: choose ${sizes.join(' or ')}`);
    file.defaultSize = o.defaultSize;
  }
  const tmp = join(o.out, 'pipeline.json.tmp');
  writeFileSync(tmp, `${JSON.stringify(file, null, 2)}\n`);
  renameSync(tmp, join(o.out, 'pipeline.json'));
  return file;
}

/** A transformer in F16 with its training metadata, `extra`, its source and last validation figures. */
async function saveStage(
  path: string,
  loaded: Awaited<ReturnType<typeof loadTransformer>>,
  kind: string,
  source: string,
  extra: Record<string, string>,
): Promise<void> {
  const validation = lastValidation(source);
  await saveTransformer(path, loaded.params, loaded.config, {
    dtype: 'F16',
    kind,
    extra: { ...stripFormat(loaded.metadata), ...extra, source, ...(validation ? { validation } : {}) },
  });
}

/** A tokenizer in F16 with its training metadata, `extra` and its source. */
async function saveTokenizerF16(
  path: string,
  loaded: Awaited<ReturnType<typeof loadTokenizer>>,
  source: string,
  extra: Record<string, string>,
): Promise<void> {
  await saveTokenizer(path, loaded.params, loaded.config, {
    dtype: 'F16',
    extra: { ...stripFormat(loaded.metadata), ...extra, source },
  });
}

/** Metadata without the keys the writer sets itself. */
function stripFormat(m: Record<string, string>): Record<string, string> {
  const { format: _f, format_version: _v, config: _c, kind: _k, ...rest } = m;
  return rest;
}
