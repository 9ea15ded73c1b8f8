// aMUSEd VQ-GAN (diffusers VQModel) and AmusedScheduler against the reference fixtures in
// test/fixtures/amused (computed by diffusers v0.27.2 / PyTorch, float32, CPU).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { type Component, loadComponent } from '../src/amused/component.js';
import {
  AmusedScheduler,
  linspaceF32,
  type MaskingSchedule,
  maskCounts,
  RecordedSchedulerRandom,
  SeededSchedulerRandom,
} from '../src/amused/scheduler.js';
import { toRgb8, VQModel } from '../src/amused/vqgan.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { loadSafetensors, type NamedTensor } from '../src/tensor/safetensors.js';
import { MuseError } from '../src/util/errors.js';

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

// ---- VQ-GAN -----------------------------------------------------------------------------------------

const VQ_FOLDER = join(FIXTURES, 'tiny-amused-256', 'vqvae');

/** NCHW data → NHWC. */
function nchwToNhwc(data: ArrayLike<number>, [b, c, h, w]: number[]): Float32Array {
  const out = new Float32Array(b * c * h * w);
  for (let n = 0; n < b; n++)
    for (let k = 0; k < c; k++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) out[((n * h + y) * w + x) * c + k] = data[((n * c + k) * h + y) * w + x];
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'lengths differ');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

let backendReady: Promise<unknown> | undefined;
function backend(): Promise<unknown> {
  backendReady ??= initBackend();
  return backendReady;
}
after(() => shutdownBackend());

for (const grid of ['8x8', '4x4']) {
  test(`vqgan: decode_${grid} (codebook lookup, raw image within 1e-4, 8-bit image within 1 level)`, async () => {
    await backend();
    const t = await expectedFile('vqvae.safetensors');
    const inter = grid === '4x4' ? await expectedFile('vqvae_intermediates.safetensors') : undefined;
    const model = await VQModel.load(VQ_FOLDER);
    try {
      const tokens = t[`decode_${grid}.tokens`];
      const shape = tokens.shape as [number, number, number];
      const before = tf.memory().numTensors;
      const looked = model.lookup(tokens.data as Int32Array, shape);
      const lookErr = maxAbsDiff(
        looked.dataSync(),
        nchwToNhwc(t[`decode_${grid}.codebook_latents`].data, t[`decode_${grid}.codebook_latents`].shape),
      );
      looked.dispose();
      assert.equal(lookErr, 0, 'codebook rows');

      const traced: Record<string, tf.Tensor4D> = {};
      const raw = model.decode(tokens.data as Int32Array, shape, (name, v) => {
        traced[name] = tf.keep(v.clone());
      });
      const [, H, W, C] = raw.shape;
      assert.deepEqual(raw.shape, [shape[0], 16 * shape[1], 16 * shape[2], 3]);
      const want = t[`decode_${grid}.decoded_raw`];
      const rawData = raw.dataSync() as Float32Array;
      const rawErr = maxAbsDiff(rawData, nchwToNhwc(want.data, want.shape));
      assert.ok(rawErr < 1e-4, `raw max error ${rawErr}`);
      const rgb = toRgb8(rawData);
      const wantRgb = t[`decode_${grid}.image_pil_uint8`].data;
      const rgbErr = maxAbsDiff(rgb, wantRgb);
      let differing = 0;
      for (let i = 0; i < rgb.length; i++) if (rgb[i] !== wantRgb[i]) differing++;
      assert.ok(rgbErr <= 1, `8-bit max error ${rgbErr}`);
      console.log(
        `vqgan decode_${grid}: raw max |error| ${rawErr.toExponential(2)}, 8-bit max error ${rgbErr} (${differing} of ${rgb.length} values differ), ${H}×${W}×${C}`,
      );
      raw.dispose();

      if (inter) {
        const names = [
          'post_quant_conv',
          'decoder.conv_in',
          'decoder.mid_block',
          'decoder.up_blocks.0',
          'decoder.up_blocks.1',
        ];
        for (const name of names) {
          const ref: NamedTensor = inter[`decode_4x4.${name}`];
          assert.ok(ref, name);
          const got = traced[name];
          assert.ok(got, `traced ${name}`);
          const [b, c, h, w]: number[] = ref.shape;
          assert.deepEqual(got.shape, [b, h, w, c], name);
          const err = maxAbsDiff(got.dataSync(), nchwToNhwc(ref.data, ref.shape));
          assert.ok(err < 1e-4, `${name}: max error ${err}`);
          console.log(`vqgan intermediate ${name}: max |error| ${err.toExponential(2)}`);
        }
      }
      for (const v of Object.values(traced)) v.dispose();
      assert.equal(tf.memory().numTensors, before, 'decode leaks no tensors');
    } finally {
      model.dispose();
    }
  });
}

test('vqgan: 3×3 convolutions run in bands of output rows give the unbanded decode (to float rounding)', async () => {
  await backend();
  const t = await expectedFile('vqvae.safetensors');
  const model = await VQModel.load(VQ_FOLDER);
  try {
    const tokens = t['decode_8x8.tokens'];
    const shape = tokens.shape as [number, number, number];
    const whole = model.decode(tokens.data as Int32Array, shape);
    // One row per band, then bands of 3 rows (the last one shorter): every band edge and halo is exercised.
    for (const bytes of [1, 3 * shape[0] * 128 * 9 * 4 * 8]) {
      model.convBandBytes = bytes;
      const before = model.bandedConvolutions;
      const got = model.decode(tokens.data as Int32Array, shape);
      const banded = model.bandedConvolutions - before;
      assert.ok(banded > 0, 'some convolution ran in bands');
      // Products of other shapes may round differently (a few ulps); a wrong halo or band edge is off by far more.
      const err = maxAbsDiff(got.dataSync(), whole.dataSync());
      assert.ok(err < 1e-5, `bands at ${bytes} bytes: max |difference| ${err}`);
      got.dispose();
    }
    whole.dispose();
  } finally {
    model.dispose();
  }
});

test('vqgan: encode (img2img input) gives identical token ids and latents within 1e-4', async () => {
  await backend();
  const t = await expectedFile('vqvae.safetensors');
  const model = await VQModel.load(VQ_FOLDER);
  try {
    const img = t['encode.image_uint8'];
    const pixels = new Float32Array(img.data.length);
    for (let i = 0; i < pixels.length; i++) pixels[i] = Math.fround(img.data[i] / 255);
    const image = tf.tensor4d(pixels, img.shape as [number, number, number, number]);
    const { ids, shape, latents } = await model.encode(image);
    image.dispose();
    const want = t['encode.latents'];
    const latErr = maxAbsDiff(latents.dataSync(), nchwToNhwc(want.data, want.shape));
    latents.dispose();
    assert.deepEqual(shape, t['encode.token_ids'].shape);
    assert.deepEqual([...ids], [...t['encode.token_ids'].data]);
    assert.ok(latErr < 1e-4, `latents max error ${latErr}`);
    console.log(`vqgan encode: latents max |error| ${latErr.toExponential(2)}, ${ids.length} token ids identical`);
    // The looked-up rows of those ids are the quantised latents (up to the straight-through rounding).
    const q = model.lookup(ids, shape);
    const qErr = maxAbsDiff(q.dataSync(), nchwToNhwc(t['encode.quantized'].data, t['encode.quantized'].shape));
    q.dispose();
    assert.ok(qErr < 1e-5, `quantized max error ${qErr}`);
  } finally {
    model.dispose();
  }
});

test('vqgan: bad weights and inputs fail with one clear line, before any tensor is allocated', async () => {
  await backend();
  const good = await loadComponent(VQ_FOLDER, 'diffusion_pytorch_model', 'VQModel');
  const withTensors = (edit: (t: Record<string, NamedTensor>) => void): Component => {
    const tensors = Object.assign(Object.create(null), good.tensors) as Record<string, NamedTensor>;
    edit(tensors);
    return { ...good, tensors };
  };
  const oneLine = (fn: () => unknown, pattern: RegExp) => {
    const before = tf.memory().numTensors;
    assert.throws(fn, (err: Error) => {
      assert.ok(err instanceof MuseError, `MuseError, got ${err}`);
      assert.ok(!err.message.includes('\n'), 'one line');
      assert.match(err.message, pattern);
      return true;
    });
    assert.equal(tf.memory().numTensors, before, 'nothing allocated');
  };
  oneLine(
    () => VQModel.fromComponent(withTensors((t) => delete t['decoder.up_blocks.3.resnets.0.conv_shortcut.weight'])),
    /tensor "decoder\.up_blocks\.3\.resnets\.0\.conv_shortcut\.weight" is missing/,
  );
  oneLine(
    () =>
      VQModel.fromComponent(
        withTensors((t) => {
          t['quantize.embedding.weight'] = { ...t['quantize.embedding.weight'], shape: [128, 4] };
        }),
      ),
    /tensor "quantize\.embedding\.weight" has shape \[128,4\], the config needs \[64,8\]/,
  );
  oneLine(
    () =>
      VQModel.fromComponent({
        ...good,
        config: Object.assign(Object.create(null), good.config, { norm_type: 'spatial' }),
      }),
    /norm_type.*not supported/,
  );
  oneLine(
    () =>
      VQModel.fromComponent({
        ...good,
        config: Object.assign(Object.create(null), good.config, { block_out_channels: [8, 8, 16, 16, 32] }),
      }),
    /tensor "encoder\.down_blocks\.4\.resnets\.0\.conv1\.weight" has shape/,
  );
  const model = VQModel.fromComponent(good);
  try {
    oneLine(
      () => model.decode(Int32Array.from([0, 1, 64, 2]), [1, 2, 2]),
      /token 64 at position 2 is outside the codebook/,
    );
    oneLine(() => model.decode(new Int32Array(3), [1, 2, 2]), /3 tokens do not fill/);
    const odd = tf.zeros([1, 24, 32, 3]) as tf.Tensor4D;
    oneLine(() => model.encodeLatents(odd), /not a positive multiple of 16/);
    odd.dispose();
  } finally {
    model.dispose();
  }
  await assert.rejects(VQModel.load(join(FIXTURES, 'tiny-amused-256', 'scheduler')), /no config\.json/);
});

test('scheduler + vqgan: the reference pipeline run replays step by step and decodes to its image', async () => {
  await backend();
  const t = await expectedFile('pipeline.safetensors');
  const steps = cases.pipeline.steps as { step: number; timestep: number; masked_out: number }[];
  const sched = AmusedScheduler.fromFolder(join(FIXTURES, 'tiny-amused-256', 'scheduler'));
  sched.setTimesteps(steps.length, [2, 0]);
  let tokens = t['step00.latents_in'].data as Int32Array;
  assert.ok(tokens.every((x) => x === sched.maskTokenId));
  for (const s of steps) {
    const p = `step${String(s.step).padStart(2, '0')}.`;
    assert.equal(sched.timesteps[s.step], s.timestep);
    assert.deepEqual([...tokens], [...t[`${p}latents_in`].data], `${p}latents_in`);
    const logits = t[`${p}guided_logits`];
    const gumbel = t[`${p}gumbel_noise`];
    const out = sched.step({
      logits: logits.data as Float32Array,
      layout: 'BKN',
      tokens,
      batch: 1,
      codebookSize: logits.shape[1],
      stepIndex: s.step,
      random: new RecordedSchedulerRandom(
        [t[`${p}sampled_ids`].data as Int32Array],
        gumbel ? [gumbel.data as Float32Array] : [],
      ),
    });
    assert.deepEqual([...out.predOriginalSample], [...t[`${p}pred_original_sample`].data], `${p}pred_original_sample`);
    assert.deepEqual([...out.prevSample], [...t[`${p}latents_out`].data], `${p}latents_out`);
    assert.equal(out.prevSample.filter((x) => x === sched.maskTokenId).length, s.masked_out);
    tokens = out.prevSample;
  }
  const model = await VQModel.load(VQ_FOLDER);
  try {
    const raw = model.decode(tokens, [1, 16, 16]);
    const clipped = tf.tidy(() => tf.clipByValue(raw, 0, 1).dataSync());
    raw.dispose();
    const err = maxAbsDiff(clipped, t.images_np.data);
    assert.ok(err < 1e-4, `image max error ${err}`);
    console.log(`pipeline replay: 12 steps identical; decoded image max |error| ${err.toExponential(2)}`);
  } finally {
    model.dispose();
  }
});

test('vqgan: mid-block attention (mid_block_add_attention) matches a direct single-head attention', async () => {
  await backend();
  const good = await loadComponent(VQ_FOLDER, 'diffusion_pytorch_model', 'VQModel');
  const c = 16;
  const rng = new SeededSchedulerRandom(11).rng;
  const tensors = Object.assign(Object.create(null), good.tensors) as Record<string, NamedTensor>;
  const extra: Record<string, NamedTensor> = {};
  for (const side of ['encoder', 'decoder']) {
    const a = `${side}.mid_block.attentions.0`;
    extra[`${a}.group_norm.weight`] = { shape: [c], data: rng.normals(c, 0.2).map((x) => 1 + x) };
    extra[`${a}.group_norm.bias`] = { shape: [c], data: rng.normals(c, 0.1) };
    for (const l of ['to_q', 'to_k', 'to_v', 'to_out.0']) {
      extra[`${a}.${l}.weight`] = { shape: [c, c], data: rng.normals(c * c, 1 / Math.sqrt(c)) };
      extra[`${a}.${l}.bias`] = { shape: [c], data: rng.normals(c, 0.1) };
    }
  }
  const config = Object.assign(Object.create(null), good.config, { mid_block_add_attention: true });
  // Without the attention tensors: the first one is named as missing.
  assert.throws(
    () => VQModel.fromComponent({ ...good, config, tensors }),
    /tensor "encoder\.mid_block\.attentions\.0\.group_norm\.weight" is missing/,
  );
  const model = VQModel.fromComponent({ ...good, config, tensors: Object.assign(tensors, extra) });
  try {
    const [b, h, w] = [2, 3, 5];
    const xData = rng.normals(b * h * w * c);
    const x = tf.tensor4d(xData, [b, h, w, c]);
    const name = 'decoder.mid_block.attentions.0';
    const y = tf.tidy(() =>
      (model as unknown as { attention(x: tf.Tensor4D, n: string): tf.Tensor4D }).attention(x, name).dataSync(),
    );
    // Direct reference: group norm (4 groups, eps 1e-6), q/k/v = xW^T + b, softmax(qk^T/√c)v, out proj, residual.
    const G = 4;
    const gw = extra[`${name}.group_norm.weight`].data;
    const gb = extra[`${name}.group_norm.bias`].data;
    const W = (l: string) => extra[`${name}.${l}.weight`].data;
    const B = (l: string) => extra[`${name}.${l}.bias`].data;
    const n = h * w;
    let maxErr = 0;
    for (let bi = 0; bi < b; bi++) {
      const xs = Array.from({ length: n }, (_, p) =>
        Array.from(xData.subarray((bi * n + p) * c, (bi * n + p + 1) * c)),
      );
      const normed = xs.map((r) => r.slice());
      for (let g = 0; g < G; g++) {
        const cs = c / G;
        let m = 0;
        for (const r of xs) for (let k = g * cs; k < (g + 1) * cs; k++) m += r[k];
        m /= n * cs;
        let v = 0;
        for (const r of xs) for (let k = g * cs; k < (g + 1) * cs; k++) v += (r[k] - m) ** 2;
        v /= n * cs;
        for (let p = 0; p < n; p++)
          for (let k = g * cs; k < (g + 1) * cs; k++)
            normed[p][k] = ((xs[p][k] - m) / Math.sqrt(v + 1e-6)) * gw[k] + gb[k];
      }
      const lin = (r: number[], l: string) =>
        Array.from({ length: c }, (_, o) => r.reduce((s, xv, i) => s + xv * W(l)[o * c + i], B(l)[o]));
      const q = normed.map((r) => lin(r, 'to_q'));
      const k = normed.map((r) => lin(r, 'to_k'));
      const v = normed.map((r) => lin(r, 'to_v'));
      for (let p = 0; p < n; p++) {
        const s = k.map((kr) => kr.reduce((acc, kv, i) => acc + kv * q[p][i], 0) / Math.sqrt(c));
        const mx = Math.max(...s);
        const e = s.map((z) => Math.exp(z - mx));
        const sum = e.reduce((a2, z) => a2 + z, 0);
        const att = Array.from({ length: c }, (_, i) => e.reduce((acc, ev, j) => acc + (ev / sum) * v[j][i], 0));
        const o = lin(att, 'to_out.0');
        for (let i = 0; i < c; i++) maxErr = Math.max(maxErr, Math.abs(y[(bi * n + p) * c + i] - (xs[p][i] + o[i])));
      }
    }
    x.dispose();
    assert.ok(maxErr < 1e-4, `attention max error ${maxErr}`);
    // And the whole model still runs both ways with attention in the mid blocks.
    const raw = model.decode(new Int32Array(4), [1, 2, 2]);
    assert.deepEqual(raw.shape, [1, 32, 32, 3]);
    raw.dispose();
  } finally {
    model.dispose();
  }
});
