// The reference training step of docs/ARCHITECTURE.md, the same model and step as
// ../shared/bench/torch_ref_step.py: 4 pre-norm blocks (self-attention, cross-attention to 16 text
// tokens, GELU MLP), width 256, 8 heads, MLP 1024, 256 image tokens, batch 8, 1024 codes + [MASK],
// Adam lr 3e-4, cross-entropy on masked positions. Written as this project's models are: fused
// layer norm and GELU, in-place AdamW (weight decay 0 = Adam). 4.8M parameters, ~56 GFLOP per step.
import * as tf from '@tensorflow/tfjs-core';
import { queryRowsAttention, selfAttention, splitHeads } from '../src/tensor/ops/attention.js';
import { softCrossEntropy } from '../src/tensor/ops/cross-entropy.js';
import { gelu } from '../src/tensor/ops/gelu.js';
import { layerNorm } from '../src/tensor/ops/layer-norm.js';
import { newVariable } from '../src/tensor/params.js';
import { Rng } from '../src/tensor/random.js';
import { AdamW } from '../src/train/adamw.js';
import { namedGrads } from '../src/train/grads.js';

export const ref = { L: 4, D: 256, H: 8, S: 256, B: 8, V: 1024, T: 16, Dt: 256, FF: 1024 };

type Params = Record<string, tf.Variable>;

function makeParams(rng: Rng): Params {
  const { L, D, V, S, Dt, FF } = ref;
  const p: Params = {};
  const w = (name: string, shape: number[], std: number) => {
    p[name] = newVariable(
      rng.normals(
        shape.reduce((a, b) => a * b, 1),
        std,
      ),
      shape,
    );
  };
  const c = (name: string, shape: number[], value: number) => {
    p[name] = newVariable(tf.fill(shape, value));
  };
  w('tok', [V + 1, D], 1);
  w('pos', [S, D], 0.02);
  for (let l = 0; l < L; l++) {
    for (const n of ['ln1', 'ln2', 'ln3']) {
      c(`b${l}.${n}.g`, [D], 1);
      c(`b${l}.${n}.b`, [D], 0);
    }
    w(`b${l}.qkv`, [D, 3 * D], 1 / Math.sqrt(D));
    w(`b${l}.o`, [D, D], 1 / Math.sqrt(D));
    w(`b${l}.cq`, [D, D], 1 / Math.sqrt(D));
    w(`b${l}.ckv`, [Dt, 2 * D], 1 / Math.sqrt(Dt));
    w(`b${l}.co`, [D, D], 1 / Math.sqrt(D));
    w(`b${l}.w1`, [D, FF], 1 / Math.sqrt(D));
    c(`b${l}.b1`, [FF], 0);
    w(`b${l}.w2`, [FF, D], 1 / Math.sqrt(FF));
    c(`b${l}.b2`, [D], 0);
  }
  c('lnf.g', [D], 1);
  c('lnf.b', [D], 0);
  w('head', [D, V], 1 / Math.sqrt(D));
  c('head.b', [V], 0);
  return p;
}

function forward(p: Params, tokens: tf.Tensor, text: tf.Tensor): tf.Tensor {
  const { L } = ref;
  let x = tf.add(tf.gather(p.tok, tokens), p.pos);
  for (let l = 0; l < L; l++) {
    // The project's attention ops (src/tensor/ops/attention.ts), as the transformer calls them: q, k
    // and v read from the packed projection; text keys and values split into heads once.
    const qkv = tf.matMul(layerNorm(x, p[`b${l}.ln1.g`], p[`b${l}.ln1.b`]), p[`b${l}.qkv`]) as tf.Tensor3D;
    x = tf.add(x, tf.matMul(selfAttention(qkv, ref.H), p[`b${l}.o`]));
    const [ck, cv] = tf.split(tf.matMul(text, p[`b${l}.ckv`]), 2, -1).map((t) => splitHeads(t, ref.H));
    const cq = tf.matMul(layerNorm(x, p[`b${l}.ln2.g`], p[`b${l}.ln2.b`]), p[`b${l}.cq`]) as tf.Tensor3D;
    x = tf.add(x, tf.matMul(queryRowsAttention(cq, ck, cv), p[`b${l}.co`]));
    const h = gelu(tf.add(tf.matMul(layerNorm(x, p[`b${l}.ln3.g`], p[`b${l}.ln3.b`]), p[`b${l}.w1`]), p[`b${l}.b1`]));
    x = tf.add(x, tf.add(tf.matMul(h, p[`b${l}.w2`]), p[`b${l}.b2`]));
  }
  return tf.add(tf.matMul(layerNorm(x, p['lnf.g'], p['lnf.b']), p.head), p['head.b']);
}

export interface ReferenceStep {
  step(): number;
  forward(): void;
  params: number;
  dispose(): void;
}

export function buildReferenceStep(seed = 0): ReferenceStep {
  const { B, S, V, T, Dt } = ref;
  const rng = new Rng(seed);
  const p = makeParams(rng);
  const targets = Int32Array.from({ length: B * S }, () => rng.int(V));
  const masked = targets.map(() => (rng.uniform() < 0.5 ? 1 : 0));
  const maskedIdx = Int32Array.from([...masked.keys()].filter((i) => masked[i]));
  const tokens = tf.tensor2d(
    targets.map((t, i) => (masked[i] ? V : t)),
    [B, S],
    'int32',
  );
  const text = tf.tensor3d(rng.normals(B * T * Dt), [B, T, Dt]);
  const idx = tf.tensor1d(maskedIdx, 'int32');
  const tgt = tf.oneHot(
    tf.tensor1d(
      maskedIdx.map((i) => targets[i]),
      'int32',
    ),
    V,
  );
  const opt = new AdamW();
  const loss = () =>
    tf.tidy(() => {
      const logits = tf.gather(tf.reshape(forward(p, tokens, text), [B * S, V]), idx);
      // The project's loss op (src/tensor/ops/cross-entropy.ts: fused kernels on the native path).
      return softCrossEntropy(logits as tf.Tensor2D, tgt as tf.Tensor2D);
    });
  return {
    step: () => {
      const { value, grads } = namedGrads(loss, p);
      opt.apply(p, grads, 3e-4);
      const v = value.dataSync()[0];
      tf.dispose([value, ...Object.values(grads)]);
      return v;
    },
    forward: () => tf.tidy(() => void forward(p, tokens, text).dataSync()),
    params: Object.values(p).reduce((a, v) => a + v.size, 0),
    dispose: () => {
      tf.dispose([...Object.values(p), tokens, text, idx, tgt]);
    },
  };
}
