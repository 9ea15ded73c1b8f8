// A tokenizer's code vectors as another model reads them (the super-res stage's low-res input): the
// vectors its decoder sees for each token — unit rows for the l2-normalised lookup, the raw EMA
// codebook otherwise — scaled to unit root-mean-square over the whole codebook, so a projection
// initialised like any other layer starts at a sensible scale.
import { quantizerKind, type TokenizerConfig } from './config.js';
import type { TokenizerParams } from './model.js';

export function codeVectors(config: TokenizerConfig, params: TokenizerParams): { data: Float32Array; dim: number } {
  const dim = config.codeDim;
  const data = Float32Array.from(params['quant.codebook'].dataSync() as Float32Array);
  if (quantizerKind(config) === 'l2') {
    for (let r = 0; r < data.length / dim; r++) {
      let norm = 0;
      for (let k = 0; k < dim; k++) norm += data[r * dim + k] ** 2;
      const scale = 1 / Math.max(Math.sqrt(norm), 1e-12);
      for (let k = 0; k < dim; k++) data[r * dim + k] *= scale;
    }
  }
  let square = 0;
  for (const v of data) square += v * v;
  const rms = Math.sqrt(square / data.length) || 1;
  for (let i = 0; i < data.length; i++) data[i] /= rms;
  return { data, dim };
}
