// A trained masked transformer as decoding's logits function, with classifier-free guidance. The
// conditional and unconditional (or negative-prompt) passes run as one batched forward of 2B grids,
// and the text side of cross-attention is computed once here, not once per step.
import * as tf from '@tensorflow/tfjs-core';
import { sequenceLength, type TransformerConfig } from '../transformer/config.js';
import {
  contextTensors,
  forward,
  precomputeContext,
  type TextContext,
  type TransformerParams,
} from '../transformer/model.js';
import { MuseError } from '../util/errors.js';
import { type GuidanceSchedule, guidanceScale, guideLogits } from './guidance.js';
import type { LogitsFn } from './parallel-decode.js';

/** Per-token text embeddings of B prompts: [B, T, dim] flattened, and each prompt's length. */
export interface PromptBatch {
  embeddings: Float32Array;
  lengths: Int32Array;
}

export interface GuidanceOptions {
  /** t in (1 + t)·ℓ_cond − t·ℓ_uncond; 0 turns guidance (and the second pass) off. */
  scale: number;
  schedule?: GuidanceSchedule;
  /** Replaces the empty prompt of the unconditional pass (negative prompting). */
  negative?: PromptBatch;
}

/** Super-res stage: the low-res token grids [B, N_lo] both passes are conditioned on. */
export interface LowresCondition {
  lowTokens: Int32Array;
}

export interface GuidedTransformer {
  logits: LogitsFn;
  /** Grids per forward pass per prompt: 2 with guidance (conditional + unconditional), else 1. */
  readonly passes: 1 | 2;
  dispose(): void;
}

function concat<A extends Float32Array | Int32Array>(a: A, b: A): A {
  const out = new (a.constructor as new (n: number) => A)(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function emptyPrompts(batch: number, tokens: number, dim: number): PromptBatch {
  return { embeddings: new Float32Array(batch * tokens * dim), lengths: new Int32Array(batch) };
}

export function guidedTransformer(
  params: TransformerParams,
  config: TransformerConfig,
  prompts: PromptBatch,
  guidance: GuidanceOptions & Partial<LowresCondition>,
): GuidedTransformer {
  const B = prompts.lengths.length;
  const D = config.textDim;
  const T = prompts.embeddings.length / (B * D);
  if (!Number.isInteger(T)) throw new MuseError(`prompt embeddings do not make ${B} prompts of width ${D}`);
  guidanceScale(guidance.scale, 0, 1, guidance.schedule); // validates scale and schedule
  const guided = guidance.scale > 0;
  const uncond = guidance.negative ?? emptyPrompts(B, T, D);
  if (uncond.lengths.length !== B || uncond.embeddings.length !== prompts.embeddings.length)
    throw new MuseError(`the negative prompts must match the ${B} prompts in number and shape`);
  const rows = guided ? 2 * B : B;
  // Rows 0..B−1 condition on the prompts; with guidance, rows B..2B−1 on the empty/negative prompts.
  const both = <A extends Float32Array | Int32Array>(cond: A, other: A): A => (guided ? concat(cond, other) : cond);
  const lengths = both(prompts.lengths, uncond.lengths);
  const textTensor = tf.tensor3d(both(prompts.embeddings, uncond.embeddings), [rows, T, D]);
  let lowTensor: tf.Tensor2D | undefined;
  if (config.lowres) {
    const nLow = config.lowres.grid[0] * config.lowres.grid[1];
    if (!guidance.lowTokens || guidance.lowTokens.length !== B * nLow)
      throw new MuseError(`a super-res model needs ${B} low-res grids of ${nLow} tokens`);
    lowTensor = tf.tensor2d(both(guidance.lowTokens, guidance.lowTokens), [rows, nLow], 'int32');
  }
  const context: TextContext = precomputeContext(params, config, textTensor, lengths, lowTensor);
  tf.dispose([textTensor, ...(lowTensor ? [lowTensor] : [])]);
  const n = sequenceLength(config);
  const K = config.codebookSize;
  const logits: LogitsFn = async (tokens, batch, step, steps) => {
    if (batch !== B || tokens.length !== B * n)
      throw new MuseError(
        `decoding ${batch} grids of ${tokens.length / batch} tokens with a model set up for ${B} of ${n}`,
      );
    const tokenTensor = tf.tensor2d(both(tokens, tokens), [rows, n], 'int32');
    const out = forward(params, config, tokenTensor, context);
    const values = (await out.data()) as Float32Array;
    tf.dispose([tokenTensor, out]);
    if (!guided) return values;
    const t = guidanceScale(guidance.scale, step, steps, guidance.schedule);
    return guideLogits(values.subarray(0, B * n * K), values.subarray(B * n * K), t);
  };
  return {
    logits,
    passes: guided ? 2 : 1,
    dispose: () => tf.dispose(contextTensors(context)),
  };
}
