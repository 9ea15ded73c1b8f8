// The whole aMUSEd pipeline against diffusers' AmusedPipeline on the tiny reference folder: with the
// reference's random draws injected, every step commits the same tokens and the image is the same.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { AmusedPipeline, isAmusedFolder } from '../src/amused/pipeline.js';
import { RecordedSchedulerRandom } from '../src/amused/scheduler.js';
import { shutdownBackend } from '../src/tensor/backend.js';
import { loadSafetensors } from '../src/tensor/safetensors.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'amused');
const FOLDER = join(FIXTURES, 'tiny-amused-256');
const PROMPT = 'a red apple on a wooden table';

let pipe: AmusedPipeline | undefined;
async function pipeline(): Promise<AmusedPipeline> {
  pipe ??= await AmusedPipeline.load(FOLDER);
  return pipe;
}
after(() => {
  pipe?.dispose();
  shutdownBackend();
});

const expected = loadSafetensors(join(FIXTURES, 'expected', 'pipeline.safetensors')).then((f) => f.tensors);
const step = (i: number) => `step${String(i).padStart(2, '0')}`;

test('the full 12-step guided call (guidance_scale 10 = muse-ts 9) commits the reference tokens at every step and gives its image', async () => {
  const p = await pipeline();
  assert.ok(isAmusedFolder(FOLDER));
  const e = await expected;
  const sampled = Array.from({ length: 12 }, (_, i) => e[`${step(i)}.sampled_ids`].data as Int32Array);
  const noise = Array.from({ length: 11 }, (_, i) => e[`${step(i)}.gumbel_noise`].data as Float32Array);
  const seen: Int32Array[] = [];
  const r = await p.generate(PROMPT, {
    guidance: 9,
    steps: 12,
    random: new RecordedSchedulerRandom(sampled, noise),
    onStep: (_step, _steps, _images, tokens) => {
      seen.push(Int32Array.from(tokens));
    },
  });
  assert.equal(seen.length, 12);
  for (let i = 0; i < 12; i++) {
    const want = e[`${step(i)}.latents_out`].data;
    const got = seen[i];
    let differ = 0;
    for (let j = 0; j < want.length; j++) if (got[j] !== want[j]) differ++;
    assert.equal(differ, 0, `step ${i}: ${differ} of ${want.length} tokens differ from the reference`);
  }
  const image = e.images_np; // [1, 256, 256, 3] in [0, 1]
  assert.deepEqual([r.images[0].height, r.images[0].width], [256, 256]);
  let worst = 0;
  for (let j = 0; j < image.data.length; j++)
    worst = Math.max(worst, Math.abs(r.images[0].data[j] - Math.round(255 * image.data[j])));
  assert.ok(worst <= 1, `final image differs by ${worst} levels`);
});

test('guided logits of a step equal uncond + 10·(cond − uncond) from the reference (one pass checked)', async () => {
  const p = await pipeline();
  const e = await expected;
  // Step 0 on the all-masked grid: our guided logits, as the scheduler receives them.
  const logits: Float32Array[] = [];
  const sampled = [e['step00.sampled_ids'].data as Int32Array];
  const noise = [e['step00.gumbel_noise'].data as Float32Array];
  const random = new RecordedSchedulerRandom(sampled, noise);
  const spy = {
    multinomial(probs: Float32Array, rows: number) {
      logits.push(Float32Array.from(probs));
      return random.multinomial(probs, rows);
    },
    gumbel: (n: number) => random.gumbel(n),
  };
  await assert.rejects(p.generate(PROMPT, { guidance: 9, steps: 12, random: spy }), /multinomial call 2/);
  // The scheduler turns logits into probabilities: compare softmax of the reference's guided logits.
  const ref = e['step00.guided_logits']; // [1, 64, 16, 16]
  const [_, k, h, w] = ref.shape;
  let worst = 0;
  for (let pos = 0; pos < h * w; pos++) {
    let max = -Infinity;
    for (let c = 0; c < k; c++) max = Math.max(max, ref.data[c * h * w + pos]);
    let sum = 0;
    for (let c = 0; c < k; c++) sum += Math.exp(ref.data[c * h * w + pos] - max);
    for (let c = 0; c < k; c++) {
      const want = Math.exp(ref.data[c * h * w + pos] - max) / sum;
      worst = Math.max(worst, Math.abs(logits[0][pos * k + c] - want));
    }
  }
  assert.ok(worst < 1e-5, `step 0 probabilities differ by ${worst}`);
});

test('greedy one step: --steps 1 --temperature 0 --guidance 0 is the VQ decoding of the argmax of one all-masked pass', async () => {
  const p = await pipeline();
  const r = await p.generate('a photo of a cat', { steps: 1, temperature: 0, guidance: 0, seed: 0 });
  const [h, w] = p.grid;
  // Independent: one forward pass by hand, argmax over the codebook, VQ decode.
  const ids = p.tokenizer.encode('a photo of a cat').ids;
  const text = p.textEncoder.forward([ids]);
  const logits = p.transformer.forward({
    inputIds: tf.fill([1, h, w], p.maskId, 'int32'),
    encoderHiddenStates: text.hiddenStates[text.hiddenStates.length - 2],
    pooledTextEmb: text.textEmbeds,
    microConds: tf.tensor2d([[256, 256, 0, 0, 6]]),
  });
  const argmax = tf.argMax(logits, -1).dataSync() as Int32Array;
  assert.deepEqual(Array.from(r.tokens), Array.from(argmax));
  const image = (await p.decodeTokens(Int32Array.from(argmax)))[0];
  assert.deepEqual(r.images[0].data, image.data);
});

test('-n images: image i of a batch equals a single run with seed + i; negative prompts change the image', async () => {
  const p = await pipeline();
  const both = await p.generate('a cat', { n: 2, seed: 5, steps: 4 });
  const second = await p.generate('a cat', { seed: 6, steps: 4 });
  const n = p.grid[0] * p.grid[1];
  assert.deepEqual(Array.from(both.tokens.subarray(n)), Array.from(second.tokens));
  assert.notDeepEqual(Array.from(both.tokens.subarray(0, n)), Array.from(second.tokens));
  const negative = await p.generate('a cat', { seed: 6, steps: 4, negative: 'a dog' });
  assert.notDeepEqual(Array.from(negative.tokens), Array.from(second.tokens));
});

test('inpainting keeps every token outside the mask; img2img at strength 1 is generation', async () => {
  const p = await pipeline();
  const size = p.imageSize;
  const base = (await p.generate('a red apple', { seed: 1, steps: 4 })).images[0];
  const mask = { width: size, height: size, data: new Uint8Array(size * size) };
  for (let y = 64; y < 192; y++) for (let x = 64; x < 192; x++) mask.data[y * size + x] = 1;
  const original = await p.encodeImage(base);
  const r = await p.inpaint(base, mask, 'a green pear', { seed: 2, steps: 4 });
  const [h, w] = p.grid;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const inside = y >= 4 && y < 12 && x >= 4 && x < 12;
      if (!inside)
        assert.equal(r.tokens[y * w + x], original[y * w + x], `token (${y}, ${x}) outside the mask changed`);
    }
  const full = await p.img2img(base, 'a red apple', { seed: 3, steps: 4, strength: 1 });
  assert.equal(full.tokens.length, h * w);
  await assert.rejects(p.img2img(base, 'x', { strength: 0.01, steps: 4 }), /runs no step/);
});

test('top-k 1 equals greedy; previews grey out masked tokens; sizes and schedules are checked', async () => {
  const p = await pipeline();
  const greedy = await p.generate('a cat', { steps: 1, temperature: 0, guidance: 0 });
  const top1 = await p.generate('a cat', { steps: 1, topK: 1, guidance: 0, seed: 9 });
  assert.deepEqual(Array.from(top1.tokens), Array.from(greedy.tokens));
  let grey = 0;
  await p.generate('a cat', {
    steps: 2,
    onStep: async (step, steps, images) => {
      if (step < steps) {
        const img = (await images())[0];
        for (let i = 0; i < img.data.length; i += 3)
          if (img.data[i] === 128 && img.data[i + 1] === 128 && img.data[i + 2] === 128) grey++;
      }
    },
  });
  assert.ok(grey > 0, 'masked tokens show grey in the preview');
  await assert.rejects(p.generate('x', { size: 64 }), /makes 256 px images/);
  await assert.rejects(p.generate('x', { schedule: 'square' }), /cosine or linear/);
  const ramp = await p.generate('a cat', { steps: 3, guidanceSchedule: 'linear', seed: 1 });
  const constant = await p.generate('a cat', { steps: 3, seed: 1 });
  assert.notDeepEqual(Array.from(ramp.tokens), Array.from(constant.tokens));
});

test('bad folders: no model_index.json, a missing component, an unknown pipeline class — one line each', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'amused-bad-'));
  try {
    await assert.rejects(AmusedPipeline.load(dir), /has no model_index.json/);
    cpSync(FOLDER, join(dir, 'm'), { recursive: true });
    rmSync(join(dir, 'm', 'vqvae'), { recursive: true });
    await assert.rejects(AmusedPipeline.load(join(dir, 'm')), /the vqvae\/ folder is missing/);
    writeFileSync(join(dir, 'm', 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionPipeline' }));
    await assert.rejects(AmusedPipeline.load(join(dir, 'm')), /"StableDiffusionPipeline" is not an aMUSEd pipeline/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
