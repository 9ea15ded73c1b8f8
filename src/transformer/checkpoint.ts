// Transformer files: weights + config (and the text encoder's identity) in one safetensors file.

import { checkedShapes, paramsFromTensors, paramsToTensors } from '../tensor/params.js';
import { configFromMetadata, loadSafetensors, metadataWithConfig, saveSafetensors } from '../tensor/safetensors.js';
import { MuseError } from '../util/errors.js';
import type { SourceFile } from '../util/model-source.js';
import { type TransformerConfig, validateTransformerConfig } from './config.js';
import { type TransformerParams, transformerLayout } from './model.js';

export async function saveTransformer(
  path: string,
  p: TransformerParams,
  config: TransformerConfig,
  options: { dtype?: 'F32' | 'F16'; kind?: string; extra?: Record<string, string> } = {},
): Promise<void> {
  await saveSafetensors(path, paramsToTensors(p), {
    dtype: options.dtype ?? 'F32',
    metadata: metadataWithConfig(config, { kind: options.kind ?? 'muse-base', ...options.extra }),
  });
}

/**
 * Tensors added to the architecture after some checkpoints were written, all zero at initialisation,
 * so an older file continues training (`--init`) exactly as if they had been there from the start.
 */
export const ZERO_INIT_ADDITIONS = /^lowres\.to_input\./;

export async function loadTransformer(
  file: string | SourceFile,
  options: { allowZeroInitAdditions?: boolean } = {},
): Promise<{ config: TransformerConfig; params: TransformerParams; metadata: Record<string, string> }> {
  const { tensors, metadata } = await loadSafetensors(file);
  const path = typeof file === 'string' ? file : file.source.where(file.name);
  if (metadata.kind !== undefined && !metadata.kind.startsWith('muse-base') && metadata.kind !== 'muse-superres') {
    throw new MuseError(`${path}: a ${metadata.kind} file, not a transformer`);
  }
  const config = validateTransformerConfig(configFromMetadata<TransformerConfig>(metadata, path));
  // Shapes checked against the file's header before any model memory is allocated.
  const shapes = checkedShapes(
    path,
    (visit) => transformerLayout(config, visit),
    tensors,
    options.allowZeroInitAdditions ? ZERO_INIT_ADDITIONS : undefined,
  );
  if (options.allowZeroInitAdditions) {
    for (const [name, shape] of Object.entries(shapes)) {
      if (!tensors[name] && ZERO_INIT_ADDITIONS.test(name))
        tensors[name] = { dtype: 'F32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
    }
  }
  const params = paramsFromTensors(path, tensors, shapes);
  return { config, params, metadata };
}
