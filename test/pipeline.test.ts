// The pipeline end to end with tiny random models in a model folder (USE-lite as the text encoder):
// generation is reproducible, guidance is the formula over two real forward passes, inpainting never
// touches what lies outside the mask, outpainting grows the canvas around the original, editing moves
// tokens gradually, and bad input gets one clear error. Also the `muse generate|inpaint|outpaint|edit`
// commands on that folder.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { guidedTransformer } from '../src/decoding/guided-transformer.js';
import { decodeImage, encodePng, type PixelMask, type RgbImage } from '../src/image/image.js';
import { assemblePipeline } from '../src/pipeline/assemble.js';
import { distanceInsideMask, featherComposite, maskFromImage, tokenMask } from '../src/pipeline/masks.js';
import { MusePipeline } from '../src/pipeline/pipeline.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { Rng } from '../src/tensor/random.js';
import { loadSafetensors } from '../src/tensor/safetensors.js';
import { USE_LITE_ID } from '../src/text/use-lite.js';
import { saveTokenizer } from '../src/tokenizer/checkpoint.js';
import { tokenizerPreset } from '../src/tokenizer/config.js';
import { initTokenizer } from '../src/tokenizer/model.js';
import { saveTransformer } from '../src/transformer/checkpoint.js';
import { maskTokenId, transformerConfig } from '../src/transformer/config.js';
import { forward, initTransformer } from '../src/transformer/model.js';
import { MuseError } from '../src/util/errors.js';
import { writeTinyPipeline } from './helpers/tiny-pipeline.js';

const dir = mkdtempSync(join(tmpdir(), 'muse-pipeline-'));
const folder = join(dir, 'model');
const SIZE = 16; // f = 4 → a 4×4 grid
const srFolder = join(dir, 'model-sr');
let muse: MusePipeline;
let museSr: MusePipeline;

function pixels(seed: number): RgbImage {
  const rng = new Rng(seed);
  return { width: SIZE, height: SIZE, data: Uint8Array.from({ length: SIZE * SIZE * 3 }, () => rng.int(256)) };
}

before(async () => {
  await initBackend();
  await writeTinyPipeline(folder, SIZE);
  const tc = tokenizerPreset('tiny');
  muse = await MusePipeline.load(folder);
  // The same folder plus a super-res stage: 16 px (4×4 tokens) → 32 px (8×8 tokens).
  mkdirSync(srFolder);
  for (const f of ['tokenizer.safetensors', 'base.safetensors']) copyFileSync(join(folder, f), join(srFolder, f));
  const sc = transformerConfig('superres-tiny', {
    codebookSize: tc.codebookSize,
    grid: [8, 8],
    lowres: { codebookSize: tc.codebookSize, grid: [4, 4] },
  });
  const sp = initTransformer(sc, new Rng(3));
  for (const v of Object.values(sp)) if (v.rank === 2) v.assign(tf.mul(v, 20));
  await saveTransformer(join(srFolder, 'superres.safetensors'), sp, sc, { kind: 'muse-superres' });
  const file = JSON.parse(readFileSync(join(folder, 'pipeline.json'), 'utf8'));
  writeFileSync(
    join(srFolder, 'pipeline.json'),
    JSON.stringify({ ...file, superres: 'superres.safetensors', superresSize: 2 * SIZE }),
  );
  museSr = await MusePipeline.load(srFolder);
});

after(() => {
  muse?.dispose();
  museSr?.dispose();
  shutdownBackend();
});

test('generation: same seed → same images; another seed or prompt → different; n images per prompt', async () => {
  const a = await muse.generate('a red apple', { n: 3, seed: 4 });
  const b = await muse.generate('a red apple', { n: 3, seed: 4 });
  const c = await muse.generate('a red apple', { n: 3, seed: 5 });
  assert.equal(a.images.length, 3);
  assert.equal(a.images[0].width, SIZE);
  assert.deepEqual(a.tokens, b.tokens);
  assert.deepEqual(a.images, b.images);
  assert.notDeepEqual(a.tokens, c.tokens);
  assert.ok(a.tokens.every((t) => t >= 0 && t < 64));
  const un = await muse.generate('', { seed: 4, guidance: 0 });
  assert.equal(un.images.length, 1, 'the empty prompt generates unconditionally');
});

test('guided logits are (1 + t)·ℓ_cond − t·ℓ_uncond over real forward passes; t = 0 is ℓ_cond; negative prompts replace ℓ_uncond', async () => {
  const c = muse.baseConfig;
  const text = await muse.textEncoder.encode(['a red apple', 'blue car']);
  const negative = await muse.textEncoder.encode(['green', 'green']);
  const empty = await muse.textEncoder.encode(['', '']);
  const tokens = Int32Array.from({ length: 2 * 16 }, (_, i) => (i % 3 === 0 ? maskTokenId(c) : i % 64));
  const direct = (t: { embeddings: Float32Array; lengths: Int32Array }) =>
    tf.tidy(() =>
      forward(
        muse.baseParams,
        c,
        tf.tensor2d(tokens, [2, 16], 'int32'),
        tf.tensor3d(t.embeddings, [2, 24, 512]),
        t.lengths,
      ).dataSync(),
    ) as Float32Array;
  const cond = direct(text);
  for (const [negativeBatch, uncond] of [
    [undefined, direct(empty)],
    [negative, direct(negative)],
  ] as const) {
    const none = guidedTransformer(muse.baseParams, c, text, { scale: 0, negative: negativeBatch });
    const g = guidedTransformer(muse.baseParams, c, text, { scale: 3, schedule: 'constant', negative: negativeBatch });
    assert.equal(none.passes, 1);
    assert.equal(g.passes, 2);
    const l0 = await none.logits(tokens, 2, 0, 1);
    const l3 = await g.logits(tokens, 2, 0, 1);
    for (let i = 0; i < cond.length; i++) {
      assert.ok(Math.abs(l0[i] - cond[i]) < 1e-4 * (1 + Math.abs(cond[i])));
      const want = 4 * cond[i] - 3 * uncond[i];
      assert.ok(Math.abs(l3[i] - want) < 1e-3 * (1 + Math.abs(want)), `${l3[i]} vs ${want}`);
    }
    none.dispose();
    g.dispose();
  }
});

test('guidance ramps linearly by default: at step s of N the logits are (1 + t_s)·ℓ_cond − t_s·ℓ_uncond, t_s = t·(s + 1)/N', async () => {
  const c = muse.baseConfig;
  const text = await muse.textEncoder.encode(['a red apple', 'blue car']);
  const empty = await muse.textEncoder.encode(['', '']);
  const tokens = Int32Array.from({ length: 2 * 16 }, (_, i) => (i % 4 === 1 ? maskTokenId(c) : (5 * i) % 64));
  const direct = (t: { embeddings: Float32Array; lengths: Int32Array }) =>
    tf.tidy(() =>
      forward(
        muse.baseParams,
        c,
        tf.tensor2d(tokens, [2, 16], 'int32'),
        tf.tensor3d(t.embeddings, [2, 24, 512]),
        t.lengths,
      ).dataSync(),
    ) as Float32Array;
  const cond = direct(text);
  const uncond = direct(empty);
  const g = guidedTransformer(muse.baseParams, c, text, { scale: 3 }); // no schedule: the default
  const ramp = [0.75, 1.5, 2.25, 3]; // 3·(s + 1)/4, by hand
  for (let s = 0; s < 4; s++) {
    const l = await g.logits(tokens, 2, s, 4);
    for (let i = 0; i < cond.length; i++) {
      const want = (1 + ramp[s]) * cond[i] - ramp[s] * uncond[i];
      assert.ok(Math.abs(l[i] - want) < 1e-3 * (1 + Math.abs(want)), `step ${s}: ${l[i]} vs ${want}`);
    }
  }
  g.dispose();
  // The model folder names no schedule and no choice temperature: the documented defaults apply.
  assert.equal(muse.defaults.guidanceSchedule, 'linear');
  assert.equal(muse.defaults.choiceTemperature, 4.5);
});

test('inpainting: tokens outside the mask never change; pixels outside the mask stay the original', async () => {
  const image = pixels(1);
  const mask: PixelMask = { width: SIZE, height: SIZE, data: new Uint8Array(SIZE * SIZE) };
  for (let y = 2; y < 7; y++) for (let x = 9; x < 15; x++) mask.data[y * SIZE + x] = 1; // tokens (0..1, 2..3)
  const tm = tokenMask(mask, 4);
  assert.deepEqual(Array.from(tm), [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
  const known = await muse.tokenizer.encode([image]);
  const r = await muse.inpaint(image, mask, 'a red apple', { n: 2, seed: 3, steps: 6 });
  assert.match(r.notes.join(), /4 masked tokens/);
  for (let b = 0; b < 2; b++) {
    for (let i = 0; i < 16; i++)
      if (!tm[i]) assert.equal(r.tokens[b * 16 + i], known[i], `token ${i} outside the mask changed`);
    for (let p = 0; p < SIZE * SIZE; p++) {
      if (mask.data[p]) continue;
      for (let ch = 0; ch < 3; ch++) assert.equal(r.images[b].data[3 * p + ch], image.data[3 * p + ch]);
    }
  }
  const changed = r.images[0].data.some((v, i) => mask.data[Math.floor(i / 3)] && v !== image.data[i]);
  assert.ok(changed, 'the masked region was regenerated');
});

test('feathered composite: distance transform by hand; weights rise from the seam inward', () => {
  const m: PixelMask = { width: 5, height: 1, data: Uint8Array.from([0, 1, 1, 1, 1]) };
  assert.deepEqual(Array.from(distanceInsideMask(m)), [0, 1, 2, 3, 4]);
  const a: RgbImage = { width: 5, height: 1, data: new Uint8Array(15) };
  const b: RgbImage = { width: 5, height: 1, data: new Uint8Array(15).fill(90) };
  const out = featherComposite(a, b, m, 2);
  assert.deepEqual(Array.from(out.data.filter((_, i) => i % 3 === 0)), [0, 30, 60, 90, 90]);
  assert.deepEqual(Array.from(featherComposite(a, b, m, 0).data.filter((_, i) => i % 3 === 0)), [0, 90, 90, 90, 90]);
  const white: RgbImage = { width: 2, height: 1, data: Uint8Array.from([255, 255, 255, 0, 0, 0]) };
  assert.deepEqual(Array.from(maskFromImage(white, 'm').data), [1, 0]);
  assert.throws(() => maskFromImage({ width: 1, height: 1, data: new Uint8Array(3) }, 'black.png'), /all black/);
});

test('outpainting grows the grid beyond the model, keeps the original tokens and pixels', async () => {
  const image = pixels(2);
  const known = await muse.tokenizer.encode([image]);
  const r = await muse.outpaint(image, { left: 8, right: 6, top: 0, bottom: 4 }, 'a red apple', { seed: 1 });
  assert.deepEqual(r.grid, [5, 8]); // right 6 px → 2 tokens
  assert.match(r.notes.join(), /right: 6 px rounded up to 8 px/);
  assert.equal(r.images[0].width, 32);
  assert.equal(r.images[0].height, 20);
  for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) assert.equal(r.tokens[y * 8 + x + 2], known[y * 4 + x]);
  for (let y = 0; y < SIZE; y++)
    for (let x = 0; x < SIZE * 3; x++)
      assert.equal(r.images[0].data[(y * 32 + 8) * 3 + x], image.data[y * SIZE * 3 + x]);
  assert.ok(!r.tokens.includes(maskTokenId(muse.baseConfig)));
});

test('mask-free editing: a few iterations keep most tokens, more iterations move more', async () => {
  const image = pixels(3);
  const known = await muse.tokenizer.encode([image]);
  const moved = async (iterations: number) => {
    const r = await muse.edit(image, 'a blue car', { iterations, fraction: 0.125, seed: 2 });
    return r.tokens.filter((t, i) => t !== known[i]).length;
  };
  const two = await moved(2);
  const forty = await moved(40);
  assert.ok(two <= 4, `2 iterations of 2 tokens changed ${two}`);
  assert.ok(forty > two, `40 iterations moved ${forty}, 2 moved ${two}`);
});

test('bad input: one clear error each', async () => {
  await assert.rejects(MusePipeline.load(join(dir, 'nowhere')), /does not exist/);
  await assert.rejects(MusePipeline.load(dir), /no pipeline.json/);
  const broken = join(dir, 'broken');
  mkdirSync(broken);
  copyFileSync(join(folder, 'pipeline.json'), join(broken, 'pipeline.json'));
  copyFileSync(join(folder, 'tokenizer.safetensors'), join(broken, 'tokenizer.safetensors'));
  writeFileSync(join(broken, 'base.safetensors'), 'not a safetensors file');
  await assert.rejects(MusePipeline.load(broken), MuseError);
  await assert.rejects(muse.generate('x', { steps: 17 }), /steps must be an integer from 1 to 16/);
  await assert.rejects(muse.generate('x', { steps: 0 }), MuseError);
  await assert.rejects(muse.generate('x', { n: 0 }), MuseError);
  await assert.rejects(muse.generate('x', { guidance: -1 }), /guidance/);
  await assert.rejects(muse.generate('x', { topK: 65 }), /top-k/);
  await assert.rejects(muse.edit({ width: 8, height: 8, data: new Uint8Array(192) }, 'x'), /16×16/);
  await assert.rejects(
    muse.outpaint(pixels(1), { left: 0, right: 0, top: 0, bottom: 0 }, 'x'),
    /extend at least one side/,
  );
});

test('two stages: generate at the super-res size by default, the base size on request; upscale a user image', async () => {
  assert.deepEqual(museSr.sizes, [SIZE, 2 * SIZE]);
  const steps: number[] = [];
  const big = await museSr.generate('a red apple', {
    n: 2,
    seed: 1,
    steps: 5,
    superresSteps: 3,
    onStep: (s, total) => void steps.push(s * 100 + total),
  });
  assert.equal(big.images[0].width, 2 * SIZE);
  assert.deepEqual(big.grid, [8, 8]);
  assert.deepEqual(steps, [108, 208, 308, 408, 508, 608, 708, 808], 'one progress count across both stages');
  const again = await museSr.generate('a red apple', { n: 2, seed: 1, steps: 5, superresSteps: 3 });
  assert.deepEqual(again.tokens, big.tokens);
  const small = await museSr.generate('a red apple', { size: SIZE, seed: 1 });
  assert.equal(small.images[0].width, SIZE);
  await assert.rejects(museSr.generate('x', { size: 48 }), /16 or 32 px/);
  await assert.rejects(muse.generate('x', { size: 32 }), /no super-res stage/);
  const up = await museSr.upscale(pixels(4), 'a red apple', { seed: 2 });
  assert.equal(up.images[0].width, 2 * SIZE);
  await assert.rejects(muse.upscale(pixels(4), 'x'), /super-res stage/);
  await assert.rejects(museSr.upscale({ width: 32, height: 32, data: new Uint8Array(32 * 32 * 3) }, 'x'), /16×16/);
});

test('super-res by mean code: deterministic across seeds, from the model default or the call; bad choices refused', async () => {
  const opts = { superresChoice: 'mean-code' as const, choiceTemperature: 0, superresSteps: 2 };
  const a = await museSr.upscale(pixels(4), 'a red apple', { ...opts, seed: 1 });
  const b = await museSr.upscale(pixels(4), 'a red apple', { ...opts, seed: 2 });
  assert.deepEqual(b.tokens, a.tokens, 'no draw: the seed does not matter');
  const sampled = await museSr.upscale(pixels(4), 'a red apple', { seed: 1, superresSteps: 2 });
  const sampledOther = await museSr.upscale(pixels(4), 'a red apple', { seed: 2, superresSteps: 2 });
  assert.notDeepEqual(sampledOther.tokens, sampled.tokens, 'sampling does depend on the seed');
  await assert.rejects(
    museSr.upscale(pixels(4), 'x', { superresChoice: 'median' as never }),
    /`superresChoice` must be one of sample, mean-code/,
  );
  // The same as a model default in pipeline.json; a bad value there is one clear error.
  const folder2 = join(dir, 'model-sr-mean');
  mkdirSync(folder2);
  for (const f of ['tokenizer.safetensors', 'base.safetensors', 'superres.safetensors'])
    copyFileSync(join(srFolder, f), join(folder2, f));
  const file = JSON.parse(readFileSync(join(srFolder, 'pipeline.json'), 'utf8'));
  writeFileSync(
    join(folder2, 'pipeline.json'),
    JSON.stringify({
      ...file,
      defaults: { ...file.defaults, superresChoice: 'mean-code', choiceTemperature: 0, superresSteps: 2 },
    }),
  );
  const m = await MusePipeline.load(folder2);
  try {
    assert.deepEqual((await m.upscale(pixels(4), 'a red apple', { seed: 7 })).tokens, a.tokens);
  } finally {
    m.dispose();
  }
  writeFileSync(join(folder2, 'pipeline.json'), JSON.stringify({ ...file, defaults: { superresChoice: 'best' } }));
  await assert.rejects(MusePipeline.load(folder2), /"defaults.superresChoice" must be one of sample, mean-code/);
});

test('two-scale inpainting and outpainting: high-res tokens and pixels of the original are kept', async () => {
  const rng = new Rng(9);
  const image: RgbImage = { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, () => rng.int(256)) };
  const mask: PixelMask = { width: 32, height: 32, data: new Uint8Array(32 * 32) };
  for (let y = 16; y < 32; y++) for (let x = 0; x < 12; x++) mask.data[y * 32 + x] = 1;
  const known = await museSr.tokenizer.encode([image]);
  const tm = tokenMask(mask, 4);
  const r = await museSr.inpaint(image, mask, 'sun', { seed: 5, feather: 1 });
  assert.equal(r.images[0].width, 32);
  for (let i = 0; i < 64; i++) if (!tm[i]) assert.equal(r.tokens[i], known[i]);
  for (let p = 0; p < 32 * 32; p++)
    if (!mask.data[p]) for (let c = 0; c < 3; c++) assert.equal(r.images[0].data[3 * p + c], image.data[3 * p + c]);
  const out = await museSr.outpaint(image, { left: 0, right: 12, top: 8, bottom: 0 }, 'sun', { seed: 2 });
  assert.deepEqual(out.grid, [10, 12], 'high-res canvas: 8 + 2 rows, 8 + 4 columns (12 px rounded up to 16)');
  assert.match(out.notes.join(), /right: 12 px rounded up to 16 px/);
  for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) assert.equal(out.tokens[(y + 2) * 12 + x], known[y * 8 + x]);
  assert.equal(out.images[0].width, 48);
  for (let y = 0; y < 32; y++)
    for (let x = 0; x < 32 * 3; x++) assert.equal(out.images[0].data[(y + 8) * 48 * 3 + x], image.data[y * 32 * 3 + x]);
  const edited = await museSr.edit(image, 'sun', { iterations: 2, seed: 1 });
  assert.equal(edited.images[0].width, 32);
});

test('one progress count per call: outpaint and edit at two scales count 1..total across both stages', async () => {
  const rng = new Rng(11);
  const image: RgbImage = { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, () => rng.int(256)) };
  const counts = async (call: (onStep: (step: number, steps: number) => void) => Promise<unknown>) => {
    const seen: Array<[number, number]> = [];
    await call((step, steps) => void seen.push([step, steps]));
    return seen;
  };
  const outpaint = await counts((onStep) =>
    museSr.outpaint(image, { right: 8 }, 'sun', { seed: 3, steps: 2, superresSteps: 2, onStep }),
  );
  const total = outpaint[outpaint.length - 1][1];
  assert.deepEqual(
    outpaint.map(([s]) => s),
    Array.from({ length: outpaint.length }, (_, i) => i + 1),
    'steps count up without restarting at the super-res stage',
  );
  assert.equal(outpaint.length, total, 'the last step reads total/total');
  const edit = await counts((onStep) =>
    museSr.edit(image, 'sun', { iterations: 3, superresSteps: 2, seed: 1, onStep }),
  );
  assert.deepEqual(
    edit,
    [1, 2, 3, 4, 5].map((s) => [s, 5]),
    '3 edit iterations, then 2 super-res steps',
  );
});

test('assemble: a model folder in F16 from training files, loadable as a pipeline', async () => {
  const out = join(dir, 'assembled');
  const file = await assemblePipeline({
    tokenizer: join(folder, 'tokenizer.safetensors'),
    base: join(folder, 'base.safetensors'),
    superres: join(srFolder, 'superres.safetensors'),
    out,
    defaults: { steps: 5 },
    notes: { data: 'test split' },
    textEncoder: USE_LITE_ID,
  });
  assert.equal(file.imageSize, SIZE);
  assert.equal(file.superresSize, 2 * SIZE);
  assert.equal(file.defaultSize, 2 * SIZE);
  assert.equal(file.defaults.steps, 5);
  const { tensors, metadata } = await loadSafetensors(join(out, 'base.safetensors'));
  assert.equal(Object.values(tensors)[0].dtype, 'F16');
  assert.equal(metadata.data, 'test split');
  const m = await MusePipeline.load(out);
  const r = await m.generate('a red apple', { seed: 1 });
  assert.equal(r.images[0].width, 2 * SIZE);
  m.dispose();
  await assert.rejects(
    assemblePipeline({ tokenizer: join(dir, 'none'), base: join(folder, 'base.safetensors'), out }),
    /no such file/,
  );
});

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('muse assemble: the decoding options given become the model defaults', () => {
  const out = join(dir, 'assembled-cli');
  const r = cli(
    'assemble',
    ...['--tokenizer', join(folder, 'tokenizer.safetensors'), '--base', join(folder, 'base.safetensors')],
    ...[
      '--out',
      out,
      '--text-encoder',
      USE_LITE_ID,
      '--guidance',
      '1.5',
      '--temperature',
      '0.5',
      '--schedule',
      'linear',
    ],
  );
  assert.equal(r.code, 0, r.err);
  const file = JSON.parse(readFileSync(join(out, 'pipeline.json'), 'utf8'));
  assert.equal(file.defaults.guidance, 1.5);
  assert.equal(file.defaults.temperature, 0.5);
  assert.equal(file.defaults.schedule, 'linear');
  assert.equal(file.defaults.steps, 12); // untouched defaults stay
  const bad = cli('assemble', '--tokenizer', 'a', '--base', 'b', '--out', out, '--negative', 'blurry');
  assert.match(bad.err, /per-run option/);
});

test('muse generate, inpaint, outpaint and edit on a model folder, with --frames', async () => {
  const out = join(dir, 'cli');
  mkdirSync(out);
  const g = cli(
    'generate',
    'a red apple',
    'a dog',
    '-n',
    '2',
    '--model',
    folder,
    '-o',
    join(out, 'grid.png'),
    '--steps',
    '4',
    '--frames',
    join(out, 'frames'),
  );
  assert.equal(g.code, 0, g.err);
  assert.ok(existsSync(join(out, 'grid.png')));
  assert.ok(existsSync(join(out, 'frames', 'frame-0004.png')));
  assert.ok(existsSync(join(out, 'frames', 'decoding.gif')));
  const one = cli('generate', 'a red apple', '--model', folder, '-o', join(out, 'one.png'), '--scale', '2');
  assert.equal(one.code, 0, one.err);
  const img = await decodeImage(readFileSync(join(out, 'one.png')), 'one.png');
  assert.equal(img.width, 2 * SIZE);
  writeFileSync(join(out, 'in.png'), await encodePng(pixels(5)));
  const maskImg: RgbImage = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3) };
  maskImg.data.fill(255, 0, 32 * 8 * 3);
  writeFileSync(join(out, 'mask.png'), await encodePng(maskImg));
  const ip = cli(
    'inpaint',
    join(out, 'in.png'),
    join(out, 'mask.png'),
    'sun',
    '--model',
    folder,
    '-o',
    join(out, 'ip.png'),
  );
  assert.equal(ip.code, 0, ip.err);
  assert.match(ip.err, /resized to 16×16 to match the image/);
  const op = cli('outpaint', join(out, 'in.png'), 'sun', '--right', '8', '--model', folder, '-o', join(out, 'op.png'));
  assert.equal(op.code, 0, op.err);
  assert.equal((await decodeImage(readFileSync(join(out, 'op.png')), 'op.png')).width, 24);
  const ed = cli('edit', join(out, 'in.png'), 'sun', '--iterations', '3', '--model', folder, '-o', join(out, 'ed.png'));
  assert.equal(ed.code, 0, ed.err);
  const bad = cli('generate', 'x', '--model', folder, '--steps', '99');
  assert.equal(bad.code, 1);
  assert.equal(bad.err.trim().split('\n').length, 1, bad.err);
  assert.match(cli('generate', 'x', '--model', join(dir, 'none')).err, /does not exist/);
  assert.match(
    cli('inpaint', join(out, 'in.png'), join(out, 'missing.png'), 'x', '--model', folder).err,
    /no such mask/,
  );
});

test('a super-res stage with its own tokenizer: base images re-encoded by it, every verb at both sizes', async () => {
  // Muse §2.4: the super-res stage's tokens (and its low-res conditioning) come from a second
  // tokenizer. Here another tiny tokenizer (other weights) beside the same base and super-res models.
  const mixed = join(dir, 'model-sr-own-tokenizer');
  mkdirSync(mixed);
  for (const f of ['tokenizer.safetensors', 'base.safetensors', 'superres.safetensors'])
    copyFileSync(join(srFolder, f), join(mixed, f));
  const tc = tokenizerPreset('tiny');
  await saveTokenizer(join(mixed, 'sr-tokenizer.safetensors'), initTokenizer(tc, new Rng(21)), tc);
  const file = JSON.parse(readFileSync(join(srFolder, 'pipeline.json'), 'utf8'));
  const spec = {
    ...file,
    superresTokenizer: 'sr-tokenizer.safetensors',
    defaults: { ...file.defaults, superresChoice: 'mean-code', choiceTemperature: 0, superresSteps: 2 },
  };
  writeFileSync(join(mixed, 'pipeline.json'), JSON.stringify(spec));
  const m = await MusePipeline.load(mixed);
  try {
    assert.notEqual(m.superresTokenizer, m.tokenizer);
    // With the deterministic mean-code choice the super-res result depends only on its low-res
    // tokens: generating at 32 px must equal upscaling the 16 px image of the same seed, which the
    // super-res tokenizer encodes — so the base tokens were decoded and re-encoded, not passed on.
    const small = await m.generate('a red apple', { seed: 3, size: SIZE });
    const big = await m.generate('a red apple', { seed: 3 });
    const up = await m.upscale(small.images[0], 'a red apple', { seed: 9 });
    assert.equal(big.images[0].width, 2 * SIZE);
    assert.deepEqual(big.tokens, up.tokens);
    assert.deepEqual(big.images[0].data, up.images[0].data);
    const direct = await m.superresTokenizer.decode(up.tokens, 8, 8);
    assert.deepEqual(up.images[0].data, direct[0].data, 'the 32 px image is the super-res tokenizer’s decoding');
    // Inpainting keeps the original's high-res tokens as that tokenizer reads them; outpaint and edit run.
    const rng = new Rng(12);
    const image: RgbImage = {
      width: 32,
      height: 32,
      data: Uint8Array.from({ length: 32 * 32 * 3 }, () => rng.int(256)),
    };
    const mask: PixelMask = { width: 32, height: 32, data: new Uint8Array(32 * 32) };
    for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) mask.data[y * 32 + x] = 1;
    const known = await m.superresTokenizer.encode([image]);
    const tm = tokenMask(mask, 4);
    const r = await m.inpaint(image, mask, 'sun', { seed: 5 });
    for (let i = 0; i < 64; i++) if (!tm[i]) assert.equal(r.tokens[i], known[i]);
    const out = await m.outpaint(image, { right: 8 }, 'sun', { seed: 2, steps: 2 });
    assert.deepEqual(out.grid, [8, 10]);
    for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) assert.equal(out.tokens[y * 10 + x], known[y * 8 + x]);
    assert.equal((await m.edit(image, 'sun', { iterations: 2, seed: 1 })).images[0].width, 32);
  } finally {
    m.dispose();
  }
  // One clear error each: a super-res tokenizer of another downsampling factor; one without a super-res stage.
  const other = tokenizerPreset('tiny');
  const f8 = { ...other, channelMult: [...other.channelMult, other.channelMult[other.channelMult.length - 1]] };
  await saveTokenizer(join(mixed, 'sr-tokenizer.safetensors'), initTokenizer(f8, new Rng(22)), f8);
  await assert.rejects(MusePipeline.load(mixed), /super-res tokenizer downsamples by 8, the base tokenizer by 4/);
  const { superres: _s, superresSize: _z, ...noStage } = spec;
  writeFileSync(join(mixed, 'pipeline.json'), JSON.stringify(noStage));
  await assert.rejects(MusePipeline.load(mixed), /"superresTokenizer" needs a "superres" stage/);
});

test('assemble --superres-tokenizer: the stage gets its own tokenizer file; a mismatched codebook is refused', async () => {
  const tc = tokenizerPreset('tiny');
  const srTok = join(dir, 'sr-own-tokenizer.safetensors');
  await saveTokenizer(srTok, initTokenizer(tc, new Rng(23)), tc);
  const out = join(dir, 'assembled-own-tokenizer');
  const file = await assemblePipeline({
    tokenizer: join(folder, 'tokenizer.safetensors'),
    base: join(folder, 'base.safetensors'),
    superres: join(srFolder, 'superres.safetensors'),
    superresTokenizer: srTok,
    out,
    textEncoder: USE_LITE_ID,
  });
  assert.equal(file.superresTokenizer, 'superres-tokenizer.safetensors');
  const m = await MusePipeline.load(out);
  try {
    assert.notEqual(m.superresTokenizer, m.tokenizer);
    assert.equal((await m.generate('a red apple', { seed: 1, steps: 2, superresSteps: 2 })).images[0].width, 2 * SIZE);
  } finally {
    m.dispose();
  }
  const wide = { ...tc, codebookSize: 2 * tc.codebookSize };
  await saveTokenizer(srTok, initTokenizer(wide, new Rng(24)), wide);
  await assert.rejects(
    assemblePipeline({
      tokenizer: join(folder, 'tokenizer.safetensors'),
      base: join(folder, 'base.safetensors'),
      superres: join(srFolder, 'superres.safetensors'),
      superresTokenizer: srTok,
      out: join(dir, 'assembled-bad'),
      textEncoder: USE_LITE_ID,
    }),
    /but its tokenizer has 128/,
  );
});
