// A trained tokenizer as users and the rest of the pipeline use it: images ↔ token grids.
import * as tf from '@tensorflow/tfjs-core';
import type { ImageTokenizer } from '../data/cache.js';
import { fromUnitRange, type RgbImage, toUnitRange } from '../image/rgb.js';
import { MuseError } from '../util/errors.js';
import type { SourceFile } from '../util/model-source.js';
import { loadTokenizer } from './checkpoint.js';
import { downsampleFactor, quantizerKind, type TokenizerConfig } from './config.js';
import { decodeLatents, encodeLatents, type TokenizerParams } from './model.js';
import { codesToLatents, lookupCodebook, nearestCodes, projectLatents } from './quantizer.js';

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

/** Images of x [B, H, W, 3] in [-1, 1], read synchronously (wasm and cpu only: see tensorToImagesAsync). */
export function tensorToImages(x: tf.Tensor4D): RgbImage[] {
  return valuesToImages(x.dataSync() as Float32Array, x.shape);
}

/**
 * Images of x, read asynchronously: the only read that works on every backend. On webgpu a
 * synchronous read (dataSync) goes through canvases (tfjs-webgpu's readSync draws a WebGPU canvas
 * into a 2d one); in Chromium with a software adapter that gives all zeros, silently, and caches them
 * as the tensor's values — every decoded image came out grey (128). Disposes x.
 */
export async function tensorToImagesAsync(x: tf.Tensor4D): Promise<RgbImage[]> {
  try {
    return valuesToImages((await x.data()) as Float32Array, x.shape);
  } finally {
    x.dispose();
  }
}

function valuesToImages(values: Float32Array, [b, h, w]: number[]): RgbImage[] {
  return Array.from({ length: b }, (_, i) => fromUnitRange(values.subarray(i * h * w * 3, (i + 1) * h * w * 3), w, h));
}

/** Reads an int32 tensor asynchronously (see tensorToImagesAsync) and disposes it. */
async function readInts(x: tf.Tensor): Promise<Int32Array> {
  try {
    return Int32Array.from((await x.data()) as Int32Array);
  } finally {
    x.dispose();
  }
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

  /** Token grids [n·h·w] for same-sized images (the quantizer's nearest codes, read asynchronously). */
  async encode(images: RgbImage[]): Promise<Int32Array> {
    if (images.length === 0) return new Int32Array();
    images.forEach((i) => this.checkSize(i));
    const kind = quantizerKind(this.config);
    const codes = tf.tidy(() => {
      const z = projectLatents(this.params, encodeLatents(this.params, this.config, imagesToTensor(images)), kind);
      const [b, h, w, d] = z.shape;
      return nearestCodes(tf.reshape(z, [b * h * w, d]), lookupCodebook(this.params, kind), kind);
    });
    return readInts(codes);
  }

  /** Images from token grids: tokens [n·h·w] with grid h×w. */
  async decode(tokens: Int32Array, h: number, w: number): Promise<RgbImage[]> {
    const n = tokens.length / (h * w);
    if (!Number.isInteger(n)) throw new MuseError(`${tokens.length} tokens do not make whole ${h}×${w} grids`);
    for (const t of tokens) {
      if (!(t >= 0 && t < this.codebookSize))
        throw new MuseError(`token ${t} is outside the codebook [0, ${this.codebookSize})`);
    }
    const pixels = tf.tidy(() => {
      const idx = tf.tensor3d(tokens, [n, h, w], 'int32');
      const latents = codesToLatents(this.params, idx, quantizerKind(this.config));
      return tf.clipByValue(decodeLatents(this.params, this.config, latents), -1, 1) as tf.Tensor4D;
    });
    return tensorToImagesAsync(pixels);
  }

  /** Encode then decode (what the transformer's world looks like), `batch` images at a time. */
  async reconstruct(images: RgbImage[], batch = 32): Promise<RgbImage[]> {
    const out: RgbImage[] = [];
    for (let i = 0; i < images.length; i += batch) {
      const part = images.slice(i, i + batch);
      const tokens = await this.encode(part);
      out.push(...(await this.decode(tokens, part[0].height / this.downsample, part[0].width / this.downsample)));
    }
    return out;
  }

  dispose(): void {
    tf.dispose(Object.values(this.params));
  }
}
