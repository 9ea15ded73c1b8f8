// MusePipeline.load starts the default tensor backend itself: a library user who never calls
// initBackend gets the wasm backend, not tfjs's slow cpu fallback. (A fresh process: this process's
// backend, once started, is the only one it can have.)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

test('MusePipeline.load without initBackend starts the default (wasm) backend', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/helpers/load-without-init.ts', 'models/shapes'], {
    encoding: 'utf8',
    env: { ...process.env, MUSE_BACKEND: undefined },
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}');
  assert.equal(out.before, null, 'no backend was started before load');
  assert.equal(out.backend, 'wasm');
  assert.equal(out.info, 'wasm');
});
