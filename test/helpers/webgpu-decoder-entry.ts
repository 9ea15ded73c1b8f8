// The browser bundle of test/browser-webgpu.test.ts: tfjs (for switching backends in the page) and the
// tokenizer's parts, built with scripts/build-web.mjs --entry, so the same browser rules apply.
export * as tf from '@tensorflow/tfjs-core';
export { initBackend } from '../../src/tensor/backend.js';
export { groupNorm } from '../../src/tensor/ops/group-norm.js';
export { silu } from '../../src/tensor/ops/silu.js';
export { Rng } from '../../src/tensor/random.js';
export { tokenizerPreset } from '../../src/tokenizer/config.js';
export { decodeLatents, initTokenizer } from '../../src/tokenizer/model.js';
export { codesToLatents } from '../../src/tokenizer/quantizer.js';
export { VqTokenizer } from '../../src/tokenizer/tokenizer.js';
