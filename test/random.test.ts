import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../src/tensor/random.js';

test('same seed gives the same stream; different seeds differ', () => {
  const a = new Rng(42).normals(100);
  const b = new Rng(42).normals(100);
  const c = new Rng(43).normals(100);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

test('state() resumes the exact sequence', () => {
  const r = new Rng(7);
  r.normals(13);
  const saved = r.state();
  const expected = [r.uniform(), r.normal(), r.int(1000)];
  const resumed = new Rng(saved);
  assert.deepEqual([resumed.uniform(), resumed.normal(), resumed.int(1000)], expected);
});

test('uniform and normal have the right moments', () => {
  const r = new Rng(1);
  const n = 200_000;
  const u = r.uniforms(n);
  const z = r.normals(n);
  const mean = (x: Float32Array) => x.reduce((a, b) => a + b, 0) / x.length;
  const varOf = (x: Float32Array, m: number) => x.reduce((a, b) => a + (b - m) ** 2, 0) / x.length;
  assert.ok(Math.abs(mean(u) - 0.5) < 0.005);
  assert.ok(Math.abs(varOf(u, 0.5) - 1 / 12) < 0.002);
  assert.ok(Math.abs(mean(z)) < 0.01);
  assert.ok(Math.abs(varOf(z, 0) - 1) < 0.02);
  assert.ok(u.every((v) => v >= 0 && v < 1));
});

test('int(n) covers [0, n) evenly', () => {
  const r = new Rng(3);
  const counts = new Array(10).fill(0);
  for (let i = 0; i < 100_000; i++) counts[r.int(10)]++;
  for (const c of counts) assert.ok(Math.abs(c - 10_000) < 500, `count ${c}`);
});
