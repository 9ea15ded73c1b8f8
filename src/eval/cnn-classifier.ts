// The emoji judge: a small convolutional classifier trained from scratch on real emoji of every
// style, with augmentation (image/augment.ts), that names the emoji a generated image shows. It
// replaces the linear probe over frozen nsfwjs features (feature-classifier.ts), whose ceiling on
// styles it never saw for an emoji was 14% top-1: features tuned for photographs do not separate
// 1,900 small drawings, a network trained on them does.
//
// Network (NHWC, inputs in [-1, 1] at `size` px): three stages of [conv 3×3 → group norm → SiLU] ×2,
// the second conv of stages 1–2 with stride 2, then global average pooling and a linear layer.
import * as tf from '@tensorflow/tfjs-core';
import { augmentedView } from '../image/augment.js';
import { downsampleImage } from '../image/resample.js';
import type { RgbImage } from '../image/rgb.js';
import { groupNorm } from '../tensor/ops/group-norm.js';
import { silu } from '../tensor/ops/silu.js';
import { Rng } from '../tensor/random.js';
import { loadSafetensors, type NamedTensor, saveSafetensors } from '../tensor/safetensors.js';
import { AdamW } from '../train/adamw.js';
import { MuseError } from '../util/errors.js';

export interface CnnConfig {
  size: number;
  /** Channels of the three stages. */
  widths: [number, number, number];
  groups: number;
}

export const CNN_DEFAULT: CnnConfig = { size: 32, widths: [32, 64, 128], groups: 8 };

export interface CnnTraining {
  epochs?: number;
  batch?: number;
  lr?: number;
  weightDecay?: number;
  labelSmoothing?: number;
  seed?: number;
  /** Called after each epoch with the mean training loss. */
  onEpoch?: (epoch: number, loss: number) => void;
  /** Called after each step with that step's loss. */
  onStep?: (step: number, steps: number, loss: number) => void;
  signal?: AbortSignal;
}

type CnnParams = Record<string, tf.Variable>;

/** The layers in order: name, kernel size, in and out channels, stride. */
function layers(c: CnnConfig): Array<{ name: string; cin: number; cout: number; stride: number }> {
  const [a, b, d] = c.widths;
  return [
    { name: 's1.conv1', cin: 3, cout: a, stride: 1 },
    { name: 's1.conv2', cin: a, cout: a, stride: 2 },
    { name: 's2.conv1', cin: a, cout: b, stride: 1 },
    { name: 's2.conv2', cin: b, cout: b, stride: 2 },
    { name: 's3.conv1', cin: b, cout: d, stride: 1 },
    { name: 's3.conv2', cin: d, cout: d, stride: 1 },
  ];
}

function initParams(c: CnnConfig, classes: number, rng: Rng): CnnParams {
  const p: CnnParams = {};
  for (const l of layers(c)) {
    // He initialisation for SiLU-like activations.
    p[`${l.name}.w`] = tf.variable(
      tf.tensor4d(rng.normals(9 * l.cin * l.cout, Math.sqrt(2 / (9 * l.cin))), [3, 3, l.cin, l.cout]),
    );
    p[`${l.name}.b`] = tf.variable(tf.zeros([l.cout]));
    p[`${l.name}.g`] = tf.variable(tf.ones([l.cout]));
    p[`${l.name}.beta`] = tf.variable(tf.zeros([l.cout]));
  }
  const last = c.widths[2];
  p['head.w'] = tf.variable(tf.tensor2d(rng.normals(last * classes, 1 / Math.sqrt(last)), [last, classes]));
  p['head.b'] = tf.variable(tf.zeros([classes]));
  return p;
}

function forward(p: Record<string, tf.Tensor>, c: CnnConfig, x: tf.Tensor4D): tf.Tensor2D {
  let h = x;
  for (const l of layers(c)) {
    h = tf.add(tf.conv2d(h, p[`${l.name}.w`] as tf.Tensor4D, l.stride, 'same'), p[`${l.name}.b`]) as tf.Tensor4D;
    h = silu(groupNorm(h, p[`${l.name}.g`] as tf.Tensor1D, p[`${l.name}.beta`] as tf.Tensor1D, c.groups));
  }
  const pooled = tf.mean(h, [1, 2]) as tf.Tensor2D;
  return tf.add(tf.matMul(pooled, p['head.w'] as tf.Tensor2D), p['head.b']) as tf.Tensor2D;
}

/** Images in [-1, 1] at the judge's size, as one NHWC batch. */
function batchOf(images: RgbImage[], size: number): tf.Tensor4D {
  const data = new Float32Array(images.length * size * size * 3);
  images.forEach((img, i) => {
    const sized = img.width === size && img.height === size ? img : downsampleImage(img, size);
    if (sized.width !== size || sized.height !== size)
      throw new MuseError(`the judge takes square images of ${size} px or larger, got ${img.width}×${img.height}`);
    for (let k = 0; k < size * size * 3; k++) data[i * size * size * 3 + k] = sized.data[k] / 127.5 - 1;
  });
  return tf.tensor4d(data, [images.length, size, size, 3]);
}

export class CnnClassifier {
  private constructor(
    readonly config: CnnConfig,
    readonly labels: string[],
    private readonly params: Record<string, tf.Tensor>,
    /** The metadata it was saved with (training data, its accuracy on held-out images). */
    readonly info: Record<string, string> = {},
  ) {}

  static train(images: RgbImage[], labels: string[], o: CnnTraining = {}, config = CNN_DEFAULT): CnnClassifier {
    if (labels.length !== images.length) throw new MuseError(`${images.length} images but ${labels.length} labels`);
    const classes = [...new Set(labels)].sort();
    if (classes.length < 2) throw new MuseError('a classifier needs at least two classes');
    const index = new Map(classes.map((c, i) => [c, i]));
    const y = Int32Array.from(labels, (l) => index.get(l) as number);
    const size = config.size;
    const small = images.map((img) => (img.width === size && img.height === size ? img : downsampleImage(img, size)));
    const n = images.length;
    const epochs = o.epochs ?? 30;
    const batch = Math.min(o.batch ?? 64, n);
    const lr = o.lr ?? 2e-3;
    const rng = new Rng(o.seed ?? 0);
    const params = initParams(config, classes.length, rng.fork());
    const adam = new AdamW({ weightDecay: o.weightDecay ?? 5e-4 });
    const random = () => rng.uniform();
    const order = Int32Array.from({ length: n }, (_, i) => i);
    const stepsPerEpoch = Math.floor(n / batch);
    const steps = epochs * stepsPerEpoch;
    const warmup = Math.min(200, Math.floor(steps / 10));
    for (let epoch = 0; epoch < epochs; epoch++) {
      for (let i = n - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [order[i], order[j]] = [order[j], order[i]];
      }
      let lossSum = 0;
      for (let s = 0; s < stepsPerEpoch; s++) {
        if (o.signal?.aborted) throw new MuseError('judge training cancelled');
        const rows = order.subarray(s * batch, (s + 1) * batch);
        const xb = new Float32Array(rows.length * size * size * 3);
        rows.forEach((r, i) => {
          xb.set(augmentedView(small[r], random), i * size * size * 3);
        });
        const target = Int32Array.from(rows, (r) => y[r]);
        const { value, grads } = tf.variableGrads(() => {
          const logits = forward(params, config, tf.tensor4d(xb, [rows.length, size, size, 3]));
          const onehot = tf.oneHot(tf.tensor1d(target, 'int32'), classes.length);
          return tf.losses.softmaxCrossEntropy(onehot, logits, undefined, o.labelSmoothing ?? 0.1) as tf.Scalar;
        }, Object.values(params));
        const step = epoch * stepsPerEpoch + s;
        // Linear warm-up, then cosine decay to zero.
        const rate =
          step < warmup
            ? (lr * (step + 1)) / warmup
            : lr * 0.5 * (1 + Math.cos((Math.PI * (step - warmup)) / (steps - warmup)));
        const byName = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, grads[v.name]]));
        adam.apply(params, byName, rate);
        const loss = value.dataSync()[0];
        lossSum += loss;
        tf.dispose([value, ...Object.values(grads)]);
        o.onStep?.(step + 1, steps, loss);
      }
      o.onEpoch?.(epoch + 1, lossSum / stepsPerEpoch);
    }
    return new CnnClassifier(config, classes, params);
  }

  /** Logits, n × classes, row-major. */
  logits(images: RgbImage[]): Float32Array {
    const classes = this.labels.length;
    const out = new Float32Array(images.length * classes);
    for (let i = 0; i < images.length; i += 128) {
      const part = images.slice(i, i + 128);
      const logits = tf.tidy(() => forward(this.params, this.config, batchOf(part, this.config.size)));
      out.set(logits.dataSync() as Float32Array, i * classes);
      logits.dispose();
    }
    return out;
  }

  /**
   * For each image, the rank of its target label among the classes (0 = top-1); Infinity for a
   * label the judge does not know (a miss at every k).
   */
  ranks(images: RgbImage[], targets: string[]): number[] {
    if (targets.length !== images.length) throw new MuseError(`${images.length} images but ${targets.length} targets`);
    const logits = this.logits(images);
    const classes = this.labels.length;
    const index = new Map(this.labels.map((c, i) => [c, i]));
    return targets.map((t, i) => {
      const c = index.get(t);
      if (c === undefined) return Number.POSITIVE_INFINITY;
      const row = logits.subarray(i * classes, (i + 1) * classes);
      let above = 0;
      for (let k = 0; k < classes; k++) if (row[k] > row[c] || (row[k] === row[c] && k < c)) above++;
      return above;
    });
  }

  async save(path: string, metadata: Record<string, string> = {}): Promise<void> {
    const tensors: Record<string, NamedTensor> = {};
    for (const [name, t] of Object.entries(this.params)) {
      tensors[name] = { shape: t.shape, data: t.dataSync() as Float32Array };
    }
    await saveSafetensors(path, tensors, {
      dtype: 'F16',
      metadata: {
        ...this.info,
        ...metadata,
        kind: 'cnn-classifier',
        config: JSON.stringify(this.config),
        labels: JSON.stringify(this.labels),
      },
    });
  }

  static async load(path: string): Promise<CnnClassifier> {
    const { tensors, metadata } = await loadSafetensors(path);
    if (metadata.kind !== 'cnn-classifier') throw new MuseError(`${path} is not a CNN classifier`);
    let config: CnnConfig;
    let labels: string[];
    try {
      config = JSON.parse(metadata.config ?? '') as CnnConfig;
      labels = JSON.parse(metadata.labels ?? '') as string[];
    } catch {
      throw new MuseError(`${path}: unreadable classifier config or labels`);
    }
    const ok =
      Number.isInteger(config?.size) &&
      config.size >= 8 &&
      config.size <= 256 &&
      Array.isArray(config.widths) &&
      config.widths.length === 3 &&
      Array.isArray(labels) &&
      labels.length >= 2 &&
      labels.every((l) => typeof l === 'string');
    if (!ok) throw new MuseError(`${path}: classifier config or labels are malformed`);
    const expected: Record<string, number[]> = {};
    for (const l of layers(config)) {
      expected[`${l.name}.w`] = [3, 3, l.cin, l.cout];
      for (const k of ['b', 'g', 'beta']) expected[`${l.name}.${k}`] = [l.cout];
    }
    expected['head.w'] = [config.widths[2], labels.length];
    expected['head.b'] = [labels.length];
    const params: Record<string, tf.Tensor> = {};
    for (const [name, shape] of Object.entries(expected)) {
      const t = tensors[name];
      if (!t || t.shape.join() !== shape.join())
        throw new MuseError(`${path}: tensor ${name} should be [${shape}], got ${t ? `[${t.shape}]` : 'nothing'}`);
      params[name] = tf.tensor(t.data as Float32Array, shape);
    }
    return new CnnClassifier(config, labels, params, metadata);
  }

  dispose(): void {
    tf.dispose(Object.values(this.params));
  }
}
