// `npm run train:default [-- emoji|shapes]`: retrains the shipped pipelines from scratch with the
// configs recorded in models/{emoji,shapes}/TRAINING.md. Emoji: datasets → VQ tokenizer → token caches
// → base → super-res → model folder → the evaluation's emoji classifier. Shapes: dataset → compact
// tokenizer → caches → base → model folder. Every stage resumes where it stopped (run it again after
// an interruption); Ctrl-C lets the running stage save, then stops. Output: $MUSE_RUNS (default
// runs/default), the assembled pipelines in $MUSE_RUNS/model and $MUSE_RUNS/shapes/model (copy them
// over models/emoji and models/shapes to ship them). About 5 + 1.5 hours on 2 CPU cores.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const cli = join(import.meta.dirname, '..', 'dist', 'src', 'cli', 'main.js');
const runs = process.env.MUSE_RUNS ?? 'runs/default';
const which = process.argv[2] ?? 'all';
if (!['all', 'emoji', 'shapes'].includes(which)) {
  console.error(`unknown pipeline "${which}": choose emoji or shapes (default: both)`);
  process.exit(2);
}
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

function encode(title, data, tokenizer, out, ...extra) {
  muse(title, 'data', 'encode', data, '--tokenizer', tokenizer, '--out', out, ...extra);
}

function trainBase(title, cache, val, out, steps) {
  muse(
    title,
    ...['train', 'base', '--data', cache, '--val', val, '--out', out, '--config', 'small', '--steps', String(steps)],
    ...['--batch', '32', '--lr', '5e-4', '--warmup', '200', '--ema', '0.999'],
    ...['--eval-every', '500', '--checkpoint-every', '250', '--resume'],
  );
}

function trainEmoji() {
  for (const size of [32, 64]) {
    if (!existsSync(`data/emoji${size}/dataset.json`))
      muse(
        `emoji dataset at ${size} px`,
        'data',
        'build',
        'emoji',
        '--size',
        String(size),
        '--out',
        `data/emoji${size}`,
      );
  }
  muse(
    'VQ tokenizer',
    ...['tokenizer', 'train', '--data', 'data/emoji32/train', '--config', 'small-ema'],
    ...['--val', 'data/emoji32/test_emoji', '--val-count', '256', '--out', `${runs}/tokenizer`],
    ...['--steps', '3100', '--batch', '32', '--crop', '32', '--lr', '1e-3', '--warmup', '200', '--gan-weight', '0'],
    ...['--sample-every', '500', '--checkpoint-every', '250', '--eval-every', '500', '--resume'],
  );
  const tokenizer = `${runs}/tokenizer/tokenizer.safetensors`;
  const caches = [
    ['data/emoji32/train', 'train', []],
    ['data/emoji32/test_emoji', 'val', []],
    ['data/emoji64/train', 'sr-train', ['--size', '32', '--superres-size', '64']],
    ['data/emoji64/test_emoji', 'sr-val', ['--size', '32', '--superres-size', '64']],
  ];
  for (const [data, name, extra] of caches)
    encode(`token cache ${name}`, data, tokenizer, `${runs}/cache/${name}`, ...extra);
  trainBase('base transformer', `${runs}/cache/train`, `${runs}/cache/val`, `${runs}/base`, 10000);
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
    ...['--guidance', '1', '--default-size', '32', '--note', 'data=emoji train split (muse data build emoji)'],
  );
  muse(
    'emoji classifier (muse eval emoji)',
    ...['train', 'classifier', '--data', 'data/emoji32/train', '--val', 'data/emoji32/test_pair'],
    ...['--out', `${runs}/model/classifier.safetensors`],
  );
  console.error(
    `\nemoji done: ${runs}/model (try: npx muse generate "a red apple" --model ${runs}/model -o apple.png)`,
  );
}

function trainShapes() {
  const dir = `${runs}/shapes`;
  if (!existsSync('data/shapes32/dataset.json'))
    muse('shapes dataset', 'data', 'build', 'shapes', '--size', '32', '--out', 'data/shapes32');
  muse(
    'shapes tokenizer',
    ...['tokenizer', 'train', '--data', 'data/shapes32/train', '--val', 'data/shapes32/heldout', '--val-count', '256'],
    ...['--out', `${dir}/tokenizer`, '--config', 'compact', '--steps', '2000', '--batch', '32', '--crop', '32'],
    ...['--lr', '5e-4', '--warmup', '150', '--disc-start', '100000', '--sample-every', '250'],
    ...['--checkpoint-every', '250', '--eval-every', '500', '--resume'],
  );
  const tokenizer = `${dir}/tokenizer/tokenizer.safetensors`;
  for (const [data, name] of [
    ['data/shapes32/train', 'train'],
    ['data/shapes32/heldout', 'heldout'],
  ])
    encode(`shapes token cache ${name}`, data, tokenizer, `${dir}/cache/${name}`);
  trainBase('shapes base transformer', `${dir}/cache/train`, `${dir}/cache/heldout`, `${dir}/base`, 5000);
  muse(
    'shapes model folder',
    ...['assemble', '--tokenizer', tokenizer, '--base', `${dir}/base/base-ema.safetensors`, '--out', `${dir}/model`],
    ...['--note', 'data=shapes train split (muse data build shapes --size 32)'],
  );
  console.error(`\nshapes done: ${dir}/model (try: npx muse eval shapes --model ${dir}/model ...)`);
}

if (which !== 'shapes') trainEmoji();
if (which !== 'emoji') trainShapes();
