// The CLI contract and its limits, run in-process through main() (no tsx start-up per case): backend
// options on every verb, --version, option suggestions, checks made before any model is loaded,
// output paths checked before the compute, and errors as one line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { readImageBytes } from '../src/cli/decoding-options.js';
import { imageGrid } from '../src/image/grid.js';
import { MusePipeline } from '../src/pipeline/pipeline.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { runMuse } from './helpers/run-cli.js';
import { writeTinyPipeline } from './helpers/tiny-pipeline.js';

const muse = runMuse;
const muse2 = (...args: string[]) => muse(...args);
const oneLine = (s: string) => assert.equal(s.trim().split('\n').length, 1, s);

test('an error in user code after initBackend prints its message, not the minified tfjs-wasm source', () => {
  const dir = mkdtempSync(join(tmpdir(), 'muse-uncaught-'));
  const script = join(dir, 'user.mts');
  writeFileSync(
    script,
    `import { initBackend } from ${JSON.stringify(join(process.cwd(), 'src/tensor/backend.ts'))};\n` +
      `await initBackend({ threads: 1 });\n` +
      `setTimeout(() => { throw new Error('my own mistake'); }, 0);\n`,
  );
  const r = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 60_000 });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /my own mistake/);
  assert.ok(r.stderr.length < 3000, `stderr is ${r.stderr.length} characters:\n${r.stderr.slice(0, 500)}`);
  assert.doesNotMatch(r.stderr, /tfjs-backend-wasm/);
});

test('muse --version prints the package version', async () => {
  const r = await muse('--version');
  assert.equal(r.code, 0);
  assert.equal(r.out.trim(), JSON.parse(readFileSync('package.json', 'utf8')).version);
});

test('a mistyped option gets the closest known one, in a balanced one-line message', async () => {
  const r = await muse('generate', 'an apple', '--sed', '3');
  assert.equal(r.code, 1);
  oneLine(r.err);
  assert.match(r.err, /unknown option --sed \(did you mean --seed\?\)/);
  assert.equal((r.err.match(/'/g) ?? []).length % 2, 0, r.err);
  assert.match((await muse('edit', 'a.png', 'x', '--iteratons', '3')).err, /did you mean --iterations\?/);
});

test('every computing verb takes --backend, --threads and --no-native, checked before any loading', async () => {
  const b = await muse('generate', 'an apple', '--backend', 'quantum');
  assert.equal(b.code, 1);
  assert.match(b.err, /unknown backend "quantum"/);
  assert.match((await muse('outpaint', 'a.png', 'x', '--threads', '0', '--left', '8')).err, /threads/);
  const t0 = performance.now();
  const s = await muse('generate', 'an apple', '--threads', '1', '--no-native', '--size', '48');
  assert.equal(s.code, 1);
  oneLine(s.err);
  assert.match(s.err, /--size 48: .* makes 32 or 64 px images/);
  assert.ok(performance.now() - t0 < 2000, 'refused before the weights load');
  assert.match((await muse('generate', '--help')).out, /--backend/);
});

test('seeds outside 0..2^32−1 are refused', async () => {
  for (const seed of ['4294967296', '-1']) {
    const r = await muse('generate', 'an apple', `--seed=${seed}`);
    assert.equal(r.code, 1);
    assert.match(r.err, /--seed must be an integer from 0 to 4294967295/);
  }
});

test('help: edit lists its options; generate does not claim the super-res size is the default', async () => {
  const e = await muse('edit', '--help');
  assert.match(e.out, /^ {2}--iterations N/m);
  assert.match(e.out, /^ {2}--fraction F/m);
  const g = await muse('generate', '--help');
  assert.doesNotMatch(g.out, /the default when the model has a super-res stage/);
  assert.match(g.out, /defaultSize/);
});

test('a bad -o or --frames is refused in one line before any compute', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'muse-out-'));
  const missing = await muse('generate', 'an apple', '-o', join(dir, 'no', 'such', 'a.png'));
  assert.equal(missing.code, 1);
  oneLine(missing.err);
  assert.match(missing.err, /does not exist/);
  const folder = await muse('generate', 'an apple', '-o', dir);
  assert.equal(folder.code, 1);
  assert.match(folder.err, /is a folder/);
  const file = join(dir, 'frames.png');
  writeFileSync(file, 'x');
  const frames = await muse('generate', 'an apple', '-o', join(dir, 'a.png'), '--frames', file);
  assert.equal(frames.code, 1);
  oneLine(frames.err);
  assert.match(frames.err, /--frames .* is a file/);
  assert.equal(readFileSync(file, 'utf8'), 'x');
});

test('data encode --out under /proc is one line, not an endless mkdir', { timeout: 20_000 }, async () => {
  const r = await muse(
    'data',
    'encode',
    'data/none',
    '--tokenizer',
    'models/emoji/tokenizer.safetensors',
    '--out',
    '/proc/muse-x/cache',
  );
  assert.equal(r.code, 1);
  oneLine(r.err);
  assert.match(r.err, /cannot make the folder/);
});

test('an input image over the pixel limit is refused from its header, before decoding', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'muse-big-'));
  const big = join(dir, 'big.png');
  await sharp({ create: { width: 5000, height: 4000, channels: 3, background: '#ffffff' } })
    .png()
    .toFile(big);
  await assert.rejects(readImageBytes(big, 'image'), /5000×4000 px is more than the 16\.777216 megapixels/);
});

test('grid captions keep a third line and leave no blank band under one-line captions', async () => {
  const image = { width: 8, height: 8, data: new Uint8Array(8 * 8 * 3).fill(200) };
  const height = async (caption: string) =>
    (await sharp(await imageGrid([{ image, caption }], { cell: 64 })).metadata()).height as number;
  const one = await height('apple');
  const three = await height('a long caption that surely wraps onto three lines here');
  const none = (await sharp(await imageGrid([{ image }], { cell: 64 })).metadata()).height as number;
  assert.ok(one - none <= 16, `a one-line caption band is ${one - none} px`);
  assert.ok(three - none >= 30, `a three-line caption band is ${three - none} px`);
});

test('pipeline limits: batches split by memory give the same images; outpaint sides default to 0; huge canvases refused; unread words named', async () => {
  await initBackend();
  const folder = join(mkdtempSync(join(tmpdir(), 'muse-limits-')), 'model');
  await writeTinyPipeline(folder, 16);
  const muse = await MusePipeline.load(folder);
  try {
    const whole = await muse.generate(['a red apple', 'a cat'], { n: 3, seed: 7 });
    const chunked = await muse.generate(['a red apple', 'a cat'], { n: 3, seed: 7, maxBatch: 2 });
    assert.deepEqual(chunked.tokens, whole.tokens);
    const second = await muse.generate('a red apple', { seed: 8 });
    assert.deepEqual(second.tokens, whole.tokens.subarray(16, 32), 'image i is the image of seed + i');
    assert.ok(muse.batchLimit(16) >= 1);
    const image = { width: 16, height: 16, data: new Uint8Array(16 * 16 * 3).fill(128) };
    const wide = await muse.outpaint(image, { left: 4, right: 4 }, 'a red apple');
    assert.deepEqual([wide.images[0].width, wide.images[0].height], [24, 16]);
    await assert.rejects(muse.outpaint(image, { right: 4096, bottom: 4096 }, 'x'), /megapixels/);
    const unread = await muse.generate('ÄÖÜ', {});
    assert.match(unread.notes.join('\n'), /cannot read "ÄÖÜ".*unconditional/);
    assert.match(muse.promptWarnings(['a 🍎 apple']).join(), /"🍎"/);
  } finally {
    muse.dispose();
  }
  // --scale reports the saved size.
  const out = join(folder, 'big.png');
  const r = await muse2('generate', 'an apple', '--model', folder, '--scale', '4', '-o', out);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /1 image of 16×16 \(saved 4× as 64×64\)/);
  assert.ok(existsSync(out));
  shutdownBackend();
});
