// aMUSEd U-ViT (diffusers UVit2DModel) against the reference outputs in test/fixtures/amused/expected,
// on the wasm backend: logits of the 4 stored cases, the submodule outputs of one case, malformed
// folders refused before any tf tensor exists, and the 512-layout down/upsampling path against a
// plain-loop re-computation from the PyTorch-layout weights.
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { microCondEmbedding, parseUVitConfig, UVit, uvitTensorSpecs } from '../src/amused/uvit.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { Rng } from '../src/tensor/random.js';
import { loadSafetensors, type NamedTensor, saveSafetensors } from '../src/tensor/safetensors.js';
import { MuseError } from '../src/util/errors.js';

const FIXTURES = 'test/fixtures/amused';
const TRANSFORMER = join(FIXTURES, 'tiny-amused-256/transformer');
const CASES = ['cfg_pair_half_masked', 'cfg_pair_all_masked', 'batch3_mixed', 'random_cond_custom_micro'];
/** Absolute tolerance on logits and intermediates (logits have std ≈ 1.1, |max| ≈ 5). */
const ABS_TOL = 1e-4;
/** Relative tolerance, ‖a − b‖∞ / ‖b‖∞ (the fixture README's float32 target for the transformer). */
const REL_TOL = 1e-5;

let model: UVit;
let expected: Record<string, NamedTensor>;
let temp: string;

before(async () => {
  await initBackend();
  model = await UVit.load(TRANSFORMER);
  expected = (await loadSafetensors(join(FIXTURES, 'expected/transformer.safetensors'))).tensors;
  temp = await mkdtemp(join(tmpdir(), 'amused-uvit-'));
});

after(async () => {
  model?.dispose();
  if (temp) await rm(temp, { recursive: true, force: true });
  shutdownBackend(); // a threaded wasm backend (the pure-wasm path) otherwise keeps the process alive
});

/** NCHW data → NHWC order (for comparing PyTorch feature maps with ours). */
function nchwToNhwc(data: ArrayLike<number>, [n, c, h, w]: number[]): Float32Array {
  const out = new Float32Array(n * c * h * w);
  for (let a = 0; a < n; a++)
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) out[((a * h + y) * w + x) * c + ch] = data[((a * c + ch) * h + y) * w + x];
  return out;
}

/** Max |a − b| and max |a − b| / max|b|. */
function errors(a: ArrayLike<number>, b: ArrayLike<number>): { abs: number; rel: number } {
  assert.equal(a.length, b.length, 'lengths differ');
  let abs = 0;
  let scale = 1e-30;
  for (let i = 0; i < a.length; i++) {
    abs = Math.max(abs, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return { abs, rel: abs / scale };
}

function caseInputs(name: string) {
  const get = (k: string) => expected[`${name}.${k}`];
  const ids = get('input_ids');
  const enc = get('encoder_hidden_states');
  const pooled = get('pooled_text_emb');
  const micro = get('micro_conds');
  return {
    inputIds: tf.tensor(ids.data, ids.shape, 'int32'),
    encoderHiddenStates: tf.tensor(enc.data, enc.shape, 'float32'),
    pooledTextEmb: tf.tensor(pooled.data, pooled.shape, 'float32'),
    microConds: tf.tensor(micro.data, micro.shape, 'float32'),
  };
}

function disposeAll(o: Record<string, tf.Tensor>): void {
  for (const t of Object.values(o)) t.dispose();
}

test('logits of the 4 reference cases match diffusers within 1e-4 (layout [B, H, W, codebook])', async (t) => {
  for (const name of CASES) {
    const inputs = caseInputs(name);
    const before = tf.memory().numTensors;
    const logits = model.forward(inputs);
    const ref = expected[`${name}.logits`];
    const [b, k, h, w] = ref.shape;
    assert.deepEqual(logits.shape, [b, h, w, k], `${name}: logits shape`);
    const err = errors(logits.dataSync(), nchwToNhwc(ref.data, ref.shape));
    logits.dispose();
    assert.equal(tf.memory().numTensors, before, `${name}: forward leaked tensors`);
    disposeAll(inputs);
    t.diagnostic(`${name}: max abs ${err.abs.toExponential(2)}, rel ${err.rel.toExponential(2)}`);
    assert.ok(err.abs < ABS_TOL, `${name}: max abs error ${err.abs} ≥ ${ABS_TOL}`);
    assert.ok(err.rel < REL_TOL, `${name}: relative error ${err.rel} ≥ ${REL_TOL}`);
  }
});

test('submodule outputs of cfg_pair_half_masked match diffusers (localises a mismatch)', async (t) => {
  const inter = (await loadSafetensors(join(FIXTURES, 'expected/transformer_intermediates.safetensors'))).tensors;
  const prefix = 'cfg_pair_half_masked.';
  const got = new Map<string, { data: Float32Array; shape: number[] }>();
  const inputs = caseInputs('cfg_pair_half_masked');
  model
    .forward(inputs, { capture: (n, x) => got.set(n, { data: x.dataSync() as Float32Array, shape: x.shape }) })
    .dispose();
  disposeAll(inputs);
  const names = Object.keys(inter).filter((k) => k.startsWith(prefix));
  assert.equal(names.length, 11);
  for (const key of names) {
    const name = key.slice(prefix.length);
    const ref = inter[key];
    const mine = got.get(name);
    assert.ok(mine, `no captured output for ${name}`);
    // 4-D reference maps are NCHW; ours NHWC.
    const refData = ref.shape.length === 4 ? nchwToNhwc(ref.data, ref.shape) : ref.data;
    const refShape = ref.shape.length === 4 ? [ref.shape[0], ref.shape[2], ref.shape[3], ref.shape[1]] : ref.shape;
    assert.deepEqual(mine.shape, refShape, `${name}: shape`);
    const err = errors(mine.data, refData);
    t.diagnostic(`${name}: max abs ${err.abs.toExponential(2)}, rel ${err.rel.toExponential(2)}`);
    assert.ok(err.abs < ABS_TOL, `${name}: max abs error ${err.abs}`);
    assert.ok(err.rel < REL_TOL, `${name}: relative error ${err.rel}`);
  }
});

test('micro-conditioning embedding: cos half first, then sin (flip_sin_to_cos), frequencies 10000^(−i/half)', () => {
  const e = microCondEmbedding([0, 2], 4);
  assert.deepEqual([...e.slice(0, 4)], [1, 1, 0, 0]);
  // half 2: freqs 1 and 10000^(−1/2) = 0.01
  assert.ok(Math.abs(e[4] - Math.cos(2)) < 1e-6 && Math.abs(e[5] - Math.cos(0.02)) < 1e-6);
  assert.ok(Math.abs(e[6] - Math.sin(2)) < 1e-6 && Math.abs(e[7] - Math.sin(0.02)) < 1e-6);
});

/** A copy of the tiny transformer folder with its weights and config edited. */
async function editedFolder(
  name: string,
  edit: (tensors: Record<string, NamedTensor>, config: Record<string, unknown>) => void,
): Promise<string> {
  const dir = join(temp, name);
  await cp(TRANSFORMER, dir, { recursive: true });
  const file = join(dir, 'diffusion_pytorch_model.safetensors');
  const { tensors } = await loadSafetensors(file);
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  edit(tensors, config);
  await saveSafetensors(file, tensors);
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

async function refusal(dir: string): Promise<string> {
  const before = tf.memory().numTensors;
  let message = '';
  await assert.rejects(UVit.load(dir), (err: Error) => {
    assert.ok(err instanceof MuseError, `not a MuseError: ${err}`);
    message = err.message;
    return true;
  });
  assert.equal(tf.memory().numTensors, before, 'tf tensors were made before the refusal');
  return message;
}

test('a missing tensor is refused by name before any tf tensor is made', async () => {
  const dir = await editedFolder('missing', (tensors) => {
    delete tensors['up_block.attention_blocks.1.attn2.to_v.weight'];
  });
  const msg = await refusal(dir);
  assert.match(msg, /tensor "up_block\.attention_blocks\.1\.attn2\.to_v\.weight" is missing/);
});

test('a wrong-shaped tensor is refused with both shapes', async () => {
  const dir = await editedFolder('shape', (tensors) => {
    const t = tensors['transformer_layers.1.ff.net.2.weight'];
    tensors['transformer_layers.1.ff.net.2.weight'] = { shape: [64, 32], data: t.data };
  });
  const msg = await refusal(dir);
  assert.match(
    msg,
    /tensor "transformer_layers\.1\.ff\.net\.2\.weight" has shape \[64,32\], the config needs \[32,64\]/,
  );
});

test('a config of another class is refused (before the weights are read)', async () => {
  const dir = await editedFolder('class', (_tensors, config) => {
    config._class_name = 'UNet2DConditionModel';
  });
  const msg = await refusal(dir);
  assert.match(msg, /_class_name "UNet2DConditionModel" is not UVit2DModel/);
});

test('bad forward inputs are refused with one clear line', () => {
  const inputs = caseInputs('random_cond_custom_micro');
  const bad = tf.tensor2d([[1, 2, 3, 4]]);
  assert.throws(() => model.forward({ ...inputs, microConds: bad }), /microConds must be float32 \[1, 5\]/);
  const ids = tf.fill([1, 16, 16], 128, 'int32');
  assert.throws(() => model.forward({ ...inputs, inputIds: ids }), /inputIds holds 128, outside \[0, 128\)/);
  disposeAll({ ...inputs, bad, ids });
});

test('the released amused-256 / amused-512 configs parse; their tensor lists are consistent', async (t) => {
  for (const name of ['amused-256', 'amused-512']) {
    const raw = JSON.parse(await readFile(join(FIXTURES, 'full-configs', name, 'transformer/config.json'), 'utf8'));
    const cfg = parseUVitConfig(raw, name);
    assert.equal(cfg.numMicroConds, 5);
    assert.equal(cfg.downsample, name === 'amused-512');
    const specs = uvitTensorSpecs(cfg);
    assert.equal(new Set(specs.map((s) => s.name)).size, specs.length, 'duplicate tensor names');
    assert.equal(
      specs.some((s) => s.name === 'down_block.downsample.conv.weight'),
      cfg.downsample,
    );
    assert.equal(
      specs.some((s) => s.name === 'up_block.upsample.conv.weight'),
      cfg.upsample,
    );
    const params = specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
    t.diagnostic(`${name}: ${specs.length} tensors, ${(params / 1e6).toFixed(1)}M parameters`);
  }
});

// ---- the 512 layout: downsample / upsample --------------------------------------------------------

const TINY_512 = {
  _class_name: 'UVit2DModel',
  hidden_size: 8,
  use_bias: true,
  cond_embed_dim: 6,
  micro_cond_encode_dim: 4,
  micro_cond_embed_dim: 20,
  encoder_hidden_size: 6,
  vocab_size: 16,
  codebook_size: 8,
  in_channels: 4,
  block_out_channels: 4,
  num_res_blocks: 1,
  downsample: true,
  upsample: true,
  block_num_heads: 2,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 8,
  layer_norm_eps: 1e-6,
  ln_elementwise_affine: true,
  sample_size: 4,
};

/** RMSNorm of one pixel's channel vector (plain loops). */
function rmsPixel(v: number[], g: ArrayLike<number>, eps: number): number[] {
  const ms = v.reduce((s, x) => s + x * x, 0) / v.length;
  const r = 1 / Math.sqrt(ms + eps);
  return v.map((x, i) => x * r * g[i]);
}

test('512 layout: downsample (RMS, pad, 2×2/2 conv) and upsample (RMS, 2×2/2 transposed conv) match plain loops', async () => {
  const cfg = parseUVitConfig(TINY_512, 'tiny');
  const rng = new Rng(7);
  const tensors: Record<string, NamedTensor> = {};
  for (const s of uvitTensorSpecs(cfg)) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    tensors[s.name] = { shape: s.shape, data: rng.normals(n, 0.5) };
  }
  const dir = join(temp, 'tiny512');
  await cp(TRANSFORMER, dir, { recursive: true, filter: (src) => !src.endsWith('.safetensors') });
  await writeFile(join(dir, 'config.json'), JSON.stringify(TINY_512));
  await saveSafetensors(join(dir, 'diffusion_pytorch_model.safetensors'), tensors);
  const m = await UVit.load(dir);
  const [B, H, W, C, L] = [2, 4, 4, cfg.blockOutChannels, 3];
  const ids = Int32Array.from({ length: B * H * W }, (_, i) => (i * 7) % cfg.vocabSize);
  const inputs = {
    inputIds: tf.tensor(ids, [B, H, W], 'int32'),
    encoderHiddenStates: tf.tensor(rng.normals(B * L * 6), [B, L, 6]),
    pooledTextEmb: tf.tensor(rng.normals(B * 6), [B, 6]),
    microConds: tf.tensor([256, 256, 0, 0, 6, 512, 384, 16, 32, 5.5], [B, 5]),
  };
  const got = new Map<string, { data: Float32Array; shape: number[] }>();
  const logits = m.forward(inputs, {
    capture: (n, x) => got.set(n, { data: x.dataSync() as Float32Array, shape: x.shape }),
  });
  assert.deepEqual(logits.shape, [B, H, W, cfg.codebookSize]);
  assert.ok(logits.dataSync().every(Number.isFinite));
  logits.dispose();
  disposeAll(inputs);
  m.dispose();
  const cap = (n: string) => {
    const v = got.get(n);
    assert.ok(v, `nothing captured as ${n}`);
    return v;
  };
  assert.deepEqual(cap('down_block').shape, [B, H / 2, W / 2, C]);
  assert.deepEqual(cap('project_to_hidden').shape, [B, (H / 2) * (W / 2), cfg.hiddenSize]);
  assert.deepEqual(cap('up_block').shape, [B, H, W, C]);
  const eps = cfg.layerNormEps;

  // Downsample: input = embed output (NHWC); torch: RMS per pixel, pad right/bottom by 1, conv OIHW k2 s2 + bias.
  {
    const x = cap('embed');
    const g = tensors['down_block.downsample.norm.weight'].data;
    const wt = tensors['down_block.downsample.conv.weight'].data; // [O, I, 2, 2]
    const bias = tensors['down_block.downsample.conv.bias'].data;
    const px = (n: number, y: number, xx: number) =>
      y >= H || xx >= W
        ? new Array(C).fill(0)
        : rmsPixel(Array.from(x.data.slice(((n * H + y) * W + xx) * C, ((n * H + y) * W + xx + 1) * C)), g, eps);
    const Ho = Math.floor((H + 1 - 2) / 2) + 1;
    const Wo = Math.floor((W + 1 - 2) / 2) + 1;
    const want = new Float32Array(B * Ho * Wo * C);
    for (let n = 0; n < B; n++)
      for (let oy = 0; oy < Ho; oy++)
        for (let ox = 0; ox < Wo; ox++)
          for (let o = 0; o < C; o++) {
            let s = bias[o];
            for (let ky = 0; ky < 2; ky++)
              for (let kx = 0; kx < 2; kx++) {
                const v = px(n, oy * 2 + ky, ox * 2 + kx);
                for (let i = 0; i < C; i++) s += v[i] * wt[((o * C + i) * 2 + ky) * 2 + kx];
              }
            want[((n * Ho + oy) * Wo + ox) * C + o] = s;
          }
    const mine = cap('down_block.downsample');
    assert.deepEqual(mine.shape, [B, Ho, Wo, C]);
    const err = errors(mine.data, want);
    assert.ok(err.abs < 1e-5, `downsample: max abs error ${err.abs}`);
  }

  // Upsample: input = last up-block attention output; torch: RMS per pixel, ConvTranspose2d [I, O, 2, 2] s2 + bias.
  {
    const x = cap(`up_block.attention_blocks.${cfg.numResBlocks - 1}`);
    const [, h, w] = x.shape;
    const g = tensors['up_block.upsample.norm.weight'].data;
    const wt = tensors['up_block.upsample.conv.weight'].data;
    const bias = tensors['up_block.upsample.conv.bias'].data;
    const want = new Float32Array(B * 2 * h * 2 * w * C);
    for (let n = 0; n < B; n++)
      for (let y = 0; y < 2 * h; y++)
        for (let xx = 0; xx < 2 * w; xx++)
          for (let o = 0; o < C; o++) {
            // out[y, x] = Σ_i in[y/2, x/2, i] · W[i, o, y%2, x%2] + b[o] (stride 2 = kernel: no overlap)
            const iy = y >> 1;
            const ix = xx >> 1;
            const v = rmsPixel(
              Array.from(x.data.slice(((n * h + iy) * w + ix) * C, ((n * h + iy) * w + ix + 1) * C)),
              g,
              eps,
            );
            let s = bias[o];
            for (let i = 0; i < C; i++) s += v[i] * wt[((i * C + o) * 2 + (y & 1)) * 2 + (xx & 1)];
            want[((n * 2 * h + y) * 2 * w + xx) * C + o] = s;
          }
    const mine = cap('up_block.upsample');
    assert.deepEqual(mine.shape, [B, 2 * h, 2 * w, C]);
    const err = errors(mine.data, want);
    assert.ok(err.abs < 1e-5, `upsample: max abs error ${err.abs}`);
  }
});
