// The Fréchet distance (FID formula) against hand-worked cases and itself computed both ways.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type FeatureSet, frechetDistance, symmetricEigen } from '../src/eval/frechet.js';
import { Rng } from '../src/tensor/random.js';

function gaussian(n: number, d: number, seed: number, mean = 0, scale = 1): FeatureSet {
  const rng = new Rng(seed);
  const data = new Float64Array(n * d);
  for (let i = 0; i < data.length; i++) data[i] = mean + scale * rng.normal() * (1 + (i % d) / d);
  return { n, d, data };
}

test('Jacobi eigenvalues: a hand-worked 2×2 and 3×3', () => {
  const e2 = Array.from(symmetricEigen(Float64Array.from([2, 1, 1, 2]), 2).values).sort();
  assert.ok(Math.abs(e2[0] - 1) < 1e-12 && Math.abs(e2[1] - 3) < 1e-12);
  // [[4,1,0],[1,3,1],[0,1,2]]: eigenvalues 3 and 3 ± √3.
  const e3 = Array.from(symmetricEigen(Float64Array.from([4, 1, 0, 1, 3, 1, 0, 1, 2]), 3).values).sort((a, b) => a - b);
  const want = [3 - Math.sqrt(3), 3, 3 + Math.sqrt(3)];
  e3.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-10, `${v} vs ${want[i]}`));
});

test('1-D: the distance is (μ₁ − μ₂)² + (σ₁ − σ₂)² with sample statistics', () => {
  const a = { n: 4, d: 1, data: Float64Array.from([1, 2, 3, 4]) }; // μ 2.5, σ² 5/3
  const b = { n: 3, d: 1, data: Float64Array.from([10, 12, 14]) }; // μ 12, σ² 4
  const want = (2.5 - 12) ** 2 + (Math.sqrt(5 / 3) - 2) ** 2;
  assert.ok(Math.abs(frechetDistance(a, b) - want) < 1e-9);
});

test('identical sets give 0; the sample-space and feature-space paths agree; order of rows is irrelevant', () => {
  const a = gaussian(40, 6, 1);
  assert.ok(frechetDistance(a, a) < 1e-8);
  // n > d: the d × d path; the same data with d padded by zero columns to exceed n uses the n × n path.
  const b = gaussian(30, 6, 2, 0.5, 1.3);
  const viaFeatures = frechetDistance(a, b);
  const pad = (f: FeatureSet, d: number): FeatureSet => {
    const data = new Float64Array(f.n * d);
    for (let i = 0; i < f.n; i++) for (let k = 0; k < f.d; k++) data[i * d + k] = f.data[i * f.d + k];
    return { n: f.n, d, data };
  };
  const viaSamples = frechetDistance(pad(a, 64), pad(b, 64));
  assert.ok(viaFeatures > 1);
  assert.ok(Math.abs(viaFeatures - viaSamples) < 1e-8 * viaFeatures, `${viaFeatures} vs ${viaSamples}`);
  const reversed = {
    ...b,
    data: Float64Array.from({ length: b.data.length }, (_, i) => b.data[(b.n - 1 - Math.floor(i / 6)) * 6 + (i % 6)]),
  };
  assert.ok(Math.abs(frechetDistance(a, reversed) - viaFeatures) < 1e-9 * viaFeatures);
  assert.ok(
    frechetDistance(a, gaussian(40, 6, 3)) < frechetDistance(a, gaussian(40, 6, 3, 2)),
    'a shifted mean is farther',
  );
});
