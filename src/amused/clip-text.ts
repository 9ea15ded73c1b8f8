// CLIP's text transformer with its projection (transformers' CLIPTextModelWithProjection, as of
// v4.36), the text encoder of aMUSEd, in tfjs ops. Read from a diffusers pipeline's `text_encoder/`
// folder: config.json + model.safetensors (or model.fp16.safetensors).
//
//   h0 = token_embedding[ids] + position_embedding[0..T)
//   each layer (pre-LN):  h += out_proj(attn(layer_norm1(h)))   causal mask, q scaled by head_dim^-0.5
//                         h += fc2(act(fc1(layer_norm2(h))))    act = config hidden_act (quick_gelu)
//   last_hidden_state = final_layer_norm(h)
//   pooled = last_hidden_state[b, argmax(ids[b])]            when eos_token_id == 2 (the legacy configs)
//          = last_hidden_state[b, first index of eos_token_id] otherwise
//   text_embeds = text_projection(pooled)                      (no bias)
//
// Only the causal mask is applied: AmusedPipeline passes no attention_mask, so padding positions
// attend to everything before them and the EOS padding tokens carry real (if unused) states.
import * as tf from '@tensorflow/tfjs-core';
import { gelu as geluTanh } from '../tensor/ops/gelu.js';
import { layerNorm } from '../tensor/ops/layer-norm.js';
import type { NamedTensor } from '../tensor/safetensors.js';
import { MuseError } from '../util/errors.js';
import { type Component, type ComponentConfig, loadComponent, requireTensor } from './component.js';

export type ClipHiddenAct = 'quick_gelu' | 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh' | 'relu';
const ACTIVATIONS: readonly string[] = ['quick_gelu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh', 'relu'];

export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  projectionDim: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  layerNormEps: number;
  hiddenAct: ClipHiddenAct;
  eosTokenId: number;
}

export interface ClipTextOutput {
  /** [B, T, hidden]: the last layer's output after the final layer norm. */
  lastHiddenState: tf.Tensor3D;
  /** numHiddenLayers + 1 tensors [B, T, hidden]: the embeddings, then every layer's output (no final norm). */
  hiddenStates: tf.Tensor3D[];
  /** [B, hidden]: last_hidden_state at the pooled (EOS) position of each row. */
  pooledOutput: tf.Tensor2D;
  /** [B, projectionDim]: the projected pooled output (aMUSEd's `pooled_text_emb`). */
  textEmbeds: tf.Tensor2D;
}

/** Stored tensors that are buffers, not parameters (ignored when present). */
const KNOWN_BUFFERS = new Set(['text_model.embeddings.position_ids']);

function intField(config: ComponentConfig, key: string, where: string, fallback: number, min = 1): number {
  const v = config[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
    throw new MuseError(`${where}: config "${key}" must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  return v;
}

/** Reads and checks a CLIPTextConfig (transformers' defaults for absent keys). */
export function parseClipTextConfig(config: ComponentConfig, where: string): ClipTextConfig {
  const modelType = config.model_type;
  if (modelType !== undefined && modelType !== 'clip_text_model')
    throw new MuseError(`${where}: model_type ${JSON.stringify(modelType)} is not clip_text_model`);
  const cfg = {
    vocabSize: intField(config, 'vocab_size', where, 49408),
    hiddenSize: intField(config, 'hidden_size', where, 512),
    intermediateSize: intField(config, 'intermediate_size', where, 2048),
    projectionDim: intField(config, 'projection_dim', where, 512),
    numHiddenLayers: intField(config, 'num_hidden_layers', where, 12, 0),
    numAttentionHeads: intField(config, 'num_attention_heads', where, 8),
    maxPositionEmbeddings: intField(config, 'max_position_embeddings', where, 77),
    eosTokenId: intField(config, 'eos_token_id', where, 49407, 0),
  };
  const eps = config.layer_norm_eps ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0) || !Number.isFinite(eps))
    throw new MuseError(`${where}: config "layer_norm_eps" must be a positive number, got ${JSON.stringify(eps)}`);
  const act = config.hidden_act ?? 'quick_gelu';
  if (typeof act !== 'string' || !ACTIVATIONS.includes(act))
    throw new MuseError(
      `${where}: config "hidden_act" ${JSON.stringify(act)} is not supported (use ${ACTIVATIONS.join(', ')})`,
    );
  if (cfg.hiddenSize % cfg.numAttentionHeads !== 0)
    throw new MuseError(
      `${where}: hidden_size ${cfg.hiddenSize} is not divisible by num_attention_heads ${cfg.numAttentionHeads}`,
    );
  // A sanity bound well above any released CLIP (the largest text towers have ~1.3 G parameters).
  const params =
    (cfg.vocabSize + cfg.maxPositionEmbeddings) * cfg.hiddenSize +
    cfg.numHiddenLayers * (4 * cfg.hiddenSize * cfg.hiddenSize + 2 * cfg.hiddenSize * cfg.intermediateSize) +
    cfg.hiddenSize * cfg.projectionDim;
  if (params > 4e9) throw new MuseError(`${where}: config describes ${params.toExponential(2)} parameters; refused`);
  return { ...cfg, layerNormEps: eps, hiddenAct: act as ClipHiddenAct };
}

/** Every parameter's state_dict name and the shape the config implies. */
export function clipTextWeightShapes(cfg: ClipTextConfig): Map<string, number[]> {
  const h = cfg.hiddenSize;
  const shapes = new Map<string, number[]>([
    ['text_model.embeddings.token_embedding.weight', [cfg.vocabSize, h]],
    ['text_model.embeddings.position_embedding.weight', [cfg.maxPositionEmbeddings, h]],
  ]);
  for (let i = 0; i < cfg.numHiddenLayers; i++) {
    const p = `text_model.encoder.layers.${i}`;
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      shapes.set(`${p}.self_attn.${proj}.weight`, [h, h]);
      shapes.set(`${p}.self_attn.${proj}.bias`, [h]);
    }
    for (const ln of ['layer_norm1', 'layer_norm2']) {
      shapes.set(`${p}.${ln}.weight`, [h]);
      shapes.set(`${p}.${ln}.bias`, [h]);
    }
    shapes.set(`${p}.mlp.fc1.weight`, [cfg.intermediateSize, h]);
    shapes.set(`${p}.mlp.fc1.bias`, [cfg.intermediateSize]);
    shapes.set(`${p}.mlp.fc2.weight`, [h, cfg.intermediateSize]);
    shapes.set(`${p}.mlp.fc2.bias`, [h]);
  }
  shapes.set('text_model.final_layer_norm.weight', [h]);
  shapes.set('text_model.final_layer_norm.bias', [h]);
  shapes.set('text_projection.weight', [cfg.projectionDim, h]);
  return shapes;
}

/**
 * The model's parameters by state_dict name. All access goes through `get`, called inside a tf.tidy:
 * today it returns a resident float32 tensor; a later version may keep the weights as F16 bytes and
 * widen one layer's tensors on demand (then `get` returns a tidy-owned tensor).
 */
export class ClipTextWeights {
  private readonly tensors = new Map<string, tf.Tensor>();

  /** Builds tf tensors from checked host data (`shapes` must already have been verified). */
  constructor(source: Record<string, NamedTensor>, shapes: Map<string, number[]>) {
    try {
      for (const [name, shape] of shapes) {
        const t = source[name];
        this.tensors.set(name, tf.tensor(t.data as Float32Array, shape, 'float32'));
      }
    } catch (err) {
      this.dispose();
      throw err;
    }
  }

  get(name: string): tf.Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`ClipTextWeights: no tensor ${name}`);
    return t;
  }

  dispose(): void {
    for (const t of this.tensors.values()) t.dispose();
    this.tensors.clear();
  }
}

function linear(x: tf.Tensor2D, w: tf.Tensor, b?: tf.Tensor): tf.Tensor2D {
  const y = tf.matMul(x, w, false, true) as tf.Tensor2D;
  return b ? (tf.add(y, b) as tf.Tensor2D) : y;
}

export class ClipTextModel {
  readonly config: ClipTextConfig;
  /** Tensors in the file that the model does not use (known buffers excluded). */
  readonly unusedTensors: string[];
  private readonly weights: ClipTextWeights;

  private constructor(config: ClipTextConfig, weights: ClipTextWeights, unused: string[]) {
    this.config = config;
    this.weights = weights;
    this.unusedTensors = unused;
  }

  /** Reads `text_encoder/` (config.json + model[.fp16].safetensors); every shape checked before any tf tensor. */
  static async load(folder: string): Promise<ClipTextModel> {
    return ClipTextModel.fromComponent(await loadComponent(folder, 'model'));
  }

  static fromComponent(component: Component): ClipTextModel {
    const config = parseClipTextConfig(component.config, `${component.folder}/config.json`);
    const shapes = clipTextWeightShapes(config);
    for (const [name, shape] of shapes) {
      const t = requireTensor(component, name, shape);
      if (!(t.data instanceof Float32Array))
        throw new MuseError(`${component.file}: tensor "${name}" is ${t.dtype ?? 'integer'}, not a float tensor`);
    }
    const unused = Object.keys(component.tensors).filter((n) => !shapes.has(n) && !KNOWN_BUFFERS.has(n));
    return new ClipTextModel(config, new ClipTextWeights(component.tensors, shapes), unused);
  }

  private w(name: string): tf.Tensor {
    return this.weights.get(name);
  }

  /** The position each row's pooled output is taken from (transformers 4.36 rule). */
  pooledPositions(rows: ArrayLike<number>[]): number[] {
    return rows.map((row) => {
      let best = 0;
      if (this.config.eosTokenId === 2) {
        // Legacy: argmax of the ids (first maximum), i.e. the first EOS when EOS has the largest id.
        for (let t = 1; t < row.length; t++) if (row[t] > row[best]) best = t;
      } else {
        // First position equal to eos_token_id (argmax of a 0/1 vector: 0 when there is none).
        for (let t = 0; t < row.length; t++)
          if (row[t] === this.config.eosTokenId) {
            best = t;
            break;
          }
      }
      return best;
    });
  }

  private checkIds(rows: ArrayLike<number>[]): number {
    if (rows.length === 0) throw new MuseError('text encoder: no input rows');
    const length = rows[0].length;
    if (length < 1 || length > this.config.maxPositionEmbeddings)
      throw new MuseError(
        `text encoder: sequence length ${length} is outside 1..${this.config.maxPositionEmbeddings} (max_position_embeddings)`,
      );
    for (const row of rows) {
      if (row.length !== length) throw new MuseError('text encoder: input rows differ in length');
      for (let t = 0; t < row.length; t++) {
        const id = row[t];
        if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize)
          throw new MuseError(`text encoder: token id ${id} is outside 0..${this.config.vocabSize - 1}`);
      }
    }
    return length;
  }

  private activation(x: tf.Tensor): tf.Tensor {
    switch (this.config.hiddenAct) {
      case 'quick_gelu':
        return tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));
      case 'gelu':
        return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
      case 'gelu_new':
      case 'gelu_pytorch_tanh':
        return geluTanh(x);
      case 'relu':
        return tf.relu(x);
    }
  }

  /**
   * Runs the encoder on rows of token ids (all the same length, ≤ max_position_embeddings), with the
   * causal mask only (as AmusedPipeline calls it). The caller disposes the returned tensors.
   */
  forward(rows: ArrayLike<number>[]): ClipTextOutput {
    const seq = this.checkIds(rows);
    const batch = rows.length;
    const { hiddenSize: h, numAttentionHeads: heads, numHiddenLayers: layers, layerNormEps: eps } = this.config;
    const headDim = h / heads;
    const pooled = this.pooledPositions(rows);
    const flatIds = new Int32Array(batch * seq);
    rows.forEach((row, b) => {
      for (let t = 0; t < seq; t++) flatIds[b * seq + t] = row[t];
    });
    const out = tf.tidy(() => {
      const ids = tf.tensor1d(flatIds, 'int32');
      const tokens = tf.gather(this.w('text_model.embeddings.token_embedding.weight'), ids);
      const positions = tf.slice(this.w('text_model.embeddings.position_embedding.weight'), [0, 0], [seq, h]);
      let x = tf.reshape(tf.add(tf.reshape(tokens, [batch, seq, h]), positions), [batch * seq, h]) as tf.Tensor2D;
      const hiddenStates: tf.Tensor3D[] = [tf.reshape(x, [batch, seq, h])];
      // Causal mask: 0 on and below the diagonal, float32's lowest value above it (as transformers).
      const maskData = new Float32Array(seq * seq);
      for (let i = 0; i < seq; i++) for (let j = i + 1; j < seq; j++) maskData[i * seq + j] = -3.4028234663852886e38;
      const causal = tf.tensor4d(maskData, [1, 1, seq, seq]);
      const scale = headDim ** -0.5;
      const split = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [batch, seq, heads, headDim]), [0, 2, 1, 3]);
      for (let i = 0; i < layers; i++) {
        const p = `text_model.encoder.layers.${i}`;
        const n1 = layerNorm(x, this.w(`${p}.layer_norm1.weight`), this.w(`${p}.layer_norm1.bias`), eps) as tf.Tensor2D;
        const q = tf.mul(
          linear(n1, this.w(`${p}.self_attn.q_proj.weight`), this.w(`${p}.self_attn.q_proj.bias`)),
          scale,
        );
        const k = linear(n1, this.w(`${p}.self_attn.k_proj.weight`), this.w(`${p}.self_attn.k_proj.bias`));
        const v = linear(n1, this.w(`${p}.self_attn.v_proj.weight`), this.w(`${p}.self_attn.v_proj.bias`));
        const scores = tf.add(tf.matMul(split(q) as tf.Tensor4D, split(k) as tf.Tensor4D, false, true), causal);
        const attn = tf.matMul(tf.softmax(scores, -1) as tf.Tensor4D, split(v) as tf.Tensor4D);
        const merged = tf.reshape(tf.transpose(attn, [0, 2, 1, 3]), [batch * seq, h]) as tf.Tensor2D;
        x = tf.add(
          x,
          linear(merged, this.w(`${p}.self_attn.out_proj.weight`), this.w(`${p}.self_attn.out_proj.bias`)),
        ) as tf.Tensor2D;
        const n2 = layerNorm(x, this.w(`${p}.layer_norm2.weight`), this.w(`${p}.layer_norm2.bias`), eps) as tf.Tensor2D;
        const hidden = this.activation(linear(n2, this.w(`${p}.mlp.fc1.weight`), this.w(`${p}.mlp.fc1.bias`)));
        x = tf.add(
          x,
          linear(hidden as tf.Tensor2D, this.w(`${p}.mlp.fc2.weight`), this.w(`${p}.mlp.fc2.bias`)),
        ) as tf.Tensor2D;
        hiddenStates.push(tf.reshape(x, [batch, seq, h]));
      }
      const last = layerNorm(
        x,
        this.w('text_model.final_layer_norm.weight'),
        this.w('text_model.final_layer_norm.bias'),
        eps,
      ) as tf.Tensor2D;
      const pooledOutput = tf.gather(
        last,
        tf.tensor1d(
          pooled.map((t, b) => b * seq + t),
          'int32',
        ),
      ) as tf.Tensor2D;
      const textEmbeds = linear(pooledOutput, this.w('text_projection.weight'));
      const lastHiddenState = tf.reshape(last, [batch, seq, h]) as tf.Tensor3D;
      return { lastHiddenState, hiddenStates, pooledOutput, textEmbeds };
    });
    return out as unknown as ClipTextOutput;
  }

  dispose(): void {
    this.weights.dispose();
  }
}
