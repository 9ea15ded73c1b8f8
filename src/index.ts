// The public API of muse-ts.

export { ClipTextModel } from './amused/clip-text.js';
export { ClipTokenizer } from './amused/clip-tokenizer.js';
export {
  AMUSED_DEFAULTS,
  type AmusedOptions,
  AmusedPipeline,
  type AmusedResult,
  isAmusedFolder,
  type MicroConditioning,
} from './amused/pipeline.js';
export { AmusedScheduler, type SchedulerRandom } from './amused/scheduler.js';
export { UVit } from './amused/uvit.js';
export { VQModel } from './amused/vqgan.js';
export {
  MASK_FREE_EDIT_DEFAULTS,
  type MaskFreeEditOptions,
  /** @deprecated Renamed MaskFreeEditOptions. */
  type MaskFreeEditOptions as TokenEditOptions,
  maskFreeEdit,
} from './decoding/edit.js';
export { type GuidanceSchedule, guidanceScale, guideLogits } from './decoding/guidance.js';
export { type GuidanceOptions, guidedTransformer, type PromptBatch } from './decoding/guided-transformer.js';
export { type Extension, extendCanvas, outpaintCanvas, outpaintWindows } from './decoding/outpaint.js';
export {
  type DecodeProblem,
  type LogitsFn,
  /** @deprecated Renamed ParallelDecodeOptions. */
  type ParallelDecodeOptions as DecodeOptions,
  type ParallelDecodeOptions,
  parallelDecode,
} from './decoding/parallel-decode.js';
export { type SamplingOptions, sampleToken } from './decoding/sampling.js';
export { confidenceNoise, decodingSteps, maskedCounts } from './decoding/schedule.js';
export { decodeImage, encodePng, type PixelMask, type RgbImage, resizeCenterCrop } from './image/image.js';
export { maskFromImage, resizeMask, tokenMask } from './pipeline/masks.js';
export type { GenerationOptions, StepCallback } from './pipeline/options.js';
export {
  type DecodingOptions,
  type EditOptions,
  type MuseOptions,
  MusePipeline,
  type PipelineResult,
} from './pipeline/pipeline.js';
export {
  DECODING_DEFAULTS,
  type DecodingDefaults,
  type EditDefaults,
  type PipelineFile,
} from './pipeline/pipeline-file.js';
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
export type {
  /** @deprecated Renamed TextEncoderModel (it shadowed the global TextEncoder). */
  TextEncoderModel as TextEncoder,
  TextEncoderModel,
} from './text/encoder.js';
export { UseLiteEncoder } from './text/use-lite.js';
export { type TokenizerConfig, tokenizerPreset } from './tokenizer/config.js';
export { VqTokenizer } from './tokenizer/tokenizer.js';
export { AdamW, type AdamWOptions, type AdamWState, clipByGlobalNorm } from './train/adamw.js';
export { type TransformerConfig, transformerConfig } from './transformer/config.js';
export { MuseError } from './util/errors.js';
