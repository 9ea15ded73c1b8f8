// The emoji judge: a small convolutional classifier trained from scratch on real emoji of every
// style, with augmentation (image/augment.ts), that names the emoji a generated image shows. It
// replaces the linear probe over frozen nsfwjs features (feature-classifier.ts), whose ceiling on
// styles it never saw for an emoji was 14% top-1: features tuned for photographs do not separate
// 1,900 small drawings, a network trained on them does.
//
// Network (NHWC, inputs in [-1, 1] at `size` px): three stages of [conv 3×3 → group norm → SiLU] ×2,
// the second conv of stages 1–2 with stride 2, then global average pooling and a linear layer.
// Training: cnn-trainer.ts (through the training harness: checkpoints, exact resume).
import * as tf from '@tensorflow/tfjs-core';
import { downsampleImage } from '../image/resample.js';
import type { RgbImage } from '../image/rgb.js';
import { groupNorm } from '../tensor/ops/group-norm.js';
import { silu } from '../tensor/ops/silu.js';
import type { Rng } from '../tensor/random.js';
import { loadSafetensors, type NamedTensor, saveSafetensors } from '../tensor/safetensors.js';
import { MuseError } from '../util/errors.js';
import { targetRanks } from './feature-classifier.js';

export interface CnnConfig {
  size: number;
  /** Channels of the three stages. */
  widths: [number, number, number];
  groups: number;
}

export const CNN_DEFAULT: CnnConfig = { size: 32, widths: [32, 64, 128], groups: 8 };

export type CnnParams = Record<string, tf.Variable>;

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

export function initCnnParams(c: CnnConfig, classes: number, rng: Rng): CnnParams {
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

export function cnnForward(p: Record<string, tf.Tensor>, c: CnnConfig, x: tf.Tensor4D): tf.Tensor2D {
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

  /** A judge over these weights (shared, not copied: dispose() releases them). */
  static fromParams(
    config: CnnConfig,
    labels: string[],
    params: Record<string, tf.Tensor>,
    info: Record<string, string> = {},
  ): CnnClassifier {
    return new CnnClassifier(config, labels, params, info);
  }

  /** Logits, n × classes, row-major. */
  logits(images: RgbImage[]): Float32Array {
    const classes = this.labels.length;
    const out = new Float32Array(images.length * classes);
    for (let i = 0; i < images.length; i += 128) {
      const part = images.slice(i, i + 128);
      const logits = tf.tidy(() => cnnForward(this.params, this.config, batchOf(part, this.config.size)));
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
    return targetRanks(this.logits(images), this.labels, targets);
  }

  /** The layers' and head's tensors by name (the safetensors layout). */
  tensors(): Record<string, NamedTensor> {
    const tensors: Record<string, NamedTensor> = {};
    for (const [name, t] of Object.entries(this.params)) {
      tensors[name] = { shape: t.shape, data: t.dataSync() as Float32Array };
    }
    return tensors;
  }

  async save(path: string, metadata: Record<string, string> = {}, dtype: 'F16' | 'F32' = 'F16'): Promise<void> {
    await saveSafetensors(path, this.tensors(), {
      dtype,
      metadata: {
        ...this.info,
        ...metadata,
        kind: 'cnn-classifier',
        config: JSON.stringify(this.config),
        labels: JSON.stringify(this.labels),
      },
    });
  }

  /** Loads a judge file; `variables` makes its weights trainable (to resume a run). */
  static async load(path: string, variables = false): Promise<CnnClassifier> {
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
      params[name] = variables
        ? tf.variable(tf.tensor(t.data as Float32Array, shape))
        : tf.tensor(t.data as Float32Array, shape);
    }
    return new CnnClassifier(config, labels, params, metadata);
  }

  dispose(): void {
    tf.dispose(Object.values(this.params));
  }
}
