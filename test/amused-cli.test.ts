// aMUSEd through the command line: `muse generate --model AMUSED_DIR` writes what the library makes;
// the greedy one-step call is the argmax decoding; outpaint and edit run; upscale says why not in one line.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { AmusedPipeline } from '../src/amused/pipeline.js';
import { decodeImage } from '../src/image/image.js';
import { shutdownBackend } from '../src/tensor/backend.js';
import { runMuse } from './helpers/run-cli.js';

const FOLDER = join(import.meta.dirname, 'fixtures', 'amused', 'tiny-amused-256');
const dir = mkdtempSync(join(tmpdir(), 'amused-cli-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
  shutdownBackend();
});

test('muse generate --model AMUSED --steps 1 --temperature 0 --guidance 0 writes the greedy decoding', async () => {
  const out = join(dir, 'greedy.png');
  const args = ['--model', FOLDER, '--steps', '1', '--temperature', '0', '--guidance', '0', '--seed', '0'];
  const r = await runMuse('generate', 'a photo of a cat', ...args, '-o', out);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /1 image of 256×256/);
  const written = await decodeImage(readFileSync(out), out);
  const p = await AmusedPipeline.load(FOLDER);
  try {
    const want = await p.generate('a photo of a cat', { steps: 1, temperature: 0, guidance: 0, seed: 0 });
    assert.deepEqual(written.data, want.images[0].data);
  } finally {
    p.dispose();
  }
});

test('img2img, outpaint and edit run from the command line; upscale says aMUSEd has no super-res stage', async () => {
  const base = join(dir, 'base.png');
  assert.equal((await runMuse('generate', 'a cat', '--model', FOLDER, '--steps', '2', '-o', base)).code, 0);
  const i2i = await runMuse(
    'img2img',
    base,
    'a dog',
    '--model',
    FOLDER,
    '--steps',
    '4',
    '--strength',
    '0.5',
    '-o',
    join(dir, 'i2i.png'),
  );
  assert.equal(i2i.code, 0, i2i.err);
  const outFile = join(dir, 'o.png');
  const o = await runMuse('outpaint', base, 'sky', '--model', FOLDER, '--left', '16', '--steps', '2', '-o', outFile);
  assert.equal(o.code, 0, o.err);
  assert.match(o.out, /1 image of 272×256/);
  const p = await AmusedPipeline.load(FOLDER);
  try {
    const image = await decodeImage(readFileSync(base), base);
    const want = await p.outpaint(image, { left: 16 }, 'sky', { steps: 2 });
    assert.deepEqual((await decodeImage(readFileSync(outFile), outFile)).data, want.images[0].data);
  } finally {
    p.dispose();
  }
  const e = await runMuse('edit', base, 'a dog', '--model', FOLDER, '--iterations', '3', '-o', join(dir, 'e.png'));
  assert.equal(e.code, 0, e.err);
  assert.match(e.out, /1 image of 256×256/);
  const r = await runMuse('upscale', base, 'sky', '--model', FOLDER, '-o', join(dir, 'u.png'));
  assert.notEqual(r.code, 0);
  assert.match(r.err, /is an aMUSEd model: it makes one size and has no super-res stage to upscale with/);
  assert.equal(r.err.trim().split('\n').length, 1, r.err);
});
