// Tokenizer files: weights + config in one safetensors file (F32 while training, F16 to ship),
// loaded back with every tensor checked against the config.
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../tensor/random.js';
import {
  configFromMetadata,
  loadSafetensors,
  metadataWithConfig,
  type NamedTensor,
  saveSafetensors,
} from '../tensor/safetensors.js';
import { MuseError } from '../util/errors.js';
import { type TokenizerConfig, validateTokenizerConfig } from './config.js';
import { initTokenizer, type Params } from './model.js';

export function paramsToTensors(p: Params): Record<string, NamedTensor> {
  return Object.fromEntries(
    Object.entries(p).map(([k, v]) => [k, { shape: v.shape, data: v.dataSync() as Float32Array }]),
  );
}

export async function saveTokenizer(
  path: string,
  p: Params,
  config: TokenizerConfig,
  options: { dtype?: 'F32' | 'F16'; extra?: Record<string, string> } = {},
): Promise<void> {
  await saveSafetensors(path, paramsToTensors(p), {
    dtype: options.dtype ?? 'F32',
    metadata: metadataWithConfig(config, { kind: 'muse-tokenizer', ...options.extra }),
  });
}

export interface LoadedTokenizer {
  config: TokenizerConfig;
  params: Params;
  metadata: Record<string, string>;
}

/** Loads weights into variables; every expected tensor must be present with its shape. */
export async function loadTokenizer(path: string): Promise<LoadedTokenizer> {
  const { tensors, metadata } = await loadSafetensors(path);
  if (metadata.kind !== undefined && metadata.kind !== 'muse-tokenizer') {
    throw new MuseError(`${path}: a ${metadata.kind} file, not a tokenizer`);
  }
  const config = validateTokenizerConfig(configFromMetadata<TokenizerConfig>(metadata, path));
  // The expected names and shapes come from a fresh init of the same config.
  const expected = tf.tidy(() => {
    const fresh = initTokenizer(config, new Rng(0));
    const shapes = Object.fromEntries(Object.entries(fresh).map(([k, v]) => [k, v.shape]));
    tf.dispose(Object.values(fresh));
    return shapes;
  });
  const params: Params = {};
  for (const [name, shape] of Object.entries(expected)) {
    const t = tensors[name];
    if (!t) throw new MuseError(`${path}: tensor "${name}" is missing`);
    if (t.shape.join() !== shape.join())
      throw new MuseError(`${path}: tensor "${name}" has shape [${t.shape}], expected [${shape}]`);
    params[name] = tf.variable(tf.tensor(t.data, t.shape, 'float32'), true);
  }
  return { config, params, metadata };
}
