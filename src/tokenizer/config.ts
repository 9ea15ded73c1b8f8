// The VQ tokenizer's shape, as a plain object stored in every checkpoint's metadata.
import { MuseError } from '../util/errors.js';

export interface TokenizerConfig {
  /** Channels of the first level. */
  channels: number;
  /** Channel multiplier per level; each level after the first halves the resolution. */
  channelMult: number[];
  /** Residual blocks per level. */
  resBlocks: number;
  /** Channels of the encoder output / decoder input. */
  latentDim: number;
  /** Dimension of the codes (factorised, l2-normalised lookup as in ViT-VQGAN, Yu et al. 2022). */
  codeDim: number;
  codebookSize: number;
  /** GroupNorm groups; must divide every level's channels. */
  groups: number;
  /**
   * How codes are looked up and learnt: 'l2' (the default when absent) l2-normalises latents and codes
   * and learns the codebook by gradient (ViT-VQGAN); 'ema' looks up by Euclidean distance and moves
   * each code to the running mean of the latents assigned to it (van den Oord et al. 2017, App. A.1).
   */
  quantizer?: QuantizerKind;
}

export type QuantizerKind = 'l2' | 'ema';

export function quantizerKind(c: TokenizerConfig): QuantizerKind {
  return c.quantizer ?? 'l2';
}

// 32 px → 8×8 and 64 px → 16×16 tokens (f = 4); 2.55M parameters; l2-normalised codes.
const SMALL: TokenizerConfig = {
  channels: 64,
  channelMult: [1, 2, 2],
  resBlocks: 1,
  latentDim: 64,
  codeDim: 16,
  codebookSize: 1024,
  groups: 16,
};

export const TOKENIZER_PRESETS: Record<string, TokenizerConfig> = {
  small: SMALL,
  // small with an EMA codebook and Euclidean lookup. The default: on the emoji it kept more codes alive
  // and reconstructed better than the l2-normalised lookup (models/emoji-tokenizer/TRAINING.md).
  'small-ema': { ...SMALL, quantizer: 'ema' },
  // Flat-colour data such as the shapes set: a quarter of small's width and 256 codes (~0.6M parameters).
  compact: {
    channels: 32,
    channelMult: [1, 2, 2],
    resBlocks: 1,
    latentDim: 32,
    codeDim: 8,
    codebookSize: 256,
    groups: 8,
  },
  // For tests: trains in seconds.
  tiny: { channels: 16, channelMult: [1, 2, 2], resBlocks: 1, latentDim: 16, codeDim: 8, codebookSize: 64, groups: 4 },
  // f = 8 (three downsamplings), e.g. 64 px → 8×8.
  'small-f8': { ...SMALL, channelMult: [1, 1, 2, 2] },
};

export function downsampleFactor(c: TokenizerConfig): number {
  return 2 ** (c.channelMult.length - 1);
}

export function validateTokenizerConfig(c: TokenizerConfig): TokenizerConfig {
  const positive = (v: unknown, name: string) => {
    if (!Number.isInteger(v) || (v as number) < 1)
      throw new MuseError(`tokenizer config: ${name} must be a positive integer, got ${v}`);
  };
  positive(c.channels, 'channels');
  positive(c.resBlocks, 'resBlocks');
  positive(c.latentDim, 'latentDim');
  positive(c.codeDim, 'codeDim');
  positive(c.codebookSize, 'codebookSize');
  positive(c.groups, 'groups');
  if (!Array.isArray(c.channelMult) || c.channelMult.length < 1)
    throw new MuseError('tokenizer config: channelMult must be a non-empty list');
  for (const m of c.channelMult) {
    positive(m, 'channelMult entries');
    if ((c.channels * m) % c.groups !== 0) {
      throw new MuseError(
        `tokenizer config: groups ${c.groups} must divide every level's channels (${c.channels * m})`,
      );
    }
  }
  if (c.quantizer !== undefined && c.quantizer !== 'l2' && c.quantizer !== 'ema')
    throw new MuseError(`tokenizer config: quantizer must be "l2" or "ema", got ${JSON.stringify(c.quantizer)}`);
  if (c.latentDim % c.groups !== 0)
    throw new MuseError(`tokenizer config: groups ${c.groups} must divide latentDim ${c.latentDim}`);
  return c;
}

export function tokenizerPreset(name: string): TokenizerConfig {
  const c = TOKENIZER_PRESETS[name];
  if (!c)
    throw new MuseError(`unknown tokenizer config "${name}": choose ${Object.keys(TOKENIZER_PRESETS).join(', ')}`);
  return structuredClone(c);
}
