// The models a server holds: loaded once at start, shared by every job (the queue runs one at a time);
// in queue mode, the models workers announce (described, not loaded).
import { basename, resolve } from 'node:path';
import { AMUSED_DEFAULTS, AmusedPipeline, isAmusedFolder } from '../amused/pipeline.js';
import { MusePipeline } from '../pipeline/pipeline.js';
import { initBackend } from '../tensor/backend.js';
import { HttpError } from './errors.js';

export type ServedPipeline = MusePipeline | AmusedPipeline;

export type Verb = 'generate' | 'inpaint' | 'outpaint' | 'edit' | 'upscale' | 'img2img';
export const VERBS: Verb[] = ['generate', 'inpaint', 'outpaint', 'edit', 'upscale', 'img2img'];

export interface ServedModel {
  name: string;
  /** Loaded in this process; absent for a model a queue worker serves (then `info` describes it). */
  pipeline?: ServedPipeline;
  /** What a worker announced about a model it has loaded (queue mode). */
  info?: ModelInfo;
}

export interface ModelInfo {
  name: string;
  kind: 'muse' | 'amused';
  sizes: number[];
  defaultSize: number;
  defaults: { steps: number; guidance: number };
  verbs: Verb[];
}

export function modelInfo(m: ServedModel): ModelInfo {
  const p = m.pipeline;
  if (!p) {
    if (!m.info) throw new Error(`model ${m.name}: neither loaded nor described`);
    return m.info;
  }
  if (p instanceof AmusedPipeline)
    return {
      name: m.name,
      kind: 'amused',
      sizes: p.sizes,
      defaultSize: p.imageSize,
      defaults: { steps: AMUSED_DEFAULTS.steps, guidance: AMUSED_DEFAULTS.guidance },
      verbs: ['generate', 'inpaint', 'outpaint', 'edit', 'img2img'],
    };
  return {
    name: m.name,
    kind: 'muse',
    sizes: p.sizes,
    defaultSize: p.defaultSize,
    defaults: { steps: p.defaults.steps, guidance: p.defaults.guidance },
    verbs: ['generate', 'inpaint', 'outpaint', 'edit', ...(p.superres ? (['upscale'] as Verb[]) : [])],
  };
}

export class ModelSet {
  /** `source` lists the models now (fixed in-process; those announced by live workers in queue mode). */
  constructor(private readonly source: () => ServedModel[]) {}

  get models(): ServedModel[] {
    return this.source();
  }

  /** The named model, or the first one when no name is given; 400 for a name not served. */
  get(name: unknown): ServedModel {
    if (!this.models.length)
      throw new HttpError(503, 'no model is served yet (no worker has announced one); try again later');
    if (name === undefined || name === null || name === '') return this.models[0];
    const found = typeof name === 'string' ? this.models.find((m) => m.name === name) : undefined;
    if (!found)
      throw new HttpError(
        400,
        `unknown model ${JSON.stringify(name)}; this server has ${this.models.map((m) => m.name).join(', ')}`,
      );
    return found;
  }

  info(): ModelInfo[] {
    return this.models.map(modelInfo);
  }
}

/**
 * Loads model folders (muse-ts pipeline.json or diffusers aMUSEd), named by their folder names or by
 * `names[i]` where given (a Hub snapshot folder is a commit hash: serve names it after its repo).
 */
export async function loadModels(folders: string[], names: (string | undefined)[] = []): Promise<ServedModel[]> {
  await initBackend();
  const out: ServedModel[] = [];
  for (const [index, folder] of folders.entries()) {
    const pipeline = isAmusedFolder(folder) ? await AmusedPipeline.load(folder) : await MusePipeline.load(folder);
    const base = names[index] ?? basename(resolve(folder));
    let name = base;
    for (let i = 2; out.some((m) => m.name === name); i++) name = `${base}-${i}`;
    out.push({ name, pipeline });
  }
  return out;
}
