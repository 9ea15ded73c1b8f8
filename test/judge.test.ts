// The emoji judge: augmentation by hand-worked cases, and the CNN classifier learning shapes it must
// tell apart by form (not by colour or position), saving and loading to the same logits.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CnnClassifier } from '../src/eval/cnn-classifier.js';
import { JUDGE_FILE, type JudgeTrainOptions, trainJudge } from '../src/eval/cnn-trainer.js';
import { topK } from '../src/eval/feature-classifier.js';
import { loadJudge } from '../src/eval/judge.js';
import { augmentedView } from '../src/image/augment.js';
import type { RgbImage } from '../src/image/rgb.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { Rng } from '../src/tensor/random.js';
import { loadSafetensors, saveSafetensors } from '../src/tensor/safetensors.js';

before(() => initBackend());
after(() => shutdownBackend());

const none = { shift: 0, zoom: [1, 1] as [number, number], blur: 0, jitter: 0 };

/** A white 16×16 image with one dark pixel at (x, y). */
function dot(x: number, y: number): RgbImage {
  const data = new Uint8Array(16 * 16 * 3).fill(255);
  data.fill(0, (y * 16 + x) * 3, (y * 16 + x) * 3 + 3);
  return { width: 16, height: 16, data };
}

test('augmentation: identity when every change is off; a shift moves content and fills with white; blur spreads 1-2-1', () => {
  const img = dot(5, 7);
  const same = augmentedView(img, () => 0.5, none);
  for (let i = 0; i < same.length; i++) assert.equal(same[i], img.data[i] / 127.5 - 1);
  // random() = 1 gives the largest positive shift: 0.125 × 16 = 2 px right and down.
  const moved = augmentedView(img, () => 0.999999, { ...none, shift: 0.125 });
  const at = (v: Float32Array, x: number, y: number) => v[(y * 16 + x) * 3];
  assert.ok(at(moved, 7, 9) < -0.99, 'the dot is 2 px right and down');
  assert.ok(at(moved, 5, 7) > 0.99, 'nothing left where it was');
  assert.ok(at(moved, 0, 0) > 0.99 && at(moved, 1, 1) > 0.99, 'white comes in from outside');
  const blurred = augmentedView(img, () => 0, { ...none, blur: 1 });
  // The dot's centre keeps (2/4)² of its darkness, its side neighbours (2/4)(1/4), corners (1/4)².
  const dark = (x: number, y: number) => (1 - at(blurred, x, y)) / 2;
  assert.ok(Math.abs(dark(5, 7) - 0.25) < 1e-6);
  assert.ok(Math.abs(dark(6, 7) - 0.125) < 1e-6);
  assert.ok(Math.abs(dark(6, 8) - 0.0625) < 1e-6);
  assert.ok(Math.abs(dark(8, 7)) < 1e-6);
});

/** 16 px images of a class: 0 = a filled square, 1 = a ring, 2 = a cross; random colour and place. */
function shape(kind: number, rng: Rng): RgbImage {
  const data = new Uint8Array(16 * 16 * 3).fill(255);
  const colour = [rng.int(200), rng.int(200), rng.int(200)];
  const x0 = 3 + rng.int(4);
  const y0 = 3 + rng.int(4);
  for (let y = 0; y < 8; y++)
    for (let x = 0; x < 8; x++) {
      const on =
        kind === 0
          ? true
          : kind === 1
            ? x === 0 || y === 0 || x === 7 || y === 7
            : x === 3 || x === 4 || y === 3 || y === 4;
      if (on) data.set(colour, ((y0 + y) * 16 + x0 + x) * 3);
    }
  return { width: 16, height: 16, data };
}

test('CNN judge: tells shapes apart in colours and places it never saw; resumes exactly; saves and loads to the same ranks', async () => {
  const rng = new Rng(3);
  const labels = ['square', 'ring', 'cross'];
  const train = Array.from({ length: 48 }, (_, i) => shape(i % 3, rng));
  const trainLabels = train.map((_, i) => labels[i % 3]);
  const dir = mkdtempSync(join(tmpdir(), 'muse-judge-'));
  const held = Array.from({ length: 12 }, (_, i) => shape(i % 3, rng));
  const options = (out: string, extra: Partial<JudgeTrainOptions> = {}): JudgeTrainOptions => ({
    out,
    config: { size: 16, widths: [8, 16, 16], groups: 4 },
    images: train,
    labels: trainLabels,
    validation: { images: held, labels: held.map((_, i) => labels[i % 3]) },
    batch: 16,
    steps: 120,
    lr: 3e-3,
    warmup: 10,
    weightDecay: 5e-4,
    seed: 1,
    evalEvery: 60,
    checkpointEvery: 60,
    resume: false,
    info: { label: 'code', val: 'shapes' },
    ...extra,
  });
  const controller = new AbortController();
  const whole = await trainJudge(options(join(dir, 'whole')));
  assert.equal(whole.history.eval.length, 2);
  // Stopped at step 60 (its checkpoint) and resumed: the same weights as the run that never stopped.
  const halfway = join(dir, 'halfway');
  await trainJudge(
    options(halfway, { steps: 120, onStep: (step) => step === 60 && controller.abort(), signal: controller.signal }),
  );
  const resumed = await trainJudge(options(halfway, { resume: true }));
  assert.equal(resumed.step, 120);
  const a = await loadSafetensors(join(dir, 'whole', JUDGE_FILE));
  const b = await loadSafetensors(join(halfway, JUDGE_FILE));
  for (const name of Object.keys(a.tensors)) assert.deepEqual(b.tensors[name].data, a.tensors[name].data, name);
  const judge = await CnnClassifier.load(join(dir, 'whole', JUDGE_FILE));
  assert.equal(judge.info.valTop1, whole.history.eval[1].top1.toFixed(4), 'the ceiling is the latest validation');
  const test = Array.from({ length: 30 }, (_, i) => shape(i % 3, rng));
  const targets = test.map((_, i) => labels[i % 3]);
  const ranks = judge.ranks(test, targets);
  assert.ok(topK(ranks, 1) >= 0.9, `top-1 ${topK(ranks, 1)} on new colours and places (chance: 0.33)`);
  assert.deepEqual(judge.ranks([test[0]], ['unknown']), [Number.POSITIVE_INFINITY]);
  const file = join(dir, 'judge.safetensors');
  await judge.save(file, { valTop1: '0.9', valTop5: '1' });
  const back = await loadJudge(file);
  assert.equal(back.name, 'cnn');
  assert.deepEqual(back.ceiling, { top1: 0.9, top5: 1, data: 'shapes' });
  // F16 weights on disk: the loaded judge ranks exactly as the trained one on these images.
  assert.deepEqual(back.ranks(test, targets), ranks);
  back.dispose();
  judge.dispose();
  // A file that is not a judge, and one whose tensors do not match its labels, are one clear error each.
  const other = join(dir, 'other.safetensors');
  await saveSafetensors(other, { x: { shape: [1], data: new Float32Array(1) } }, { metadata: { kind: 'muse-base' } });
  await assert.rejects(loadJudge(other), /is not an emoji judge/);
  const bad = join(dir, 'bad.safetensors');
  await saveSafetensors(
    bad,
    { x: { shape: [1], data: new Float32Array(1) } },
    {
      metadata: {
        kind: 'cnn-classifier',
        config: JSON.stringify({ size: 16, widths: [8, 16, 16], groups: 4 }),
        labels: '["a","b"]',
      },
    },
  );
  await assert.rejects(CnnClassifier.load(bad), /tensor s1\.conv1\.w should be \[3,3,3,8\], got nothing/);
  writeFileSync(join(dir, 'junk.safetensors'), 'not a file');
  await assert.rejects(loadJudge(join(dir, 'junk.safetensors')));
});
