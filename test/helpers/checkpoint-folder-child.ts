// Saves checkpoints of three parts in a loop for test/checkpoint-folder.test.ts to kill: resumes the
// run in OUT, then saves steps k+1, k+2, ... for ever, each part 256 KiB of its step number.
// Usage: node --import tsx test/helpers/checkpoint-folder-child.ts OUT
import { writeFile } from 'node:fs/promises';
import { RunFolder } from '../../src/train/checkpoint-folder.js';

const [out] = process.argv.slice(2);
const run = await RunFolder.open(out, { resume: true, kind: 'test', publish: ['weights.bin'] });
let step = run.checkpoint?.step ?? 0;
process.stdout.write(`resumed ${step}\n`);
const part = (step: number) => (path: string) => writeFile(path, new Uint32Array(65536).fill(step));
for (;;) {
  step++;
  await run.save(step, { 'weights.bin': part(step), 'ema.bin': part(step), 'state.bin': part(step) });
  process.stdout.write(`saved ${step}\n`);
}
