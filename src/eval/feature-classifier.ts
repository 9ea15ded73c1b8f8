// A softmax classifier over frozen image features (standardised per dimension), for the emoji
// prompt-accuracy score: trained on real emoji of every style, it names the emoji a generated image
// shows. A linear probe keeps the judge cheap to train (seconds) and independent of the generator.
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../tensor/random.js';
import { loadSafetensors, saveSafetensors } from '../tensor/safetensors.js';
import { AdamW } from '../train/adamw.js';
import { MuseError } from '../util/errors.js';
import type { FeatureSet } from './frechet.js';
import type { FeatureNet } from './frozen-features.js';

export interface ClassifierTraining {
  epochs?: number;
  batch?: number;
  lr?: number;
  weightDecay?: number;
  labelSmoothing?: number;
  seed?: number;
  onEpoch?: (epoch: number, loss: number) => void;
}

export class FeatureClassifier {
  private constructor(
    readonly net: FeatureNet,
    readonly labels: string[],
    private readonly mean: Float32Array,
    private readonly std: Float32Array,
    private readonly weight: Float32Array,
    private readonly bias: Float32Array,
    /** The metadata it was saved with (training data, its accuracy on held-out images). */
    readonly info: Record<string, string> = {},
  ) {}

  get dims(): number {
    return this.mean.length;
  }

  static train(net: FeatureNet, features: FeatureSet, labels: string[], o: ClassifierTraining = {}): FeatureClassifier {
    if (labels.length !== features.n) throw new MuseError(`${features.n} feature rows but ${labels.length} labels`);
    const classes = [...new Set(labels)].sort();
    if (classes.length < 2) throw new MuseError('a classifier needs at least two classes');
    const index = new Map(classes.map((c, i) => [c, i]));
    const { d, n } = features;
    const mean = new Float32Array(d);
    const std = new Float32Array(d);
    for (let i = 0; i < n; i++) for (let k = 0; k < d; k++) mean[k] += features.data[i * d + k] / n;
    for (let i = 0; i < n; i++) for (let k = 0; k < d; k++) std[k] += (features.data[i * d + k] - mean[k]) ** 2 / n;
    for (let k = 0; k < d; k++) std[k] = Math.sqrt(std[k]) + 1e-3;
    const x = standardise(features, mean, std);
    const y = Int32Array.from(labels, (l) => index.get(l) as number);

    const epochs = o.epochs ?? 60;
    const batch = Math.min(o.batch ?? 256, n);
    const lr = o.lr ?? 1e-3;
    const smoothing = o.labelSmoothing ?? 0.1;
    const rng = new Rng(o.seed ?? 0);
    const params = {
      weight: tf.variable(tf.zeros([d, classes.length])),
      bias: tf.variable(tf.zeros([classes.length])),
    };
    const adam = new AdamW({ weightDecay: o.weightDecay ?? 1e-2 });
    const order = Int32Array.from({ length: n }, (_, i) => i);
    const stepsPerEpoch = Math.ceil(n / batch);
    for (let epoch = 0; epoch < epochs; epoch++) {
      for (let i = n - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [order[i], order[j]] = [order[j], order[i]];
      }
      let lossSum = 0;
      for (let s = 0; s < stepsPerEpoch; s++) {
        const rows = order.subarray(s * batch, Math.min(n, (s + 1) * batch));
        const xb = new Float32Array(rows.length * d);
        rows.forEach((r, i) => {
          xb.set(x.subarray(r * d, (r + 1) * d), i * d);
        });
        // Gradients of these two only: a loaded feature network's weights are trainable variables too.
        const { value, grads } = tf.variableGrads(() => {
          const logits = tf.add(tf.matMul(tf.tensor2d(xb, [rows.length, d]), params.weight), params.bias);
          const target = tf.oneHot(
            tf.tensor1d(
              Array.from(rows, (r) => y[r]),
              'int32',
            ),
            classes.length,
          );
          return tf.losses.softmaxCrossEntropy(target, logits, undefined, smoothing) as tf.Scalar;
        }, [params.weight, params.bias]);
        // Cosine decay to zero over the whole run.
        const progress = (epoch * stepsPerEpoch + s) / (epochs * stepsPerEpoch);
        const byParam = { weight: grads[params.weight.name], bias: grads[params.bias.name] };
        adam.apply(params, byParam, lr * 0.5 * (1 + Math.cos(Math.PI * progress)));
        lossSum += value.dataSync()[0];
        tf.dispose([value, ...Object.values(grads)]);
      }
      o.onEpoch?.(epoch + 1, lossSum / stepsPerEpoch);
    }
    const weight = params.weight.dataSync() as Float32Array;
    const bias = params.bias.dataSync() as Float32Array;
    tf.dispose(Object.values(params));
    return new FeatureClassifier(net, classes, mean, std, weight, bias);
  }

  /** Logits, n × classes, row-major. */
  logits(features: FeatureSet): Float32Array {
    if (features.d !== this.dims) throw new MuseError(`classifier expects ${this.dims}-d features, got ${features.d}`);
    const classes = this.labels.length;
    return tf.tidy(() => {
      const x = tf.tensor2d(standardise(features, this.mean, this.std), [features.n, this.dims]);
      const logits = tf.add(tf.matMul(x, tf.tensor2d(this.weight, [this.dims, classes])), tf.tensor1d(this.bias));
      return logits.dataSync() as Float32Array;
    });
  }

  /**
   * For each row, the rank of its target label among the classifier's classes (0 = top-1);
   * Infinity for a label the classifier does not know (it counts as a miss at every k).
   */
  ranks(features: FeatureSet, targets: string[]): number[] {
    if (targets.length !== features.n) throw new MuseError(`${features.n} feature rows but ${targets.length} targets`);
    return targetRanks(this.logits(features), this.labels, targets);
  }

  async save(path: string, metadata: Record<string, string> = {}): Promise<void> {
    const d = this.dims;
    const c = this.labels.length;
    await saveSafetensors(
      path,
      {
        mean: { shape: [d], data: this.mean, dtype: 'F32' },
        std: { shape: [d], data: this.std, dtype: 'F32' },
        weight: { shape: [d, c], data: this.weight },
        bias: { shape: [c], data: this.bias },
      },
      {
        dtype: 'F16',
        metadata: { ...metadata, kind: 'feature-classifier', net: this.net, labels: JSON.stringify(this.labels) },
      },
    );
  }

  static async load(path: string): Promise<FeatureClassifier> {
    const { tensors, metadata } = await loadSafetensors(path);
    if (metadata.kind !== 'feature-classifier') throw new MuseError(`${path} is not a feature classifier`);
    const labels = JSON.parse(metadata.labels ?? '[]') as string[];
    const d = tensors.mean?.shape[0];
    const ok =
      d !== undefined &&
      tensors.std?.shape.join() === `${d}` &&
      tensors.weight?.shape.join() === `${d},${labels.length}` &&
      tensors.bias?.shape.join() === `${labels.length}`;
    if (!ok) throw new MuseError(`${path}: classifier tensors do not match its ${labels.length} labels`);
    const f = (name: string) => tensors[name].data as Float32Array;
    return new FeatureClassifier(
      metadata.net as FeatureNet,
      labels,
      f('mean'),
      f('std'),
      f('weight'),
      f('bias'),
      metadata,
    );
  }
}

function standardise(f: FeatureSet, mean: Float32Array, std: Float32Array): Float32Array {
  const out = new Float32Array(f.n * f.d);
  for (let i = 0; i < f.n; i++)
    for (let k = 0; k < f.d; k++) out[i * f.d + k] = (f.data[i * f.d + k] - mean[k]) / std[k];
  return out;
}

/**
 * For each row of logits (n × labels.length, row-major), the rank of its target label (0 = top-1,
 * ties broken by class order); Infinity for a label not among `labels` (a miss at every k).
 */
export function targetRanks(logits: Float32Array, labels: string[], targets: string[]): number[] {
  const classes = labels.length;
  const index = new Map(labels.map((c, i) => [c, i]));
  return targets.map((t, i) => {
    const c = index.get(t);
    if (c === undefined) return Number.POSITIVE_INFINITY;
    const row = logits.subarray(i * classes, (i + 1) * classes);
    let above = 0;
    for (let k = 0; k < classes; k++) if (row[k] > row[c] || (row[k] === row[c] && k < c)) above++;
    return above;
  });
}

/** Fraction of ranks below k (top-k accuracy). */
export function topK(ranks: number[], k: number): number {
  return ranks.length ? ranks.filter((r) => r < k).length / ranks.length : 0;
}
