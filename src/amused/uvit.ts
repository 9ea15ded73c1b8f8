// The aMUSEd masked-token transformer (diffusers `UVit2DModel`, v0.27 layout) as a forward pass in
// tfjs ops, read from a diffusers component folder (`transformer/`: config.json + weights).
//
// Structure (every name below is a state_dict prefix):
//   text:    encoder_proj (linear) → encoder_proj_layer_norm (RMS)            → enc [B, L, hidden]
//   cond:    cat(pooled_text_emb, sinusoid(micro_conds)) → cond_embed (linear, SiLU, linear) → [B, hidden]
//   tokens:  embed (embedding → RMS → 1×1 conv)                                → [B, H, W, block]
//            down_block (optional 2×2/2 conv downsample; N × (ConvNeXt block, 2× cross-attention block))
//            project_to_hidden(_norm) → transformer_layers (self-attn, cross-attn, GEGLU FF, each behind
//            an adaptive norm driven by cond) → project_from_hidden(_norm)
//            up_block (N × (ConvNeXt, attention); optional 2×2/2 transposed-conv upsample)
//            mlm_layer (1×1 conv → RMS → 1×1 conv)                            → logits [B, H, W, codebook]
// Feature maps are NHWC throughout (PyTorch's are NCHW); weights are re-laid out once at load:
// linear [out, in] → [in, out]; 1×1 conv OIHW → [in, out]; 2×2 conv OIHW → HWIO; depthwise
// [C, 1, 3, 3] → [3, 3, C, 1]; transposed conv [in, out, 2, 2] → [in, 2·2·out] (matmul + pixel shuffle).
// Every tensor's presence and shape is checked against the config before any tf tensor exists.
import * as tf from '@tensorflow/tfjs-core';
import { canMatMulHalfWeights, type HalfWeight, matMulHalfWeights } from '../tensor/ops/half-weight-matmul.js';
import { silu } from '../tensor/ops/silu.js';
import { float16BitsToFloat32, float32ToFloat16Bits, type NamedTensor } from '../tensor/safetensors.js';
import { MuseError } from '../util/errors.js';
import { type Component, type ComponentConfig, configNumber, loadComponent, requireTensor } from './component.js';

export const UVIT_CLASS_NAME = 'UVit2DModel';

export interface UVitConfig {
  hiddenSize: number;
  useBias: boolean;
  condEmbedDim: number;
  microCondEncodeDim: number;
  microCondEmbedDim: number;
  encoderHiddenSize: number;
  vocabSize: number;
  codebookSize: number;
  inChannels: number;
  blockOutChannels: number;
  numResBlocks: number;
  downsample: boolean;
  upsample: boolean;
  blockNumHeads: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  intermediateSize: number;
  layerNormEps: number;
  lnElementwiseAffine: boolean;
  sampleSize: number;
  /** micro_cond_embed_dim / micro_cond_encode_dim: how many micro-conditioning values per row (5). */
  numMicroConds: number;
}

/** The diffusers UVit2DModel defaults, for fields a config.json leaves out (as diffusers does). */
const DEFAULTS: Record<string, number | boolean> = {
  hidden_size: 1024,
  use_bias: false,
  cond_embed_dim: 768,
  micro_cond_encode_dim: 256,
  micro_cond_embed_dim: 1280,
  encoder_hidden_size: 768,
  vocab_size: 8256,
  codebook_size: 8192,
  in_channels: 768,
  block_out_channels: 768,
  num_res_blocks: 3,
  downsample: false,
  upsample: false,
  block_num_heads: 12,
  num_hidden_layers: 22,
  num_attention_heads: 16,
  intermediate_size: 2816,
  layer_norm_eps: 1e-6,
  ln_elementwise_affine: true,
  sample_size: 64,
};

/** The SkipFF attention blocks' RMSNorms use a fixed epsilon in diffusers, whatever layer_norm_eps says. */
const BLOCK_ATTENTION_NORM_EPS = 1e-6;
/** ConvNeXt feed-forward expansion (diffusers' res_ffn_factor). */
const RES_FFN_FACTOR = 4;

/** Reads and checks a UVit2DModel config (where: the file, for messages). */
export function parseUVitConfig(raw: ComponentConfig, where: string): UVitConfig {
  if (raw._class_name !== UVIT_CLASS_NAME)
    throw new MuseError(`${where}: _class_name ${JSON.stringify(raw._class_name)} is not ${UVIT_CLASS_NAME}`);
  const merged: ComponentConfig = Object.assign(Object.create(null), DEFAULTS, raw);
  const int = (key: string, min = 1) => {
    const v = configNumber(merged, key, where);
    if (v < min) throw new MuseError(`${where}: config "${key}" must be at least ${min}, got ${v}`);
    return v;
  };
  const bool = (key: string) => {
    const v = merged[key];
    if (typeof v !== 'boolean')
      throw new MuseError(`${where}: config "${key}" must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  const eps = configNumber(merged, 'layer_norm_eps', where, false);
  if (!(eps > 0)) throw new MuseError(`${where}: config "layer_norm_eps" must be positive, got ${eps}`);
  const cfg: UVitConfig = {
    hiddenSize: int('hidden_size'),
    useBias: bool('use_bias'),
    condEmbedDim: int('cond_embed_dim'),
    microCondEncodeDim: int('micro_cond_encode_dim'),
    microCondEmbedDim: int('micro_cond_embed_dim'),
    encoderHiddenSize: int('encoder_hidden_size'),
    vocabSize: int('vocab_size'),
    codebookSize: int('codebook_size'),
    inChannels: int('in_channels'),
    blockOutChannels: int('block_out_channels'),
    numResBlocks: int('num_res_blocks', 0),
    downsample: bool('downsample'),
    upsample: bool('upsample'),
    blockNumHeads: int('block_num_heads'),
    numHiddenLayers: int('num_hidden_layers', 0),
    numAttentionHeads: int('num_attention_heads'),
    intermediateSize: int('intermediate_size'),
    layerNormEps: eps,
    lnElementwiseAffine: bool('ln_elementwise_affine'),
    sampleSize: int('sample_size'),
    numMicroConds: 0,
  };
  const divides = (a: number, b: number, what: string) => {
    if (a % b !== 0) throw new MuseError(`${where}: ${what}`);
  };
  divides(
    cfg.hiddenSize,
    cfg.numAttentionHeads,
    `hidden_size ${cfg.hiddenSize} is not a multiple of num_attention_heads ${cfg.numAttentionHeads}`,
  );
  divides(
    cfg.blockOutChannels,
    cfg.blockNumHeads,
    `block_out_channels ${cfg.blockOutChannels} is not a multiple of block_num_heads ${cfg.blockNumHeads}`,
  );
  divides(
    cfg.microCondEmbedDim,
    cfg.microCondEncodeDim,
    `micro_cond_embed_dim ${cfg.microCondEmbedDim} is not a multiple of micro_cond_encode_dim ${cfg.microCondEncodeDim}`,
  );
  divides(cfg.microCondEncodeDim, 2, `micro_cond_encode_dim ${cfg.microCondEncodeDim} must be even`);
  if (cfg.codebookSize >= cfg.vocabSize)
    throw new MuseError(
      `${where}: codebook_size ${cfg.codebookSize} must be below vocab_size ${cfg.vocabSize} (room for the mask token)`,
    );
  cfg.numMicroConds = cfg.microCondEmbedDim / cfg.microCondEncodeDim;
  return cfg;
}

/** How a stored tensor is re-laid out for the NHWC forward pass. */
type Kind = 'as-is' | 'linear' | 'conv1x1' | 'conv' | 'depthwise' | 'conv-transpose';

interface TensorSpec {
  name: string;
  shape: number[];
  kind: Kind;
}

/** Every tensor a UVit2DModel with this config has, with its PyTorch shape, in forward order. */
export function uvitTensorSpecs(cfg: UVitConfig): TensorSpec[] {
  const specs: TensorSpec[] = [];
  const add = (name: string, shape: number[], kind: Kind = 'as-is') => specs.push({ name, shape, kind });
  const bias = cfg.useBias;
  const linear = (p: string, inDim: number, outDim: number, withBias = bias) => {
    add(`${p}.weight`, [outDim, inDim], 'linear');
    if (withBias) add(`${p}.bias`, [outDim]);
  };
  const conv = (p: string, inC: number, outC: number, k: number, kind: Kind) => {
    add(`${p}.weight`, kind === 'conv-transpose' ? [inC, outC, k, k] : [outC, inC, k, k], kind);
    if (bias) add(`${p}.bias`, [outC]);
  };
  const rms = (p: string, dim: number, affine = cfg.lnElementwiseAffine) => {
    if (affine) add(`${p}.weight`, [dim]);
  };
  const attention = (p: string, dim: number, kvDim: number) => {
    linear(`${p}.to_q`, dim, dim);
    linear(`${p}.to_k`, kvDim, dim);
    linear(`${p}.to_v`, kvDim, dim);
    linear(`${p}.to_out.0`, dim, dim);
  };
  const { hiddenSize: hd, blockOutChannels: cb, inChannels: cin } = cfg;
  linear('encoder_proj', cfg.encoderHiddenSize, hd);
  rms('encoder_proj_layer_norm', hd);
  add('embed.embeddings.weight', [cfg.vocabSize, cin]);
  rms('embed.layer_norm', cin);
  conv('embed.conv', cin, cb, 1, 'conv1x1');
  linear('cond_embed.linear_1', cfg.microCondEmbedDim + cfg.condEmbedDim, hd);
  linear('cond_embed.linear_2', hd, hd);
  const block = (p: string, down: boolean, up: boolean) => {
    if (down) {
      rms(`${p}.downsample.norm`, cb);
      conv(`${p}.downsample.conv`, cb, cb, 2, 'conv');
    }
    for (let i = 0; i < cfg.numResBlocks; i++) {
      const r = `${p}.res_blocks.${i}`;
      add(`${r}.depthwise.weight`, [cb, 1, 3, 3], 'depthwise');
      if (bias) add(`${r}.depthwise.bias`, [cb]);
      rms(`${r}.norm`, cb);
      linear(`${r}.channelwise_linear_1`, cb, cb * RES_FFN_FACTOR);
      add(`${r}.channelwise_norm.gamma`, [1, 1, 1, cb * RES_FFN_FACTOR]);
      add(`${r}.channelwise_norm.beta`, [1, 1, 1, cb * RES_FFN_FACTOR]);
      linear(`${r}.channelwise_linear_2`, cb * RES_FFN_FACTOR, cb);
      linear(`${r}.cond_embeds_mapper`, hd, cb * 2);
    }
    for (let i = 0; i < cfg.numResBlocks; i++) {
      const a = `${p}.attention_blocks.${i}`;
      if (hd !== cb) linear(`${a}.kv_mapper`, hd, cb);
      rms(`${a}.norm1`, cb, true);
      attention(`${a}.attn1`, cb, cb);
      rms(`${a}.norm2`, cb, true);
      attention(`${a}.attn2`, cb, cb);
    }
    if (up) {
      rms(`${p}.upsample.norm`, cb);
      conv(`${p}.upsample.conv`, cb, cb, 2, 'conv-transpose');
    }
  };
  block('down_block', cfg.downsample, false);
  rms('project_to_hidden_norm', cb);
  linear('project_to_hidden', cb, hd);
  for (let i = 0; i < cfg.numHiddenLayers; i++) {
    const t = `transformer_layers.${i}`;
    for (const n of ['norm1', 'norm2', 'norm3']) {
      linear(`${t}.${n}.linear`, hd, hd * 2);
      if (cfg.lnElementwiseAffine) {
        add(`${t}.${n}.norm.weight`, [hd]);
        // norm3 is a LayerNorm (bias when use_bias); norm1/norm2 are RMSNorms (never a bias).
        if (n === 'norm3' && bias) add(`${t}.${n}.norm.bias`, [hd]);
      }
    }
    attention(`${t}.attn1`, hd, hd);
    attention(`${t}.attn2`, hd, hd);
    linear(`${t}.ff.net.0.proj`, hd, cfg.intermediateSize * 2);
    linear(`${t}.ff.net.2`, cfg.intermediateSize, hd);
  }
  rms('project_from_hidden_norm', hd);
  linear('project_from_hidden', hd, cb);
  block('up_block', false, cfg.upsample);
  conv('mlm_layer.conv1', cb, cin, 1, 'conv1x1');
  rms('mlm_layer.layer_norm', cin);
  conv('mlm_layer.conv2', cin, cfg.codebookSize, 1, 'conv1x1');
  return specs;
}

/** Re-lays a checked PyTorch tensor out for the NHWC forward: [data, shape]. */
function relayout(t: NamedTensor, kind: Kind): [Float32Array, number[]] {
  const src = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
  const s = t.shape;
  switch (kind) {
    case 'as-is':
      return [src, s];
    case 'linear':
    case 'conv1x1': {
      // [out, in(, 1, 1)] → [in, out]
      const [o, i] = s;
      const dst = new Float32Array(o * i);
      for (let a = 0; a < o; a++) for (let b = 0; b < i; b++) dst[b * o + a] = src[a * i + b];
      return [dst, [i, o]];
    }
    case 'conv': {
      // OIHW → HWIO
      const [o, i, h, w] = s;
      const dst = new Float32Array(src.length);
      for (let a = 0; a < o; a++)
        for (let b = 0; b < i; b++)
          for (let y = 0; y < h; y++)
            for (let x = 0; x < w; x++) dst[((y * w + x) * i + b) * o + a] = src[((a * i + b) * h + y) * w + x];
      return [dst, [h, w, i, o]];
    }
    case 'depthwise': {
      // [C, 1, kh, kw] → [kh, kw, C, 1]
      const [c, , h, w] = s;
      const dst = new Float32Array(src.length);
      for (let a = 0; a < c; a++)
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) dst[(y * w + x) * c + a] = src[(a * h + y) * w + x];
      return [dst, [h, w, c, 1]];
    }
    case 'conv-transpose': {
      // [in, out, kh, kw] → [in, kh·kw·out]: column (y·kw + x)·out + o
      const [i, o, h, w] = s;
      const dst = new Float32Array(src.length);
      for (let b = 0; b < i; b++)
        for (let a = 0; a < o; a++)
          for (let y = 0; y < h; y++)
            for (let x = 0; x < w; x++) dst[b * h * w * o + (y * w + x) * o + a] = src[((b * o + a) * h + y) * w + x];
      return [dst, [i, h * w * o]];
    }
  }
}

/**
 * Where the forward pass reads its weights: float32 tf tensors made once at load (Float32Weights), or
 * host copies in the stored precision widened and uploaded per use (StreamedWeights: every `get`
 * inside a forward pass returns a temporary that the enclosing tf.tidy disposes).
 */
export interface WeightSource {
  /** The weight in forward layout; throws for a name the config does not have. */
  get(name: string): tf.Tensor;
  /** Whether the model has this (optional) tensor, e.g. a bias. */
  has(name: string): boolean;
  /** The weight's 16-bit host copy when it has one and is a matrix (products read it in place). */
  half?(name: string): HalfWeight | undefined;
  dispose(): void;
}

/** Where a UVit keeps its weights: tf tensors in the backend's memory, or host arrays uploaded per use. */
export type WeightResidency = 'resident' | 'streamed';

/**
 * Above this many float32 weight bytes a UVit streams its weights (the full aMUSEd U-ViT is ~2.4 GB
 * in float32: beside CLIP, the VQ-GAN and the activations it does not fit the 4 GB wasm heap).
 */
export const STREAM_WEIGHTS_ABOVE_BYTES = 1e9;

const HALF_TO_FLOAT = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) table[h] = float16BitsToFloat32(h);
  return table;
})();

/** One weight kept on the host: float16 or bfloat16 bits (as stored), or float32 when stored so. */
interface HostWeight {
  shape: number[];
  half?: Uint16Array;
  kind?: 'F16' | 'BF16';
  full?: Float32Array;
}

function widen(w: HostWeight): Float32Array {
  if (w.full) return w.full;
  const half = w.half as Uint16Array;
  const out = new Float32Array(half.length);
  if (w.kind === 'BF16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < half.length; i++) bits[i] = half[i] << 16;
  } else {
    for (let i = 0; i < half.length; i++) out[i] = HALF_TO_FLOAT[half[i]];
  }
  return out;
}

/** 16-bit patterns of float32 values that came from F16 / BF16 storage (exact: they were widened from them). */
function narrow(data: Float32Array, kind: 'F16' | 'BF16'): Uint16Array {
  const out = new Uint16Array(data.length);
  if (kind === 'BF16') {
    const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
    for (let i = 0; i < data.length; i++) out[i] = bits[i] >>> 16;
  } else {
    // Normal float16 values by bits (exact for values widened from F16); the rest the careful way.
    const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
    for (let i = 0; i < data.length; i++) {
      const x = bits[i];
      const e = (x >>> 23) & 0xff;
      out[i] =
        e >= 113 && e <= 142
          ? ((x >>> 16) & 0x8000) | ((e - 112) << 10) | ((x >>> 13) & 0x3ff)
          : float32ToFloat16Bits(data[i]);
    }
  }
  return out;
}

/**
 * Weights kept outside the backend's memory, in their stored precision (F16/BF16 stay 16-bit; F32
 * stays float32), in forward layout; `get` uploads one as a float32 tensor that the forward pass's
 * tf.tidy disposes, so the wasm heap holds one layer's weights at a time.
 */
class StreamedWeights implements WeightSource {
  private readonly host = new Map<string, HostWeight>();
  constructor(specs: TensorSpec[], stored: Record<string, NamedTensor>) {
    for (const spec of specs) {
      const t = stored[spec.name];
      const [data, shape] = relayout(t, spec.kind);
      const kind = t.dtype === 'F16' || t.dtype === 'BF16' ? t.dtype : undefined;
      this.host.set(spec.name, kind ? { shape, half: narrow(data, kind), kind } : { shape, full: data });
      // The float32 copy is not needed any more: let it go before the next one is made.
      delete stored[spec.name];
    }
  }
  /** Uploaded weights kept across passes (first come, first kept, up to `cacheBudget` bytes). */
  private readonly cache = new Map<string, tf.Tensor>();
  private cached = 0;
  /** Bytes of uploaded float32 weights that may stay in the backend between passes (0: none). */
  cacheBudget = 0;

  get(name: string): tf.Tensor {
    const hit = this.cache.get(name);
    if (hit) return hit;
    const w = this.host.get(name);
    if (!w) throw new Error(`UVit: no weight "${name}"`);
    const t = tf.tensor(widen(w), w.shape, 'float32');
    if (this.cached + t.size * 4 <= this.cacheBudget) {
      tf.keep(t); // outlives the pass's tidy
      this.cache.set(name, t);
      this.cached += t.size * 4;
    }
    return t;
  }
  /** Drops the kept uploads (the backend's memory goes back to the caller). */
  release(): void {
    for (const t of this.cache.values()) t.dispose();
    this.cache.clear();
    this.cached = 0;
  }
  has(name: string): boolean {
    return this.host.has(name);
  }
  half(name: string): HalfWeight | undefined {
    const w = this.host.get(name);
    if (!w?.half || !w.kind || w.shape.length !== 2) return undefined;
    return { bits: w.half, kind: w.kind, shape: w.shape as [number, number] };
  }
  /** Bytes the host copies take. */
  get bytes(): number {
    let n = 0;
    for (const w of this.host.values()) n += (w.half ?? w.full)?.byteLength ?? 0;
    return n;
  }
  dispose(): void {
    this.release();
    this.host.clear();
  }
}

class Float32Weights implements WeightSource {
  private readonly tensors = new Map<string, tf.Tensor>();
  constructor(specs: TensorSpec[], stored: Record<string, NamedTensor>) {
    try {
      for (const spec of specs) {
        const [data, shape] = relayout(stored[spec.name], spec.kind);
        this.tensors.set(spec.name, tf.tensor(data, shape, 'float32'));
      }
    } catch (err) {
      this.dispose();
      throw err;
    }
  }
  get(name: string): tf.Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`UVit: no weight "${name}"`);
    return t;
  }
  has(name: string): boolean {
    return this.tensors.has(name);
  }
  dispose(): void {
    for (const t of this.tensors.values()) t.dispose();
    this.tensors.clear();
  }
}

export interface UVitInputs {
  /** Token ids, int32 [B, H, W], each in [0, vocab_size) (the mask token is vocab_size − 1 in aMUSEd). */
  inputIds: tf.Tensor;
  /** Text encoder hidden states (CLIP's penultimate layer), float32 [B, L, encoder_hidden_size]. */
  encoderHiddenStates: tf.Tensor;
  /** Pooled (projected) text embedding, float32 [B, cond_embed_dim]. */
  pooledTextEmb: tf.Tensor;
  /** Micro-conditioning (orig width, height, crop top, left, aesthetic score), float32 [B, 5]. */
  microConds: tf.Tensor;
}

export interface ForwardOptions {
  /**
   * Called with intermediate results named like the diffusers submodules (`encoder_proj`, `embed`,
   * `down_block`, `down_block.downsample`, `project_to_hidden`, `transformer_layers.0`, …,
   * `up_block.upsample`, `mlm_layer.conv1`). Feature maps are NHWC. The tensor lives only during
   * the call: read it (dataSync) or clone and tf.keep it.
   */
  capture?: (name: string, t: tf.Tensor) => void;
}

/** The diffusers sinusoidal embedding (flip_sin_to_cos, no frequency shift) of each value, in float32 steps. */
export function microCondEmbedding(values: ArrayLike<number>, dim: number): Float32Array {
  const half = dim / 2;
  const f = Math.fround;
  const base = f(-Math.log(10000));
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) freqs[i] = f(Math.exp(f(f(base * i) / half)));
  const out = new Float32Array(values.length * dim);
  for (let n = 0; n < values.length; n++) {
    const v = f(values[n]);
    for (let i = 0; i < half; i++) {
      const arg = f(v * freqs[i]);
      out[n * dim + i] = Math.cos(arg);
      out[n * dim + half + i] = Math.sin(arg);
    }
  }
  return out;
}

function shapeString(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

export class UVit {
  readonly config: UVitConfig;
  readonly folder: string;
  private weights: WeightSource | undefined;

  private constructor(
    config: UVitConfig,
    folder: string,
    weights: WeightSource,
    /** Where the weights live (see WeightResidency). */
    readonly residency: WeightResidency,
  ) {
    this.config = config;
    this.folder = folder;
    this.weights = weights;
  }

  /**
   * Reads `folder` (config.json + diffusion_pytorch_model[.fp16].safetensors); checks every tensor
   * first. `residency`: 'resident' (float32 tf tensors) or 'streamed' (host copies in the stored
   * precision, uploaded per layer); default: streamed when the float32 weights exceed
   * STREAM_WEIGHTS_ABOVE_BYTES (the full models), or as MUSE_AMUSED_WEIGHTS says.
   */
  static async load(folder: string, options: { residency?: WeightResidency } = {}): Promise<UVit> {
    const component = await loadComponent(folder, 'diffusion_pytorch_model', UVIT_CLASS_NAME);
    return UVit.fromComponent(component, options);
  }

  /**
   * Builds from an already read component (its tensors are checked here, before any tf tensor exists).
   * Streaming takes the component's tensors out of it as it converts them (to bound peak memory).
   */
  static fromComponent(c: Component, options: { residency?: WeightResidency } = {}): UVit {
    const config = parseUVitConfig(c.config, `${c.folder}/config.json`);
    const specs = uvitTensorSpecs(config);
    for (const spec of specs) requireTensor(c, spec.name, spec.shape);
    const known = new Set(specs.map((s) => s.name));
    const extra = Object.keys(c.tensors).filter((n) => !known.has(n));
    if (extra.length) {
      const list = extra.slice(0, 5).map((n) => JSON.stringify(n));
      throw new MuseError(
        `${c.file}: ${extra.length} tensor(s) this config does not have: ${list.join(', ')}${extra.length > 5 ? ', …' : ''} (does use_bias, downsample/upsample or num_* match the weights?)`,
      );
    }
    const bytes = specs.reduce((sum, spec) => sum + 4 * spec.shape.reduce((a, b) => a * b, 1), 0);
    const env = process.env.MUSE_AMUSED_WEIGHTS;
    const residency =
      options.residency ??
      (env === 'resident' || env === 'streamed' ? env : bytes > STREAM_WEIGHTS_ABOVE_BYTES ? 'streamed' : 'resident');
    const weights =
      residency === 'streamed' ? new StreamedWeights(specs, c.tensors) : new Float32Weights(specs, c.tensors);
    return new UVit(config, c.folder, weights, residency);
  }

  private w(name: string): tf.Tensor {
    if (!this.weights) throw new MuseError('this UVit model was disposed');
    return this.weights.get(name);
  }

  private opt(name: string): tf.Tensor | undefined {
    if (!this.weights) throw new MuseError('this UVit model was disposed');
    return this.weights.has(name) ? this.weights.get(name) : undefined;
  }

  dispose(): void {
    this.weights?.dispose();
    this.weights = undefined;
  }

  /**
   * Streamed weights only: lets up to `bytes` of uploaded float32 weights stay in the backend between
   * forward passes (the first layers in forward order), so the steps of one call upload them once;
   * `releaseWeights()` (or 0 here) gives that memory back. Resident weights ignore both.
   */
  keepWeights(bytes: number): void {
    if (this.weights instanceof StreamedWeights) {
      this.weights.cacheBudget = bytes;
      if (bytes === 0) this.weights.release();
    }
  }

  releaseWeights(): void {
    this.keepWeights(0);
  }

  // ---- building blocks (x: [..., features]) -------------------------------------------------------

  /** x [rows, in] · the weight `name` [in, out]: its 16-bit host copy read in place where the backend can. */
  private product(x: tf.Tensor, name: string): tf.Tensor {
    if (!this.weights) throw new MuseError('this UVit model was disposed');
    const half = canMatMulHalfWeights() ? this.weights.half?.(name) : undefined;
    return half ? matMulHalfWeights(x, half) : tf.matMul(x, this.w(name));
  }

  private linear(x: tf.Tensor, p: string): tf.Tensor {
    const shape = x.shape;
    let y = this.product(tf.reshape(x, [-1, shape[shape.length - 1]]), `${p}.weight`);
    const b = this.opt(`${p}.bias`);
    if (b) y = tf.add(y, b);
    return tf.reshape(y, [...shape.slice(0, -1), y.shape[1] as number]);
  }

  /** RMSNorm over the last axis: x / √(mean(x²) + ε) · weight (weight only when the model has one). */
  private rmsNorm(x: tf.Tensor, p: string, eps = this.config.layerNormEps): tf.Tensor {
    const y = tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps)));
    const g = this.opt(`${p}.weight`);
    return g ? tf.mul(y, g) : y;
  }

  /** LayerNorm over the last axis (weight and bias when present). */
  private layerNorm(x: tf.Tensor, p: string): tf.Tensor {
    const { mean, variance } = tf.moments(x, -1, true);
    let y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.config.layerNormEps)));
    const g = this.opt(`${p}.weight`);
    if (g) y = tf.mul(y, g);
    const b = this.opt(`${p}.bias`);
    if (b) y = tf.add(y, b);
    return y;
  }

  /** Multi-head attention of x [B, N, C] over kv [B, M, Ckv] (no mask), as diffusers' AttnProcessor. */
  private attention(x: tf.Tensor, kv: tf.Tensor, p: string, heads: number): tf.Tensor {
    const [b, n, c] = x.shape;
    const m = kv.shape[1] as number;
    const dh = c / heads;
    const split = (t: tf.Tensor, len: number) => tf.transpose(tf.reshape(t, [b, len, heads, dh]), [0, 2, 1, 3]);
    const q = split(this.linear(x, `${p}.to_q`), n);
    const k = split(this.linear(kv, `${p}.to_k`), m);
    const v = split(this.linear(kv, `${p}.to_v`), m);
    const scores = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(dh));
    const o = tf.matMul(tf.softmax(scores), v);
    return this.linear(tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [b, n, c]), `${p}.to_out.0`);
  }

  /** GELU, exact (erf) form as torch's default: 0.5·x·(1 + erf(x/√2)). */
  private static gelu(x: tf.Tensor): tf.Tensor {
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
  }

  /** ConvNeXt block with GlobalResponseNorm and a cond-driven scale/shift; x NHWC [B, H, W, C]. */
  private convNext(x: tf.Tensor4D, cond: tf.Tensor, p: string): tf.Tensor4D {
    const c = x.shape[3];
    let h: tf.Tensor = tf.depthwiseConv2d(x, this.w(`${p}.depthwise.weight`) as tf.Tensor4D, 1, 'same');
    const db = this.opt(`${p}.depthwise.bias`);
    if (db) h = tf.add(h, db);
    h = this.rmsNorm(h, `${p}.norm`);
    h = UVit.gelu(this.linear(h, `${p}.channelwise_linear_1`));
    // GlobalResponseNorm: gx = ‖h‖₂ over H, W per channel; h·γ·gx/(mean_c gx + 1e-6) + β + h
    const gx = tf.sqrt(tf.sum(tf.square(h), [1, 2], true));
    const nx = tf.div(gx, tf.add(tf.mean(gx, -1, true), 1e-6));
    h = tf.add(
      tf.add(tf.mul(this.w(`${p}.channelwise_norm.gamma`), tf.mul(h, nx)), this.w(`${p}.channelwise_norm.beta`)),
      h,
    );
    h = tf.add(this.linear(h, `${p}.channelwise_linear_2`), x);
    const ss = this.linear(silu(cond), `${p}.cond_embeds_mapper`);
    const [scale, shift] = tf.split(ss, [c, c], 1);
    const b = x.shape[0];
    return tf.add(
      tf.mul(h, tf.add(tf.reshape(scale, [b, 1, 1, c]), 1)),
      tf.reshape(shift, [b, 1, 1, c]),
    ) as tf.Tensor4D;
  }

  /** SkipFF transformer block: two residual attentions over the (mapped) text states; x [B, N, C]. */
  private skipFfBlock(x: tf.Tensor, enc: tf.Tensor, p: string): tf.Tensor {
    const kv = this.weights?.has(`${p}.kv_mapper.weight`) ? this.linear(silu(enc), `${p}.kv_mapper`) : enc;
    const heads = this.config.blockNumHeads;
    let h = tf.add(this.attention(this.rmsNorm(x, `${p}.norm1`, BLOCK_ATTENTION_NORM_EPS), kv, `${p}.attn1`, heads), x);
    h = tf.add(this.attention(this.rmsNorm(h, `${p}.norm2`, BLOCK_ATTENTION_NORM_EPS), kv, `${p}.attn2`, heads), h);
    return h;
  }

  /** AdaLayerNormContinuous: norm(x)·(1 + scale) + shift, (scale, shift) = linear(SiLU(cond)). */
  private adaNorm(x: tf.Tensor, cond: tf.Tensor, p: string, kind: 'rms' | 'layer'): tf.Tensor {
    const [b, , d] = x.shape;
    const [scale, shift] = tf.split(this.linear(silu(cond), `${p}.linear`), [d, d], 1);
    const n = kind === 'rms' ? this.rmsNorm(x, `${p}.norm`) : this.layerNorm(x, `${p}.norm`);
    return tf.add(tf.mul(n, tf.add(tf.reshape(scale, [b, 1, d]), 1)), tf.reshape(shift, [b, 1, d]));
  }

  /** BasicTransformerBlock (ada_norm_continuous): self-attention, cross-attention, GEGLU feed-forward. */
  private transformerLayer(x: tf.Tensor, enc: tf.Tensor, cond: tf.Tensor, p: string): tf.Tensor {
    const heads = this.config.numAttentionHeads;
    const n1 = this.adaNorm(x, cond, `${p}.norm1`, 'rms');
    let h = tf.add(this.attention(n1, n1, `${p}.attn1`, heads), x);
    h = tf.add(this.attention(this.adaNorm(h, cond, `${p}.norm2`, 'rms'), enc, `${p}.attn2`, heads), h);
    const n3 = this.adaNorm(h, cond, `${p}.norm3`, 'layer');
    const i = this.config.intermediateSize;
    const [value, gate] = tf.split(this.linear(n3, `${p}.ff.net.0.proj`), [i, i], -1);
    return tf.add(this.linear(tf.mul(value, UVit.gelu(gate)), `${p}.ff.net.2`), h);
  }

  /** RMSNorm, zero pad right/bottom by one, 2×2 conv with stride 2 (diffusers Downsample2D, padding 0). */
  private downsample(x: tf.Tensor4D, p: string): tf.Tensor4D {
    const n = this.rmsNorm(x, `${p}.norm`) as tf.Tensor4D;
    const padded = tf.pad(n, [
      [0, 0],
      [0, 1],
      [0, 1],
      [0, 0],
    ]);
    let y: tf.Tensor = tf.conv2d(padded, this.w(`${p}.conv.weight`) as tf.Tensor4D, 2, 'valid');
    const b = this.opt(`${p}.conv.bias`);
    if (b) y = tf.add(y, b);
    return y as tf.Tensor4D;
  }

  /** RMSNorm then a 2×2 transposed conv with stride 2 (no overlap: a matmul and a pixel shuffle). */
  private upsample(x: tf.Tensor4D, p: string): tf.Tensor4D {
    const [b, h, w, c] = x.shape;
    let y = this.product(tf.reshape(this.rmsNorm(x, `${p}.norm`), [b * h * w, c]), `${p}.conv.weight`); // [in, 2·2·out]
    const out = (y.shape[1] as number) / 4;
    y = tf.transpose(tf.reshape(y, [b, h, w, 2, 2, out]), [0, 1, 3, 2, 4, 5]);
    y = tf.reshape(y, [b, h * 2, w * 2, out]);
    const bias = this.opt(`${p}.conv.bias`);
    if (bias) y = tf.add(y, bias);
    return y as tf.Tensor4D;
  }

  private uvitBlock(
    x: tf.Tensor4D,
    cond: tf.Tensor,
    enc: tf.Tensor,
    p: string,
    capture: ForwardOptions['capture'],
  ): tf.Tensor4D {
    const step = (fn: () => tf.Tensor4D, name: string) => {
      const next = tf.tidy(fn);
      capture?.(name, next);
      if (next !== x) x.dispose();
      x = next;
    };
    if (this.weights?.has(`${p}.downsample.conv.weight`))
      step(() => this.downsample(x, `${p}.downsample`), `${p}.downsample`);
    for (let i = 0; i < this.config.numResBlocks; i++) {
      step(() => this.convNext(x, cond, `${p}.res_blocks.${i}`), `${p}.res_blocks.${i}`);
      step(() => {
        const [b, h, w, c] = x.shape;
        const seq = this.skipFfBlock(tf.reshape(x, [b, h * w, c]), enc, `${p}.attention_blocks.${i}`);
        return tf.reshape(seq, [b, h, w, c]) as tf.Tensor4D;
      }, `${p}.attention_blocks.${i}`);
    }
    if (this.weights?.has(`${p}.upsample.conv.weight`)) step(() => this.upsample(x, `${p}.upsample`), `${p}.upsample`);
    return x;
  }

  // ---- the forward pass -----------------------------------------------------------------------------

  private checkInputs(inputs: UVitInputs): { b: number; h: number; w: number } {
    const cfg = this.config;
    const { inputIds, encoderHiddenStates: enc, pooledTextEmb: pooled, microConds } = inputs;
    const need = (ok: boolean, what: string) => {
      if (!ok) throw new MuseError(`UVit.forward: ${what}`);
    };
    need(
      inputIds?.rank === 3 && inputIds.dtype === 'int32',
      `inputIds must be int32 [B, H, W], got ${inputIds?.dtype} ${shapeString(inputIds?.shape ?? [])}`,
    );
    const [b, h, w] = inputIds.shape;
    need(b > 0 && h > 0 && w > 0, `inputIds ${shapeString(inputIds.shape)} is empty`);
    if (cfg.downsample)
      need(h % 2 === 0 && w % 2 === 0, `this model downsamples by 2: the token grid ${h}×${w} must have even sides`);
    need(
      enc?.rank === 3 &&
        enc.dtype === 'float32' &&
        enc.shape[0] === b &&
        (enc.shape[1] ?? 0) > 0 &&
        enc.shape[2] === cfg.encoderHiddenSize,
      `encoderHiddenStates must be float32 [${b}, L, ${cfg.encoderHiddenSize}], got ${enc?.dtype} ${shapeString(enc?.shape ?? [])}`,
    );
    need(
      pooled?.rank === 2 && pooled.dtype === 'float32' && pooled.shape[0] === b && pooled.shape[1] === cfg.condEmbedDim,
      `pooledTextEmb must be float32 [${b}, ${cfg.condEmbedDim}], got ${pooled?.dtype} ${shapeString(pooled?.shape ?? [])}`,
    );
    need(
      microConds?.rank === 2 &&
        microConds.dtype === 'float32' &&
        microConds.shape[0] === b &&
        microConds.shape[1] === cfg.numMicroConds,
      `microConds must be float32 [${b}, ${cfg.numMicroConds}], got ${microConds?.dtype} ${shapeString(microConds?.shape ?? [])}`,
    );
    const ids = inputIds.dataSync();
    for (let i = 0; i < ids.length; i++) {
      if (!(ids[i] >= 0 && ids[i] < cfg.vocabSize))
        throw new MuseError(`UVit.forward: inputIds holds ${ids[i]}, outside [0, ${cfg.vocabSize})`);
    }
    return { b, h, w };
  }

  /**
   * Logits over the codebook at every token position: float32 [B, H, W, codebook_size] (NHWC:
   * position-major, the codebook on the last axis; PyTorch returns [B, codebook_size, H, W]).
   */
  forward(inputs: UVitInputs, options: ForwardOptions = {}): tf.Tensor4D {
    const cfg = this.config;
    const { b, h, w } = this.checkInputs(inputs);
    const capture = options.capture;
    const micro = microCondEmbedding(inputs.microConds.dataSync(), cfg.microCondEncodeDim);
    const kept: tf.Tensor[] = [];
    try {
      const enc = tf.tidy(() => {
        const proj = this.linear(inputs.encoderHiddenStates, 'encoder_proj');
        capture?.('encoder_proj', proj);
        return this.rmsNorm(proj, 'encoder_proj_layer_norm');
      });
      kept.push(enc);
      capture?.('encoder_proj_layer_norm', enc);
      const cond = tf.tidy(() => {
        const microT = tf.tensor2d(micro, [b, cfg.microCondEmbedDim]);
        const cat = tf.concat([inputs.pooledTextEmb, microT], 1);
        return this.linear(silu(this.linear(cat, 'cond_embed.linear_1')), 'cond_embed.linear_2');
      });
      kept.push(cond);
      capture?.('cond_embed', cond);
      let x = tf.tidy(() => {
        const e = tf.gather(this.w('embed.embeddings.weight'), tf.reshape(inputs.inputIds, [-1]));
        const n = this.rmsNorm(e, 'embed.layer_norm');
        return tf.reshape(this.linear(n, 'embed.conv'), [b, h, w, cfg.blockOutChannels]) as tf.Tensor4D;
      });
      capture?.('embed', x);
      x = this.uvitBlock(x, cond, enc, 'down_block', capture);
      capture?.('down_block', x);
      const [, hh, ww, cb] = x.shape;
      let seq = tf.tidy(() =>
        this.linear(this.rmsNorm(tf.reshape(x, [b, hh * ww, cb]), 'project_to_hidden_norm'), 'project_to_hidden'),
      );
      x.dispose();
      capture?.('project_to_hidden', seq);
      for (let i = 0; i < cfg.numHiddenLayers; i++) {
        const next = tf.tidy(() => this.transformerLayer(seq, enc, cond, `transformer_layers.${i}`));
        seq.dispose();
        seq = next;
        capture?.(`transformer_layers.${i}`, seq);
      }
      const back = tf.tidy(() => this.linear(this.rmsNorm(seq, 'project_from_hidden_norm'), 'project_from_hidden'));
      seq.dispose();
      capture?.('project_from_hidden', back);
      x = tf.reshape(back, [b, hh, ww, cb]) as tf.Tensor4D;
      back.dispose();
      x = this.uvitBlock(x, cond, enc, 'up_block', capture);
      capture?.('up_block', x);
      const logits = tf.tidy(() => {
        const c1 = this.linear(x, 'mlm_layer.conv1');
        capture?.('mlm_layer.conv1', c1);
        return this.linear(this.rmsNorm(c1, 'mlm_layer.layer_norm'), 'mlm_layer.conv2') as tf.Tensor4D;
      });
      x.dispose();
      return logits;
    } finally {
      for (const t of kept) t.dispose();
    }
  }
}
