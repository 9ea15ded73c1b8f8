// The training harness (src/train/harness.ts) on a toy model (linear regression, AdamW): an abort
// through an AbortSignal saves and resumes bit-exactly; a time budget stops and saves; the run is
// reported as events; the library prints nothing and installs no process signal handlers.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { assignValues, newVariable } from '../src/tensor/params.js';
import { loadSafetensors, saveSafetensors } from '../src/tensor/safetensors.js';
import { AdamW } from '../src/train/adamw.js';
import { namedGrads } from '../src/train/grads.js';
import { type TrainEvent, type TrainOptions, type TrainResult, train } from '../src/train/harness.js';

before(() => initBackend());
after(() => shutdownBackend());

const TRUE_W = [0.5, -1, 2, 0.25];
type Batch = { x: tf.Tensor2D; y: tf.Tensor2D };
type Stats = { loss: number };

/** y = x·w* learned by AdamW; batches drawn with the run's RNG; one weights file. */
function toy(o: TrainOptions<Stats & { lr: number }>): Promise<TrainResult<Stats, Stats>> {
  const data = (x: Float32Array, n: number): Batch => {
    const y = new Float32Array(n);
    for (let i = 0; i < n; i++) for (let j = 0; j < 4; j++) y[i] += x[i * 4 + j] * TRUE_W[j];
    return { x: tf.tensor2d(x, [n, 4]), y: tf.tensor2d(y, [n, 1]) };
  };
  const mse = (w: tf.Variable, b: Batch) => tf.mean(tf.square(tf.sub(tf.matMul(b.x, w), b.y))) as tf.Scalar;
  return train<Batch, Stats, Stats>(o, {
    kind: 'toy',
    label: 'toy',
    publish: ['w.safetensors'],
    create: async ({ checkpoint, rng }) => {
      const w = newVariable(new Float32Array(4), [4, 1]);
      if (checkpoint)
        assignValues(w, Float32Array.from((await loadSafetensors(checkpoint.path('w.safetensors'))).tensors.w.data));
      else assignValues(w, rng.normals(4));
      const params = { w };
      const opt = new AdamW();
      const held = data(
        Float32Array.from({ length: 32 }, (_, i) => Math.sin(i)),
        8,
      );
      return {
        optimizers: { opt: { opt, params } },
        batch: (r) => data(r.normals(8 * 4), 8),
        step: (b, { lr }) => {
          const { value, grads } = namedGrads(() => mse(w, b), params);
          opt.apply(params, grads, lr);
          const loss = value.dataSync()[0];
          tf.dispose([value, ...Object.values(grads)]);
          return { loss };
        },
        disposeBatch: (b) => tf.dispose([b.x, b.y]),
        evaluate: () => ({ loss: tf.tidy(() => mse(w, held).dataSync()[0]) }),
        weights: () => ({
          'w.safetensors': (path) =>
            saveSafetensors(path, { w: { shape: [4, 1], data: w.dataSync() as Float32Array } }),
        }),
      };
    },
  });
}

const options = (out: string, extra: Partial<TrainOptions<Stats & { lr: number }>> = {}) => ({
  out,
  steps: 12,
  lr: 0.05,
  warmup: 2,
  seed: 7,
  evalEvery: 5,
  checkpointEvery: 0,
  resume: false,
  ...extra,
});

const weights = async (out: string) =>
  Array.from((await loadSafetensors(join(out, 'w.safetensors'))).tensors.w.data as Float32Array);

test('an abort through an AbortSignal saves after the step in progress and resumes bit-exactly', async () => {
  const whole = mkdtempSync(join(tmpdir(), 'muse-harness-'));
  const full = await toy(options(whole));
  assert.deepEqual([full.step, full.stoppedEarly], [12, false]);

  const parts = mkdtempSync(join(tmpdir(), 'muse-harness-'));
  const controller = new AbortController();
  const events: TrainEvent[] = [];
  const stopped = await toy(
    options(parts, {
      signal: controller.signal,
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'step' && e.step === 5) controller.abort();
      },
    }),
  );
  assert.deepEqual([stopped.step, stopped.stoppedEarly], [5, true]);
  assert.deepEqual(
    events.filter((e) => e.type === 'checkpoint' || e.type === 'stop'),
    [
      { type: 'checkpoint', step: 5 },
      { type: 'stop', step: 5, reason: 'aborted' },
    ],
  );
  const resumed = await toy(options(parts, { resume: true }));
  assert.deepEqual([resumed.step, resumed.stoppedEarly], [12, false]);
  assert.deepEqual(await weights(parts), await weights(whole));
  assert.deepEqual(resumed.history, full.history);

  // Aborted before it starts: no step, nothing saved over the checkpoint.
  const early = new AbortController();
  early.abort();
  const none = await toy(options(parts, { resume: true, steps: 20, signal: early.signal }));
  assert.deepEqual([none.step, none.stoppedEarly], [12, true]);
});

test('a time budget stops the run after a step and saves it', async () => {
  const out = mkdtempSync(join(tmpdir(), 'muse-harness-'));
  const events: TrainEvent[] = [];
  const r = await toy(options(out, { minutes: 0, onEvent: (e) => events.push(e) }));
  assert.deepEqual([r.step, r.stoppedEarly], [1, true]);
  assert.deepEqual(
    events.map((e) => e.type),
    ['start', 'step', 'checkpoint', 'stop', 'end'],
  );
  assert.deepEqual(events[3], { type: 'stop', step: 1, reason: 'time' });
  assert.equal(JSON.parse(readFileSync(join(out, 'checkpoint.json'), 'utf8')).step, 1);
  assert.equal(JSON.parse(readFileSync(join(out, 'history.json'), 'utf8')).train[0].step, 1);
});

test('a run is reported as events; the library prints nothing and installs no signal handlers', async () => {
  const out = mkdtempSync(join(tmpdir(), 'muse-harness-'));
  const listeners = () => ['SIGINT', 'SIGTERM'].map((s) => process.listenerCount(s));
  const before = listeners();
  const during: number[][] = [];
  const events: TrainEvent[] = [];
  const printed: string[] = [];
  const writes = [process.stdout, process.stderr].map((stream) => {
    const write = stream.write;
    // The test runner reports through stdout in binary chunks while a test runs: those pass.
    stream.write = ((chunk: unknown, ...rest: never[]) =>
      typeof chunk === 'string'
        ? printed.push(chunk) > 0
        : write.call(stream, chunk as Uint8Array, ...rest)) as typeof stream.write;
    return () => {
      stream.write = write;
    };
  });
  const consoleMethods = ['log', 'error', 'warn', 'info'] as const;
  const saved = consoleMethods.map((m) => console[m]);
  for (const m of consoleMethods) console[m] = (...args: unknown[]) => printed.push(args.join(' '));
  try {
    await toy(
      options(out, {
        checkpointEvery: 4,
        onEvent: (e) => {
          events.push(e);
          during.push(listeners());
        },
      }),
    );
    await toy(options(out, { overwrite: true, steps: 2, onEvent: (e) => events.push(e) }));
  } finally {
    for (const restore of writes) restore();
    consoleMethods.forEach((m, i) => {
      console[m] = saved[i];
    });
  }
  assert.deepEqual(printed, []);
  assert.deepEqual(listeners(), before);
  for (const d of during) assert.deepEqual(d, before);

  const of = (type: TrainEvent['type']) => events.filter((e) => e.type === type);
  assert.deepEqual(of('start')[0], { type: 'start', label: 'toy', step: 0, steps: 12, resumed: false, out });
  const steps = of('step') as Array<Extract<TrainEvent, { type: 'step' }>>;
  assert.deepEqual(
    steps.map((e) => e.step),
    [...Array.from({ length: 12 }, (_, i) => i + 1), 1, 2],
  );
  assert.deepEqual(Object.keys(steps[0].stats), ['loss', 'lr']);
  assert.deepEqual(
    of('validation').map((e) => (e as { step: number }).step),
    [5, 10, 12, 2],
  );
  assert.deepEqual(
    of('checkpoint').map((e) => (e as { step: number }).step),
    [4, 8, 12, 2],
  );
  assert.deepEqual(of('message'), [{ type: 'message', text: `overwriting the run in ${out}` }]);
  assert.deepEqual(of('end').at(0), { type: 'end', step: 12, stoppedEarly: false });
});
