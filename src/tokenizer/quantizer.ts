// Vector quantizer with factorised codes: latents are projected to a small code dimension (ViT-VQGAN,
// Yu et al. 2022, §3.2), then
//   'l2':  both they and the codebook are l2-normalised, so the nearest code is the one of largest
//          cosine similarity, and the codebook learns by gradient:
//          L_vq = ‖sg(ẑ) − e‖² + β‖ẑ − sg(e)‖²,  β = 0.25
//   'ema': the nearest code is the closest in Euclidean distance and the codebook follows the running
//          mean of its latents outside the gradient (ema-codebook.ts): L_vq = β‖ẑ − sg(e)‖².
// Straight-through gradient to the encoder in both (van den Oord et al. 2017).
import * as tf from '@tensorflow/tfjs-core';
import { stopGradient, straightThrough } from '../tensor/ops/stop-gradient.js';
import { assignValues } from '../tensor/params.js';
import { type QuantizerKind, quantizerKind, type TokenizerConfig } from './config.js';
import { encodeLatents, type TokenizerParams } from './model.js';

export const COMMITMENT = 0.25;

function l2normalise(x: tf.Tensor, axis = -1): tf.Tensor {
  return tf.mul(x, tf.rsqrt(tf.add(tf.sum(tf.square(x), axis, true), 1e-12)));
}

function conv1x1(p: TokenizerParams, name: string, x: tf.Tensor4D): tf.Tensor4D {
  return tf.add(tf.conv2d(x, p[`${name}.w`] as tf.Tensor4D, 1, 'valid'), p[`${name}.b`]) as tf.Tensor4D;
}

/** The codebook [K, codeDim] as the lookup sees it: l2-normalised rows, or the EMA centroids as they are. */
export function lookupCodebook(p: TokenizerParams, kind: QuantizerKind = 'l2'): tf.Tensor2D {
  const book = p['quant.codebook'] as tf.Tensor2D;
  return kind === 'ema' ? book : (l2normalise(book) as tf.Tensor2D);
}

/** Latents → code-space vectors [B, h, w, codeDim] (l2-normalised for the 'l2' lookup). */
export function projectLatents(p: TokenizerParams, z: tf.Tensor4D, kind: QuantizerKind = 'l2'): tf.Tensor4D {
  const projected = conv1x1(p, 'quant.pre', z);
  return kind === 'ema' ? projected : (l2normalise(projected) as tf.Tensor4D);
}

/**
 * Index of the nearest code of each row of z [N, d] among e [K, d]: largest cosine for unit rows
 * ('l2'), smallest ‖z − e‖² = ‖z‖² − 2z·e + ‖e‖² otherwise, i.e. largest 2z·e − ‖e‖².
 */
export function nearestCodes(z: tf.Tensor2D, e: tf.Tensor2D, kind: QuantizerKind = 'l2'): tf.Tensor1D {
  return tf.tidy(() => {
    const dots = tf.matMul(z, e, false, true);
    if (kind === 'l2') return tf.argMax(dots, 1) as tf.Tensor1D;
    return tf.argMax(tf.sub(tf.mul(dots, 2), tf.sum(tf.square(e), 1)), 1) as tf.Tensor1D;
  });
}

export interface Quantized {
  /** Quantized latents for the decoder [B, h, w, latentDim] (straight-through gradient). */
  latents: tf.Tensor4D;
  /** Code indices [B, h, w] (int32). */
  indices: tf.Tensor3D;
  /** L_vq (scalar). */
  loss: tf.Scalar;
  /** The normalised encoder vectors, flat [N, codeDim] (for dead-code restarts). */
  vectors: tf.Tensor2D;
}

export function quantize(p: TokenizerParams, z: tf.Tensor4D, kind: QuantizerKind = 'l2'): Quantized {
  const [b, h, w] = z.shape;
  const zn = projectLatents(p, z, kind);
  const d = zn.shape[3];
  const flat = tf.reshape(zn, [b * h * w, d]) as tf.Tensor2D;
  const en = lookupCodebook(p, kind);
  // A fresh tensor, off the gradient tape: tfjs would otherwise try to differentiate through the
  // argmax into gather's integer indices.
  const found = nearestCodes(stopGradient(flat), stopGradient(en), kind);
  const idx = tf.tensor1d(found.dataSync() as Int32Array, 'int32');
  const e = tf.gather(en, idx) as tf.Tensor2D;
  const commitLoss = tf.mul(tf.mean(tf.square(tf.sub(flat, stopGradient(e)))), COMMITMENT);
  const loss = (
    kind === 'ema' ? commitLoss : tf.add(tf.mean(tf.square(tf.sub(stopGradient(flat), e))), commitLoss)
  ) as tf.Scalar;
  const q = tf.reshape(straightThrough(flat, e), [b, h, w, d]) as tf.Tensor4D;
  return {
    latents: conv1x1(p, 'quant.post', q),
    indices: tf.reshape(idx, [b, h, w]) as tf.Tensor3D,
    loss,
    vectors: flat,
  };
}

/** Images [B, H, W, 3] in [-1, 1] → encoder → quantizer, with the config's lookup. */
export function quantizeImages(p: TokenizerParams, c: TokenizerConfig, x: tf.Tensor4D): Quantized {
  return quantize(p, encodeLatents(p, c, x), quantizerKind(c));
}

/** The weights the optimizer updates: all of them, less an EMA codebook (it follows running means). */
export function optimizedParams(p: TokenizerParams, c: TokenizerConfig): TokenizerParams {
  if (quantizerKind(c) !== 'ema') return p;
  return Object.fromEntries(Object.entries(p).filter(([k]) => k !== 'quant.codebook'));
}

/** Code indices [B, h, w] → decoder latents [B, h, w, latentDim]. */
export function codesToLatents(p: TokenizerParams, indices: tf.Tensor3D, kind: QuantizerKind = 'l2'): tf.Tensor4D {
  const [b, h, w] = indices.shape;
  const e = tf.gather(lookupCodebook(p, kind), tf.reshape(indices, [-1]));
  return conv1x1(p, 'quant.post', tf.reshape(e, [b, h, w, e.shape[1]]) as tf.Tensor4D);
}

/** Codebook statistics of a set of indices: fraction of codes used and perplexity exp(H). */
export function codeUsage(
  indices: Int32Array,
  codebookSize: number,
): { used: number; perplexity: number; counts: Int32Array } {
  const counts = new Int32Array(codebookSize);
  for (const i of indices) counts[i]++;
  let entropy = 0;
  let used = 0;
  for (const c of counts) {
    if (c === 0) continue;
    used++;
    const q = c / indices.length;
    entropy -= q * Math.log(q);
  }
  return { used: used / codebookSize, perplexity: Math.exp(entropy), counts };
}

/**
 * Restarts dead codes (Dhariwal et al. 2020, Jukebox §2.3 / Zeghidour et al. 2021): every code
 * whose usage EMA fell below `threshold` is moved onto a randomly chosen recent encoder vector,
 * so it competes again. Returns the restarted codes.
 */
export function restartDeadCodes(
  p: TokenizerParams,
  usageEma: Float32Array,
  recentVectors: Float32Array,
  codeDim: number,
  threshold: number,
  pick: (n: number) => number,
): number[] {
  const book = p['quant.codebook'];
  const values = book.dataSync().slice() as Float32Array;
  const available = recentVectors.length / codeDim;
  if (available === 0) return [];
  const restarted: number[] = [];
  for (let k = 0; k < usageEma.length; k++) {
    if (usageEma[k] >= threshold) continue;
    const src = pick(available) * codeDim;
    values.set(recentVectors.subarray(src, src + codeDim), k * codeDim);
    usageEma[k] = threshold; // give it time to be picked before the next check
    restarted.push(k);
  }
  if (restarted.length) assignValues(book, values);
  return restarted;
}
