// `npm run train:default`: retrains the shipped emoji pipeline from scratch with the configs recorded
// in models/emoji/TRAINING.md: datasets → VQ tokenizer → token caches → base → super-res → model
// folder. Every stage resumes where it stopped (run it again after an interruption); Ctrl-C lets the
// running stage save, then stops. Output: $MUSE_RUNS (default runs/default), the assembled pipeline
// in $MUSE_RUNS/model (copy it over models/emoji to ship it). About 4–5 hours on 2 CPU cores.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const cli = join(import.meta.dirname, '..', 'dist', 'src', 'cli', 'main.js');
const runs = process.env.MUSE_RUNS ?? 'runs/default';
let interrupted = false;
process.on('SIGINT', () => {
  interrupted = true; // the running stage gets the same Ctrl-C, saves and exits
});

function muse(title, ...args) {
  console.error(`\n== ${title}: muse ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [cli, ...args], { stdio: 'inherit' });
  if (interrupted) {
    console.error(`\nstopped during "${title}"; run \`npm run train:default\` again to resume`);
    process.exit(130);
  }
  if (r.status !== 0) {
    console.error(`\n"${title}" failed (exit ${r.status ?? r.signal}); fix the cause and run again to resume`);
    process.exit(r.status ?? 1);
  }
}

for (const size of [32, 64]) {
  if (!existsSync(`data/emoji${size}/dataset.json`))
    muse(`emoji dataset at ${size} px`, 'data', 'build', 'emoji', '--size', String(size), '--out', `data/emoji${size}`);
}
muse(
  'VQ tokenizer',
  ...['tokenizer', 'train', '--data', 'data/emoji32/train', '--data', 'data/emoji64/train'],
  ...['--val', 'data/emoji32/test_emoji', '--val-count', '256', '--out', `${runs}/tokenizer`, '--config', 'small'],
  ...['--steps', '2500', '--batch', '32', '--crop', '32', '--lr', '3e-4', '--warmup', '200'],
  ...['--disc-start', '1700', '--gan-weight', '0.1', '--sample-every', '250', '--checkpoint-every', '250'],
  ...['--eval-every', '500', '--resume'],
);
const tokenizer = `${runs}/tokenizer/tokenizer.safetensors`;
const caches = [
  ['data/emoji32/train', 'train', []],
  ['data/emoji32/test_emoji', 'val', []],
  ['data/emoji64/train', 'sr-train', ['--size', '32', '--superres-size', '64']],
  ['data/emoji64/test_emoji', 'sr-val', ['--size', '32', '--superres-size', '64']],
];
for (const [data, name, extra] of caches)
  muse(
    `token cache ${name}`,
    'data',
    'encode',
    data,
    '--tokenizer',
    tokenizer,
    '--out',
    `${runs}/cache/${name}`,
    ...extra,
  );
muse(
  'base transformer',
  ...['train', 'base', '--data', `${runs}/cache/train`, '--val', `${runs}/cache/val`, '--out', `${runs}/base`],
  ...['--config', 'small', '--steps', '10000', '--batch', '32', '--lr', '5e-4', '--warmup', '200', '--ema', '0.999'],
  ...['--eval-every', '500', '--checkpoint-every', '250', '--resume'],
);
muse(
  'super-res transformer',
  ...[
    'train',
    'superres',
    '--data',
    `${runs}/cache/sr-train`,
    '--val',
    `${runs}/cache/sr-val`,
    '--out',
    `${runs}/superres`,
  ],
  ...['--config', 'superres-small', '--steps', '4000', '--batch', '16', '--lr', '5e-4', '--warmup', '200'],
  ...['--ema', '0.999', '--lowres-noise', '0.1', '--eval-every', '500', '--checkpoint-every', '250', '--resume'],
);
muse(
  'model folder',
  ...['assemble', '--tokenizer', tokenizer, '--base', `${runs}/base/base-ema.safetensors`],
  ...['--superres', `${runs}/superres/superres-ema.safetensors`, '--out', `${runs}/model`],
  ...['--note', 'data=emoji train split (muse data build emoji)'],
);
console.error(`\ndone: ${runs}/model (try: npx muse generate "a red apple" --model ${runs}/model -o apple.png)`);
