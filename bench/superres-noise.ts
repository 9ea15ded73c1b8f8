// Does corrupting low-res tokens while training the super-res stage help (issue 7)? At inference the
// low-res tokens come from the base model, not the data. Two runs from the same seed, one with
// --lowres-noise 0 and one with the given fraction, then the held-out masked-token loss with clean
// low-res tokens and with up to 20% / 40% of them replaced by random codes (standing in for the base
// model's mistakes). Usage: node --import tsx bench/superres-noise.ts SR_TRAIN_CACHE SR_VAL_CACHE [steps] [noises]
// (noises: comma-separated training fractions, default 0,0.1; one per process runs the arms in parallel).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { loadTransformer } from '../src/transformer/checkpoint.js';
import { transformerConfig } from '../src/transformer/config.js';
import { loadTokenData } from '../src/transformer/token-data.js';
import { evaluateBase, trainBase } from '../src/transformer/trainer.js';

const [trainDir, valDir, stepsArg = '400', noiseArg = '0,0.1'] = process.argv.slice(2);
await initBackend();
const data = await loadTokenData(trainDir);
const validation = await loadTokenData(valDir);
const g = data.manifest.grids.find((x) => x.name === 'superres');
const low = data.manifest.grids.find((x) => x.name === 'base');
if (!g || !low) throw new Error('caches need "base" and "superres" grids');
const config = transformerConfig('superres-small', {
  codebookSize: g.codebookSize,
  grid: g.grid,
  textDim: data.manifest.textEncoder.dim,
  textTokens: data.manifest.textEncoder.maxTokens,
  lowres: { codebookSize: low.codebookSize, grid: low.grid },
});
const rows: string[] = [];
for (const noise of noiseArg.split(',').map(Number)) {
  const out = mkdtempSync(join(tmpdir(), `sr-noise-${noise}-`));
  const t0 = performance.now();
  await trainBase({
    out,
    config,
    data,
    grid: 'superres',
    lowGrid: 'base',
    lowresNoise: noise,
    steps: Number(stepsArg),
    batch: 16,
    lr: 5e-4,
    warmup: 100,
    weightDecay: 0.045,
    labelSmoothing: 0.1,
    textDropout: 0.1,
    ema: 0,
    seed: 0,
    evalEvery: 0,
    checkpointEvery: 0,
    resume: false,
    quiet: true,
  });
  const { params } = await loadTransformer(join(out, 'superres.safetensors'));
  const cells = [0, 0.2, 0.4].map((eval_) => {
    const e = evaluateBase(params, config, validation, 'superres', 512, 32, 'base', eval_);
    return `${e.loss.toFixed(3)} / ${(100 * e.accuracy).toFixed(1)}%`;
  });
  rows.push(`| ${noise} | ${cells.join(' | ')} | ${((performance.now() - t0) / 60000).toFixed(1)} min |`);
  console.log(rows.at(-1));
}
console.log(`\n${stepsArg} steps of batch 16 each; held-out loss / masked-token accuracy (512 pairs, fixed masks):\n`);
console.log('| training noise (up to) | clean low-res | up to 20% corrupted | up to 40% corrupted | time |');
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(r);
shutdownBackend();
