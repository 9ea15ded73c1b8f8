// The `muse` command as a user runs it: help on every verb, doctor, inspect, and one-line errors.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { encodeSafetensors, metadataWithConfig } from '../src/tensor/safetensors.js';

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
  for (const verb of ['doctor', 'inspect']) {
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
