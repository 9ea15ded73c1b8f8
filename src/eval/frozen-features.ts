// Frozen image features from nsfwjs 4.3.0's networks, read offline from the installed package:
// InceptionV3 (2,048-d; the FID architecture with weights fine-tuned for nsfwjs's classes, so scores
// made with it are FID-like and NOT comparable to published FID) and MobileNetV2 (1,280-d, cheaper;
// the emoji classifier's backbone). Each is a Keras model stored as JS modules (topology + base64
// uint8-quantised weight shards); the feature is the pooled output before nsfwjs's dense head.
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { RgbImage } from '../image/image.js';
import { MuseError } from '../util/errors.js';
import type { FeatureSet } from './frechet.js';

interface ShippedModel {
  modelTopology: object;
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
}

export type FeatureNet = 'inception_v3' | 'mobilenet_v2';

const NETS: Record<FeatureNet, { size: number; dims: number }> = {
  inception_v3: { size: 299, dims: 2048 },
  mobilenet_v2: { size: 224, dims: 1280 },
};
const FEATURE_LAYER = 'flatten_1';

function nsfwjsModelFolder(name: string): { folder: string; load: (file: string) => unknown } {
  const require = createRequire(import.meta.url);
  let entry: string;
  try {
    entry = require.resolve('nsfwjs');
  } catch {
    throw new MuseError('the FID-like score needs the nsfwjs package (4.3.0): run npm ci');
  }
  // The package's exports map hides its model files; absolute paths reach them.
  const folder = path.resolve(path.dirname(entry), '../../dist/models', name);
  return { folder, load: (file) => require(path.join(folder, file)) };
}

export class FrozenFeatures {
  readonly dims: number;
  private readonly size: number;

  private constructor(
    readonly net: FeatureNet,
    private readonly model: tfl.LayersModel,
  ) {
    ({ size: this.size, dims: this.dims } = NETS[net]);
  }

  static async load(net: FeatureNet): Promise<FrozenFeatures> {
    if (!NETS[net]) throw new MuseError(`unknown feature network "${net}": choose ${Object.keys(NETS).join(', ')}`);
    const { folder, load } = nsfwjsModelFolder(net);
    let shipped: ShippedModel;
    let weightData: ArrayBuffer;
    try {
      shipped = load('model.min.js') as ShippedModel;
      const parts = shipped.weightsManifest[0].paths.map((p) => Buffer.from(load(`${p}.min.js`) as string, 'base64'));
      const all = Buffer.concat(parts);
      weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
    } catch (e) {
      throw new MuseError(`cannot read nsfwjs's ${net} model in ${folder}: ${(e as Error).message}`);
    }
    const full = await tfl.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: shipped.modelTopology,
        weightSpecs: shipped.weightsManifest.flatMap((g) => g.weights),
        weightData,
      }),
    );
    const features = tfl.model({ inputs: full.inputs, outputs: full.getLayer(FEATURE_LAYER).output });
    return new FrozenFeatures(net, features);
  }

  /**
   * Features of images of any size, as rows. Preprocessing as nsfwjs does: RGB / 255, bilinear
   * resize (corners aligned) to the network's input size (299 or 224).
   */
  features(images: RgbImage[], batch = 8): FeatureSet {
    const data = new Float32Array(images.length * this.dims);
    for (let start = 0; start < images.length; start += batch) {
      const chunk = images.slice(start, start + batch);
      const out = tf.tidy(() => {
        const x = tf.stack(
          chunk.map((img) => {
            const t = tf.div(tf.tensor3d(Float32Array.from(img.data), [img.height, img.width, 3]), 255);
            return tf.image.resizeBilinear(t as tf.Tensor3D, [this.size, this.size], true);
          }),
        );
        return this.model.predict(x) as tf.Tensor;
      });
      data.set(out.dataSync(), start * this.dims);
      out.dispose();
    }
    return { n: images.length, d: this.dims, data };
  }

  dispose(): void {
    this.model.dispose();
  }
}
