// One component folder of a diffusers-layout pipeline (`text_encoder/`, `transformer/`, `vqvae/`, ...):
// its config.json and its weights, read as untrusted input. Weight files may be F32, F16 or BF16
// (decoded to float32 here), under the plain name or the `variant` name diffusers writes
// (`diffusion_pytorch_model.fp16.safetensors`, `model.fp16.safetensors`).
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadSafetensors, MAX_FILE_BYTES, type NamedTensor } from '../tensor/safetensors.js';
import { MuseError } from '../util/errors.js';

/** The largest config.json read (real ones are a few KB). */
const MAX_CONFIG_BYTES = 1_000_000;

export type ComponentConfig = Record<string, unknown>;

export interface Component {
  folder: string;
  config: ComponentConfig;
  /** Tensors by state_dict name (a null-prototype map). */
  tensors: Record<string, NamedTensor>;
  /** The weight file read. */
  file: string;
}

function isRegularFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * A small JSON object file of a diffusers folder (config.json, model_index.json, scheduler_config.json)
 * as a null-prototype object; one clear line when missing, too large, malformed or not an object.
 */
export function readJsonObject(file: string, missing: string): ComponentConfig {
  if (!isRegularFile(file)) throw new MuseError(missing);
  if (statSync(file).size > MAX_CONFIG_BYTES) throw new MuseError(`${file}: larger than ${MAX_CONFIG_BYTES} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new MuseError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new MuseError(`${file}: not a JSON object`);
  return Object.assign(Object.create(null), value) as ComponentConfig;
}

/** config.json of a component folder, as an object; one clear line when missing or malformed. */
export function readComponentConfig(folder: string, expectedClass?: string | string[]): ComponentConfig {
  const file = join(folder, 'config.json');
  const config = readJsonObject(file, `${folder}: no config.json (is this a diffusers component folder?)`);
  const cls = config._class_name;
  const wanted = expectedClass === undefined ? [] : Array.isArray(expectedClass) ? expectedClass : [expectedClass];
  if (wanted.length && !wanted.includes(cls as string)) {
    throw new MuseError(`${file}: _class_name ${JSON.stringify(cls)} is not ${wanted.join(' or ')}`);
  }
  return config;
}

/**
 * The weight file of a component: `<stem>.safetensors`, else `<stem>.<variant>.safetensors`; the
 * variant first when the plain file is larger than one file muse-ts reads (the full aMUSEd U-ViT in
 * float32 is ~2.4 GB, its fp16 variant half that).
 */
export function componentWeightFile(folder: string, stem: string, variant = 'fp16'): string {
  const plain = join(folder, `${stem}.safetensors`);
  const half = join(folder, `${stem}.${variant}.safetensors`);
  const order = isRegularFile(plain) && statSync(plain).size > MAX_FILE_BYTES ? [half, plain] : [plain, half];
  for (const path of order) if (isRegularFile(path)) return path;
  throw new MuseError(`${folder}: no ${stem}.safetensors (nor ${stem}.${variant}.safetensors)`);
}

/** Reads a component's config and weights. `stem`: 'model' (transformers) or 'diffusion_pytorch_model' (diffusers). */
export async function loadComponent(
  folder: string,
  stem: 'model' | 'diffusion_pytorch_model',
  expectedClass?: string | string[],
): Promise<Component> {
  const config = readComponentConfig(folder, expectedClass);
  const file = componentWeightFile(folder, stem);
  const { tensors } = await loadSafetensors(file);
  return { folder, config, tensors, file };
}

/** A config field that must be a number (integer when `integer`), with the file named in the error. */
export function configNumber(config: ComponentConfig, key: string, where: string, integer = true): number {
  const v = config[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)))
    throw new MuseError(
      `${where}: config "${key}" must be ${integer ? 'an integer' : 'a number'}, got ${JSON.stringify(v)}`,
    );
  return v;
}

/** A tensor that must exist with exactly this shape (checked before any model is built from it). */
export function requireTensor(c: Component, name: string, shape: number[]): NamedTensor {
  const t = c.tensors[name];
  if (!t) throw new MuseError(`${c.file}: tensor "${name}" is missing`);
  if (t.shape.join() !== shape.join())
    throw new MuseError(`${c.file}: tensor "${name}" has shape [${t.shape}], the config needs [${shape}]`);
  return t;
}
