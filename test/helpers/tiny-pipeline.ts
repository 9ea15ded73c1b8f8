// A model folder of tiny random models (tokenizer f = 4, base transformer over a size/4 grid, USE-lite
// as the text encoder), for tests of the pipeline and of the commands that open one.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../../src/tensor/random.js';
import { USE_LITE_ID } from '../../src/text/use-lite.js';
import { saveTokenizer } from '../../src/tokenizer/checkpoint.js';
import { tokenizerPreset } from '../../src/tokenizer/config.js';
import { initTokenizer } from '../../src/tokenizer/model.js';
import { saveTransformer } from '../../src/transformer/checkpoint.js';
import { transformerConfig } from '../../src/transformer/config.js';
import { initTransformer } from '../../src/transformer/model.js';

export async function writeTinyPipeline(folder: string, size: number): Promise<void> {
  mkdirSync(folder, { recursive: true });
  const tc = tokenizerPreset('tiny');
  await saveTokenizer(join(folder, 'tokenizer.safetensors'), initTokenizer(tc, new Rng(1)), tc);
  const bc = transformerConfig('tiny', { codebookSize: tc.codebookSize, grid: [size / 4, size / 4] });
  // Larger random weights than the init, so the tiny model's logits differ between prompts and seeds.
  const params = initTransformer(bc, new Rng(2));
  for (const v of Object.values(params)) if (v.rank === 2) v.assign(tf.mul(v, 20));
  await saveTransformer(join(folder, 'base.safetensors'), params, bc);
  tf.dispose(Object.values(params));
  writeFileSync(
    join(folder, 'pipeline.json'),
    JSON.stringify({
      format: 'muse-ts-pipeline',
      version: 1,
      tokenizer: 'tokenizer.safetensors',
      base: 'base.safetensors',
      textEncoder: USE_LITE_ID,
      imageSize: size,
      defaults: { steps: 6, guidance: 2 },
    }),
  );
}
