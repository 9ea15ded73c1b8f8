// The U-ViT's weight residency: streamed weights (host copies in the stored precision, uploaded per
// layer, as the full-size models use) give exactly the logits of resident float32 tensors, for F32
// and F16 weight files, and keep F16 weights at 2 bytes each.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { UVit } from '../src/amused/uvit.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { canMatMulHalfWeights, halfWeightProducts } from '../src/tensor/ops/half-weight-matmul.js';
import { loadSafetensors, saveSafetensors } from '../src/tensor/safetensors.js';

const FOLDER = join(import.meta.dirname, 'fixtures', 'amused', 'tiny-amused-256', 'transformer');
const dir = mkdtempSync(join(tmpdir(), 'amused-weights-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
  shutdownBackend();
});

function logits(m: UVit): Float32Array {
  const c = m.config;
  const ids = Int32Array.from({ length: 2 * 16 * 16 }, (_, i) => (i * 7) % c.vocabSize);
  return tf.tidy(
    () =>
      m
        .forward({
          inputIds: tf.tensor3d(ids, [2, 16, 16], 'int32'),
          encoderHiddenStates: tf.tensor3d(
            Float32Array.from({ length: 2 * 5 * c.encoderHiddenSize }, (_, i) => Math.sin(i)),
            [2, 5, c.encoderHiddenSize],
          ),
          pooledTextEmb: tf.tensor2d(
            Float32Array.from({ length: 2 * c.condEmbedDim }, (_, i) => Math.cos(i)),
            [2, c.condEmbedDim],
          ),
          microConds: tf.tensor2d([256, 256, 0, 0, 6, 512, 512, 0, 0, 5], [2, 5]),
        })
        .dataSync() as Float32Array,
  );
}

test('streamed weights give the logits of resident ones (F32 file), bit for bit', async () => {
  await initBackend();
  const resident = await UVit.load(FOLDER, { residency: 'resident' });
  const streamed = await UVit.load(FOLDER, { residency: 'streamed' });
  assert.equal(resident.residency, 'resident', 'the tiny model is resident by default size');
  assert.equal((await UVit.load(FOLDER)).residency, 'resident');
  const before = tf.memory().numTensors;
  const b = logits(streamed);
  assert.equal(tf.memory().numTensors, before, 'no uploaded weight outlives the forward pass');
  assert.deepEqual(b, logits(resident));
  resident.dispose();
  streamed.dispose();
});

test('an F16 weight file streams as 16-bit host copies with the logits of resident float32', async () => {
  const f16 = join(dir, 'transformer');
  cpSync(FOLDER, f16, { recursive: true });
  rmSync(join(f16, 'diffusion_pytorch_model.safetensors'));
  const { tensors } = await loadSafetensors(join(FOLDER, 'diffusion_pytorch_model.safetensors'));
  const half = Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { shape: t.shape, data: t.data }]));
  await saveSafetensors(join(f16, 'diffusion_pytorch_model.fp16.safetensors'), half, { dtype: 'F16' });
  const resident = await UVit.load(f16, { residency: 'resident' });
  const streamed = await UVit.load(f16, { residency: 'streamed' });
  const params = Object.values(tensors).reduce((n, t) => n + t.data.length, 0);
  const bytes = (streamed as unknown as { weights: { bytes: number } }).weights.bytes;
  assert.equal(bytes, 2 * params, 'two bytes per weight');
  const products = halfWeightProducts();
  assert.deepEqual(logits(streamed), logits(resident));
  // On the native path the products read the 16-bit host copies in place (nothing widened per pass).
  if (canMatMulHalfWeights()) assert.ok(halfWeightProducts() - products >= 20, 'products read the host copies');
  resident.dispose();
  streamed.dispose();
});

test('kept uploads (keepWeights) stay between passes, change no logit, and go with releaseWeights', async () => {
  const streamed = await UVit.load(FOLDER, { residency: 'streamed' });
  const resident = await UVit.load(FOLDER, { residency: 'resident' });
  const want = logits(resident);
  const before = tf.memory().numTensors;
  streamed.keepWeights(20_000); // bytes: the first few weights only
  assert.deepEqual(logits(streamed), want);
  const kept = tf.memory().numTensors - before;
  assert.ok(kept > 0, 'some uploads stay');
  assert.deepEqual(logits(streamed), want, 'the second pass uses them');
  assert.equal(tf.memory().numTensors - before, kept, 'and uploads no more to keep');
  streamed.releaseWeights();
  assert.equal(tf.memory().numTensors, before);
  resident.keepWeights(1e9); // resident weights ignore it
  assert.equal(tf.memory().numTensors, before);
  resident.dispose();
  streamed.dispose();
});
