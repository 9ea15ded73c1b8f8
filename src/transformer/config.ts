// The masked transformer's shape (Muse §2.3), as a plain object stored in every checkpoint's metadata.
// Architecture presets say how big the network is; the data (codebook, grid, text encoder) says the rest.
import { MuseError } from '../util/errors.js';

export interface TransformerConfig {
  /** K: codes of the VQ tokenizer. Token ids are 0..K−1; the [MASK] id is K. */
  codebookSize: number;
  /** Token grid [h, w]; the sequence is the grid in row-major order (h·w tokens). */
  grid: [number, number];
  /** Model width D. */
  width: number;
  /** Transformer blocks. */
  layers: number;
  /** Attention heads; must divide width. */
  heads: number;
  /** Hidden units of each block's MLP. */
  mlp: number;
  /** Width of the text encoder's per-token embeddings (512 for USE-lite). */
  textDim: number;
  /** Most text tokens a prompt may have (the cross-attention context is 1 + textTokens long). */
  textTokens: number;
  /**
   * Super-resolution stage only (Muse §2.4): the low-res token grid it is conditioned on, encoded by
   * `layers` self-attention blocks; the result joins the text in the cross-attention context.
   */
  lowres?: LowresConfig;
}

export interface LowresConfig {
  /** Codes of the low-res tokenizer. */
  codebookSize: number;
  grid: [number, number];
  layers: number;
  /**
   * When set, the low-res tokens enter as the low-res tokenizer's own code vectors (frozen:
   * `lowres.codebook` [codebookSize, codeDim], copied from the tokenizer at the start of training)
   * through a learnt projection, instead of embeddings learnt from scratch.
   */
  codeDim?: number;
}

/** The part of the config a preset fixes (lowresLayers: super-res presets only). */
export type TransformerArch = Pick<TransformerConfig, 'width' | 'layers' | 'heads' | 'mlp'> & { lowresLayers?: number };

/** The part of the config the data fixes. */
export interface TransformerData {
  codebookSize: number;
  grid: [number, number];
  /** Default 512 (USE-lite). */
  textDim?: number;
  /** Default 24. */
  textTokens?: number;
  /** Super-res stage: the low-res grid and its codebook (codeDim: see LowresConfig). */
  lowres?: { codebookSize: number; grid: [number, number]; codeDim?: number };
}

export const TRANSFORMER_PRESETS: Record<string, TransformerArch> = {
  // For tests: trains in seconds.
  tiny: { width: 32, layers: 2, heads: 4, mlp: 64 },
  // The default for 8×8 grids on 2 CPU cores; the shape of the reference training step of docs/ARCHITECTURE.md.
  small: { width: 256, layers: 4, heads: 8, mlp: 1024 },
  // Super-res stage (8×8 → 16×16 tokens): low-res encoder of 2 self-attention blocks, 4 blocks of width 192 over
  // the 256 high-res tokens (the paper: 16 and 32 at 64×64).
  'superres-tiny': { width: 32, layers: 2, heads: 4, mlp: 64, lowresLayers: 1 },
  'superres-small': { width: 192, layers: 4, heads: 6, mlp: 768, lowresLayers: 2 },
};

/** The mask token's id: one past the last code. */
export function maskTokenId(c: TransformerConfig): number {
  return c.codebookSize;
}

/** Tokens per grid (h·w). */
export function sequenceLength(c: TransformerConfig): number {
  return c.grid[0] * c.grid[1];
}

export function validateTransformerConfig(c: TransformerConfig): TransformerConfig {
  const positive = (v: unknown, name: string) => {
    if (!Number.isInteger(v) || (v as number) < 1)
      throw new MuseError(`transformer config: ${name} must be a positive integer, got ${v}`);
  };
  positive(c.codebookSize, 'codebookSize');
  if (c.codebookSize < 2)
    throw new MuseError(`transformer config: codebookSize must be at least 2, got ${c.codebookSize}`);
  if (!Array.isArray(c.grid) || c.grid.length !== 2)
    throw new MuseError(`transformer config: grid must be [h, w], got ${JSON.stringify(c.grid)}`);
  positive(c.grid[0], 'grid height');
  positive(c.grid[1], 'grid width');
  positive(c.width, 'width');
  positive(c.layers, 'layers');
  positive(c.heads, 'heads');
  positive(c.mlp, 'mlp');
  positive(c.textDim, 'textDim');
  positive(c.textTokens, 'textTokens');
  if (c.width % c.heads !== 0) throw new MuseError(`transformer config: heads ${c.heads} must divide width ${c.width}`);
  if (c.lowres) {
    positive(c.lowres.codebookSize, 'lowres codebookSize');
    if (!Array.isArray(c.lowres.grid) || c.lowres.grid.length !== 2)
      throw new MuseError(`transformer config: lowres grid must be [h, w], got ${JSON.stringify(c.lowres.grid)}`);
    positive(c.lowres.grid[0], 'lowres grid height');
    positive(c.lowres.grid[1], 'lowres grid width');
    positive(c.lowres.layers, 'lowres layers');
    if (c.lowres.codeDim !== undefined) positive(c.lowres.codeDim, 'lowres codeDim');
  }
  return c;
}

/** A full config from a preset name (or an explicit architecture) and the data's shape. */
export function transformerConfig(preset: string | TransformerArch, data: TransformerData): TransformerConfig {
  let arch: TransformerArch;
  if (typeof preset === 'string') {
    const found = TRANSFORMER_PRESETS[preset];
    if (!found)
      throw new MuseError(
        `unknown transformer config "${preset}": choose ${Object.keys(TRANSFORMER_PRESETS).join(', ')}`,
      );
    arch = found;
  } else arch = preset;
  const isSuperres = arch.lowresLayers !== undefined;
  if (isSuperres !== (data.lowres !== undefined))
    throw new MuseError(
      isSuperres
        ? 'a super-res config needs the low-res grid (data.lowres)'
        : 'low-res conditioning needs a super-res config (superres-tiny, superres-small)',
    );
  return validateTransformerConfig({
    codebookSize: data.codebookSize,
    grid: [data.grid[0], data.grid[1]],
    width: arch.width,
    layers: arch.layers,
    heads: arch.heads,
    mlp: arch.mlp,
    textDim: data.textDim ?? 512,
    textTokens: data.textTokens ?? 24,
    ...(data.lowres && arch.lowresLayers
      ? {
          lowres: {
            codebookSize: data.lowres.codebookSize,
            grid: data.lowres.grid,
            layers: arch.lowresLayers,
            ...(data.lowres.codeDim !== undefined && { codeDim: data.lowres.codeDim }),
          },
        }
      : {}),
  });
}
