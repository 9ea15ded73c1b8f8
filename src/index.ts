// The public API of muse-ts.
export {
  type BackendInfo,
  type BackendName,
  type BackendOptions,
  initBackend,
  shutdownBackend,
} from './tensor/backend.js';
export { gelu } from './tensor/ops/gelu.js';
export { layerNorm } from './tensor/ops/layer-norm.js';
export { Rng, type RngState } from './tensor/random.js';
export {
  configFromMetadata,
  decodeSafetensors,
  encodeSafetensors,
  loadSafetensors,
  metadataWithConfig,
  type NamedTensor,
  SafetensorsError,
  saveSafetensors,
} from './tensor/safetensors.js';
export { AdamW, type AdamWOptions, type AdamWState, clipByGlobalNorm } from './train/adamw.js';
export { MuseError } from './util/errors.js';
