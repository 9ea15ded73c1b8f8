// PatchGAN discriminator (Isola et al. 2017) with hinge losses, as in the VQGAN recipe (Esser et
// al. 2021): a few stride-2 4×4 convolutions; one real/fake logit per patch.
import * as tf from '@tensorflow/tfjs-core';
import { groupNorm } from '../tensor/ops/group-norm.js';
import { newVariable } from '../tensor/params.js';
import type { Rng } from '../tensor/random.js';
import type { TokenizerParams } from './model.js';

export interface DiscriminatorConfig {
  channels: number;
  layers: number;
}

export const DEFAULT_DISCRIMINATOR: DiscriminatorConfig = { channels: 32, layers: 2 };

export function initDiscriminator(c: DiscriminatorConfig, rng: Rng): TokenizerParams {
  const p: TokenizerParams = {};
  const add = (name: string, shape: number[], std: number, fill?: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = fill === undefined ? rng.normals(n, std) : new Float32Array(n).fill(fill);
    p[name] = newVariable(v, shape);
  };
  let cin = 3;
  for (let i = 0; i <= c.layers; i++) {
    const cout = i === c.layers ? 1 : c.channels * 2 ** i;
    add(`disc.conv${i}.w`, [4, 4, cin, cout], 0.02);
    add(`disc.conv${i}.b`, [cout], 0, 0);
    if (i > 0 && i < c.layers) {
      add(`disc.norm${i}.g`, [cout], 0, 1);
      add(`disc.norm${i}.b`, [cout], 0, 0);
    }
    cin = cout;
  }
  return p;
}

/** Patch logits [B, h, w, 1] for images [B, H, W, 3]. */
export function discriminate(p: TokenizerParams, c: DiscriminatorConfig, x: tf.Tensor4D): tf.Tensor4D {
  let h = x;
  for (let i = 0; i <= c.layers; i++) {
    h = tf.add(
      tf.conv2d(h, p[`disc.conv${i}.w`] as tf.Tensor4D, i < c.layers ? 2 : 1, 'same'),
      p[`disc.conv${i}.b`],
    ) as tf.Tensor4D;
    if (i === c.layers) break;
    if (i > 0)
      h = groupNorm(
        h,
        p[`disc.norm${i}.g`] as tf.Tensor1D,
        p[`disc.norm${i}.b`] as tf.Tensor1D,
        Math.min(8, h.shape[3]),
      );
    h = tf.leakyRelu(h, 0.2);
  }
  return h;
}

/** Hinge loss of the discriminator: E[relu(1 − D(x))] + E[relu(1 + D(x̂))]. */
export function discriminatorHinge(real: tf.Tensor, fake: tf.Tensor): tf.Scalar {
  return tf.add(tf.mean(tf.relu(tf.sub(1, real))), tf.mean(tf.relu(tf.add(1, fake)))) as tf.Scalar;
}

/** The generator's adversarial loss: −E[D(x̂)]. */
export function generatorHinge(fake: tf.Tensor): tf.Scalar {
  return tf.neg(tf.mean(fake)) as tf.Scalar;
}
