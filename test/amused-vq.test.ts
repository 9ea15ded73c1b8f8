// aMUSEd VQ-GAN (diffusers VQModel) and AmusedScheduler against the reference fixtures in
// test/fixtures/amused (computed by diffusers v0.27.2 / PyTorch, float32, CPU).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  AmusedScheduler,
  linspaceF32,
  type MaskingSchedule,
  maskCounts,
  RecordedSchedulerRandom,
  SeededSchedulerRandom,
} from '../src/amused/scheduler.js';
import { loadSafetensors, type NamedTensor } from '../src/tensor/safetensors.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'amused');
const EXPECTED = join(FIXTURES, 'expected');
const cases = JSON.parse(readFileSync(join(EXPECTED, 'cases.json'), 'utf8'));

/** Parses C99 hex floats such as "0x1.d1745c0000000p+0" or "-0x0.0p+0". */
function hexFloat(s: string): number {
  const m = /^(-?)0x([0-9a-f]+)(?:\.([0-9a-f]*))?p([+-]\d+)$/i.exec(s);
  if (!m) throw new Error(`bad hex float ${s}`);
  const frac = m[3] ?? '';
  const mant = Number.parseInt(m[2] + frac, 16) / 16 ** frac.length;
  return (m[1] ? -1 : 1) * mant * 2 ** Number(m[4]);
}

async function expectedFile(name: string): Promise<Record<string, NamedTensor>> {
  return (await loadSafetensors(join(EXPECTED, name))).tensors;
}

// ---- scheduler --------------------------------------------------------------------------------------

test('scheduler: set_timesteps tables (timesteps, float32 temperatures) for every reference case', () => {
  assert.equal(hexFloat('0x1.47ae140000000p-7'), Math.fround(0.01));
  const sched = new AmusedScheduler({ maskTokenId: 127, maskingSchedule: 'cosine' });
  const list = cases.scheduler.set_timesteps;
  assert.ok(list.length >= 4);
  for (const c of list) {
    const temp = Array.isArray(c.temperature_arg) ? (c.temperature_arg as [number, number]) : c.temperature_arg;
    sched.setTimesteps(c.num_inference_steps, temp);
    assert.deepEqual([...sched.timesteps], c.timesteps, `timesteps ${JSON.stringify(c.temperature_arg)}`);
    const want = (c.temperatures_float32_hex as string[]).map(hexFloat);
    assert.deepEqual([...sched.temperatures], want, `temperatures ${c.num_inference_steps} ${JSON.stringify(temp)}`);
    assert.deepEqual([...sched.temperatures], c.temperatures);
  }
  assert.deepEqual([...linspaceF32(5, 7, 1)], [5]);
});

test('scheduler: masked-token counts after each step (cosine and linear, float32)', () => {
  const list = cases.scheduler.mask_counts;
  assert.ok(list.length >= 10);
  for (const c of list) {
    const got = maskCounts(c.schedule as MaskingSchedule, c.num_inference_steps, c.seq_len);
    assert.deepEqual(got, c.masked_after_step, `${c.schedule} ${c.num_inference_steps} steps ${c.seq_len} tokens`);
  }
  // The float32 detail the README calls out: step 7 of 12 (cosine, 256 tokens) leaves 127, not 128.
  assert.equal(maskCounts('cosine', 12, 256)[7], 127);
});

test('scheduler: the traced step with the recorded draws reproduces pred_original_sample and prev_sample', async () => {
  const t = await expectedFile('scheduler.safetensors');
  const tr = cases.scheduler.traced_step;
  const sched = AmusedScheduler.fromFolder(join(FIXTURES, 'tiny-amused-256', 'scheduler'));
  assert.equal(sched.maskTokenId, tr.mask_token_id);
  sched.setTimesteps(tr.set_timesteps[0], tr.set_timesteps[1]);
  const stepIndex = [...sched.timesteps].indexOf(tr.timestep);
  assert.equal(stepIndex, tr.step_index);
  assert.equal(sched.temperatures[stepIndex], tr.temperature);
  const [batch, k] = t['step.model_output'].shape;
  const random = new RecordedSchedulerRandom(
    [t['step.sampled_ids'].data as Int32Array],
    [t['step.gumbel_noise'].data as Float32Array],
  );
  const out = sched.step({
    logits: t['step.model_output'].data as Float32Array,
    layout: 'BKN',
    tokens: t['step.sample'].data as Int32Array,
    batch,
    codebookSize: k,
    stepIndex,
    random,
  });
  assert.deepEqual([...out.predOriginalSample], [...t['step.pred_original_sample'].data]);
  assert.deepEqual([...out.prevSample], [...t['step.prev_sample'].data]);
  assert.deepEqual([...(out.maskLen ?? [])], tr.masked_after);
  const conf = t['step.confidence'].data;
  let maxErr = 0;
  for (let i = 0; i < conf.length; i++)
    maxErr = Math.max(maxErr, Math.abs((out.confidence as Float32Array)[i] - conf[i]));
  assert.ok(maxErr < 1e-4, `confidence max error ${maxErr}`);
  console.log(`scheduler traced step: confidence max |error| ${maxErr.toExponential(2)}`);

  // 'BNK' layout gives the same step.
  const n = (t['step.sample'].data as Int32Array).length / batch;
  const bkn = t['step.model_output'].data as Float32Array;
  const bnk = new Float32Array(bkn.length);
  for (let b = 0; b < batch; b++)
    for (let j = 0; j < k; j++) for (let i = 0; i < n; i++) bnk[(b * n + i) * k + j] = bkn[(b * k + j) * n + i];
  const again = sched.step({
    logits: bnk,
    tokens: t['step.sample'].data as Int32Array,
    batch,
    codebookSize: k,
    stepIndex,
    random: new RecordedSchedulerRandom(
      [t['step.sampled_ids'].data as Int32Array],
      [t['step.gumbel_noise'].data as Float32Array],
    ),
  });
  assert.deepEqual([...again.prevSample], [...t['step.prev_sample'].data]);
});

test('scheduler: a seeded run from all-masked unmasks on schedule and is reproducible', () => {
  const sched = new AmusedScheduler({ maskTokenId: 16, maskingSchedule: 'cosine' });
  sched.setTimesteps(8, [2, 0]);
  const n = 64;
  const k = 16;
  const run = () => {
    const random = new SeededSchedulerRandom(7);
    let tokens: Int32Array = new Int32Array(n).fill(16);
    const counts: number[] = [];
    const logits = new SeededSchedulerRandom(3).rng.normals(n * k, 2);
    for (let s = 0; s < 8; s++) {
      tokens = sched.step({ logits, tokens, batch: 1, codebookSize: k, stepIndex: s, random }).prevSample;
      counts.push(tokens.filter((x) => x === 16).length);
    }
    return { tokens, counts };
  };
  const a = run();
  assert.deepEqual(a.counts, maskCounts('cosine', 8, n));
  assert.ok(a.tokens.every((x) => x >= 0 && x < k));
  assert.deepEqual([...run().tokens], [...a.tokens]);
});
