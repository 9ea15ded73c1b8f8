// The checks of test/vector-math.test.ts, in a module of their own so that a child process can run
// them under another MUSE_VECTOR_ISA without registering the tests again.
import assert from 'node:assert/strict';
import type { NativeAddon } from '../../src/tensor/native.js';

function random(n: number, seed: number, lo: number, hi: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return lo + ((hi - lo) * s) / 2 ** 32;
  });
}

const geluRef = (z: number) => 0.5 * z * (1 + Math.tanh(0.7978845608028654 * (z + 0.044715 * z ** 3)));
function geluSlopeRef(z: number): number {
  const t = Math.tanh(0.7978845608028654 * (z + 0.044715 * z ** 3));
  return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * z * z);
}
const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
const siluRef = (z: number) => z * sigmoid(z);
const siluSlopeRef = (z: number) => sigmoid(z) * (1 + z * (1 - sigmoid(z)));

/** Every check on the current process's variant; returns the variant's name. */
export function checkVariant(a: NativeAddon): string {
  // e^x: dense sweep of the whole range plus the ends.
  const xs = Float32Array.from([
    ...random(20000, 1, -87.3, 88),
    -87.3,
    -80,
    -1e-30,
    0,
    1e-30,
    0.5 * Math.LN2,
    -0.5 * Math.LN2,
    1,
    88,
  ]);
  const ys = new Float32Array(xs.length);
  a.expForward?.(xs, ys, xs.length);
  let worst = 0;
  xs.forEach((x, i) => {
    const want = Math.exp(x);
    worst = Math.max(worst, Math.abs(ys[i] - want) / want);
  });
  assert.ok(worst < 3e-7, `exp relative error ${worst}`);
  const ends = Float32Array.from([
    -87.5,
    -100,
    Number.NEGATIVE_INFINITY,
    Number.NaN,
    89,
    1000,
    Number.POSITIVE_INFINITY,
  ]);
  const endsOut = new Float32Array(ends.length);
  a.expForward?.(ends, endsOut, ends.length);
  assert.deepEqual([...endsOut.subarray(0, 3)], [0, 0, 0], 'exp below the normal range is 0');
  assert.ok(Number.isNaN(endsOut[3]), 'exp(NaN) is NaN');
  for (const v of endsOut.subarray(4)) assert.ok(Number.isFinite(v) && v > 1e38, `exp of a large x: ${v}`);

  // Tails: every length 1…40, values written exactly where asked and nowhere else.
  for (let n = 1; n <= 40; n++) {
    const x = random(n, n, -5, 5);
    const y = new Float32Array(n + 3).fill(7);
    a.expForward?.(x, y, n);
    x.forEach((v, i) => assert.ok(Math.abs(y[i] - Math.exp(v)) <= 3e-7 * Math.exp(v), `exp tail n=${n} i=${i}`));
    assert.deepEqual([...y.subarray(n)], [7, 7, 7], `exp wrote past n=${n}`);
  }

  // GELU and SiLU and their gradients, against float64 (absolute 2e-6 on |x| ≤ 8, plus the far ends).
  const z = Float32Array.from([...random(4099, 2, -8, 8), -60, -30, 30, 60]);
  const dy = random(z.length, 3, -1, 1);
  const out = new Float32Array(z.length);
  const pairs: [string, (x: Float32Array, y: Float32Array, n: number) => void, (v: number) => number][] = [
    ['gelu', a.geluForward.bind(a), geluRef],
    ['silu', a.siluForward.bind(a), siluRef],
  ];
  for (const [name, f, ref] of pairs) {
    f(z, out, z.length);
    z.forEach((v, i) =>
      assert.ok(Math.abs(out[i] - ref(v)) < 2e-6 * Math.max(1, Math.abs(ref(v))), `${name}(${v}): ${out[i]}`),
    );
  }
  const grads: [
    string,
    (d: Float32Array, x: Float32Array, dx: Float32Array, n: number) => void,
    (v: number) => number,
  ][] = [
    ['gelu grad', a.geluBackward.bind(a), geluSlopeRef],
    ['silu grad', a.siluBackward.bind(a), siluSlopeRef],
  ];
  for (const [name, f, slope] of grads) {
    f(dy, z, out, z.length);
    z.forEach((v, i) => assert.ok(Math.abs(out[i] - dy[i] * slope(v)) < 2e-6, `${name}(${v}): ${out[i]}`));
  }

  // Softmax rows of every length 1…40 and a long one; a masked (−∞) entry gets 0; an all −∞ row NaN.
  for (const d of [...Array.from({ length: 40 }, (_, i) => i + 1), 1031]) {
    const rows = 3;
    const x = random(rows * d, d, -20, 20);
    if (d > 2) x[1] = Number.NEGATIVE_INFINITY;
    const y = new Float32Array(rows * d);
    a.softmaxForward?.(x, y, rows, d);
    for (let r = 0; r < rows; r++) {
      const row = [...x.subarray(r * d, (r + 1) * d)];
      const m = Math.max(...row);
      const e = row.map((v) => Math.exp(v - m));
      const sum = e.reduce((s, v) => s + v, 0);
      let total = 0;
      e.forEach((v, c) => {
        total += y[r * d + c];
        assert.ok(Math.abs(y[r * d + c] - v / sum) < 1e-6, `softmax d=${d} row ${r} col ${c}`);
      });
      assert.ok(Math.abs(total - 1) < 2e-6, `softmax row sums to ${total}`);
    }
    if (d > 2) assert.equal(y[1], 0, 'a −∞ score gets probability 0');
  }
  const masked = new Float32Array(17).fill(Number.NEGATIVE_INFINITY);
  const maskedOut = new Float32Array(17);
  a.softmaxForward?.(masked, maskedOut, 1, 17);
  assert.ok(maskedOut.every(Number.isNaN), 'an all −∞ row is NaN, as 0/0 in the unfused form');
  return a.info().vectorIsa ?? 'unknown';
}
