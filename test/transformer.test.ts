// The masked transformer: attention, a block and the whole forward against a slow reference in plain
// Float64 loops; text conditioning (empty prompt, padding, precomputed context); training masks;
// the masked loss; and a tiny model memorising 16 captioned token grids.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { Rng } from '../src/tensor/random.js';
import { AdamW } from '../src/train/adamw.js';
import { namedGrads } from '../src/train/grads.js';
import { learningRate } from '../src/train/schedule.js';
import { type TransformerConfig, transformerConfig, validateTransformerConfig } from '../src/transformer/config.js';
import { maskedCrossEntropy } from '../src/transformer/loss.js';
import { applyMask, maskRatio, sampleTrainingMask, sampleTrainingMasks } from '../src/transformer/masking.js';
import {
  attention,
  block,
  forward,
  initTransformer,
  mergeHeads,
  precomputeContext,
  splitHeads,
  type TransformerParams,
} from '../src/transformer/model.js';
import { MuseError } from '../src/util/errors.js';
import { relativeError } from './helpers/compare.js';

after(() => shutdownBackend());

// ---------------------------------------------------------------------------------------------------
// The slow reference: one sample at a time, Float64, matrices as row-major arrays [rows][cols].

type Mat = number[][];

const valuesOf = (p: TransformerParams, name: string) => Array.from(p[name].dataSync());
const matOf = (p: TransformerParams, name: string): Mat => {
  const [r, c] = p[name].shape;
  const v = valuesOf(p, name);
  return Array.from({ length: r }, (_, i) => v.slice(i * c, (i + 1) * c));
};

function refLinear(x: Mat, w: Mat, b: number[]): Mat {
  return x.map((row) => b.map((bj, j) => row.reduce((s, xi, i) => s + xi * w[i][j], bj)));
}

function refLayerNorm(x: Mat, g: number[], b: number[]): Mat {
  return x.map((row) => {
    const mean = row.reduce((s, v) => s + v, 0) / row.length;
    const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / row.length;
    return row.map((v, i) => ((v - mean) / Math.sqrt(variance + 1e-5)) * g[i] + b[i]);
  });
}

const refGelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

/** Multi-head attention of one sample; hidden keys are left out altogether (not masked by a bias). */
function refAttention(q: Mat, k: Mat, v: Mat, heads: number, visible: boolean[]): Mat {
  const dh = q[0].length / heads;
  const keys = k.map((_, j) => j).filter((j) => visible[j]);
  return q.map((qi) => {
    const out = new Array<number>(qi.length).fill(0);
    for (let h = 0; h < heads; h++) {
      const o = h * dh;
      const scores = keys.map((j) => {
        let s = 0;
        for (let d = 0; d < dh; d++) s += qi[o + d] * k[j][o + d];
        return s / Math.sqrt(dh);
      });
      const max = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - max));
      const z = e.reduce((a, b) => a + b, 0);
      keys.forEach((j, n) => {
        for (let d = 0; d < dh; d++) out[o + d] += (e[n] / z) * v[j][o + d];
      });
    }
    return out;
  });
}

const add = (a: Mat, b: Mat): Mat => a.map((row, i) => row.map((v, j) => v + b[i][j]));
const columns = (x: Mat, from: number, to: number): Mat => x.map((row) => row.slice(from, to));

/** The context rows of one sample: [NULL, proj(text_0), …] and which of them are visible. */
function refContext(p: TransformerParams, text: Mat, length: number): { ctx: Mat; visible: boolean[] } {
  const ctx = [valuesOf(p, 'text.null'), ...refLinear(text, matOf(p, 'text.proj.w'), valuesOf(p, 'text.proj.b'))];
  return { ctx, visible: ctx.map((_, j) => j === 0 || j - 1 < length) };
}

function refBlock(p: TransformerParams, c: TransformerConfig, l: number, x: Mat, ctx: Mat, visible: boolean[]): Mat {
  const b = `blocks.${l}`;
  const D = c.width;
  const lin = (name: string, h: Mat) => refLinear(h, matOf(p, `${name}.w`), valuesOf(p, `${name}.b`));
  const ln = (name: string, h: Mat) => refLayerNorm(h, valuesOf(p, `${name}.g`), valuesOf(p, `${name}.b`));
  const qkv = lin(`${b}.attn.qkv`, ln(`${b}.ln1`, x));
  const all = x.map(() => true);
  const sa = refAttention(columns(qkv, 0, D), columns(qkv, D, 2 * D), columns(qkv, 2 * D, 3 * D), c.heads, all);
  x = add(x, lin(`${b}.attn.out`, sa));
  const q = lin(`${b}.cross.q`, ln(`${b}.ln2`, x));
  const kv = lin(`${b}.cross.kv`, ctx);
  const ca = refAttention(q, columns(kv, 0, D), columns(kv, D, 2 * D), c.heads, visible);
  x = add(x, lin(`${b}.cross.out`, ca));
  const hidden = lin(`${b}.mlp.fc1`, ln(`${b}.ln3`, x)).map((row) => row.map(refGelu));
  return add(x, lin(`${b}.mlp.fc2`, hidden));
}

function refForward(p: TransformerParams, c: TransformerConfig, tokens: number[], text: Mat, length: number): Mat {
  const tok = matOf(p, 'tok_emb');
  const pos = matOf(p, 'pos_emb');
  let x = tokens.map((t, n) => tok[t].map((v, d) => v + pos[n][d]));
  const { ctx, visible } = refContext(p, text, length);
  for (let l = 0; l < c.layers; l++) x = refBlock(p, c, l, x, ctx, visible);
  const h = refLayerNorm(x, valuesOf(p, 'ln_f.g'), valuesOf(p, 'ln_f.b'));
  return refLinear(h, matOf(p, 'head.w'), valuesOf(p, 'head.b'));
}

/** Rows of sample b of a [B, S, D] array. */
function sampleRows(a: ArrayLike<number>, b: number, s: number, d: number): Mat {
  return Array.from({ length: s }, (_, i) => Array.from(a).slice((b * s + i) * d, (b * s + i + 1) * d));
}

/** Replaces every weight by random values (gains around 1), so biases and gains are tested too. */
function randomise(p: TransformerParams, rng: Rng): void {
  for (const [name, v] of Object.entries(p)) {
    const noise = rng.normals(v.size, 0.5);
    if (name.endsWith('.g')) noise.forEach((x, i) => (noise[i] = 1 + 0.5 * x));
    v.assign(tf.tensor(noise, v.shape));
  }
}

// Shapes of the reference tests: B = 2, N = 3, width 8, 2 heads, 2 text tokens of 4 dims.
const refConfig = validateTransformerConfig({
  codebookSize: 5,
  grid: [1, 3],
  width: 8,
  layers: 2,
  heads: 2,
  mlp: 16,
  textDim: 4,
  textTokens: 2,
});

// ---------------------------------------------------------------------------------------------------

test('config: presets, defaults and bad values', () => {
  const c = transformerConfig('small', { codebookSize: 1024, grid: [8, 8] });
  assert.deepEqual(c, {
    codebookSize: 1024,
    grid: [8, 8],
    width: 256,
    layers: 4,
    heads: 8,
    mlp: 1024,
    textDim: 512,
    textTokens: 24,
  });
  assert.equal(transformerConfig('tiny', { codebookSize: 16, grid: [4, 4], textDim: 8, textTokens: 3 }).width, 32);
  assert.throws(() => transformerConfig('huge', { codebookSize: 16, grid: [4, 4] }), /unknown transformer config/);
  assert.throws(() => validateTransformerConfig({ ...c, heads: 3 }), MuseError);
  assert.throws(() => validateTransformerConfig({ ...c, grid: [8, 0] }), /grid width/);
  assert.throws(() => validateTransformerConfig({ ...c, codebookSize: 1 }), MuseError);
});

test('multi-head attention with a key mask matches the direct computation', async () => {
  await initBackend();
  const rng = new Rng(1);
  const [B, S, D, H] = [2, 3, 8, 2];
  const q = rng.normals(B * S * D);
  const k = rng.normals(B * S * D);
  const v = rng.normals(B * S * D);
  const visible = [
    [true, true, false],
    [true, false, false],
  ];
  const got = tf.tidy(() => {
    const split = (a: Float32Array) => splitHeads(tf.tensor3d(a, [B, S, D]), H);
    const bias = tf.tensor4d(
      visible.flat().map((on) => (on ? 0 : -1e9)),
      [B, 1, 1, S],
    );
    return mergeHeads(attention(split(q), split(k), split(v), bias)).dataSync();
  });
  for (let b = 0; b < B; b++) {
    const want = refAttention(
      sampleRows(q, b, S, D),
      sampleRows(k, b, S, D),
      sampleRows(v, b, S, D),
      H,
      visible[b],
    ).flat();
    const err = relativeError(Array.from(got).slice(b * S * D, (b + 1) * S * D), want);
    assert.ok(err <= 1e-4, `sample ${b}: relative error ${err}`);
  }
});

test('one block and the whole forward match the direct computation (one prompt empty)', async () => {
  await initBackend();
  const c = refConfig;
  const rng = new Rng(2);
  const p = initTransformer(c, rng);
  randomise(p, rng);
  const [B, N, T] = [2, 3, 2];
  const tokens = Int32Array.from([0, 5, 3, 4, 1, 5]); // 5 = [MASK]
  const text = rng.normals(B * T * c.textDim);
  for (const lengths of [Int32Array.from([2, 0]), Int32Array.from([1, 0])]) {
    const x = rng.normals(B * N * c.width);
    const [gotBlock, gotLogits] = tf.tidy(() => {
      const t = tf.tensor3d(text, [B, T, c.textDim]);
      const ctx = precomputeContext(p, c, t, lengths);
      const y = block(p, c, 0, tf.tensor3d(x, [B, N, c.width]), ctx).dataSync();
      return [y, forward(p, c, tf.tensor2d(tokens, [B, N], 'int32'), t, lengths).dataSync()];
    });
    for (let b = 0; b < B; b++) {
      const { ctx, visible } = refContext(p, sampleRows(text, b, T, c.textDim), lengths[b]);
      const wantBlock = refBlock(p, c, 0, sampleRows(x, b, N, c.width), ctx, visible).flat();
      const e1 = relativeError(Array.from(gotBlock).slice(b * N * c.width, (b + 1) * N * c.width), wantBlock);
      assert.ok(e1 <= 1e-4, `block, lengths ${lengths}, sample ${b}: relative error ${e1}`);
      const K = c.codebookSize;
      const wantLogits = refForward(
        p,
        c,
        Array.from(tokens.subarray(b * N, (b + 1) * N)),
        sampleRows(text, b, T, c.textDim),
        lengths[b],
      ).flat();
      const e2 = relativeError(Array.from(gotLogits).slice(b * N * K, (b + 1) * N * K), wantLogits);
      assert.ok(e2 <= 1e-4, `forward, lengths ${lengths}, sample ${b}: relative error ${e2}`);
    }
  }
  tf.dispose(Object.values(p));
});

test('text: the empty prompt gives finite logits of its own; padding is ignored; precomputed context is the same', async () => {
  await initBackend();
  const c = transformerConfig('tiny', { codebookSize: 16, grid: [4, 4], textDim: 8, textTokens: 4 });
  const rng = new Rng(3);
  const p = initTransformer(c, rng);
  randomise(p, rng);
  const [B, N, T] = [2, 16, 4];
  const tokens = tf.tensor2d(
    Int32Array.from({ length: B * N }, () => rng.int(17)),
    [B, N],
    'int32',
  );
  const text = rng.normals(B * T * c.textDim);
  const run = (values: Float32Array, lengths: Int32Array) =>
    tf.tidy(() => forward(p, c, tokens, tf.tensor3d(values, [B, T, c.textDim]), lengths).dataSync());

  const lengths = Int32Array.from([3, 0]);
  const base = run(text, lengths);
  assert.ok(base.every(Number.isFinite), 'logits are finite');
  // Sample 1 (empty) against the same grid with a 3-token prompt.
  const withPrompt = run(text, Int32Array.from([3, 3]));
  const half = (a: ArrayLike<number>, b: number) => Array.from(a).slice((b * a.length) / B, ((b + 1) * a.length) / B);
  assert.ok(relativeError(half(withPrompt, 1), half(base, 1)) > 1e-3, 'the empty prompt differs from a prompt');
  assert.deepEqual(half(withPrompt, 0), half(base, 0));

  // Garbage (huge values, NaN, ∞) past each prompt's length changes nothing.
  const garbage = text.slice();
  for (let b = 0; b < B; b++) {
    for (let t = lengths[b]; t < T; t++) {
      for (let d = 0; d < c.textDim; d++) {
        const i = (b * T + t) * c.textDim + d;
        garbage[i] = d === 0 ? Number.NaN : d === 1 ? Number.POSITIVE_INFINITY : 1e6 * rng.normal();
      }
    }
  }
  assert.ok(relativeError(run(garbage, lengths), base) <= 1e-6, 'padded text positions leak into the logits');

  // A precomputed context gives the same logits; lengths may also come as a tensor.
  const pre = tf.tidy(() => {
    const ctx = precomputeContext(p, c, tf.tensor3d(text, [B, T, c.textDim]), tf.tensor1d(lengths, 'int32'));
    return forward(p, c, tokens, ctx).dataSync();
  });
  assert.ok(relativeError(pre, base) <= 1e-6);

  // Bad input is refused with a message.
  const t3 = tf.tensor3d(text, [B, T, c.textDim]);
  assert.throws(() => forward(p, c, tokens, t3, Int32Array.from([5, 0])), /text length 5 is not in \[0, 4\]/);
  assert.throws(() => forward(p, c, tokens, t3, Int32Array.from([1])), /1 entries for a batch of 2/);
  assert.throws(() => forward(p, c, tf.zeros([2, 15], 'int32'), t3, lengths), /tokens must be int32 \[B, 16\]/);
  tf.dispose([tokens, t3, ...Object.values(p)]);
});

test('masking: schedules, the paper’s training masks (mean 2/π), determinism', () => {
  assert.equal(maskRatio(0), 1);
  assert.ok(Math.abs(maskRatio(0.5) - Math.SQRT1_2) < 1e-12);
  assert.ok(Math.abs(maskRatio(1)) < 1e-12);
  assert.equal(maskRatio(0.25, 'linear'), 0.75);
  assert.equal(maskRatio(0.5, 'square'), 0.75);
  assert.throws(() => maskRatio(1.5), MuseError);

  const n = 256;
  const rng = new Rng(4);
  let sum = 0;
  let fewest = n;
  const draws = 20000;
  for (let i = 0; i < draws; i++) {
    const m = sampleTrainingMask(n, rng);
    const k = m.reduce((a, b) => a + b, 0);
    sum += k / n;
    fewest = Math.min(fewest, k);
  }
  const mean = sum / draws;
  assert.ok(Math.abs(mean - 0.64) <= 0.01, `mean masking fraction ${mean}`);
  assert.ok(fewest >= 1);
  // Even one token: always masked.
  const one = new Rng(5);
  for (let i = 0; i < 100; i++) assert.equal(sampleTrainingMask(1, one)[0], 1);
  // Same seed, same masks; the batch helper is the per-grid masks in sequence.
  const a = new Rng(6);
  const b = new Rng(6);
  const batch = sampleTrainingMasks(3, 16, b);
  for (let i = 0; i < 3; i++) assert.deepEqual(sampleTrainingMask(16, a), batch.subarray(i * 16, (i + 1) * 16));
  assert.notDeepEqual(sampleTrainingMask(64, new Rng(7)), sampleTrainingMask(64, new Rng(8)));
  assert.deepEqual(
    applyMask(Int32Array.from([3, 1, 4, 1]), Uint8Array.from([0, 1, 1, 0]), 9),
    Int32Array.from([3, 9, 9, 1]),
  );
});

test('masked cross-entropy with neighbour smoothing: a hand-computed case; a bad table is refused', async () => {
  await initBackend();
  // K = 3, ε = 0.2, one masked row [1, 2, 0] with target 0; target 0's neighbours: [0, 0.75, 0.25].
  //   soft target q = 0.8·onehot(0) + 0.2·[0, 0.75, 0.25] = [0.8, 0.15, 0.05]
  //   log Σe = 2 + ln(1 + e⁻¹ + e⁻²) = 2.4076059644; −log p = [1.4076, 0.4076, 2.4076]
  //   loss = 0.8·1.4076059644 + 0.15·0.4076059644 + 0.05·2.4076059644 = 1.3076059644
  const neighbours = Float32Array.from([0, 0.75, 0.25, 0.5, 0, 0.5, 0.5, 0.5, 0]);
  const logits = tf.tensor3d([1, 2, 0, 9, 9, 9], [1, 2, 3]);
  const r = maskedCrossEntropy(logits, Int32Array.from([0, 2]), Uint8Array.from([1, 0]), 0.2, neighbours);
  assert.ok(Math.abs(r.loss.dataSync()[0] - 1.3076059644) < 1e-6, `loss ${r.loss.dataSync()[0]}`);
  // Uniform smoothing gives another value (0.8·1.4076 + 0.2·mean(1.4076, 0.4076, 2.4076) = 1.4076).
  const uniform = maskedCrossEntropy(logits, Int32Array.from([0, 2]), Uint8Array.from([1, 0]), 0.2);
  assert.ok(Math.abs(uniform.loss.dataSync()[0] - 1.4076059644) < 1e-6);
  assert.throws(
    () => maskedCrossEntropy(logits, Int32Array.from([0, 2]), Uint8Array.from([1, 0]), 0.2, new Float32Array(4)),
    /neighbour table of 4 values, expected 3×3/,
  );
  tf.dispose([logits, r.loss, uniform.loss]);
});

test('masked cross-entropy: a hand-computed case, label smoothing, unmasked rows do not count', async () => {
  await initBackend();
  // Two masked positions, K = 3, ε = 0.1.
  //   row [1, 2, 3], target 2: log Σe = 3 + ln(1 + e⁻¹ + e⁻²) = 3.4076059644; −log p = [2.4076, 1.4076, 0.4076]
  //     → 0.9·0.4076059644 + 0.1·1.4076059644 = 0.5076059644
  //   row [0, 0, 0], target 1: −log p = ln 3 = 1.0986122887 for every k → 1.0986122887
  //   mean = 0.8031091265
  const lse = 3 + Math.log(1 + Math.exp(-1) + Math.exp(-2));
  const row1 = 0.9 * (lse - 3) + (0.1 * (lse - 1 + lse - 2 + lse - 3)) / 3;
  const expected = (row1 + Math.log(3)) / 2;
  assert.ok(Math.abs(expected - 0.8031091265) < 1e-9);
  const logits = tf.tensor3d([1, 2, 3, 0, 0, 0], [1, 2, 3]);
  const r = maskedCrossEntropy(logits, Int32Array.from([2, 1]), Uint8Array.from([1, 1]));
  assert.ok(Math.abs(r.loss.dataSync()[0] - expected) < 1e-6, `loss ${r.loss.dataSync()[0]}`);
  assert.equal(r.accuracy, 0.5); // row 1 right; row 2's argmax (a tie) is 0, not 1
  const plain = maskedCrossEntropy(logits, Int32Array.from([2, 1]), Uint8Array.from([1, 1]), 0);
  assert.ok(Math.abs(plain.loss.dataSync()[0] - (lse - 3 + Math.log(3)) / 2) < 1e-6);

  // Unmasked positions: their logits and targets change nothing, their logits get exactly zero gradient.
  const rng = new Rng(9);
  const [B, N, K] = [2, 4, 5];
  const mask = Uint8Array.from([1, 0, 1, 0, 0, 1, 1, 0]);
  const targets = Int32Array.from({ length: B * N }, () => rng.int(K));
  const x = rng.normals(B * N * K);
  const lossOf = (values: Float32Array, tg: Int32Array) =>
    tf.tidy(() => maskedCrossEntropy(tf.tensor3d(values, [B, N, K]), tg, mask).loss.dataSync()[0]);
  const changed = x.slice();
  const changedTargets = targets.slice();
  for (let i = 0; i < B * N; i++) {
    if (mask[i]) continue;
    for (let k = 0; k < K; k++) changed[i * K + k] = 100 * rng.normal();
    changedTargets[i] = 77; // not even a code
  }
  assert.equal(lossOf(changed, changedTargets), lossOf(x, targets));
  const g = tf.tidy(() =>
    tf
      .grad((l: tf.Tensor) => maskedCrossEntropy(l as tf.Tensor3D, targets, mask).loss)(tf.tensor3d(x, [B, N, K]))
      .dataSync(),
  );
  for (let i = 0; i < B * N; i++) {
    const row = Array.from(g.slice(i * K, (i + 1) * K));
    if (mask[i]) assert.ok(row.some((v) => v !== 0));
    else
      assert.ok(
        row.every((v) => v === 0),
        `unmasked row ${i} has gradient ${row}`,
      );
  }
  assert.throws(() => maskedCrossEntropy(logits, Int32Array.from([2, 1]), Uint8Array.from([0, 0])), /no position/);
  assert.throws(() => maskedCrossEntropy(logits, Int32Array.from([3, 1]), Uint8Array.from([1, 0])), /target 3/);
  tf.dispose([logits, r.loss, plain.loss]);
});

test('a tiny model memorises 16 captioned 4×4 token grids (masked-token accuracy ≥ 95%)', async () => {
  await initBackend();
  const G = 16;
  const c = transformerConfig('tiny', { codebookSize: 16, grid: [4, 4], textDim: 8, textTokens: 3 });
  const N = 16;
  const K = c.codebookSize;
  const rng = new Rng(10);
  const grids = Int32Array.from({ length: G * N }, () => rng.int(K));
  const text = tf.tensor3d(rng.normals(G * 3 * 8), [G, 3, 8]);
  const lengths = new Int32Array(G).fill(3);
  const p = initTransformer(c, rng.fork());
  const opt = new AdamW({ beta2: 0.99 });
  const steps = 300;
  const schedule = { peak: 3e-3, warmup: 20, total: steps };
  const masks = rng.fork();
  const started = performance.now();
  let last = { loss: 0, accuracy: 0 };
  for (let s = 0; s < steps; s++) {
    const mask = sampleTrainingMasks(G, N, masks);
    const input = tf.tensor2d(applyMask(grids, mask, K), [G, N], 'int32');
    let accuracy = 0;
    const { value, grads } = namedGrads(() => {
      const r = maskedCrossEntropy(forward(p, c, input, text, lengths), grids, mask);
      accuracy = r.accuracy;
      return r.loss;
    }, p);
    opt.apply(p, grads, learningRate(schedule, s));
    last = { loss: value.dataSync()[0], accuracy };
    tf.dispose([value, input, ...Object.values(grads)]);
  }
  const trainSeconds = (performance.now() - started) / 1000;

  // Fresh masks (another stream) over the same 16 grids.
  const fresh = new Rng(11);
  let correct = 0;
  let total = 0;
  for (let round = 0; round < 8; round++) {
    const mask = sampleTrainingMasks(G, N, fresh);
    const acc = tf.tidy(() => {
      const input = tf.tensor2d(applyMask(grids, mask, K), [G, N], 'int32');
      const r = maskedCrossEntropy(forward(p, c, input, text, lengths), grids, mask);
      return r.accuracy;
    });
    const m = mask.reduce((a, b) => a + b, 0);
    correct += acc * m;
    total += m;
  }
  const accuracy = correct / total;
  console.log(
    `memorise: ${steps} steps in ${trainSeconds.toFixed(1)} s; last train loss ${last.loss.toFixed(3)}, ` +
      `train acc ${(100 * last.accuracy).toFixed(1)}%; fresh-mask accuracy ${(100 * accuracy).toFixed(1)}% over ${total} masked tokens`,
  );
  assert.ok(accuracy >= 0.95, `masked-token accuracy ${accuracy}`);
  tf.dispose([text, ...Object.values(p)]);
});
