// A training process for test/checkpoint.test.ts to kill at random moments: resumes the run in
// OUT (if any) from the token cache CACHE with the options in JSON, checkpointing after every step,
// and prints "step N" as each step ends (just before its checkpoint is saved).
// Usage: node --import tsx test/helpers/checkpoint-child.ts CACHE OUT OPTIONS_JSON
import { initBackend } from '../../src/tensor/backend.js';
import { loadTokenData } from '../../src/transformer/token-data.js';
import { type BaseTrainOptions, trainBase } from '../../src/transformer/trainer.js';

const [cache, out, json] = process.argv.slice(2);
await initBackend();
const data = await loadTokenData(cache);
const options = JSON.parse(json) as Omit<BaseTrainOptions, 'data' | 'out'>;
await trainBase({
  ...options,
  data,
  out,
  resume: true,
  checkpointEvery: 1,
  onStep: (step) => process.stdout.write(`step ${step}\n`),
});
process.stdout.write('done\n');
