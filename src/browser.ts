// The browser build's public API (npm run build:web → dist/web/muse.js, ESM): the generation core
// with files read through fetch and images drawn with canvas. Nothing here reaches a Node built-in:
// scripts/build-web.mjs fails the build if anything does.
export { maskFreeEdit } from './decoding/edit.js';
export { type Extension, extendCanvas } from './decoding/outpaint.js';
export { decodeImageInBrowser as decodeImage, fromImageData, toImageData } from './image/browser-image.js';
export { encodePngPure as encodePng, encodePngStored } from './image/png.js';
export type { PixelMask, RgbImage } from './image/rgb.js';
export { maskFromImage, resizeMask, tokenMask } from './pipeline/masks.js';
export { type DecodingOptions, type EditOptions, MusePipeline, type PipelineResult } from './pipeline/pipeline.js';
export { DECODING_DEFAULTS, type PipelineFile, readPipelineFrom } from './pipeline/pipeline-spec.js';
export {
  type BackendInfo,
  type BackendName,
  type BackendOptions,
  backendInfo,
  initBackend,
  shutdownBackend,
} from './tensor/backend.js';
export { setWasmLocation } from './tensor/platform.browser.js';
export { Rng } from './tensor/random.js';
export { decodeSafetensors } from './tensor/safetensors.js';
export { UseLiteEncoder } from './text/use-lite.js';
export { MuseError } from './util/errors.js';
export { checkRelativeName, FetchSource, type FetchSourceOptions, type ModelSource } from './util/model-source.js';
