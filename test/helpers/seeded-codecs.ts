// Small seeded stand-ins for the VQ tokenizer and the text encoder, for testing code that only needs
// their interfaces (caches, data loaders). Real ones: src/tokenizer, src/text.
import type { ImageTokenizer, TextEncoderModel } from '../../src/data/cache.js';
import type { RgbImage } from '../../src/image/image.js';
import { Rng } from '../../src/tensor/random.js';

/** Each f×f patch → the nearest of K seeded random patches (a VQ with a random codebook). */
export function seededPatchTokenizer(downsample: number, codebookSize: number, seed = 0): ImageTokenizer {
  const dim = downsample * downsample * 3;
  const codebook = new Rng(seed).uniforms(codebookSize * dim, 0, 255);
  return {
    id: `seeded-patch-f${downsample}-k${codebookSize}-s${seed}`,
    downsample,
    codebookSize,
    async encode(images: RgbImage[]) {
      const out: number[] = [];
      for (const img of images) {
        for (let py = 0; py < img.height / downsample; py++) {
          for (let px = 0; px < img.width / downsample; px++) {
            let best = 0;
            let bestD = Number.POSITIVE_INFINITY;
            for (let k = 0; k < codebookSize; k++) {
              let d = 0;
              for (let y = 0; y < downsample; y++) {
                for (let x = 0; x < downsample; x++) {
                  for (let c = 0; c < 3; c++) {
                    const v = img.data[((py * downsample + y) * img.width + px * downsample + x) * 3 + c];
                    d += (v - codebook[k * dim + (y * downsample + x) * 3 + c]) ** 2;
                  }
                }
              }
              if (d < bestD) {
                bestD = d;
                best = k;
              }
            }
            out.push(best);
          }
        }
      }
      return Int32Array.from(out);
    },
  };
}

/** Each word → a seeded vector (by hash), one row per word, zeros after the last. */
export function hashTextEncoder(dim: number, maxTokens: number): TextEncoderModel {
  const wordVector = (word: string) => {
    let h = 2166136261;
    for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), 16777619) >>> 0;
    return new Rng(h).normals(dim);
  };
  return {
    id: `hash-text-d${dim}-t${maxTokens}`,
    dim,
    maxTokens,
    async encode(texts: string[]) {
      const embeddings = new Float32Array(texts.length * maxTokens * dim);
      const lengths = new Int32Array(texts.length);
      texts.forEach((t, i) => {
        const words = t.toLowerCase().split(/\s+/).filter(Boolean).slice(0, maxTokens);
        words.forEach((w, j) => embeddings.set(wordVector(w), (i * maxTokens + j) * dim));
        lengths[i] = words.length;
      });
      return { embeddings, lengths };
    },
  };
}
