// The checkpoint folder on its own (src/train/checkpoint-folder.ts): many saves killed at random
// moments, each leaving one whole checkpoint; the manifest checks; the run folder's rules.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { MANIFEST, RunFolder } from '../src/train/checkpoint-folder.js';

/** The step a part written by the child holds (every word is it). */
function stepIn(path: string): number {
  const words = new Uint32Array(new Uint8Array(readFileSync(path)).buffer);
  assert.equal(words.length, 65536, `${path} is whole`);
  assert.ok(
    words.every((w) => w === words[0]),
    `${path} holds one step`,
  );
  return words[0];
}

test('checkpoints saved in a loop and SIGKILLed at random moments: always one whole checkpoint, all parts at its step', async () => {
  const out = mkdtempSync(join(tmpdir(), 'muse-ckpt-loop-'));
  let last = 0;
  const delays: number[] = [];
  for (let i = 0; i < 15; i++) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/checkpoint-folder-child.ts', out], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const delay = Math.round(Math.random() * 150);
    delays.push(delay);
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on('data', (d) => {
      stdout += d;
      if (timer === undefined && /resumed \d+/.test(stdout)) timer = setTimeout(() => child.kill('SIGKILL'), delay);
    });
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, s) => resolve(s)));
    clearTimeout(timer);
    assert.equal(signal, 'SIGKILL', `the child died by itself:\n${stderr}`);
    const resumed = Number(/resumed (\d+)/.exec(stdout)?.[1]);
    assert.equal(resumed, last, `kill ${i} resumed at the step the last run saved (${stdout.trim()})`);
    const saved = [...stdout.matchAll(/saved (\d+)/g)].map((m) => Number(m[1]));
    // The checkpoint there now: the last one reported saved, or the one whose commit the kill cut short after.
    const run = await RunFolder.open(out, { resume: true, kind: 'test', publish: ['weights.bin'] });
    const c = run.checkpoint;
    const expected = saved.at(-1) ?? last;
    if (expected === 0) assert.ok(c === undefined || c.step === 1);
    else {
      assert.ok(c, `a checkpoint after kill ${i}`);
      assert.ok(c.step === expected || c.step === expected + 1, `step ${c.step} after ${expected} was saved`);
    }
    if (c) {
      for (const part of ['weights.bin', 'ema.bin', 'state.bin'])
        assert.equal(stepIn(c.path(part)), c.step, `${part} after kill ${i} (delays ${delays.join(', ')} ms)`);
      assert.equal(stepIn(join(out, 'weights.bin')), c.step, 'the published weights are the checkpoint`s');
    }
    last = c?.step ?? 0;
    const left = readdirSync(out).filter((f) => f.includes('tmp') || /^checkpoint-\d+-/.test(f));
    assert.ok(left.length <= 1, `one checkpoint folder and no temporary files left after open: ${left}`);
  }
  assert.ok(last > 0, `some checkpoint was saved (delays ${delays.join(', ')} ms)`);
});

test('a run folder: non-empty refused, resume verifies the manifest, overwrite keeps files it does not own', async () => {
  const out = mkdtempSync(join(tmpdir(), 'muse-ckpt-unit-'));
  const part = (text: string) => (path: string) => writeFile(path, text);
  const run = await RunFolder.open(out, { resume: false, kind: 'muse-base', publish: ['w'], runFiles: ['curve.png'] });
  assert.equal(run.checkpoint, undefined);
  await run.save(3, { w: part('w3'), s: part('s3') });
  await run.save(4, { w: part('w4'), s: part('s4') });
  assert.equal(readFileSync(join(out, 'w'), 'utf8'), 'w4');
  assert.equal(readdirSync(out).filter((f) => f.startsWith('checkpoint-')).length, 1, 'the previous folder is gone');
  writeFileSync(join(out, 'curve.png'), 'png');
  writeFileSync(join(out, 'notes.txt'), 'mine');
  await assert.rejects(RunFolder.open(out, { resume: false }), /is not empty: it holds a run at step 4/);
  const resumed = await RunFolder.open(out, { resume: true });
  assert.equal(resumed.checkpoint?.step, 4);
  assert.equal(readFileSync(resumed.checkpoint.path('s'), 'utf8'), 's4');
  assert.throws(() => resumed.checkpoint?.path('ema'), /the checkpoint of step 4 in .* has no ema \(it has w, s\)/);
  await assert.rejects(
    RunFolder.open(out, { resume: true, kind: 'muse-tokenizer' }),
    /a muse-base run, not muse-tokenizer/,
  );
  // A part that changed after the save, or went missing, is refused by name.
  const manifest = JSON.parse(readFileSync(join(out, MANIFEST), 'utf8'));
  writeFileSync(join(out, manifest.folder, 's'), 's5');
  await assert.rejects(RunFolder.open(out, { resume: true }), /s differs from what the checkpoint of step 4 recorded/);
  writeFileSync(join(out, manifest.folder, 's'), 'longer');
  await assert.rejects(RunFolder.open(out, { resume: true }), /has 6 bytes, but the checkpoint of step 4 recorded 2/);
  // Overwrite removes the run's own files and checkpoint, nothing else.
  const fresh = await RunFolder.open(out, { resume: false, overwrite: true, publish: ['w'], runFiles: ['curve.png'] });
  assert.equal(fresh.checkpoint, undefined);
  assert.deepEqual(readdirSync(out), ['notes.txt']);
  assert.ok(!existsSync(join(out, MANIFEST)));
});
