// Tokenizer files: weights + config in one safetensors file (F32 while training, F16 to ship),
// loaded back with every tensor checked against the config.
import { checkedShapes, paramsFromTensors, paramsToTensors } from '../tensor/params.js';
import { configFromMetadata, loadSafetensors, metadataWithConfig, saveSafetensors } from '../tensor/safetensors.js';
import { MuseError } from '../util/errors.js';
import type { SourceFile } from '../util/model-source.js';
import { type TokenizerConfig, validateTokenizerConfig } from './config.js';
import { type TokenizerParams, tokenizerLayout } from './model.js';

export async function saveTokenizer(
  path: string,
  p: TokenizerParams,
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
  params: TokenizerParams;
  metadata: Record<string, string>;
}

/** Loads weights into variables; every expected tensor must be present with its shape. */
export async function loadTokenizer(file: string | SourceFile): Promise<LoadedTokenizer> {
  const { tensors, metadata } = await loadSafetensors(file);
  const path = typeof file === 'string' ? file : file.source.where(file.name);
  if (metadata.kind !== undefined && metadata.kind !== 'muse-tokenizer') {
    throw new MuseError(`${path}: a ${metadata.kind} file, not a tokenizer`);
  }
  const config = validateTokenizerConfig(configFromMetadata<TokenizerConfig>(metadata, path));
  // Shapes checked against the file's header before any model memory is allocated.
  const shapes = checkedShapes(path, (visit) => tokenizerLayout(config, visit), tensors);
  const params = paramsFromTensors(path, tensors, shapes);
  return { config, params, metadata };
}
