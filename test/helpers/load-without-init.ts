// Run as its own process by test/load-backend.test.ts: loads a model folder without calling
// initBackend and prints which backend that started (JSON on the last line).
import * as tf from '@tensorflow/tfjs-core';
import { MusePipeline } from '../../src/pipeline/pipeline.js';
import { backendInfo, shutdownBackend } from '../../src/tensor/backend.js';

const before = (tf.engine() as unknown as { backendInstance?: unknown }).backendInstance ?? null;
const muse = await MusePipeline.load(process.argv[2] ?? 'models/shapes');
console.log(JSON.stringify({ before, backend: tf.getBackend(), info: backendInfo().backend }));
muse.dispose();
shutdownBackend();
