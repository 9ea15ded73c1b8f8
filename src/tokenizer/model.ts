// The VQ tokenizer (VQGAN, Esser et al. 2021, as used by Muse §2.2): a fully convolutional encoder
// and decoder of ResNet blocks (GroupNorm, SiLU), no attention, so any size the downsampling factor
// divides works. Written as plain functions over named weights (names = safetensors keys).
//   encoder: conv_in → per level [resBlocks × ResBlock, then a stride-2 conv except at the last]
//            → mid ResBlock → GroupNorm, SiLU → conv_out (latentDim)
//   quantizer (quantizer.ts): 1×1 conv to codeDim, l2-normalised nearest code, 1×1 conv back
//   decoder: the mirror image, upsampling by nearest neighbour + conv.
import * as tf from '@tensorflow/tfjs-core';
import { groupNorm } from '../tensor/ops/group-norm.js';
import { silu } from '../tensor/ops/silu.js';
import { type LayoutVisitor, newVariable, type Params } from '../tensor/params.js';
import type { Rng } from '../tensor/random.js';
import { downsampleFactor, type TokenizerConfig } from './config.js';

/** A tokenizer's weights by safetensors name (tokenizerLayout lists them). */
export type TokenizerParams = Params;

type Init = (name: string, shape: number[], kind: 'conv' | 'zero' | 'one' | 'code') => void;

/** A layout visitor as an Init: each tensor's values made only when the visitor asks for them. */
function layoutInit(visit: LayoutVisitor): Init {
  return (name, shape, kind) =>
    visit(name, shape, (rng) => {
      const n = shape.reduce((a, b) => a * b, 1);
      if (kind === 'zero') return new Float32Array(n);
      if (kind === 'one') return new Float32Array(n).fill(1);
      if (kind === 'code') return rng.normals(n);
      return rng.normals(n, Math.sqrt(1 / (shape[0] * shape[1] * shape[2])));
    });
}

function convParams(init: Init, name: string, k: number, cin: number, cout: number, zero = false): void {
  init(`${name}.w`, [k, k, cin, cout], zero ? 'zero' : 'conv');
  init(`${name}.b`, [cout], 'zero');
}

function normParams(init: Init, name: string, c: number): void {
  init(`${name}.g`, [c], 'one');
  init(`${name}.b`, [c], 'zero');
}

function resBlockParams(init: Init, name: string, cin: number, cout: number): void {
  normParams(init, `${name}.norm1`, cin);
  convParams(init, `${name}.conv1`, 3, cin, cout);
  normParams(init, `${name}.norm2`, cout);
  // Zero-initialised last conv: every block starts as the identity (Goyal et al. 2017).
  convParams(init, `${name}.conv2`, 3, cout, cout, true);
  if (cin !== cout) convParams(init, `${name}.skip`, 1, cin, cout);
}

/** Channels at each level. */
function levels(c: TokenizerConfig): number[] {
  return c.channelMult.map((m) => c.channels * m);
}

/** Fresh weights for the encoder, quantizer projections, codebook and decoder. */
export function initTokenizer(c: TokenizerConfig, rng: Rng): TokenizerParams {
  const p: TokenizerParams = {};
  tokenizerLayout(c, (name, shape, values) => {
    p[name] = newVariable(values(rng), shape);
  });
  return p;
}

/**
 * Every tensor of a tokenizer with this config, in order (see transformerLayout): names and shapes
 * listed without allocating anything, values made (in initTokenizer's order) only when asked.
 */
export function tokenizerLayout(c: TokenizerConfig, visit: LayoutVisitor): void {
  const init = layoutInit(visit);
  const ch = levels(c);
  convParams(init, 'enc.conv_in', 3, 3, ch[0]);
  let cin = ch[0];
  ch.forEach((cout, i) => {
    for (let r = 0; r < c.resBlocks; r++) {
      resBlockParams(init, `enc.down${i}.res${r}`, cin, cout);
      cin = cout;
    }
    if (i < ch.length - 1) convParams(init, `enc.down${i}.downsample`, 3, cout, cout);
  });
  resBlockParams(init, 'enc.mid', cin, cin);
  normParams(init, 'enc.norm_out', cin);
  convParams(init, 'enc.conv_out', 3, cin, c.latentDim);

  convParams(init, 'quant.pre', 1, c.latentDim, c.codeDim);
  init('quant.codebook', [c.codebookSize, c.codeDim], 'code');
  convParams(init, 'quant.post', 1, c.codeDim, c.latentDim);

  const last = ch[ch.length - 1];
  convParams(init, 'dec.conv_in', 3, c.latentDim, last);
  resBlockParams(init, 'dec.mid', last, last);
  cin = last;
  for (let i = ch.length - 1; i >= 0; i--) {
    for (let r = 0; r < c.resBlocks; r++) {
      resBlockParams(init, `dec.up${i}.res${r}`, cin, ch[i]);
      cin = ch[i];
    }
    if (i > 0) convParams(init, `dec.up${i}.upsample`, 3, cin, cin);
  }
  normParams(init, 'dec.norm_out', cin);
  convParams(init, 'dec.conv_out', 3, cin, 3);
}

function conv(p: TokenizerParams, name: string, x: tf.Tensor4D, stride = 1): tf.Tensor4D {
  return tf.add(tf.conv2d(x, p[`${name}.w`] as tf.Tensor4D, stride, 'same'), p[`${name}.b`]) as tf.Tensor4D;
}

function norm(p: TokenizerParams, name: string, x: tf.Tensor4D, groups: number): tf.Tensor4D {
  return groupNorm(x, p[`${name}.g`] as tf.Tensor1D, p[`${name}.b`] as tf.Tensor1D, groups);
}

function resBlock(p: TokenizerParams, name: string, x: tf.Tensor4D, groups: number): tf.Tensor4D {
  let h = conv(p, `${name}.conv1`, silu(norm(p, `${name}.norm1`, x, groups)) as tf.Tensor4D);
  h = conv(p, `${name}.conv2`, silu(norm(p, `${name}.norm2`, h, groups)) as tf.Tensor4D);
  const skip = p[`${name}.skip.w`] ? conv(p, `${name}.skip`, x) : x;
  return tf.add(skip, h) as tf.Tensor4D;
}

/** Images [B, H, W, 3] in [-1, 1] → latents [B, H/f, W/f, latentDim]. */
export function encodeLatents(p: TokenizerParams, c: TokenizerConfig, x: tf.Tensor4D): tf.Tensor4D {
  const f = downsampleFactor(c);
  if (x.shape[1] % f !== 0 || x.shape[2] % f !== 0) {
    throw new Error(`image size ${x.shape[1]}×${x.shape[2]} is not a multiple of the tokenizer's factor ${f}`);
  }
  let h = conv(p, 'enc.conv_in', x);
  const ch = levels(c);
  for (let i = 0; i < ch.length; i++) {
    for (let r = 0; r < c.resBlocks; r++) h = resBlock(p, `enc.down${i}.res${r}`, h, c.groups);
    if (i < ch.length - 1) h = conv(p, `enc.down${i}.downsample`, h, 2);
  }
  h = resBlock(p, 'enc.mid', h, c.groups);
  return conv(p, 'enc.conv_out', silu(norm(p, 'enc.norm_out', h, c.groups)) as tf.Tensor4D);
}

/** Latents [B, h, w, latentDim] → images [B, h·f, w·f, 3] (roughly in [-1, 1]; not clamped). */
export function decodeLatents(p: TokenizerParams, c: TokenizerConfig, z: tf.Tensor4D): tf.Tensor4D {
  const ch = levels(c);
  let h = conv(p, 'dec.conv_in', z);
  h = resBlock(p, 'dec.mid', h, c.groups);
  for (let i = ch.length - 1; i >= 0; i--) {
    for (let r = 0; r < c.resBlocks; r++) h = resBlock(p, `dec.up${i}.res${r}`, h, c.groups);
    if (i > 0) {
      h = tf.image.resizeNearestNeighbor(h, [h.shape[1] * 2, h.shape[2] * 2]);
      h = conv(p, `dec.up${i}.upsample`, h);
    }
  }
  return conv(p, 'dec.conv_out', silu(norm(p, 'dec.norm_out', h, c.groups)) as tf.Tensor4D);
}

export function parameterCount(p: TokenizerParams): number {
  return Object.values(p).reduce((a, v) => a + v.size, 0);
}
