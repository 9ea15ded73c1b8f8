// Fréchet distance between two sets of feature vectors (the FID formula, Heusel et al. 2017):
//   d² = ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2·Tr (Σ₁^½ Σ₂ Σ₁^½)^½,   Σ with the (n − 1) normalisation.
// With X₁ = (centred features₁)ᵀ/√(n₁−1) (d × n₁), Σ₁ = X₁X₁ᵀ, and Tr (Σ₁^½ Σ₂ Σ₁^½)^½ is the sum
// of the singular values of X₂ᵀX₁ (the eigenvalues of Σ₁Σ₂ are those of X₁ᵀX₂X₂ᵀX₁). So when there
// are fewer images than feature dimensions (500 vs InceptionV3's 2,048) the work is one n₁ × n₁
// symmetric eigenproblem, not a 2,048² matrix square root; with more images it is done in d × d.
import { MuseError } from '../util/errors.js';

/** Features as rows: n vectors of dimension d, row-major. */
export interface FeatureSet {
  n: number;
  d: number;
  data: Float32Array | Float64Array;
}

/**
 * Eigen-decomposition of a symmetric matrix (n × n, row-major, overwritten) by cyclic Jacobi
 * rotations: eigenvalues, and with `vectors` the eigenvectors as the columns of an n × n matrix.
 */
export function symmetricEigen(
  a: Float64Array,
  n: number,
  vectors = false,
): { values: Float64Array; vectors?: Float64Array } {
  const v = vectors ? new Float64Array(n * n) : undefined;
  if (v) for (let i = 0; i < n; i++) v[i * n + i] = 1;
  const rotate = (m: Float64Array, k1: number, k2: number, c: number, s: number) => {
    const x = m[k1];
    const y = m[k2];
    m[k1] = c * x - s * y;
    m[k2] = s * x + c * y;
  };
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < n; i++) {
      diag += a[i * n + i] ** 2;
      for (let j = i + 1; j < n; j++) off += a[i * n + j] ** 2;
    }
    if (off <= 1e-24 * (diag + 1e-300)) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) rotate(a, k * n + p, k * n + q, c, s);
        for (let k = 0; k < n; k++) rotate(a, p * n + k, q * n + k, c, s);
        if (v) for (let k = 0; k < n; k++) rotate(v, k * n + p, k * n + q, c, s);
      }
    }
  }
  return { values: Float64Array.from({ length: n }, (_, i) => a[i * n + i]), vectors: v };
}

function centred(f: FeatureSet): { mean: Float64Array; x: Float64Array } {
  const mean = new Float64Array(f.d);
  for (let i = 0; i < f.n; i++) for (let k = 0; k < f.d; k++) mean[k] += f.data[i * f.d + k] / f.n;
  const scale = 1 / Math.sqrt(f.n - 1);
  const x = new Float64Array(f.n * f.d);
  for (let i = 0; i < f.n; i++) for (let k = 0; k < f.d; k++) x[i * f.d + k] = (f.data[i * f.d + k] - mean[k]) * scale;
  return { mean, x };
}

/** rows(a)ᵀ-style products: out[i][j] = Σ_k a[i][k]·b[j][k] (a: na × d, b: nb × d). */
function rowProducts(a: Float64Array, na: number, b: Float64Array, nb: number, d: number): Float64Array {
  const out = new Float64Array(na * nb);
  for (let i = 0; i < na; i++) {
    for (let j = 0; j < nb; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += a[i * d + k] * b[j * d + k];
      out[i * nb + j] = s;
    }
  }
  return out;
}

/** Σ over the feature axis: d × d covariance from the scaled centred rows x (n × d). */
function covariance(x: Float64Array, n: number, d: number): Float64Array {
  const cov = new Float64Array(d * d);
  for (let i = 0; i < n; i++)
    for (let p = 0; p < d; p++) {
      const v = x[i * d + p];
      for (let q = 0; q < d; q++) cov[p * d + q] += v * x[i * d + q];
    }
  return cov;
}

export function frechetDistance(a: FeatureSet, b: FeatureSet): number {
  if (a.d !== b.d) throw new MuseError(`feature sets of dimension ${a.d} and ${b.d}`);
  if (a.n < 2 || b.n < 2) throw new MuseError('the Fréchet distance needs at least 2 vectors per set');
  const d = a.d;
  const ca = centred(a);
  const cb = centred(b);
  let meanTerm = 0;
  for (let k = 0; k < d; k++) meanTerm += (ca.mean[k] - cb.mean[k]) ** 2;
  let traceA = 0;
  let traceB = 0;
  for (const v of ca.x) traceA += v * v;
  for (const v of cb.x) traceB += v * v;
  let cross = 0;
  if (Math.min(a.n, b.n) <= d) {
    // Sum of singular values of M = X_bᵀX_a (rows: M[j][i] = x_b[j]·x_a[i]): √eig(MᵀM) over the smaller side.
    const [small, ns, large, nl] = a.n <= b.n ? [ca.x, a.n, cb.x, b.n] : [cb.x, b.n, ca.x, a.n];
    const m = rowProducts(large, nl, small, ns, d); // nl × ns
    const mtm = new Float64Array(ns * ns);
    for (let j = 0; j < nl; j++)
      for (let p = 0; p < ns; p++) {
        const v = m[j * ns + p];
        if (v === 0) continue;
        for (let q = 0; q < ns; q++) mtm[p * ns + q] += v * m[j * ns + q];
      }
    cross = sumOfRoots(symmetricEigen(mtm, ns).values);
  } else {
    // d × d: eigenvalues of Σ_a^½ Σ_b Σ_a^½ = those of Σ_aΣ_b; use the symmetric form via Σ_a = VΛVᵀ.
    const sa = covariance(ca.x, a.n, d);
    const sb = covariance(cb.x, b.n, d);
    const root = symmetricSqrt(sa, d);
    const c = multiply(multiply(root, sb, d), root, d);
    for (let i = 0; i < d; i++)
      for (let j = i + 1; j < d; j++) {
        const avg = (c[i * d + j] + c[j * d + i]) / 2;
        c[i * d + j] = avg;
        c[j * d + i] = avg;
      }
    cross = sumOfRoots(symmetricEigen(c, d).values);
  }
  return Math.max(0, meanTerm + traceA + traceB - 2 * cross);
}

/** Σ √λ over the eigenvalues of a PSD matrix; rounding noise (|λ| ≤ 1e-12·λ_max) counts as 0. */
function sumOfRoots(values: Float64Array): number {
  const floor = 1e-12 * Math.max(...values, 0);
  let sum = 0;
  for (const l of values) if (l > floor) sum += Math.sqrt(l);
  return sum;
}

function multiply(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < n; k++) {
      const v = a[i * n + k];
      if (v === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += v * b[k * n + j];
    }
  return out;
}

/** The PSD square root of a symmetric matrix: V·√Λ·Vᵀ. */
function symmetricSqrt(m: Float64Array, n: number): Float64Array {
  const { values, vectors } = symmetricEigen(Float64Array.from(m), n, true);
  const v = vectors as Float64Array;
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const r = Math.sqrt(Math.max(values[k], 0));
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[i * n + j] += v[i * n + k] * r * v[j * n + k];
  }
  return out;
}
