// Decoding as pure functions (like maskgit's mask_schedule.py / parallel_decode.py): the schedule of
// masked counts, sampling against softmax, parallel decoding with a fake model, guidance, outpainting
// windows and mask-free editing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { maskFreeEdit } from '../src/decoding/edit.js';
import { guidanceScale, guideLogits } from '../src/decoding/guidance.js';
import { extendCanvas, outpaintCanvas, outpaintWindows, windowTokens } from '../src/decoding/outpaint.js';
import { type LogitsFn, parallelDecode } from '../src/decoding/parallel-decode.js';
import { meanCodeToken, sampleToken, validateSampling } from '../src/decoding/sampling.js';
import { confidenceNoise, decodingSteps, maskedCounts } from '../src/decoding/schedule.js';
import { Rng } from '../src/tensor/random.js';
import { MuseError } from '../src/util/errors.js';

const K = 16;
const MASK = K;

/** A fake model: fixed seeded logits per (grid position, code), independent of the input. */
function fixedLogits(n: number, seed = 7): LogitsFn {
  const table = new Rng(seed).normals(n * K, 2);
  return async (_tokens, batch) => {
    const out = new Float32Array(batch * n * K);
    for (let b = 0; b < batch; b++) out.set(table, b * n * K);
    return out;
  };
}

test('masked counts follow floor(m·cos(π/2·t/N)) and reach 0 (hand-worked for m = 64, N = 12)', () => {
  const counts = maskedCounts(64, 12, 'cosine');
  const expected = [64];
  for (let t = 1; t <= 12; t++) expected.push(Math.floor(64 * Math.cos((Math.PI / 2) * (t / 12)) + 1e-9));
  // Unclamped here: the cosine drops by at least one token every step for m = 64.
  assert.deepEqual(Array.from(counts), expected);
  assert.deepEqual(Array.from(counts.slice(0, 4)), [64, 63, 61, 59]);
  assert.equal(counts[12], 0);
  assert.deepEqual(Array.from(maskedCounts(10, 10, 'linear')), [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
});

test('every step commits at least one token, whatever the schedule; steps beyond the masked count are adjusted', () => {
  for (const schedule of ['cosine', 'linear', 'square'] as const) {
    for (const [m, N] of [
      [5, 5],
      [7, 3],
      [64, 24],
      [3, 1],
      [256, 8],
    ]) {
      const c = maskedCounts(m, N, schedule);
      assert.equal(c[0], m);
      assert.equal(c[N], 0);
      for (let t = 1; t <= N; t++) assert.ok(c[t] < c[t - 1], `${schedule} m=${m} N=${N} t=${t}`);
    }
  }
  assert.throws(() => maskedCounts(4, 5), MuseError);
  assert.throws(() => maskedCounts(4, 0), MuseError);
  assert.deepEqual(decodingSteps(12, 64), { steps: 12 });
  const adjusted = decodingSteps(12, 3);
  assert.equal(adjusted.steps, 3);
  assert.match(adjusted.note ?? '', /3 steps/);
  assert.throws(() => decodingSteps(0, 3), MuseError);
  assert.equal(confidenceNoise(4.5, 0, 12), 4.5);
  assert.equal(confidenceNoise(4.5, 12, 12), 0);
});

test('sampling: draws follow softmax(logits/T); top-k keeps the k best; T = 0 is argmax; log-prob is exact', () => {
  const logits = Float32Array.from([1, 0.5, -1, 2, 0]);
  const rng = new Rng(3);
  for (const T of [1, 0.5]) {
    const o = validateSampling({ temperature: T }, 5);
    const counts = new Array(5).fill(0);
    const draws = 40000;
    for (let i = 0; i < draws; i++) counts[sampleToken(logits, o, rng).token]++;
    const z = Array.from(logits, (l) => Math.exp(l / T));
    const total = z.reduce((a, b) => a + b, 0);
    z.forEach((p, k) => assert.ok(Math.abs(counts[k] / draws - p / total) < 0.01, `T=${T} k=${k}`));
  }
  const top2 = validateSampling({ topK: 2 }, 5);
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) seen.add(sampleToken(logits, top2, rng).token);
  assert.deepEqual([...seen].sort(), [0, 3]);
  const greedy = sampleToken(logits, validateSampling({ temperature: 0 }, 5), rng);
  assert.equal(greedy.token, 3);
  const logZ = Math.log(Array.from(logits).reduce((a, l) => a + Math.exp(l), 0));
  assert.ok(Math.abs(greedy.logProb - (2 - logZ)) < 1e-6);
  assert.throws(() => validateSampling({ topK: 6 }, 5), MuseError);
  assert.throws(() => validateSampling({ temperature: -1 }, 5), MuseError);
});

test('parallel decoding: each step commits exactly the scheduled count; committed tokens never change', async () => {
  const n = 64;
  const batch = 3;
  const start = new Int32Array(batch * n).fill(MASK);
  const snapshots: Int32Array[] = [];
  const tokens = await parallelDecode(
    fixedLogits(n),
    { tokens: start, batch, codebookSize: K, maskId: MASK },
    { steps: 12, rng: new Rng(1), onStep: (_s, _n, t) => void snapshots.push(Int32Array.from(t)) },
  );
  const counts = maskedCounts(n, 12);
  assert.equal(snapshots.length, 12);
  snapshots.forEach((snap, t) => {
    for (let b = 0; b < batch; b++) {
      const grid = snap.subarray(b * n, (b + 1) * n);
      assert.equal(grid.filter((x) => x === MASK).length, counts[t + 1], `step ${t + 1} grid ${b}`);
      const prev = t > 0 ? snapshots[t - 1].subarray(b * n, (b + 1) * n) : start.subarray(b * n, (b + 1) * n);
      for (let i = 0; i < n; i++) if (prev[i] !== MASK) assert.equal(grid[i], prev[i], 'a committed token changed');
    }
  });
  assert.ok(tokens.every((t) => t >= 0 && t < K));
});

test('parallel decoding: same seed → same tokens; another seed → different tokens', async () => {
  const run = (seed: number) =>
    parallelDecode(
      fixedLogits(64),
      { tokens: new Int32Array(2 * 64).fill(MASK), batch: 2, codebookSize: K, maskId: MASK },
      { steps: 8, rng: new Rng(seed), temperature: 1 },
    );
  assert.deepEqual(await run(5), await run(5));
  assert.notDeepEqual(await run(5), await run(6));
});

test('parallel decoding keeps every given token (inpainting) and only fills the masked ones', async () => {
  const n = 64;
  const known = new Rng(2).uniforms(n, 0, K);
  const start = Int32Array.from(known, (v, i) => (i % 5 === 0 ? MASK : Math.floor(v)));
  const out = await parallelDecode(
    fixedLogits(n),
    { tokens: start, batch: 1, codebookSize: K, maskId: MASK },
    { steps: 4, rng: new Rng(0) },
  );
  for (let i = 0; i < n; i++) {
    if (start[i] !== MASK) assert.equal(out[i], start[i]);
    else assert.ok(out[i] >= 0 && out[i] < K);
  }
  // With no noise and temperature 0 each filled token is the per-position argmax of the fake model.
  const greedy = await parallelDecode(
    fixedLogits(n),
    { tokens: start, batch: 1, codebookSize: K, maskId: MASK },
    { steps: 4, rng: new Rng(0), temperature: 0, choiceTemperature: 0 },
  );
  const table = await fixedLogits(n)(start, 1, 0, 1);
  for (let i = 0; i < n; i++) {
    if (start[i] !== MASK) continue;
    const row = Array.from(table.subarray(i * K, (i + 1) * K));
    assert.equal(greedy[i], row.indexOf(Math.max(...row)));
  }
});

test('guidance: (1 + t)·cond − t·uncond; t = 0 is the conditional logits exactly; linear ramp reaches t', () => {
  const cond = Float32Array.from([1, 2, 3]);
  const uncond = Float32Array.from([0.5, 2, 4]);
  assert.deepEqual(Array.from(guideLogits(cond, uncond, 0)), [1, 2, 3]);
  assert.deepEqual(Array.from(guideLogits(cond, uncond, 2)), [2, 2, 1]);
  assert.equal(guidanceScale(3, 0, 12, 'constant'), 3);
  assert.equal(guidanceScale(3, 11, 12, 'linear'), 3);
  assert.equal(guidanceScale(3, 5, 12, 'linear'), 1.5);
  assert.throws(() => guidanceScale(-1, 0, 12), MuseError);
});

test('outpainting: the canvas grows, the original tokens stay, every window sees known tokens', async () => {
  const h = 4;
  const w = 4;
  const original = Int32Array.from({ length: 2 * h * w }, (_, i) => i % K);
  const ext = { top: 1, bottom: 0, left: 3, right: 6 };
  const canvas = extendCanvas(original, 2, h, w, ext, MASK);
  assert.equal(canvas.height, 5);
  assert.equal(canvas.width, 13);
  const windows = outpaintWindows(canvas.height, canvas.width, [h, w], { row: 1, col: 3 });
  assert.deepEqual(windows[0], { row: 1, col: 3 });
  const covered = new Uint8Array(canvas.height * canvas.width);
  for (const x of windows)
    for (let y = 0; y < h; y++) for (let c = 0; c < w; c++) covered[(x.row + y) * canvas.width + x.col + c] = 1;
  assert.ok(
    covered.every((v) => v === 1),
    'windows cover the canvas',
  );
  let calls = 0;
  const done = await outpaintCanvas(canvas, [h, w], { row: 1, col: 3 }, MASK, async (win) => {
    calls++;
    assert.ok(
      win.some((t) => t !== MASK),
      'a window with no known token',
    );
    return parallelDecode(
      fixedLogits(h * w, calls),
      { tokens: win, batch: 2, codebookSize: K, maskId: MASK },
      { steps: 1, rng: new Rng(calls) },
    );
  });
  assert.ok(calls >= 3);
  assert.ok(!done.tokens.includes(MASK));
  for (let b = 0; b < 2; b++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        assert.equal(done.tokens[(b * 5 + y + 1) * 13 + x + 3], original[(b * h + y) * w + x]);
  assert.deepEqual(windowTokens(done, 1, 3, [h, w]), original);
});

test('mask-free editing keeps most tokens after few iterations and moves more with more iterations', async () => {
  const n = 64;
  const start = Int32Array.from({ length: n }, (_, i) => (i * 7) % K);
  const changed = async (iterations: number) => {
    const out = await maskFreeEdit(
      fixedLogits(n),
      { tokens: start, batch: 1, codebookSize: K, maskId: MASK },
      { iterations, rng: new Rng(4) },
    );
    return out.filter((t, i) => t !== start[i]).length / n;
  };
  const one = await changed(1);
  const few = await changed(3);
  const many = await changed(100);
  assert.ok(one <= 0.08 + 1e-9, `one iteration resamples 8% at most (changed ${one})`);
  assert.ok(few < 0.25, `3 iterations keep most tokens (changed ${few})`);
  assert.ok(many > few, `100 iterations move more (${many} vs ${few})`);
  await assert.rejects(
    maskFreeEdit(
      fixedLogits(n),
      { tokens: new Int32Array(n).fill(MASK), batch: 1, codebookSize: K, maskId: MASK },
      { rng: new Rng(0) },
    ),
    MuseError,
  );
});

/** log softmax(row)[k] in float64, for hand-checking confidences. */
function logSoftmax(row: ArrayLike<number>, k: number): number {
  const max = Math.max(...Array.from(row));
  let sum = 0;
  for (let j = 0; j < row.length; j++) sum += Math.exp(row[j] - max);
  return row[k] - max - Math.log(sum);
}

/**
 * A fake model over grids of c.length positions: position i puts logit c[b][i] on code (i + 5) % K
 * and 0 on every other code, so its most likely code is (i + 5) % K with confidence growing with c.
 */
function peakedLogits(c: number[][]): LogitsFn {
  const n = c[0].length;
  return async (_tokens, batch) => {
    const out = new Float32Array(batch * n * K);
    for (let b = 0; b < batch; b++) for (let i = 0; i < n; i++) out[(b * n + i) * K + ((i + 5) % K)] = c[b][i];
    return out;
  };
}

test('parallel decoding commits the most confident draws first (hand-worked: 4 positions, 2 steps)', async () => {
  // Linear schedule, m = 4, N = 2: 2 tokens stay masked after step 1. Without noise and at temperature
  // 0 every position draws its peak code; the confidences rank with c, so step 1 must commit the two
  // largest c of each grid: positions 3 and 1 of grid 0 (c = 6, 4), positions 0 and 2 of grid 1.
  const c = [
    [1, 4, 2, 6],
    [6, 1, 4, 2],
  ];
  const M = MASK;
  const snapshots: number[][] = [];
  const out = await parallelDecode(
    peakedLogits(c),
    { tokens: new Int32Array(8).fill(MASK), batch: 2, codebookSize: K, maskId: MASK },
    {
      steps: 2,
      schedule: 'linear',
      temperature: 0,
      choiceTemperature: 0,
      rng: new Rng(0),
      onStep: (_s, _n, t) => void snapshots.push(Array.from(t)),
    },
  );
  assert.deepEqual(snapshots[0], [M, 6, M, 8, 5, M, 7, M], 'step 1 commits the two most confident of each grid');
  assert.deepEqual(Array.from(out), [5, 6, 7, 8, 5, 6, 7, 8]);
});

test('confidence noise: which position commits first follows softmax(log p / τ_t), τ_t = τ·(1 − t/N)', async () => {
  // Three positions, N = 3, linear schedule: step 1 commits one token, step 2 one more, step 3 the
  // last. At temperature 0 position i draws its peak code with log-probability l_i; its confidence
  // is l_i + τ_t·g_i with g_i standard Gumbel, so (Gumbel-max) position i commits first with
  // probability softmax(l/τ_1)_i, τ_1 = 2τ/3; of the two left, j commits at step 2 with probability
  // σ((l_j − l_k)/τ_2), τ_2 = τ/3. Without noise position 2 would always go first, then position 1.
  const c = [0, 1.5, 3];
  const l = c.map((ci, i) => {
    const row = new Array(K).fill(0);
    row[(i + 5) % K] = ci;
    return logSoftmax(row, (i + 5) % K);
  });
  const trials = 4000;
  for (const tau of [3, undefined]) {
    const t = tau ?? 4.5; // the documented default (maskgit's)
    const [t1, t2] = [(t * 2) / 3, t / 3];
    const z1 = l.map((x) => Math.exp(x / t1));
    const sum1 = z1.reduce((a, b) => a + b, 0);
    const counts = new Map<string, number>();
    const rng = new Rng(11);
    for (let trial = 0; trial < trials; trial++) {
      const order: number[] = [];
      await parallelDecode(
        peakedLogits([c]),
        { tokens: new Int32Array(3).fill(MASK), batch: 1, codebookSize: K, maskId: MASK },
        {
          steps: 3,
          schedule: 'linear',
          temperature: 0,
          choiceTemperature: tau,
          rng,
          onStep: (_s, _n, tokens) => {
            for (let i = 0; i < 3; i++) if (tokens[i] !== MASK && !order.includes(i)) order.push(i);
          },
        },
      );
      counts.set(order.join(''), (counts.get(order.join('')) ?? 0) + 1);
    }
    for (const [i, j, k] of [
      [0, 1, 2],
      [0, 2, 1],
      [1, 0, 2],
      [1, 2, 0],
      [2, 0, 1],
      [2, 1, 0],
    ]) {
      const want = (z1[i] / sum1) * (1 / (1 + Math.exp(-(l[j] - l[k]) / t2)));
      const got = (counts.get(`${i}${j}${k}`) ?? 0) / trials;
      assert.ok(Math.abs(got - want) < 0.035, `τ = ${t}: order ${i}${j}${k} in ${got} of runs, expected ${want}`);
    }
  }
});

test('guidance: the default schedule ramps the scale linearly, t_s = t·(s + 1)/N (hand-worked for t = 3, N = 4)', () => {
  assert.deepEqual(
    [0, 1, 2, 3].map((s) => guidanceScale(3, s, 4)),
    [0.75, 1.5, 2.25, 3],
  );
  assert.deepEqual(
    [0, 1, 2, 3].map((s) => guidanceScale(3, s, 4, 'linear')),
    [0.75, 1.5, 2.25, 3],
  );
  assert.deepEqual(
    [0, 1, 2, 3].map((s) => guidanceScale(3, s, 4, 'constant')),
    [3, 3, 3, 3],
  );
});

test('mean-code choice: the code nearest the mean code vector, confidence minus the expected squared distance (hand-worked)', () => {
  // Codes on a line at 0, 1, 2 and 10 (dim 1). p = [0.45, 0.1, 0.45, 0]: the argmax is code 0 (or 2),
  // the mean is 1.0, so the least likely code 1 is chosen; E‖e₁ − e_j‖² = 0.45·1 + 0.1·0 + 0.45·1 = 0.9.
  const space = { data: Float32Array.from([0, 1, 2, 10]), dim: 1 };
  const logits = Float32Array.from([Math.log(0.45), Math.log(0.1), Math.log(0.45), -1e4]);
  const pick = meanCodeToken(logits, 1, space);
  assert.equal(pick.token, 1);
  assert.ok(Math.abs(pick.confidence + 0.9) < 1e-6, `confidence ${pick.confidence}`);
  // Temperature sharpens before averaging: at T = 0.5, p ∝ p², so p = [0.488, 0.024, 0.488, 0] —
  // still symmetric, still code 1, with E = 2 · 0.488 = 0.976.
  const sharp = meanCodeToken(logits, 0.5, space);
  assert.equal(sharp.token, 1);
  assert.ok(Math.abs(sharp.confidence + (2 * 0.45 ** 2) / (2 * 0.45 ** 2 + 0.01)) < 1e-6);
  // Mass on far codes: p = [0.5, 0, 0, 0.5] → mean 5 → code 2 (distance 3, nearer than 10 or 1).
  const far = meanCodeToken(Float32Array.from([0, -1e4, -1e4, 0]), 1, space);
  assert.equal(far.token, 2);
  // Two dimensions: codes at the corners of a square and its centre; mass on two opposite corners → centre.
  const square = { data: Float32Array.from([0, 0, 2, 0, 0, 2, 2, 2, 1, 1]), dim: 2 };
  assert.equal(meanCodeToken(Float32Array.from([0, -1e4, -1e4, 0, -1e4]), 1, square).token, 4);
  assert.throws(() => meanCodeToken(logits, 0, space), /temperature > 0/);
  assert.throws(() => meanCodeToken(logits, 1, { data: new Float32Array(6), dim: 2 }), /3 codes for 4 logits/);
});

test('parallel decoding with the mean-code choice: deterministic, tightest positions first', async () => {
  // Three positions, codes on a line at 0, 1, 2 (+ an unused far code). Position 0 is sure of code 2,
  // position 1 splits between 0 and 2 (mean 1: code 1, expected error 1), position 2 leans to code 0.
  const space = { data: Float32Array.from([0, 1, 2, 10]), dim: 1 };
  const rows = [
    [-1e4, -1e4, 0, -1e4],
    [0, -1e4, 0, -1e4],
    [Math.log(0.8), Math.log(0.2), -1e4, -1e4],
  ];
  const order: number[][] = [];
  const flat: LogitsFn = async (tokens, batch) => {
    order.push(Array.from(tokens));
    const out = new Float32Array(batch * 3 * 4);
    for (let b = 0; b < batch; b++) out.set(rows.flat(), b * 12);
    return out;
  };
  const problem = { tokens: Int32Array.from([4, 4, 4]), batch: 1, codebookSize: 4, maskId: 4 };
  const a = await parallelDecode(flat, problem, {
    steps: 3,
    schedule: 'linear',
    choiceTemperature: 0,
    rng: new Rng(1),
    meanCode: space,
  });
  const b = await parallelDecode(flat, problem, {
    steps: 3,
    schedule: 'linear',
    choiceTemperature: 0,
    rng: new Rng(2),
    meanCode: space,
  });
  assert.deepEqual(Array.from(a), [2, 1, 0]);
  assert.deepEqual(Array.from(b), Array.from(a), 'no randomness without confidence noise');
  // Commit order: position 0 (error 0) first, then position 2 (error 0.8·0.2·1 = 0.16), then position 1 (1).
  assert.deepEqual(order[1], [2, 4, 4]);
  assert.deepEqual(order[2], [2, 4, 0]);
});
