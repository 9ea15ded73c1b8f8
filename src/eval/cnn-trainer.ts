// Training the emoji judge (cnn-classifier.ts) through the training harness: checkpoints saved as
// one unit, exact resume, a time budget and cancellation, like every other model. Each step draws a
// batch of training images with the run's RNG and shows the network a random view of each
// (image/augment.ts); validation is top-1/top-5 on the held-out images, and the published file
// carries the latest figures as the judge's ceiling.
import * as tf from '@tensorflow/tfjs-core';
import { augmentedView } from '../image/augment.js';
import { downsampleImage } from '../image/resample.js';
import type { RgbImage } from '../image/rgb.js';
import { assignValues } from '../tensor/params.js';
import { Rng } from '../tensor/random.js';
import { AdamW, clipByGlobalNorm } from '../train/adamw.js';
import { namedGrads } from '../train/grads.js';
import { type TrainOptions, type TrainResult, train } from '../train/harness.js';
import { MuseError } from '../util/errors.js';
import { CnnClassifier, type CnnConfig, cnnForward, initCnnParams } from './cnn-classifier.js';
import { topK } from './feature-classifier.js';

export const JUDGE_FILE = 'classifier.safetensors';

export interface JudgeTrainOptions extends TrainOptions {
  config: CnnConfig;
  images: RgbImage[];
  labels: string[];
  validation?: { images: RgbImage[]; labels: string[] };
  batch: number;
  weightDecay: number;
  labelSmoothing?: number;
  /** Metadata written into the judge file (data paths, label field). */
  info?: Record<string, string>;
}

type JudgeStats = { loss: number; accuracy: number };
type JudgeEval = { top1: number; top5: number };
type JudgeBatch = { x: Float32Array; y: Int32Array };

export async function trainJudge(o: JudgeTrainOptions): Promise<TrainResult<JudgeStats, JudgeEval>> {
  if (o.images.length !== o.labels.length)
    throw new MuseError(`${o.images.length} images but ${o.labels.length} labels`);
  const classes = [...new Set(o.labels)].sort();
  if (classes.length < 2) throw new MuseError('a classifier needs at least two classes');
  const index = new Map(classes.map((c, i) => [c, i]));
  const y = Int32Array.from(o.labels, (l) => index.get(l) as number);
  const { size } = o.config;
  const fit = (img: RgbImage) => (img.width === size && img.height === size ? img : downsampleImage(img, size));
  const images = o.images.map(fit);
  const val = o.validation && { images: o.validation.images.map(fit), labels: o.validation.labels };
  const pixels = size * size * 3;
  return train<JudgeBatch, JudgeStats, JudgeEval>(o, {
    kind: 'muse-judge',
    label: 'judge',
    publish: [JUDGE_FILE],
    create: async ({ checkpoint, rng }) => {
      // A resumed run takes its weights from the checkpoint and must not draw from the run's RNG.
      const params = initCnnParams(o.config, classes.length, checkpoint ? new Rng(0) : rng.fork());
      if (checkpoint) {
        const saved = await CnnClassifier.load(checkpoint.path(JUDGE_FILE));
        if (JSON.stringify(saved.config) !== JSON.stringify(o.config) || saved.labels.join() !== classes.join())
          throw new MuseError(`${o.out} holds a judge with another config or other classes`);
        for (const [name, t] of Object.entries(saved.tensors())) assignValues(params[name], t.data as Float32Array);
        saved.dispose();
      }
      const judge = CnnClassifier.fromParams(o.config, classes, params);
      const opt = new AdamW({ weightDecay: o.weightDecay });
      let latest: JudgeEval | undefined;
      return {
        optimizers: { opt: { opt, params } },
        batch: (r: Rng) => {
          const x = new Float32Array(o.batch * pixels);
          const labels = new Int32Array(o.batch);
          const random = () => r.uniform();
          for (let i = 0; i < o.batch; i++) {
            const k = r.int(images.length);
            x.set(augmentedView(images[k], random), i * pixels);
            labels[i] = y[k];
          }
          return { x, y: labels };
        },
        step: (b, { lr }) => {
          let accuracy = 0;
          const { value, grads } = namedGrads(() => {
            const logits = cnnForward(params, o.config, tf.tensor4d(b.x, [b.y.length, size, size, 3]));
            const target = tf.tensor1d(b.y, 'int32');
            accuracy = tf.tidy(() => tf.mean(tf.cast(tf.equal(tf.argMax(logits, 1), target), 'float32')).dataSync()[0]);
            const onehot = tf.oneHot(target, classes.length);
            return tf.losses.softmaxCrossEntropy(onehot, logits, undefined, o.labelSmoothing ?? 0.1) as tf.Scalar;
          }, params);
          const clipped = clipByGlobalNorm(grads, 1);
          opt.apply(params, clipped.grads, lr);
          const loss = value.dataSync()[0];
          tf.dispose([value, ...Object.values(grads), ...Object.values(clipped.grads)]);
          return { loss, accuracy };
        },
        disposeBatch: () => {},
        evaluate: val
          ? () => {
              const ranks = judge.ranks(val.images, val.labels);
              latest = { top1: topK(ranks, 1), top5: topK(ranks, 5) };
              return latest;
            }
          : undefined,
        weights: (step) => ({
          // F32, so a resumed run continues exactly.
          [JUDGE_FILE]: (path) =>
            judge.save(
              path,
              {
                ...o.info,
                step: String(step),
                trainImages: String(images.length),
                ...(latest && {
                  valTop1: latest.top1.toFixed(4),
                  valTop5: latest.top5.toFixed(4),
                  valImages: String(val?.images.length ?? 0),
                }),
              },
              'F32',
            ),
        }),
      };
    },
  });
}
