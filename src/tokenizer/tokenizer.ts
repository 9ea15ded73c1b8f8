// A trained tokenizer as users and the rest of the pipeline use it: images ↔ token grids.
import * as tf from '@tensorflow/tfjs-core';
import type { ImageTokenizer } from '../data/cache.js';
import { fromUnitRange, type RgbImage, toUnitRange } from '../image/rgb.js';
import { scoped } from '../tensor/scope.js';
import { MuseError } from '../util/errors.js';
import type { SourceFile } from '../util/model-source.js';
import { loadTokenizer } from './checkpoint.js';
import { downsampleFactor, quantizerKind, type TokenizerConfig } from './config.js';
import { decodeLatents, type TokenizerParams } from './model.js';
import { codesToLatents, quantizeImages } from './quantizer.js';

/** Stacks same-sized images into a [B, H, W, 3] tensor in [-1, 1]. */
export function imagesToTensor(images: RgbImage[]): tf.Tensor4D {
  const { width, height } = images[0];
  const data = new Float32Array(images.length * width * height * 3);
  images.forEach((img, i) => {
    if (img.width !== width || img.height !== height) {
      throw new MuseError(`images in one batch must share a size: ${img.width}×${img.height} vs ${width}×${height}`);
    }
    data.set(toUnitRange(img), i * width * height * 3);
  });
  return tf.tensor4d(data, [images.length, height, width, 3]);
}

export function tensorToImages(x: tf.Tensor4D): RgbImage[] {
  const [b, h, w] = x.shape;
  const values = x.dataSync() as Float32Array;
  return Array.from({ length: b }, (_, i) => fromUnitRange(values.subarray(i * h * w * 3, (i + 1) * h * w * 3), w, h));
}

export class VqTokenizer implements ImageTokenizer {
  readonly downsample: number;
  readonly codebookSize: number;

  constructor(
    readonly params: TokenizerParams,
    readonly config: TokenizerConfig,
    readonly id: string,
  ) {
    this.downsample = downsampleFactor(config);
    this.codebookSize = config.codebookSize;
  }

  static async load(file: string | SourceFile): Promise<VqTokenizer> {
    const { params, config, metadata } = await loadTokenizer(file);
    return new VqTokenizer(
      params,
      config,
      metadata.id ?? (typeof file === 'string' ? file : file.source.where(file.name)),
    );
  }

  private checkSize(img: RgbImage): void {
    if (img.width % this.downsample || img.height % this.downsample) {
      throw new MuseError(`image of ${img.width}×${img.height} px: both sides must be multiples of ${this.downsample}`);
    }
  }

  /** Token grids [n·h·w] for same-sized images. */
  async encode(images: RgbImage[]): Promise<Int32Array> {
    if (images.length === 0) return new Int32Array();
    images.forEach((i) => this.checkSize(i));
    return scoped(() => {
      return quantizeImages(this.params, this.config, imagesToTensor(images)).indices.dataSync() as Int32Array;
    });
  }

  /** Images from token grids: tokens [n·h·w] with grid h×w. */
  decode(tokens: Int32Array, h: number, w: number): RgbImage[] {
    const n = tokens.length / (h * w);
    if (!Number.isInteger(n)) throw new MuseError(`${tokens.length} tokens do not make whole ${h}×${w} grids`);
    for (const t of tokens) {
      if (!(t >= 0 && t < this.codebookSize))
        throw new MuseError(`token ${t} is outside the codebook [0, ${this.codebookSize})`);
    }
    return scoped(() => {
      const idx = tf.tensor3d(tokens, [n, h, w], 'int32');
      return tensorToImages(
        tf.clipByValue(
          decodeLatents(this.params, this.config, codesToLatents(this.params, idx, quantizerKind(this.config))),
          -1,
          1,
        ),
      );
    });
  }

  /** Encode then decode (what the transformer's world looks like), `batch` images at a time. */
  async reconstruct(images: RgbImage[], batch = 32): Promise<RgbImage[]> {
    const out: RgbImage[] = [];
    for (let i = 0; i < images.length; i += batch) {
      const part = images.slice(i, i + batch);
      const tokens = await this.encode(part);
      out.push(...this.decode(tokens, part[0].height / this.downsample, part[0].width / this.downsample));
    }
    return out;
  }

  dispose(): void {
    tf.dispose(Object.values(this.params));
  }
}
