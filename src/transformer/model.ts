// The Muse base transformer (Chang et al. 2023, §2.3): a bidirectional transformer over a grid of VQ
// tokens, some of them [MASK], conditioned on per-token text embeddings by cross-attention; it predicts
// the code of every position. Plain functions over named weights (names = safetensors keys).
//
//   x       = tok_emb[tokens] + pos_emb                        tokens [B, N], N = h·w row-major
//   context = [text.null ; text.proj(text)]                    [B, 1 + T, D]; the NULL token is always
//             visible, padded text positions (t ≥ length) are hidden from every key
//   block l:  x += SelfAttn(LN1(x))
//             x += CrossAttn(LN2(x), context)
//             x += MLP(LN3(x))                                 fc1 → GELU → fc2
//   logits  = head(LN_f(x))                                    [B, N, K]; [MASK] is never predicted
//
// Super-res stage (§2.4, config.lowres): the low-res tokens go through their own stack of pre-norm
// self-attention + MLP blocks (lowres.*), and the result is prepended to the context:
//   context = [LN(lowres(tokens_lo)) ; text.null ; text.proj(text)]   [B, N_lo + 1 + T, D]
// and, beyond the paper, each high-res position also gets the encoded low-res token it lies under,
// through a projection that starts at zero (lowres.to_input): x += W·lowres(tokens_lo)[under(i)].
// Measured on emoji: with cross-attention alone the model had to learn the spatial correspondence
// and super-res stayed far below bicubic upsampling after 3,000 steps (see models/emoji/TRAINING.md).
//
// A prompt of length 0 (the unconditional branch of classifier-free guidance) attends only to the
// NULL token. The cross-attention keys and values depend on the text alone, so decoding computes them
// once per generation (precomputeContext) and passes them to every step.
import * as tf from '@tensorflow/tfjs-core';
import {
  attention,
  mergeHeads,
  selfAttention as packedSelfAttention,
  queryRowsAttention,
  splitHeads,
} from '../tensor/ops/attention.js';
import { gelu } from '../tensor/ops/gelu.js';
import { layerNorm } from '../tensor/ops/layer-norm.js';
import { type LayoutVisitor, newVariable, type Params } from '../tensor/params.js';
import type { Rng } from '../tensor/random.js';
import { MuseError } from '../util/errors.js';
import { sequenceLength, type TransformerConfig, validateTransformerConfig } from './config.js';

/** A transformer's weights by safetensors name (transformerLayout lists them). */
export type TransformerParams = Params;

/** Added to the attention score of a hidden key: exp(−1e9 − max) is exactly 0 in float32. */
export const MASKED_SCORE = -1e9;

/** The text side of cross-attention, computed once per text batch. */
export interface TextContext {
  /** Per layer: cross-attention keys [B, heads, 1 + T, width/heads]. */
  keys: tf.Tensor4D[];
  /** Per layer: cross-attention values [B, heads, 1 + T, width/heads]. */
  values: tf.Tensor4D[];
  /** Additive key mask [B, 1, 1, 1 + T]: 0 where a key is visible, MASKED_SCORE where hidden. */
  bias: tf.Tensor4D;
  /** Super-res only: the low-res term added to every high-res position's input [B, N, D]. */
  lowresTerm?: tf.Tensor3D;
}

/** Every tensor of a context, for tf.dispose. */
export function contextTensors(ctx: TextContext): tf.Tensor[] {
  return [...ctx.keys, ...ctx.values, ctx.bias, ...(ctx.lowresTerm ? [ctx.lowresTerm] : [])];
}

// ---------------------------------------------------------------------------------------------------
// Parameters

/**
 * Fresh weights: normal(0, 0.02) for matrices and embeddings, zero biases, layer-norm gains 1. The
 * three residual output projections of each block get 0.02/√(3·layers) (GPT-2's scaled init), so the
 * residual stream's variance does not grow with depth at the start.
 */
export function initTransformer(c: TransformerConfig, rng: Rng): TransformerParams {
  const p: TransformerParams = {};
  transformerLayout(c, (name, shape, values) => {
    p[name] = newVariable(values(rng), shape);
  });
  return p;
}

/**
 * Every tensor of a transformer with this config, in order: its name, shape and how to make its
 * initial values (called in this order, so initTransformer's random stream is fixed). Listing the
 * names and shapes alone allocates nothing (loading checks a file against them before building a model).
 */
export function transformerLayout(c: TransformerConfig, visit: LayoutVisitor): void {
  validateTransformerConfig(c);
  const D = c.width;
  const set = (name: string, shape: number[], values: (rng: Rng) => Float32Array) => visit(name, shape, values);
  const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  const normal = (name: string, shape: number[], std = 0.02) =>
    set(name, shape, (rng) => rng.normals(count(shape), std));
  const linear = (name: string, din: number, dout: number, std = 0.02) => {
    normal(`${name}.w`, [din, dout], std);
    set(`${name}.b`, [dout], () => new Float32Array(dout));
  };
  const norm = (name: string) => {
    set(`${name}.g`, [D], () => new Float32Array(D).fill(1));
    set(`${name}.b`, [D], () => new Float32Array(D));
  };
  const residual = 0.02 / Math.sqrt(3 * c.layers);

  normal('tok_emb', [c.codebookSize + 1, D]);
  normal('pos_emb', [sequenceLength(c), D]);
  linear('text.proj', c.textDim, D);
  normal('text.null', [1, D]);
  for (let l = 0; l < c.layers; l++) {
    const b = `blocks.${l}`;
    norm(`${b}.ln1`);
    linear(`${b}.attn.qkv`, D, 3 * D);
    linear(`${b}.attn.out`, D, D, residual);
    norm(`${b}.ln2`);
    linear(`${b}.cross.q`, D, D);
    linear(`${b}.cross.kv`, D, 2 * D);
    linear(`${b}.cross.out`, D, D, residual);
    norm(`${b}.ln3`);
    linear(`${b}.mlp.fc1`, D, c.mlp);
    linear(`${b}.mlp.fc2`, c.mlp, D, residual);
  }
  norm('ln_f');
  linear('head', D, c.codebookSize);
  if (c.lowres) {
    const lowResidual = 0.02 / Math.sqrt(2 * c.lowres.layers);
    const { codeDim } = c.lowres;
    if (codeDim) {
      // Placeholder values: training copies the tokenizer's codes in (lowresCodebook).
      normal('lowres.codebook', [c.lowres.codebookSize, codeDim], 1);
      linear('lowres.code_proj', codeDim, D);
    } else normal('lowres.tok_emb', [c.lowres.codebookSize, D]);
    normal('lowres.pos_emb', [c.lowres.grid[0] * c.lowres.grid[1], D]);
    for (let l = 0; l < c.lowres.layers; l++) {
      const b = `lowres.blocks.${l}`;
      norm(`${b}.ln1`);
      linear(`${b}.attn.qkv`, D, 3 * D);
      linear(`${b}.attn.out`, D, D, lowResidual);
      norm(`${b}.ln2`);
      linear(`${b}.mlp.fc1`, D, c.mlp);
      linear(`${b}.mlp.fc2`, c.mlp, D, lowResidual);
    }
    norm('lowres.ln_f');
    set('lowres.to_input.w', [D, D], () => new Float32Array(D * D));
    set('lowres.to_input.b', [D], () => new Float32Array(D));
  }
}

/** Tensors that are part of the model but never trained (the low-res tokenizer's codes). */
export const FROZEN_TENSORS = new Set(['lowres.codebook']);

/** The parameters an optimizer updates: all but the frozen ones. */
export function trainableParams(p: TransformerParams): TransformerParams {
  return Object.fromEntries(Object.entries(p).filter(([k]) => !FROZEN_TENSORS.has(k)));
}

export function parameterCount(p: TransformerParams): number {
  return Object.values(p).reduce((a, v) => a + v.size, 0);
}

// ---------------------------------------------------------------------------------------------------
// Layers

/** y = x·W + b over the last axis, for any leading shape (folded into one 2-D matmul). */
function linear(p: TransformerParams, name: string, x: tf.Tensor): tf.Tensor {
  const w = p[`${name}.w`];
  const [din, dout] = w.shape;
  const y = tf.add(tf.matMul(tf.reshape(x, [-1, din]), w), p[`${name}.b`]);
  return tf.reshape(y, [...x.shape.slice(0, -1), dout]);
}

function norm(p: TransformerParams, name: string, x: tf.Tensor): tf.Tensor {
  return layerNorm(x, p[`${name}.g`], p[`${name}.b`]);
}

/** Head split and merge of [B, S, D] (src/tensor/ops/attention.ts). */
/** Scaled dot-product attention of all heads (src/tensor/ops/attention.ts: fused on the native path). */
export { attention, mergeHeads, splitHeads };

function selfAttention(p: TransformerParams, name: string, x: tf.Tensor, heads: number): tf.Tensor {
  // q, k and v read straight out of the packed projection on the native path (no head transposes).
  return linear(p, `${name}.out`, packedSelfAttention(linear(p, `${name}.qkv`, x) as tf.Tensor3D, heads));
}

function crossAttention(
  p: TransformerParams,
  name: string,
  x: tf.Tensor,
  keys: tf.Tensor4D,
  values: tf.Tensor4D,
  bias: tf.Tensor4D,
): tf.Tensor {
  // The heads are the keys' (ctx keys and values are [B, H, T, dh]).
  return linear(p, `${name}.out`, queryRowsAttention(linear(p, `${name}.q`, x) as tf.Tensor3D, keys, values, bias));
}

function mlp(p: TransformerParams, name: string, x: tf.Tensor): tf.Tensor {
  return linear(p, `${name}.fc2`, gelu(linear(p, `${name}.fc1`, x)));
}

/** One pre-norm block l on the residual stream x [B, N, D]. */
export function block(
  p: TransformerParams,
  c: TransformerConfig,
  l: number,
  x: tf.Tensor3D,
  ctx: TextContext,
): tf.Tensor3D {
  const b = `blocks.${l}`;
  let h: tf.Tensor = x;
  h = tf.add(h, selfAttention(p, `${b}.attn`, norm(p, `${b}.ln1`, h), c.heads));
  h = tf.add(h, crossAttention(p, `${b}.cross`, norm(p, `${b}.ln2`, h), ctx.keys[l], ctx.values[l], ctx.bias));
  h = tf.add(h, mlp(p, `${b}.mlp`, norm(p, `${b}.ln3`, h)));
  return h as tf.Tensor3D;
}

/** The super-res stage's low-res encoder: tokens [B, N_lo] → [B, N_lo, D]. */
export function encodeLowres(p: TransformerParams, c: TransformerConfig, lowTokens: tf.Tensor2D): tf.Tensor3D {
  const lr = c.lowres;
  if (!lr) throw new MuseError('this model has no low-res conditioning (it is not a super-res model)');
  const n = lr.grid[0] * lr.grid[1];
  if (lowTokens.rank !== 2 || lowTokens.shape[1] !== n || lowTokens.dtype !== 'int32')
    throw new MuseError(
      `low-res tokens must be int32 [B, ${n}] (a ${lr.grid.join('×')} grid), got ${lowTokens.dtype} [${lowTokens.shape}]`,
    );
  return tf.tidy(() => {
    const embedded = lr.codeDim
      ? linear(p, 'lowres.code_proj', tf.gather(p['lowres.codebook'], lowTokens))
      : tf.gather(p['lowres.tok_emb'], lowTokens);
    let x: tf.Tensor = tf.add(embedded, p['lowres.pos_emb']);
    for (let l = 0; l < lr.layers; l++) {
      const b = `lowres.blocks.${l}`;
      x = tf.add(x, selfAttention(p, `${b}.attn`, norm(p, `${b}.ln1`, x), c.heads));
      x = tf.add(x, mlp(p, `${b}.mlp`, norm(p, `${b}.ln2`, x)));
    }
    return norm(p, 'lowres.ln_f', x) as tf.Tensor3D;
  });
}

/** For each high-res grid position, the index of the low-res position it lies under (nearest). */
export function lowresIndex(c: TransformerConfig): Int32Array {
  const lr = c.lowres;
  if (!lr) throw new MuseError('this model has no low-res conditioning');
  const [h, w] = c.grid;
  const [hl, wl] = lr.grid;
  return Int32Array.from(
    { length: h * w },
    (_, i) => Math.floor((Math.floor(i / w) * hl) / h) * wl + Math.floor(((i % w) * wl) / w),
  );
}

// ---------------------------------------------------------------------------------------------------
// Text context

function lengthsOf(textLength: Int32Array | tf.Tensor1D, batch: number, tokens: number): Int32Array {
  const lengths = textLength instanceof tf.Tensor ? Int32Array.from(textLength.dataSync()) : textLength;
  if (lengths.length !== batch)
    throw new MuseError(`textLength has ${lengths.length} entries for a batch of ${batch} prompts`);
  for (const n of lengths) {
    if (!Number.isInteger(n) || n < 0 || n > tokens)
      throw new MuseError(`text length ${n} is not in [0, ${tokens}] (the text has ${tokens} token positions)`);
  }
  return lengths;
}

/**
 * Each layer's cross-attention keys and values for a text batch: text [B, T, textDim] (T ≤ textTokens,
 * padded past each prompt's length), textLength [B] (0 = empty prompt), and for a super-res model the
 * low-res tokens [B, N_lo]. Dispose with tf.dispose of its keys, values and bias.
 */
export function precomputeContext(
  p: TransformerParams,
  c: TransformerConfig,
  text: tf.Tensor3D,
  textLength: Int32Array | tf.Tensor1D,
  lowTokens?: tf.Tensor2D,
): TextContext {
  if (text.rank !== 3 || text.shape[2] !== c.textDim)
    throw new MuseError(`text embeddings must be [B, T, ${c.textDim}], got [${text.shape}]`);
  const [B, T] = text.shape;
  if (T > c.textTokens) throw new MuseError(`text has ${T} tokens; this model takes at most ${c.textTokens}`);
  const lengths = lengthsOf(textLength, B, T);
  if (c.lowres && !lowTokens) throw new MuseError('a super-res model needs the low-res tokens');
  if (!c.lowres && lowTokens) throw new MuseError('low-res tokens given to a model without low-res conditioning');
  if (lowTokens && lowTokens.shape[0] !== B)
    throw new MuseError(`${lowTokens.shape[0]} low-res grids for ${B} prompts`);
  const prefix = c.lowres ? c.lowres.grid[0] * c.lowres.grid[1] : 0;
  return tf.tidy(() => {
    // Key mask: the NULL token (key 0) is always visible; text token t is visible iff t < length.
    const visible = new Uint8Array(B * T);
    const S = prefix + 1 + T;
    const bias = new Float32Array(B * S);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        if (t < lengths[b]) visible[b * T + t] = 1;
        else bias[b * S + prefix + 1 + t] = MASKED_SCORE;
      }
    }
    // Padded positions are also zeroed before the projection, so whatever fills them (even NaN or
    // ∞, where 0·x is not 0) cannot reach the output.
    const clean = tf.where(tf.tensor3d(visible, [B, T, 1], 'bool'), text, tf.zerosLike(text));
    const nul = tf.broadcastTo(tf.reshape(p['text.null'], [1, 1, c.width]), [B, 1, c.width]);
    const low = lowTokens ? encodeLowres(p, c, lowTokens) : undefined;
    const parts: tf.Tensor[] = low ? [low, nul] : [nul];
    if (T > 0) parts.push(linear(p, 'text.proj', clean));
    const context = parts.length > 1 ? tf.concat(parts, 1) : nul;
    const keys: tf.Tensor4D[] = [];
    const values: tf.Tensor4D[] = [];
    for (let l = 0; l < c.layers; l++) {
      const [k, v] = tf.split(linear(p, `blocks.${l}.cross.kv`, context), 2, -1);
      keys.push(splitHeads(k, c.heads));
      values.push(splitHeads(v, c.heads));
    }
    const lowresTerm = low
      ? (tf.gather(linear(p, 'lowres.to_input', low), tf.tensor1d(lowresIndex(c), 'int32'), 1) as tf.Tensor3D)
      : undefined;
    return { keys, values, bias: tf.tensor4d(bias, [B, 1, 1, S]), ...(lowresTerm ? { lowresTerm } : {}) };
  });
}

function isContext(x: tf.Tensor3D | TextContext): x is TextContext {
  return !(x instanceof tf.Tensor);
}

// ---------------------------------------------------------------------------------------------------
// Forward

/**
 * Logits [B, h·w, K] for tokens [B, h·w] (int32 in [0, K], K = [MASK]) given either the text —
 * embeddings [B, T, textDim] and lengths [B], plus the low-res tokens for a super-res model — or a
 * context from precomputeContext.
 */
export function forward(
  p: TransformerParams,
  c: TransformerConfig,
  tokens: tf.Tensor2D,
  text: tf.Tensor3D,
  textLength: Int32Array | tf.Tensor1D,
  lowTokens?: tf.Tensor2D,
): tf.Tensor3D;
export function forward(
  p: TransformerParams,
  c: TransformerConfig,
  tokens: tf.Tensor2D,
  context: TextContext,
): tf.Tensor3D;
export function forward(
  p: TransformerParams,
  c: TransformerConfig,
  tokens: tf.Tensor2D,
  text: tf.Tensor3D | TextContext,
  textLength?: Int32Array | tf.Tensor1D,
  lowTokens?: tf.Tensor2D,
): tf.Tensor3D {
  const n = sequenceLength(c);
  if (tokens.rank !== 2 || tokens.shape[1] !== n || tokens.dtype !== 'int32')
    throw new MuseError(
      `tokens must be int32 [B, ${n}] (a ${c.grid.join('×')} grid), got ${tokens.dtype} [${tokens.shape}]`,
    );
  const B = tokens.shape[0];
  return tf.tidy(() => {
    let ctx: TextContext;
    if (isContext(text)) ctx = text;
    else if (textLength === undefined) throw new MuseError('forward: textLength is required with text embeddings');
    else ctx = precomputeContext(p, c, text, textLength, lowTokens);
    if (ctx.bias.shape[0] !== B || ctx.keys.length !== c.layers)
      throw new MuseError(
        `text context is for ${ctx.bias.shape[0]} prompts and ${ctx.keys.length} layers; tokens are ${B} grids, the model has ${c.layers} layers`,
      );
    let x = tf.add(tf.gather(p.tok_emb, tokens), p.pos_emb) as tf.Tensor3D;
    if (ctx.lowresTerm) x = tf.add(x, ctx.lowresTerm);
    for (let l = 0; l < c.layers; l++) x = block(p, c, l, x, ctx);
    return linear(p, 'head', norm(p, 'ln_f', x)) as tf.Tensor3D;
  });
}
