import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { type RgbImage, toUnitRange } from '../src/image/image.js';
import {
  meanPsnr,
  meanSsim,
  mse,
  psnr,
  psnrFloat,
  psnrOfMeanMse,
  ssim,
  ssimFloat,
  ssimWindowSize,
} from '../src/image/metrics.js';
import { lineChartPng, lineChartSvg } from '../src/util/plot.js';

// ---- helpers ----

/** Small deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

const clampByte = (v: number) => Math.max(0, Math.min(255, Math.round(v)));

function image(width: number, height: number, f: (x: number, y: number, c: number) => number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = clampByte(f(x, y, c));
  return { width, height, data };
}

function randomImage(width: number, height: number, seed: number): RgbImage {
  const rand = rng(seed);
  return image(width, height, () => rand() * 256);
}

/** A smooth-ish textured image (sum of sinusoids plus a little noise): structure for SSIM to see. */
function texture(width: number, height: number, seed: number): RgbImage {
  const rand = rng(seed);
  return image(
    width,
    height,
    (x, y, c) => 128 + 60 * Math.sin(x * 0.7 + c) * Math.cos(y * 0.45 - c) + 30 * Math.sin((x + y) * 0.2) + 10 * rand(),
  );
}

function map(img: RgbImage, f: (v: number, i: number) => number): RgbImage {
  return { ...img, data: Uint8Array.from(img.data, (v, i) => clampByte(f(v, i))) };
}

/**
 * Direct SSIM (Wang et al. 2004) written independently of the module: for every valid window
 * position, a 2-D Gaussian (σ = 1.5, normalised over the whole window) weighted mean, then the
 * weighted central moments Σw(x−μx)², Σw(y−μy)², Σw(x−μx)(y−μy) (two passes); per channel, averaged.
 */
function referenceSsim(a: RgbImage, b: RgbImage): number {
  const { width, height } = a;
  const fit = Math.min(width, height);
  const size = Math.min(11, fit % 2 === 1 ? fit : fit - 1);
  const r = (size - 1) / 2;
  const weights: number[][] = [];
  let total = 0;
  for (let i = 0; i < size; i++) {
    weights.push([]);
    for (let j = 0; j < size; j++) {
      const w = Math.exp(-((i - r) ** 2 + (j - r) ** 2) / (2 * 1.5 * 1.5));
      weights[i].push(w);
      total += w;
    }
  }
  const C1 = (0.01 * 255) ** 2;
  const C2 = (0.03 * 255) ** 2;
  let sum = 0;
  for (let c = 0; c < 3; c++) {
    let channel = 0;
    let count = 0;
    for (let y0 = 0; y0 + size <= height; y0++) {
      for (let x0 = 0; x0 + size <= width; x0++) {
        const at = (img: RgbImage, i: number, j: number) => img.data[((y0 + i) * width + x0 + j) * 3 + c];
        let mx = 0;
        let my = 0;
        for (let i = 0; i < size; i++)
          for (let j = 0; j < size; j++) {
            mx += (weights[i][j] / total) * at(a, i, j);
            my += (weights[i][j] / total) * at(b, i, j);
          }
        let vx = 0;
        let vy = 0;
        let cxy = 0;
        for (let i = 0; i < size; i++)
          for (let j = 0; j < size; j++) {
            const w = weights[i][j] / total;
            const dx = at(a, i, j) - mx;
            const dy = at(b, i, j) - my;
            vx += w * dx * dx;
            vy += w * dy * dy;
            cxy += w * dx * dy;
          }
        channel += ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2));
        count++;
      }
    }
    sum += channel / count;
  }
  return sum / 3;
}

function assertClose(actual: number, expected: number, tol: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)),
    `${what}: ${actual} vs ${expected} (Δ ${actual - expected})`,
  );
}

// ---- PSNR ----

test('psnr: 2×2 images differing by 10 everywhere give 10·log10(255²/100) = 28.13 dB', () => {
  const a = image(2, 2, (x, y, c) => 100 + x * 20 + y * 50 + c);
  const b = map(a, (v) => v + 10);
  assert.equal(mse(a, b), 100);
  assertClose(psnr(a, b), 10 * Math.log10((255 * 255) / 100), 1e-12, 'psnr');
  assert.equal(psnr(a, b).toFixed(2), '28.13');
  assert.equal(psnr(b, a), psnr(a, b));
});

test('psnr: identical images give Infinity; one differing value gives the hand-worked figure', () => {
  const a = randomImage(4, 3, 1);
  assert.equal(psnr(a, a), Number.POSITIVE_INFINITY);
  const b = map(a, (v, i) => (i === 5 ? (v > 127 ? v - 51 : v + 51) : v));
  // MSE = 51² / 36
  assertClose(psnr(a, b), 10 * Math.log10((255 * 255 * 36) / (51 * 51)), 1e-12, 'psnr');
});

test('meanPsnr averages per-image PSNR; psnrOfMeanMse is the PSNR of the pooled MSE', () => {
  const a = image(2, 2, () => 100);
  const b10 = map(a, (v) => v + 10); // MSE 100
  const b20 = map(a, (v) => v + 20); // MSE 400
  const p100 = 10 * Math.log10(255 ** 2 / 100);
  const p400 = 10 * Math.log10(255 ** 2 / 400);
  assertClose(
    meanPsnr([
      [a, b10],
      [a, b20],
    ]),
    (p100 + p400) / 2,
    1e-12,
    'meanPsnr',
  );
  assertClose(
    psnrOfMeanMse([
      [a, b10],
      [a, b20],
    ]),
    10 * Math.log10(255 ** 2 / 250),
    1e-12,
    'psnrOfMeanMse',
  );
  // pooled MSE weights images by size: a 4×4 pair at MSE 400 counts 4× a 2×2 pair at MSE 100
  const big = image(4, 4, () => 100);
  assertClose(
    psnrOfMeanMse([
      [a, b10],
      [big, map(big, (v) => v + 20)],
    ]),
    10 * Math.log10(255 ** 2 / ((100 * 12 + 400 * 48) / 60)),
    1e-12,
    'pooled',
  );
  assert.equal(
    meanPsnr([
      [a, a],
      [a, b10],
    ]),
    Number.POSITIVE_INFINITY,
  );
  assertClose(
    psnrOfMeanMse([
      [a, a],
      [a, b10],
    ]),
    10 * Math.log10(255 ** 2 / 50),
    1e-12,
    'with identical',
  );
  assert.throws(() => meanPsnr([]), /no image pairs/);
  assert.throws(() => psnrOfMeanMse([]), /no image pairs/);
});

test('mismatched sizes throw naming both sizes', () => {
  const a = randomImage(2, 2, 1);
  const b = randomImage(3, 2, 2);
  assert.throws(() => psnr(a, b), /2×2.*3×2/);
  assert.throws(() => ssim(b, a), /3×2.*2×2/);
  assert.throws(() => psnrFloat(new Float32Array(12), new Float32Array(18), 2, 2), /2×2.*12.*18/);
  assert.throws(() => ssimFloat(new Float32Array(18), new Float32Array(18), 2, 2), /2×2/);
  assert.throws(() => psnr(a, { width: 2, height: 2, data: new Uint8Array(11) }), /11/);
});

// ---- SSIM ----

test('ssim of identical images is 1', () => {
  for (const [w, h] of [
    [24, 24],
    [32, 32],
    [11, 11],
    [5, 8],
    [1, 1],
  ]) {
    const a = randomImage(w, h, w * 100 + h);
    assertClose(ssim(a, a), 1, 1e-12, `${w}×${h}`);
  }
  const flat = image(16, 16, () => 77);
  assert.equal(ssim(flat, flat), 1);
});

test('ssim matches a direct (non-separable) windowed implementation', () => {
  const cases: Array<[string, RgbImage, RgbImage]> = [];
  for (let seed = 1; seed <= 3; seed++) {
    const a = randomImage(24, 24, seed);
    cases.push([`random ${seed}`, a, randomImage(24, 24, seed + 100)]);
    cases.push([`shift ${seed}`, a, map(a, (v) => v + 12)]);
    cases.push([`contrast ${seed}`, a, map(a, (v) => 0.6 * v + 40)]);
    const rand = rng(seed + 7);
    cases.push([`noise ${seed}`, a, map(a, (v) => v + 25 * gaussian(rand))]);
  }
  const t = texture(24, 24, 9);
  cases.push(['texture shift+contrast', t, map(t, (v) => 1.3 * v - 20)]);
  cases.push(['non-square 13×17', randomImage(13, 17, 4), randomImage(13, 17, 5)]);
  cases.push(['small 9×7 (window 7)', randomImage(9, 7, 6), randomImage(9, 7, 8)]);
  cases.push(['tiny 2×3 (window 1)', randomImage(2, 3, 6), randomImage(2, 3, 8)]);
  for (const [name, a, b] of cases) {
    const fast = ssim(a, b);
    const ref = referenceSsim(a, b);
    assertClose(fast, ref, 1e-9, name);
    assert.ok(fast < 1, `${name}: ${fast} < 1`);
  }
});

test('ssim window: 11 when it fits, else the largest odd size that does', () => {
  assert.equal(ssimWindowSize(32, 32), 11);
  assert.equal(ssimWindowSize(11, 40), 11);
  assert.equal(ssimWindowSize(10, 40), 9);
  assert.equal(ssimWindowSize(9, 9), 9);
  assert.equal(ssimWindowSize(8, 20), 7);
  assert.equal(ssimWindowSize(1, 1), 1);
});

test('ssim: a constant shift only lowers luminance similarity a little; noise lowers SSIM monotonically', () => {
  const a = texture(32, 32, 3);
  const shifted = ssim(
    a,
    map(a, (v) => v + 10),
  );
  assert.ok(shifted < 1 && shifted > 0.95, `shift: ${shifted}`);
  let previous = 1;
  for (const sigma of [2, 5, 10, 20, 40, 80]) {
    const rand = rng(42);
    const noisy = map(a, (v) => v + sigma * gaussian(rand));
    const s = ssim(a, noisy);
    assert.ok(s < previous, `σ=${sigma}: ${s} < ${previous}`);
    previous = s;
  }
  assert.ok(previous < 0.5, `heavy noise: ${previous}`);
});

test('ssim: a Gaussian-blurred image scores below 1, and more blur scores lower', async () => {
  const a = texture(64, 64, 5);
  const blur = async (sigma: number): Promise<RgbImage> => {
    const { data, info } = await sharp(a.data, { raw: { width: 64, height: 64, channels: 3 } })
      .blur(sigma)
      .raw()
      .toBuffer({ resolveWithObject: true });
    assert.equal(info.channels, 3);
    return { width: 64, height: 64, data: new Uint8Array(data) };
  };
  const s1 = ssim(a, await blur(0.8));
  const s2 = ssim(a, await blur(2));
  assert.ok(s1 < 1 && s1 > 0, `σ 0.8: ${s1}`);
  assert.ok(s2 < s1, `σ 2: ${s2} < ${s1}`);
  assert.ok(psnr(a, await blur(2)) < psnr(a, await blur(0.8)));
});

test('meanSsim averages per-image SSIM', () => {
  const a = randomImage(16, 16, 1);
  const b = randomImage(16, 16, 2);
  assertClose(
    meanSsim([
      [a, a],
      [a, b],
    ]),
    (1 + ssim(a, b)) / 2,
    1e-12,
    'meanSsim',
  );
  assert.throws(() => meanSsim([]), /no image pairs/);
});

test('float versions in [-1, 1] agree with the 8-bit versions', () => {
  for (const [w, h] of [
    [32, 32],
    [24, 17],
    [6, 6],
  ]) {
    const a = texture(w, h, w);
    const rand = rng(h);
    const b = map(a, (v) => v + 15 * gaussian(rand));
    const fa = toUnitRange(a);
    const fb = toUnitRange(b);
    assertClose(psnrFloat(fa, fb, w, h), psnr(a, b), 1e-6, `psnr ${w}×${h}`);
    assertClose(ssimFloat(fa, fb, w, h), ssim(a, b), 1e-6, `ssim ${w}×${h}`);
    assert.equal(psnrFloat(fa, fa, w, h), Number.POSITIVE_INFINITY);
    assertClose(ssimFloat(fa, fa, w, h), 1, 1e-12, 'identical');
  }
  // 2×2 floats differing by 10/127.5 (10 on the 0–255 scale)
  const fa = new Float32Array(12).fill(-0.2);
  const fb = fa.map((v) => v + 10 / 127.5);
  assertClose(psnrFloat(fa, fb, 2, 2), 10 * Math.log10(255 ** 2 / 100), 1e-5, 'float hand-worked');
});

test('float versions: out-of-range values count as they are unless clamp is set', () => {
  const w = 12;
  const a = toUnitRange(image(w, w, (x) => (x % 2 ? 255 : 0)));
  const overshoot = a.map((v) => v * 1.2); // ±1.2
  assert.ok(psnrFloat(a, overshoot, w, w) < 25);
  assert.equal(psnrFloat(a, overshoot, w, w, { clamp: true }), Number.POSITIVE_INFINITY);
  assert.ok(ssimFloat(a, overshoot, w, w) < 1);
  assertClose(ssimFloat(a, overshoot, w, w, { clamp: true }), 1, 1e-12, 'clamped ssim');
});

// ---- plot ----

interface Decoded {
  width: number;
  height: number;
  channels: number;
  data: Buffer;
}

async function decode(png: Buffer): Promise<Decoded> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: info.channels, data };
}

function countPixels(img: Decoded, pred: (r: number, g: number, b: number) => boolean): number {
  let n = 0;
  for (let i = 0; i < img.data.length; i += img.channels) if (pred(img.data[i], img.data[i + 1], img.data[i + 2])) n++;
  return n;
}

const isDark = (r: number, g: number, b: number) => r < 90 && g < 90 && b < 90;
// #d62728
const isRed = (r: number, g: number, b: number) => r > 170 && g < 90 && b < 90;

test('lineChartPng: a PNG of the requested size with axes and the line drawn', async () => {
  const points: Array<[number, number]> = [];
  for (let i = 0; i <= 200; i++) points.push([i * 10, 5 * Math.exp(-i / 40) + 0.5]);
  const png = await lineChartPng([{ name: 'loss', points, color: '#d62728' }], {
    title: 'Loss',
    xLabel: 'step',
    yLabel: 'loss',
    width: 640,
    height: 400,
  });
  assert.deepEqual([...png.subarray(1, 4)].map((c) => String.fromCharCode(c)).join(''), 'PNG');
  const img = await decode(png);
  assert.equal(img.width, 640);
  assert.equal(img.height, 400);
  assert.ok(countPixels(img, isDark) > 1000, 'axes and labels');
  assert.ok(countPixels(img, isRed) > 300, 'the curve');
  assert.ok(countPixels(img, (r, g, b) => r > 250 && g > 250 && b > 250) > 640 * 400 * 0.6, 'white background');
});

test('lineChartPng: NaN and Infinity points are skipped; default size; smoothing overlay', async () => {
  const points: Array<[number, number]> = [];
  for (let i = 0; i < 100; i++) points.push([i, i % 7 === 0 ? Number.NaN : 10 - i / 20 + Math.sin(i)]);
  points.push([100, Number.POSITIVE_INFINITY], [Number.NEGATIVE_INFINITY, 3], [101, Number.NEGATIVE_INFINITY]);
  const png = await lineChartPng(
    [
      { name: 'train', points, color: '#d62728' },
      { name: 'val', points: [[0, Number.NaN]] },
    ],
    { title: 'with NaN', xLabel: 'step', yLabel: 'loss', smooth: 0.8 },
  );
  const img = await decode(png);
  assert.equal(img.width, 800);
  assert.equal(img.height, 480);
  assert.ok(countPixels(img, isRed) > 200);
});

test('lineChartPng: empty input draws axes and "no data"', async () => {
  for (const series of [[], [{ name: 'all NaN', points: [[Number.NaN, Number.NaN]] as Array<[number, number]> }]]) {
    const img = await decode(
      await lineChartPng(series, { title: 'empty', xLabel: 'x', yLabel: 'y', width: 300, height: 200 }),
    );
    assert.equal(img.width, 300);
    assert.equal(img.height, 200);
    assert.ok(countPixels(img, isDark) > 300, 'axes');
    assert.equal(countPixels(img, isRed), 0);
  }
  // log axis with nothing positive
  const img = await decode(
    await lineChartPng([{ name: 'neg', points: [[1, -1]] }], { title: 't', xLabel: 'x', yLabel: 'y', logY: true }),
  );
  assert.ok(countPixels(img, isDark) > 300);
});

test('lineChartPng: a single point is drawn as a marker', async () => {
  const img = await decode(
    await lineChartPng([{ name: 'one', points: [[5, 0.25]], color: '#d62728' }], {
      title: '',
      xLabel: '',
      yLabel: '',
      width: 300,
      height: 200,
    }),
  );
  assert.ok(countPixels(img, isRed) > 10);
});

test('lineChartPng: logY plots a geometric series as a straight line over 12 decades', async () => {
  const points: Array<[number, number]> = [];
  for (let i = 0; i <= 120; i++) points.push([i, 10 ** (-6 + i / 10)]);
  points.push([121, 0], [122, -5]); // not drawable on a log axis: skipped
  const width = 640;
  const img = await decode(
    await lineChartPng([{ name: 'a', points, color: '#d62728' }], {
      title: 'log',
      xLabel: 'x',
      yLabel: 'y',
      width,
      height: 400,
      logY: true,
    }),
  );
  const meanRow = (x: number): number => {
    let sum = 0;
    let n = 0;
    for (let y = 0; y < img.height; y++) {
      const i = (y * width + x) * img.channels;
      if (isRed(img.data[i], img.data[i + 1], img.data[i + 2])) {
        sum += y;
        n++;
      }
    }
    assert.ok(n > 0, `line at column ${x}`);
    return sum / n;
  };
  const [y1, y2, y3] = [0.3, 0.5, 0.7].map((f) => meanRow(Math.round(width * f)));
  assert.ok(y1 > y2 && y2 > y3, 'rising');
  assert.ok(Math.abs(y2 - (y1 + y3) / 2) < 3, `straight: ${y1} ${y2} ${y3}`);
  // and the same data on a linear axis is far from straight
  const lin = await decode(
    await lineChartPng([{ name: 'a', points, color: '#d62728' }], {
      title: 'lin',
      xLabel: 'x',
      yLabel: 'y',
      width,
      height: 400,
    }),
  );
  assert.ok(countPixels(lin, isRed) > 100);
});

test('lineChartPng: huge and tiny linear ranges, bad options', async () => {
  for (const points of [
    [
      [0, 1e-3],
      [1, 1e12],
    ],
    [
      [0, 1e-9],
      [1, 3e-9],
    ],
    [
      [1e9, 5],
      [1e9 + 1, 5],
    ],
  ] as Array<Array<[number, number]>>) {
    const img = await decode(
      await lineChartPng([{ name: 's', points, color: '#d62728' }], { title: 't', xLabel: 'x', yLabel: 'y' }),
    );
    assert.ok(countPixels(img, isRed) > 20);
  }
  await assert.rejects(
    lineChartPng([{ name: 's', points: [], color: 'red" onload="x' }], { title: 't', xLabel: 'x', yLabel: 'y' }),
    /invalid colour/,
  );
  await assert.rejects(lineChartPng([], { title: 't', xLabel: 'x', yLabel: 'y', smooth: 1 }), /smooth/);
  await assert.rejects(lineChartPng([], { title: 't', xLabel: 'x', yLabel: 'y', width: 10 }), /size/);
});

test('lineChartPng: text with markup characters is drawn literally', async () => {
  const img = await decode(
    await lineChartPng([{ name: '<b>a & b</b>', points: [[0, 1]] }], {
      title: 'x < y & z > w',
      xLabel: '<i>',
      yLabel: 'a&b',
    }),
  );
  assert.equal(img.width, 800);
});

test('lineChartPng: the line is where the data says, inside the axes box the ticks label', async () => {
  // y = x²/100 over x = 0…100: nice domains are exactly [0, 100] on both axes. No name: no legend.
  const points: Array<[number, number]> = [];
  for (let x = 0; x <= 100; x++) points.push([x, (x * x) / 100]);
  const series = [{ name: '', points, color: '#d62728' }];
  const options = { title: 'Quadratic', xLabel: 'step', yLabel: 'loss', width: 640, height: 400 };
  const svg = lineChartSvg(series, options);
  const labels = [...svg.matchAll(/aria-label="([^"]*)"/g)].map((m) => m[1]);
  for (const l of ['Quadratic', 'step', 'loss']) assert.ok(labels.includes(l), `label ${l} in ${labels}`);
  const ticks = ['0', '20', '40', '60', '80', '100'];
  for (const t of ticks) assert.equal(labels.filter((l) => l === t).length, 2, `tick ${t} on both axes: ${labels}`);

  const img = await decode(await lineChartPng(series, options));
  const dark = (x: number, y: number) => {
    const i = (y * img.width + x) * img.channels;
    return isDark(img.data[i], img.data[i + 1], img.data[i + 2]);
  };
  // The axes box: the columns and rows with the longest runs of dark pixels.
  const colRun = (x: number) => {
    let n = 0;
    for (let y = 0; y < img.height; y++) n += dark(x, y) ? 1 : 0;
    return n;
  };
  const rowRun = (y: number) => {
    let n = 0;
    for (let x = 0; x < img.width; x++) n += dark(x, y) ? 1 : 0;
    return n;
  };
  const argmax = (from: number, to: number, f: (i: number) => number) => {
    let best = from;
    for (let i = from; i < to; i++) if (f(i) > f(best)) best = i;
    return best;
  };
  const left = argmax(0, img.width / 2, colRun);
  const right = argmax(img.width / 2, img.width, colRun) + 1;
  const top = argmax(0, img.height / 2, rowRun);
  const bottom = argmax(img.height / 2, img.height, rowRun) + 1;
  assert.ok(colRun(left) > (bottom - top) * 0.9 && rowRun(top) > (right - left) * 0.9, 'a box');
  assert.ok(left > 20 && top > 15 && right < 640 && bottom < 380, `margins for labels: ${[left, top, right, bottom]}`);
  // Text is drawn: the title above the box, tick labels below it and left of it.
  // (small antialiased text: grey pixels clearly darker than the grid count as ink)
  const inkIn = (x0: number, x1: number, y0: number, y1: number) => {
    let n = 0;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const i = (y * img.width + x) * img.channels;
        n += Math.max(img.data[i], img.data[i + 1], img.data[i + 2]) < 160 ? 1 : 0;
      }
    }
    return n;
  };
  assert.ok(inkIn(left, right, 0, top - 2) > 40, 'title');
  assert.ok(inkIn(left - 10, right, bottom + 6, img.height) > 60, 'x tick labels and x label');
  assert.ok(inkIn(0, left - 6, top, bottom) > 60, 'y tick labels and y label');

  // The red line's centre in a column, against where the data puts it.
  for (const x of [10, 30, 50, 70, 90]) {
    const col = Math.round(left + (x / 100) * (right - left));
    let sum = 0;
    let n = 0;
    for (let y = 0; y < img.height; y++) {
      const i = (y * img.width + col) * img.channels;
      if (isRed(img.data[i], img.data[i + 1], img.data[i + 2])) {
        sum += y;
        n++;
      }
    }
    assert.ok(n > 0, `line at x = ${x}`);
    const expected = bottom - ((x * x) / 100 / 100) * (bottom - top);
    assert.ok(Math.abs(sum / n - expected) < 2.5, `x = ${x}: line at row ${sum / n}, data says ${expected}`);
  }
});

test('lineChartPng: a long run (300,000 points) is drawn', async () => {
  const points: Array<[number, number]> = [];
  for (let i = 0; i < 300_000; i++) points.push([i, 2 + Math.sin(i / 5000)]);
  const img = await decode(
    await lineChartPng([{ name: 'train', points, color: '#d62728' }], {
      title: 'long',
      xLabel: 'step',
      yLabel: 'loss',
      smooth: 0.99,
    }),
  );
  assert.ok(countPixels(img, isRed) > 500);
});
