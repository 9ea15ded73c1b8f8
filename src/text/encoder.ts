/** Maps captions to per-token embeddings; Muse conditions on the sequence, not one pooled vector. */
export interface TextEncoderModel {
  /** Identity recorded in caches and checkpoints (embeddings from another encoder don't mix). */
  readonly id: string;
  readonly dim: number;
  /** Every caption is truncated or zero-padded to this many tokens. */
  readonly maxTokens: number;
  /** [n · maxTokens · dim] embeddings (zero past each length) and the lengths. */
  /** The words of a caption the encoder cannot read (optional): a prompt of only those is unconditional. */
  unknownWords?(text: string): string[];
  encode(texts: string[]): Promise<{ embeddings: Float32Array; lengths: Int32Array }>;
}
