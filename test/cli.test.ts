// The `muse` command as a user runs it: help on every verb, doctor, inspect, and one-line errors.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { Rng } from '../src/tensor/random.js';
import { encodeSafetensors, metadataWithConfig } from '../src/tensor/safetensors.js';
import { saveTokenizer } from '../src/tokenizer/checkpoint.js';
import { tokenizerPreset } from '../src/tokenizer/config.js';
import { initTokenizer } from '../src/tokenizer/model.js';

function muse(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('muse --help lists the verbs; no verb is a usage error', () => {
  const r = muse('--help');
  assert.equal(r.code, 0);
  assert.match(r.out, /doctor/);
  assert.match(r.out, /inspect/);
  assert.equal(muse().code, 2);
});

test('every verb has --help', () => {
  for (const verb of [
    'doctor',
    'inspect',
    'data',
    'tokenizer',
    'train',
    'generate',
    'inpaint',
    'outpaint',
    'edit',
    'upscale',
    'eval',
    'assemble',
  ]) {
    const r = muse(verb, '--help');
    assert.equal(r.code, 0, `${verb} --help exited ${r.code}: ${r.err}`);
    assert.match(r.out, new RegExp(`muse ${verb}`));
  }
});

test('an unknown verb or option is one clear line', () => {
  const r = muse('paint');
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown command "paint"/);
  const o = muse('doctor', '--colour');
  assert.equal(o.code, 1);
  assert.equal(o.err.trim().split('\n').length, 1, o.err);
});

test('muse doctor reports the backend and a passing matmul check, then exits', () => {
  const r = muse('doctor');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /backend\s+wasm/);
  assert.match(r.out, /threads\s+\d+/);
  assert.match(r.out, /native BLAS/);
  assert.match(r.out, /matmul check ok/);
  // With the addon active it names the instruction set of its vector loops, and honours the override.
  if (/native BLAS\s+active/.test(r.out)) {
    assert.match(r.out, /vector loops (avx512f|avx2|baseline) \(exp, softmax, GELU, SiLU\)/);
    const forced = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'doctor'], {
      encoding: 'utf8',
      env: { ...process.env, MUSE_VECTOR_ISA: 'baseline' },
    });
    assert.match(forced.stdout, /vector loops baseline/);
    // The attention line says which products it runs; forcing fp32 is honoured there too.
    assert.match(r.out, /attention\s+fused; (products in bf16|fp32 products)/);
    const fp32 = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'doctor'], {
      encoding: 'utf8',
      env: { ...process.env, MUSE_FP32: '1' },
    });
    assert.match(fp32.stdout, /attention\s+fused; fp32 products/);
  }
});

test('muse doctor rejects absurd thread counts and unknown backends', () => {
  assert.match(muse('doctor', '--threads', '0').err, /threads/);
  const b = muse('doctor', '--backend', 'quantum');
  assert.equal(b.code, 1);
  assert.match(b.err, /unknown backend "quantum"/);
  assert.doesNotMatch(b.err, /at .*\.ts:\d+/, 'no stack trace');
});

test('muse inspect shows metadata and tensors, and one line for a bad file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'muse-cli-'));
  const good = join(dir, 'm.safetensors');
  writeFileSync(
    good,
    encodeSafetensors(
      { 'head.weight': { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) } },
      { dtype: 'F16', metadata: metadataWithConfig({ width: 3 }) },
    ),
  );
  const r = muse('inspect', good);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /head\.weight/);
  assert.match(r.out, /F16/);
  assert.match(r.out, /"width": 3/);
  const bad = join(dir, 'bad.safetensors');
  writeFileSync(bad, Buffer.from([1, 2, 3]));
  const b = muse('inspect', bad);
  assert.equal(b.code, 1);
  assert.equal(b.err.trim().split('\n').length, 1, b.err);
  assert.match(b.err, /bad\.safetensors/);
  assert.equal(muse('inspect', join(dir, 'missing.safetensors')).code, 1);
});

test('data build, preview and encode, then tokenizer encode, decode and reconstruct, end to end', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'muse-cli-'));
  const data = join(dir, 'emoji');
  const b = muse('data', 'build', 'emoji', '--size', '32', '--limit', '10', '--out', data);
  assert.equal(b.code, 0, b.err);
  assert.match(b.out, /train/);
  const p = muse('data', 'preview', data, '-n', '8', '-o', join(dir, 'preview.png'));
  assert.equal(p.code, 0, p.err);
  assert.ok(existsSync(join(dir, 'preview.png')));
  // A seeded (untrained) tiny tokenizer is enough to exercise the commands.
  await initBackend();
  const tok = join(dir, 'tok.safetensors');
  await saveTokenizer(tok, initTokenizer(tokenizerPreset('tiny'), new Rng(0)), tokenizerPreset('tiny'));
  const e = muse(
    'data',
    'encode',
    data,
    '--tokenizer',
    tok,
    '--out',
    join(dir, 'cache'),
    '--superres-size',
    '64',
    '--shard-size',
    '8',
  );
  assert.equal(e.code, 0, e.err);
  assert.match(e.out, /images, \d+ \(image, caption\) pairs in \d+ shards/);
  assert.equal(JSON.parse(readFileSync(join(dir, 'cache', 'cache.json'), 'utf8')).complete, true);
  const image = join(data, 'train', readdirSync(join(data, 'train')).find((f) => f.endsWith('.png')) ?? '');
  const enc = muse('tokenizer', 'encode', image, '--model', tok, '-o', join(dir, 'tokens.json'));
  assert.equal(enc.code, 0, enc.err);
  const tokens = JSON.parse(readFileSync(join(dir, 'tokens.json'), 'utf8'));
  assert.deepEqual([tokens.height, tokens.width, tokens.tokens.length], [8, 8, 8]);
  const dec = muse('tokenizer', 'decode', join(dir, 'tokens.json'), '--model', tok, '-o', join(dir, 'back.png'));
  assert.equal(dec.code, 0, dec.err);
  const rec = muse('tokenizer', 'reconstruct', image, '--model', tok, '-o', join(dir, 'rec.png'));
  assert.equal(rec.code, 0, rec.err);
  const bad = muse('tokenizer', 'encode', join(dir, 'nope.png'), '--model', tok);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /no such file/);
  shutdownBackend();
});

test('the installed `muse` bin is built and executable (the README runs it with npx)', () => {
  const bin = 'dist/src/cli/main.js';
  assert.ok(existsSync(bin), `${bin} is missing: npm ci runs the build (prepare)`);
  assert.ok((statSync(bin).mode & 0o111) !== 0, `${bin} is not executable`);
  assert.match(readFileSync(bin, 'utf8').split('\n')[0], /^#!\/usr\/bin\/env node/);
  const r = spawnSync(bin, ['--help'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Usage: muse/);
});

test('Ctrl-C (SIGINT) or SIGTERM during training saves a checkpoint and exits cleanly', async () => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'muse-cli-'));
    assert.equal(
      muse('data', 'build', 'shapes', '--size', '16', '--train', '12', '--heldout', '2', '--out', join(dir, 'shapes'))
        .code,
      0,
    );
    const run = join(dir, 'run');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'tokenizer',
        'train',
        '--data',
        join(dir, 'shapes', 'train'),
        '--out',
        run,
        '--config',
        'tiny',
        '--crop',
        '16',
        '--batch',
        '2',
        '--steps',
        '100000',
        '--sample-every',
        '0',
        '--eval-every',
        '0',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    const started = new Promise<void>((resolve) =>
      child.stderr.on('data', (d) => {
        err += d;
        if (/tokenizer \d+\/100000/.test(err)) resolve();
      }),
    );
    await started;
    child.kill(signal);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 0, err);
    assert.match(err, new RegExp(`${signal}: saving a checkpoint`));
    assert.match(out, /stopped at step \d+/);
    assert.ok(existsSync(join(run, 'tokenizer.safetensors')) && existsSync(join(run, 'checkpoint.json')));
    if (signal === 'SIGTERM') {
      // A time budget: the resumed run ends (saving) after one step of its --max-minutes 0.
      const saved = Number(/stopped at step (\d+)/.exec(out)?.[1]);
      const data = join(dir, 'shapes', 'train');
      const flags = ['--config', 'tiny', '--crop', '16', '--batch', '2', '--steps', '100000', '--sample-every', '0'];
      const r = muse('tokenizer', 'train', '--data', data, '--out', run, ...flags, '--resume', '--max-minutes', '0');
      assert.equal(r.code, 0, r.err);
      assert.match(r.err, new RegExp(`resuming ${run} at step ${saved}`));
      assert.match(r.out, new RegExp(`stopped at step ${saved + 1}; weights in `));
      assert.equal(JSON.parse(readFileSync(join(run, 'checkpoint.json'), 'utf8')).step, saved + 1);
    }
  }
});

test("the README's main job: `muse generate` with the shipped model writes an image", async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'muse-main-')), 'apple.png');
  const r = muse('generate', 'a red apple', '-o', out);
  assert.equal(r.code, 0, r.err);
  const meta = await sharp(readFileSync(out)).metadata();
  assert.ok(meta.width === 32 || meta.width === 64, `a ${meta.width} px image`);
  assert.match(r.out, /apple\.png: 1 image/);
});
