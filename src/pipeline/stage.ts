// One masked-transformer stage of the pipeline (base, or super-res conditioned on the tokens of the
// stage before): decodes token grids for a batch of prompts with guidance, text (and low-res) context
// computed once. A pipeline is a list of stages (StageList), not a base and an optional super-res.
import type { GuidanceSchedule } from '../decoding/guidance.js';
import { type GuidedTransformer, guidedTransformer, type PromptBatch } from '../decoding/guided-transformer.js';
import { type ParallelDecodeOptions, parallelDecode } from '../decoding/parallel-decode.js';
import { decodingSteps } from '../decoding/schedule.js';
import type { VqTokenizer } from '../tokenizer/tokenizer.js';
import { maskTokenId, sequenceLength, type TransformerConfig } from '../transformer/config.js';
import type { TransformerParams } from '../transformer/model.js';

export interface StageGuidance {
  scale: number;
  schedule: GuidanceSchedule;
  negative?: PromptBatch;
}

/** The base stage, then zero or more super-res stages, each conditioned on the tokens of the one before. */
export type StageList = readonly [Stage, ...Stage[]];

export class Stage {
  constructor(
    readonly name: 'base' | 'superres',
    readonly params: TransformerParams,
    readonly config: TransformerConfig,
    /** Side of the images this stage's grids decode to, in pixels. */
    readonly size: number,
    /**
     * The VQ tokenizer of this stage's grids (and of a super-res stage's low-res conditioning); shared
     * between stages that use the same one, disposed by the pipeline.
     */
    readonly tokenizer: VqTokenizer,
  ) {}

  get grid(): [number, number] {
    return this.config.grid;
  }

  /** Tokens of one grid (h·w). */
  get tokenCount(): number {
    return sequenceLength(this.config);
  }

  get maskId(): number {
    return maskTokenId(this.config);
  }

  /** A fully masked start for `batch` grids. */
  blank(batch: number): Int32Array {
    return new Int32Array(batch * this.tokenCount).fill(this.maskId);
  }

  /** The logits function of this stage for a batch of prompts; dispose it after. */
  model(text: PromptBatch, guidance: StageGuidance, lowTokens?: Int32Array): GuidedTransformer {
    return guidedTransformer(this.params, this.config, text, { ...guidance, lowTokens });
  }

  /**
   * Decodes every masked token of `start` ([batch, N]); fewer steps than asked when fewer tokens are
   * masked (the note says so).
   */
  async decode(
    start: Int32Array,
    text: PromptBatch,
    guidance: StageGuidance,
    o: ParallelDecodeOptions,
    lowTokens?: Int32Array,
  ): Promise<{ tokens: Int32Array; steps: number; note?: string }> {
    const model = this.model(text, guidance, lowTokens);
    try {
      return await this.decodeWith(model, start, text.lengths.length, o);
    } finally {
      model.dispose();
    }
  }

  /** decode() with a model already set up (one text context for many windows). */
  async decodeWith(
    model: GuidedTransformer,
    start: Int32Array,
    batch: number,
    o: ParallelDecodeOptions,
  ): Promise<{ tokens: Int32Array; steps: number; note?: string }> {
    const n = this.tokenCount;
    let fewest = n;
    for (let b = 0; b < batch; b++)
      fewest = Math.min(fewest, start.subarray(b * n, (b + 1) * n).filter((t) => t === this.maskId).length);
    if (fewest === 0) return { tokens: Int32Array.from(start), steps: 0 };
    const { steps, note } = decodingSteps(o.steps, fewest);
    const tokens = await parallelDecode(
      model.logits,
      { tokens: start, batch, codebookSize: this.config.codebookSize, maskId: this.maskId },
      { ...o, steps },
    );
    return { tokens, steps, note: note && `${this.name}: ${note}` };
  }

  dispose(): void {
    for (const v of Object.values(this.params)) v.dispose();
  }
}
