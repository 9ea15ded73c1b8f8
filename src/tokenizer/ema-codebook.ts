// The EMA codebook (van den Oord et al. 2017, App. A.1; Razavi et al. 2019): each code is the running
// mean of the latents assigned to it, learnt outside the gradient:
//   N_k ← γN_k + (1 − γ)n_k,   m_k ← γm_k + (1 − γ)Σ_{i→k} z_i,   e_k = m_k / Ñ_k
// with Laplace-smoothed counts Ñ_k = (N_k + ε) / (ΣN + Kε) · ΣN, so an unused code never divides by 0.
const EPSILON = 1e-5;

export class EmaCodebook {
  private constructor(
    /** N_k [K]. */
    readonly counts: Float32Array,
    /** m_k [K, d], row-major. */
    readonly sums: Float32Array,
    readonly codeDim: number,
    readonly decay: number,
  ) {}

  /** Starts from the codebook as it is, each code counted once (so e_k is unchanged until updated). */
  static fromCodebook(values: Float32Array, codeDim: number, decay = 0.99): EmaCodebook {
    return new EmaCodebook(new Float32Array(values.length / codeDim).fill(1), values.slice(), codeDim, decay);
  }

  /** Resumes from saved statistics. */
  static fromState(counts: Float32Array, sums: Float32Array, codeDim: number, decay = 0.99): EmaCodebook {
    if (sums.length !== counts.length * codeDim)
      throw new Error(`EMA codebook state: ${sums.length} sums for ${counts.length} codes of ${codeDim}`);
    return new EmaCodebook(counts.slice(), sums.slice(), codeDim, decay);
  }

  get size(): number {
    return this.counts.length;
  }

  /** Folds in one batch (latents [N, d] row-major, their code indices [N]); returns the new codebook [K, d]. */
  update(indices: Int32Array, latents: Float32Array): Float32Array {
    const d = this.codeDim;
    const k = this.size;
    const n = new Float32Array(k);
    const s = new Float32Array(k * d);
    for (let i = 0; i < indices.length; i++) {
      const c = indices[i];
      n[c]++;
      for (let j = 0; j < d; j++) s[c * d + j] += latents[i * d + j];
    }
    const g = this.decay;
    let total = 0;
    for (let c = 0; c < k; c++) {
      this.counts[c] = g * this.counts[c] + (1 - g) * n[c];
      total += this.counts[c];
    }
    for (let i = 0; i < s.length; i++) this.sums[i] = g * this.sums[i] + (1 - g) * s[i];
    return this.codebook(total);
  }

  /** Puts code k at `vector` with a count of one (a dead-code restart). */
  reset(k: number, vector: Float32Array): void {
    this.counts[k] = 1;
    this.sums.set(vector, k * this.codeDim);
  }

  /** e_k = m_k / Ñ_k. */
  codebook(total = this.counts.reduce((a, b) => a + b, 0)): Float32Array {
    const d = this.codeDim;
    const k = this.size;
    const out = new Float32Array(k * d);
    for (let c = 0; c < k; c++) {
      const smoothed = ((this.counts[c] + EPSILON) / (total + k * EPSILON)) * total;
      for (let j = 0; j < d; j++) out[c * d + j] = this.sums[c * d + j] / smoothed;
    }
    return out;
  }
}
