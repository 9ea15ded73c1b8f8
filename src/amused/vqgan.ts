// aMUSEd's VQ-GAN (diffusers `VQModel`, "group" norm type) in tfjs ops, loaded from a diffusers
// component folder (`vqvae/config.json` + `diffusion_pytorch_model[.fp16].safetensors`).
//
// Layout: NHWC inside (PyTorch's OIHW conv weights are transposed to HWIO at load; Linear weights
// [out, in] to [in, out]). Every tensor's shape is checked against the config before any tf tensor
// is allocated.
//
//   encode:  image [B,H,W,3] in [0,1] → encoder → quant_conv → latents [B,H/f,W/f,D]
//            → index of the nearest codebook row (Euclidean)                       f = 2^(levels−1)
//   decode:  tokens [B,h,w] → codebook rows [B,h,w,D] → post_quant_conv → decoder → [B,f·h,f·w,3]
//
// Encoder: conv_in → per level: `layers_per_block` ResnetBlock2D, then (all but the last level) a
// stride-2 3×3 conv after zero-padding one row/column at the bottom/right → mid block (resnet,
// [attention], resnet) → GroupNorm → SiLU → conv_out. Decoder: conv_in → mid block → per level (channels
// reversed): `layers_per_block + 1` resnets, then (all but the last) nearest 2× upsampling and a 3×3 conv
// → GroupNorm → SiLU → conv_out. ResnetBlock2D: x + conv2(silu(gn2(conv1(silu(gn1(x)))))), with a 1×1
// conv_shortcut on x when the channel count changes. All GroupNorms: eps 1e-6, `norm_num_groups`.
import * as tf from '@tensorflow/tfjs-core';
import { groupNorm } from '../tensor/ops/group-norm.js';
import { silu } from '../tensor/ops/silu.js';
import { MuseError } from '../util/errors.js';
import { type Component, type ComponentConfig, configNumber, loadComponent, requireTensor } from './component.js';

export interface VqConfig {
  inChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  latentChannels: number;
  /** Codebook vector size (vq_embed_dim, default latent_channels). */
  embedDim: number;
  codebookSize: number;
  normGroups: number;
  midBlockAttention: boolean;
  /** Spatial down-sampling factor, 2^(levels − 1). */
  factor: number;
}

/** Called with each traced submodule's output (NHWC), named as the diffusers module. */
export type VqTrace = (name: string, value: tf.Tensor4D) => void;

/** Largest im2col matrix one convolution makes at once (bigger ones run in bands of output rows). */
const CONV_BAND_BYTES = 256 * 2 ** 20;

/** One layer of a chain: its traced name (if any) and the function of the feature map. */
type Layer = [string | undefined, (h: tf.Tensor4D) => tf.Tensor4D];

/**
 * Runs the layers one tf.tidy each and releases each feature map once the next exists (the input
 * `x` is the caller's). One tidy around the whole encoder or decoder kept every activation alive to
 * the end: a 512 px decode ran the 4 GB wasm heap out.
 */
function chain(x: tf.Tensor4D, layers: Layer[], trace?: VqTrace): tf.Tensor4D {
  let h = x;
  for (const [name, fn] of layers) {
    const next = tf.tidy(() => fn(h));
    if (name && trace) trace(name, next);
    if (h !== x && h !== next) h.dispose();
    h = next;
  }
  return h;
}

const EPS = 1e-6;

function configArray(config: ComponentConfig, key: string, where: string): unknown[] {
  const v = config[key];
  if (!Array.isArray(v) || v.length === 0)
    throw new MuseError(`${where}: config "${key}" must be a non-empty list, got ${JSON.stringify(v)}`);
  return v;
}

/** Validates a VQModel config.json (as written by diffusers) and reduces it to what the model needs. */
export function parseVqConfig(config: ComponentConfig, where: string): VqConfig {
  const positive = (key: string): number => {
    const n = configNumber(config, key, where);
    if (n < 1) throw new MuseError(`${where}: config "${key}" must be at least 1, got ${n}`);
    return n;
  };
  const blockOutChannels = configArray(config, 'block_out_channels', where).map((c) => {
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 1)
      throw new MuseError(
        `${where}: config "block_out_channels" must hold positive integers, got ${JSON.stringify(c)}`,
      );
    return c;
  });
  const levels = blockOutChannels.length;
  for (const [key, want] of [
    ['down_block_types', 'DownEncoderBlock2D'],
    ['up_block_types', 'UpDecoderBlock2D'],
  ] as const) {
    const types = configArray(config, key, where);
    if (types.length !== levels)
      throw new MuseError(`${where}: config "${key}" has ${types.length} entries, block_out_channels has ${levels}`);
    for (const t of types)
      if (t !== want)
        throw new MuseError(`${where}: config "${key}" entry ${JSON.stringify(t)} is not supported (only ${want})`);
  }
  const act = config.act_fn ?? 'silu';
  if (act !== 'silu')
    throw new MuseError(`${where}: config "act_fn" ${JSON.stringify(act)} is not supported (only "silu")`);
  const norm = config.norm_type ?? 'group';
  if (norm !== 'group')
    throw new MuseError(
      `${where}: config "norm_type" ${JSON.stringify(norm)} is not supported (only "group", as aMUSEd)`,
    );
  if (config.lookup_from_codebook === false)
    throw new MuseError(`${where}: config "lookup_from_codebook" is false; token decoding needs a codebook lookup`);
  const latentChannels = positive('latent_channels');
  const embedDim =
    config.vq_embed_dim === null || config.vq_embed_dim === undefined ? latentChannels : positive('vq_embed_dim');
  const normGroups = positive('norm_num_groups');
  for (const c of blockOutChannels)
    if (c % normGroups !== 0)
      throw new MuseError(`${where}: block_out_channels ${c} is not divisible by norm_num_groups ${normGroups}`);
  const mid = config.mid_block_add_attention ?? true;
  if (typeof mid !== 'boolean')
    throw new MuseError(`${where}: config "mid_block_add_attention" must be true or false, got ${JSON.stringify(mid)}`);
  return {
    inChannels: positive('in_channels'),
    outChannels: positive('out_channels'),
    blockOutChannels,
    layersPerBlock: positive('layers_per_block'),
    latentChannels,
    embedDim,
    codebookSize: positive('num_vq_embeddings'),
    normGroups,
    midBlockAttention: mid,
    factor: 2 ** (levels - 1),
  };
}

/** Every tensor of the model with its PyTorch shape, in module order. */
export function vqTensorShapes(c: VqConfig): [string, number[]][] {
  const out: [string, number[]][] = [];
  const conv = (name: string, cout: number, cin: number, k: number) => {
    out.push([`${name}.weight`, [cout, cin, k, k]], [`${name}.bias`, [cout]]);
  };
  const norm = (name: string, ch: number) => {
    out.push([`${name}.weight`, [ch]], [`${name}.bias`, [ch]]);
  };
  const resnet = (name: string, cin: number, cout: number) => {
    norm(`${name}.norm1`, cin);
    conv(`${name}.conv1`, cout, cin, 3);
    norm(`${name}.norm2`, cout);
    conv(`${name}.conv2`, cout, cout, 3);
    if (cin !== cout) conv(`${name}.conv_shortcut`, cout, cin, 1);
  };
  const mid = (name: string, ch: number) => {
    resnet(`${name}.resnets.0`, ch, ch);
    if (c.midBlockAttention) {
      norm(`${name}.attentions.0.group_norm`, ch);
      for (const l of ['to_q', 'to_k', 'to_v', 'to_out.0'])
        out.push([`${name}.attentions.0.${l}.weight`, [ch, ch]], [`${name}.attentions.0.${l}.bias`, [ch]]);
    }
    resnet(`${name}.resnets.1`, ch, ch);
  };
  const ch = c.blockOutChannels;
  const n = ch.length;
  const last = ch[n - 1];
  conv('encoder.conv_in', ch[0], c.inChannels, 3);
  let cur = ch[0];
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c.layersPerBlock; j++)
      resnet(`encoder.down_blocks.${i}.resnets.${j}`, j === 0 ? cur : ch[i], ch[i]);
    cur = ch[i];
    if (i < n - 1) conv(`encoder.down_blocks.${i}.downsamplers.0.conv`, cur, cur, 3);
  }
  mid('encoder.mid_block', last);
  norm('encoder.conv_norm_out', last);
  conv('encoder.conv_out', c.latentChannels, last, 3);
  conv('quant_conv', c.embedDim, c.latentChannels, 1);
  out.push(['quantize.embedding.weight', [c.codebookSize, c.embedDim]]);
  conv('post_quant_conv', c.latentChannels, c.embedDim, 1);
  conv('decoder.conv_in', last, c.latentChannels, 3);
  mid('decoder.mid_block', last);
  cur = last;
  for (let i = 0; i < n; i++) {
    const o = ch[n - 1 - i];
    for (let j = 0; j <= c.layersPerBlock; j++) resnet(`decoder.up_blocks.${i}.resnets.${j}`, j === 0 ? cur : o, o);
    cur = o;
    if (i < n - 1) conv(`decoder.up_blocks.${i}.upsamplers.0.conv`, o, o, 3);
  }
  norm('decoder.conv_norm_out', ch[0]);
  conv('decoder.conv_out', c.outChannels, ch[0], 3);
  return out;
}

/** OIHW → HWIO ([kh, kw, in, out]), or a Linear [out, in] → [in, out]. */
function toTfLayout(data: Float32Array, shape: number[]): { data: Float32Array; shape: number[] } {
  if (shape.length === 4) {
    const [o, i, kh, kw] = shape;
    const out = new Float32Array(data.length);
    for (let a = 0; a < o; a++)
      for (let b = 0; b < i; b++)
        for (let y = 0; y < kh; y++)
          for (let x = 0; x < kw; x++) out[((y * kw + x) * i + b) * o + a] = data[((a * i + b) * kh + y) * kw + x];
    return { data: out, shape: [kh, kw, i, o] };
  }
  if (shape.length === 2) {
    const [o, i] = shape;
    const out = new Float32Array(data.length);
    for (let a = 0; a < o; a++) for (let b = 0; b < i; b++) out[b * o + a] = data[a * i + b];
    return { data: out, shape: [i, o] };
  }
  return { data, shape };
}

export class VQModel {
  readonly config: VqConfig;
  private readonly p: Map<string, tf.Tensor>;
  /** The codebook [K, D] as float32, for nearest-entry search in encode(). */
  private readonly codebook: Float32Array;
  private disposed = false;
  /**
   * Largest im2col matrix (bytes) one 3×3 convolution makes at once; bigger ones run in bands of
   * output rows with the same result (tests lower it to force bands on small inputs).
   */
  convBandBytes = CONV_BAND_BYTES;
  /** How many convolutions have run in bands (a diagnostic). */
  bandedConvolutions = 0;

  private constructor(config: VqConfig, params: Map<string, tf.Tensor>, codebook: Float32Array) {
    this.config = config;
    this.p = params;
    this.codebook = codebook;
  }

  /** Loads `folder` (a diffusers `vqvae/` component); shapes are checked before anything is allocated. */
  static async load(folder: string): Promise<VQModel> {
    const component = await loadComponent(folder, 'diffusion_pytorch_model', 'VQModel');
    return VQModel.fromComponent(component);
  }

  static fromComponent(component: Component): VQModel {
    const config = parseVqConfig(component.config, `${component.folder}/config.json`);
    const specs = vqTensorShapes(config);
    // Check everything first (one clear line naming the tensor), then allocate.
    const checked = specs.map(([name, shape]) => {
      const t = requireTensor(component, name, shape);
      if (!(t.data instanceof Float32Array))
        throw new MuseError(`${component.file}: tensor "${name}" is not a float tensor`);
      return [name, t.data, shape] as const;
    });
    const params = new Map<string, tf.Tensor>();
    let codebook: Float32Array = new Float32Array(0);
    try {
      for (const [name, data, shape] of checked) {
        if (name === 'quantize.embedding.weight') {
          codebook = data;
          params.set(name, tf.tensor2d(data, shape as [number, number], 'float32'));
          continue;
        }
        const t = toTfLayout(data, shape);
        params.set(name, tf.tensor(t.data, t.shape, 'float32'));
      }
    } catch (err) {
      for (const t of params.values()) t.dispose();
      throw err;
    }
    return new VQModel(config, params, codebook);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.p.values()) t.dispose();
    this.p.clear();
  }

  private w(name: string): tf.Tensor {
    const t = this.p.get(name);
    if (!t) throw new Error(`VQModel: no parameter ${name}${this.disposed ? ' (model disposed)' : ''}`);
    return t;
  }

  private conv(x: tf.Tensor4D, name: string, stride: 1 | 2 = 1, pad: 'same' | 'valid' = 'same'): tf.Tensor4D {
    const w = this.w(`${name}.weight`) as tf.Tensor4D;
    const [kh, kw, cin] = w.shape;
    const [b, h, width] = x.shape;
    const rowBytes = b * width * kh * kw * cin * 4; // the im2col matrix of one output row
    let y: tf.Tensor4D;
    if (stride === 1 && pad === 'same' && kh === 3 && kw === 3 && rowBytes * h > this.convBandBytes) {
      // Full-resolution layers of a 512 px decode need a 2.4 GB im2col matrix: convolve bands of
      // output rows (each with its one-row halo; 'same' = one pixel of zeros all round) instead.
      const rows = Math.max(1, Math.floor(this.convBandBytes / rowBytes));
      this.bandedConvolutions++;
      const padded = tf.pad(x, [
        [0, 0],
        [1, 1],
        [1, 1],
        [0, 0],
      ]);
      const bands: tf.Tensor4D[] = [];
      for (let r0 = 0; r0 < h; r0 += rows) {
        const n = Math.min(rows, h - r0);
        bands.push(
          tf.tidy(() => tf.conv2d(tf.slice(padded, [0, r0, 0, 0], [b, n + 2, width + 2, cin]), w, 1, 'valid')),
        );
      }
      padded.dispose();
      y = tf.concat(bands, 1);
      for (const t of bands) t.dispose();
    } else y = tf.conv2d(x, w, stride, pad);
    return tf.add(y, this.w(`${name}.bias`)) as tf.Tensor4D;
  }

  private norm(x: tf.Tensor4D, name: string): tf.Tensor4D {
    return groupNorm(
      x,
      this.w(`${name}.weight`) as tf.Tensor1D,
      this.w(`${name}.bias`) as tf.Tensor1D,
      this.config.normGroups,
      EPS,
    );
  }

  private resnet(x: tf.Tensor4D, name: string): tf.Tensor4D {
    let h = this.conv(silu(this.norm(x, `${name}.norm1`)), `${name}.conv1`);
    h = this.conv(silu(this.norm(h, `${name}.norm2`)), `${name}.conv2`);
    const shortcut = this.p.has(`${name}.conv_shortcut.weight`) ? this.conv(x, `${name}.conv_shortcut`, 1, 'valid') : x;
    return tf.add(shortcut, h) as tf.Tensor4D;
  }

  /** Single-head self-attention over all pixels (diffusers' Attention as the VAE mid block builds it). */
  private attention(x: tf.Tensor4D, name: string): tf.Tensor4D {
    const [b, h, w, c] = x.shape;
    const linear = (t: tf.Tensor3D, l: string) =>
      tf.add(
        tf.matMul(t, tf.broadcastTo(this.w(`${name}.${l}.weight`), [b, c, c]) as tf.Tensor3D),
        this.w(`${name}.${l}.bias`),
      ) as tf.Tensor3D;
    const hs = tf.reshape(this.norm(x, `${name}.group_norm`), [b, h * w, c]) as tf.Tensor3D;
    const q = linear(hs, 'to_q');
    const k = linear(hs, 'to_k');
    const v = linear(hs, 'to_v');
    const scores = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(c));
    const attn = tf.matMul(tf.softmax(scores), v) as tf.Tensor3D;
    const out = linear(attn, 'to_out.0');
    return tf.add(x, tf.reshape(out, [b, h, w, c])) as tf.Tensor4D;
  }

  private midBlock(x: tf.Tensor4D, name: string): tf.Tensor4D {
    let h = this.resnet(x, `${name}.resnets.0`);
    if (this.config.midBlockAttention) h = this.attention(h, `${name}.attentions.0`);
    return this.resnet(h, `${name}.resnets.1`);
  }

  private checkLive(): void {
    if (this.disposed) throw new MuseError('VQModel: used after dispose()');
  }

  /** Encoder + quant_conv: image [B,H,W,in_channels] (values as the pipeline feeds them, [0,1]) → latents [B,H/f,W/f,D]. */
  encodeLatents(image: tf.Tensor4D): tf.Tensor4D {
    this.checkLive();
    const { factor, inChannels, blockOutChannels: ch } = this.config;
    const [, H, W, C] = image.shape;
    if (C !== inChannels) throw new MuseError(`VQModel.encode: image has ${C} channels, the model takes ${inChannels}`);
    if (H % factor !== 0 || W % factor !== 0 || H === 0 || W === 0)
      throw new MuseError(`VQModel.encode: image size ${H}×${W} is not a positive multiple of ${factor}`);
    const layers: Layer[] = [[undefined, (x) => this.conv(tf.cast(x, 'float32') as tf.Tensor4D, 'encoder.conv_in')]];
    for (let i = 0; i < ch.length; i++) {
      for (let j = 0; j < this.config.layersPerBlock; j++)
        layers.push([undefined, (h) => this.resnet(h, `encoder.down_blocks.${i}.resnets.${j}`)]);
      if (i < ch.length - 1)
        layers.push([
          undefined,
          (h) =>
            this.conv(
              tf.pad(h, [
                [0, 0],
                [0, 1],
                [0, 1],
                [0, 0],
              ]),
              `encoder.down_blocks.${i}.downsamplers.0.conv`,
              2,
              'valid',
            ),
        ]);
    }
    layers.push([undefined, (h) => this.midBlock(h, 'encoder.mid_block')]);
    layers.push([undefined, (h) => this.conv(silu(this.norm(h, 'encoder.conv_norm_out')), 'encoder.conv_out')]);
    layers.push([undefined, (h) => this.conv(h, 'quant_conv', 1, 'valid')]);
    return chain(image, layers);
  }

  /** Index of the nearest codebook row (Euclidean; first on ties) for each latent vector of [B,h,w,D]. */
  nearestCodes(latents: Float32Array, count: number): Int32Array {
    const d = this.config.embedDim;
    const k = this.config.codebookSize;
    const cb = this.codebook;
    const ids = new Int32Array(count);
    for (let p = 0; p < count; p++) {
      let best = Infinity;
      let arg = 0;
      const o = p * d;
      for (let e = 0; e < k; e++) {
        let dist = 0;
        const q = e * d;
        for (let c = 0; c < d; c++) {
          const diff = latents[o + c] - cb[q + c];
          dist += diff * diff;
        }
        if (dist < best) {
          best = dist;
          arg = e;
        }
      }
      ids[p] = arg;
    }
    return ids;
  }

  /**
   * Image [B,H,W,3] with values in [0,1] → token ids [B,H/f,W/f] (row-major Int32Array) and the
   * latents [B,H/f,W/f,D] they were quantised from (the caller disposes them).
   */
  async encode(
    image: tf.Tensor4D,
  ): Promise<{ ids: Int32Array; shape: [number, number, number]; latents: tf.Tensor4D }> {
    const latents = this.encodeLatents(image);
    const [b, h, w] = latents.shape;
    const data = (await latents.data()) as Float32Array;
    return { ids: this.nearestCodes(data, b * h * w), shape: [b, h, w], latents };
  }

  /** Codebook rows for token ids [B,h,w] → [B,h,w,D]. */
  lookup(tokens: Int32Array, shape: readonly [number, number, number]): tf.Tensor4D {
    this.checkLive();
    const [b, h, w] = shape;
    if (![b, h, w].every((n) => Number.isInteger(n) && n > 0) || tokens.length !== b * h * w)
      throw new MuseError(`VQModel.decode: ${tokens.length} tokens do not fill a [${shape}] grid`);
    const k = this.config.codebookSize;
    for (let i = 0; i < tokens.length; i++)
      if (!(tokens[i] >= 0 && tokens[i] < k))
        throw new MuseError(`VQModel.decode: token ${tokens[i]} at position ${i} is outside the codebook (0…${k - 1})`);
    return tf.tidy(
      () =>
        tf.reshape(tf.gather(this.w('quantize.embedding.weight'), tf.tensor1d(tokens, 'int32')), [
          b,
          h,
          w,
          this.config.embedDim,
        ]) as tf.Tensor4D,
    );
  }

  /** post_quant_conv + decoder: quantised latents [B,h,w,D] → raw image [B,f·h,f·w,out_channels] (not clipped). */
  decodeLatents(quant: tf.Tensor4D, trace?: VqTrace): tf.Tensor4D {
    this.checkLive();
    const ch = this.config.blockOutChannels;
    const n = ch.length;
    if (quant.shape[3] !== this.config.embedDim)
      throw new MuseError(
        `VQModel.decode: latents have ${quant.shape[3]} channels, the codebook ${this.config.embedDim}`,
      );
    const layers: Layer[] = [
      ['post_quant_conv', (h) => this.conv(h, 'post_quant_conv', 1, 'valid')],
      ['decoder.conv_in', (h) => this.conv(h, 'decoder.conv_in')],
      ['decoder.mid_block', (h) => this.midBlock(h, 'decoder.mid_block')],
    ];
    for (let i = 0; i < n; i++) {
      const last = this.config.layersPerBlock;
      for (let j = 0; j <= last; j++)
        layers.push([
          i === n - 1 && j === last ? `decoder.up_blocks.${i}` : undefined,
          (h) => this.resnet(h, `decoder.up_blocks.${i}.resnets.${j}`),
        ]);
      if (i < n - 1)
        layers.push([
          `decoder.up_blocks.${i}`,
          (h) => {
            const [, hh, ww] = h.shape;
            return this.conv(
              tf.image.resizeNearestNeighbor(h, [hh * 2, ww * 2]),
              `decoder.up_blocks.${i}.upsamplers.0.conv`,
            );
          },
        ]);
    }
    layers.push(['decoder', (h) => this.conv(silu(this.norm(h, 'decoder.conv_norm_out')), 'decoder.conv_out')]);
    return chain(quant, layers, trace);
  }

  /** Token ids [B,h,w] (row-major) → raw image [B,f·h,f·w,3] before clipping (the pipeline clips to [0,1]). */
  decode(tokens: Int32Array, shape: readonly [number, number, number], trace?: VqTrace): tf.Tensor4D {
    const quant = this.lookup(tokens, shape);
    try {
      return this.decodeLatents(quant, trace);
    } finally {
      quant.dispose();
    }
  }
}

/**
 * Raw decoder output → 8-bit RGB, as diffusers' VaeImageProcessor.postprocess(clip(x, 0, 1), "pil"):
 * round(255·clip(x, 0, 1)) in float32, ties to even (numpy's round). Same layout as the input (NHWC).
 */
export function toRgb8(raw: Float32Array): Uint8Array {
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const x = raw[i];
    const c = x > 0 ? Math.min(x, 1) : 0; // NaN → 0
    const v = Math.fround(c * 255);
    const r = Math.round(v);
    out[i] = r - v === 0.5 && r % 2 === 1 ? r - 1 : r;
  }
  return out;
}
