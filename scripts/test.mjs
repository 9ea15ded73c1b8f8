// The whole test suite: every test file once (native BLAS path when built), then the kernel tests
// again with MUSE_NATIVE=0 so the pure-wasm kernels are checked too. Prints one closing line.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

const files = readdirSync('test')
  .filter((f) => f.endsWith('.test.ts'))
  .map((f) => `test/${f}`);
const only = process.argv.slice(2);
const selected = only.length ? only : files;

function runTests(label, testFiles, env) {
  console.log(`\n== ${label} ==`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', ...testFiles], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  const count = (name) => Number(r.stdout.match(new RegExp(`^# ${name} (\\d+)$`, 'm'))?.[1] ?? 0);
  // A run that crashed before reporting counts as one failure.
  const crashed = r.status !== 0 && count('fail') === 0 ? 1 : 0;
  return { pass: count('pass'), fail: count('fail') + crashed, skipped: count('skipped') };
}

function lint() {
  console.log('\n== lint and format (biome check) ==');
  const r = spawnSync(process.execPath, ['node_modules/@biomejs/biome/bin/biome', 'check', '.'], { encoding: 'utf8' });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  return { pass: r.status === 0 ? 1 : 0, fail: r.status === 0 ? 0 : 1, skipped: 0 };
}

const results = [...(only.length ? [] : [lint()]), runTests('all tests', selected, {})];
const nativeBuilt = existsSync('native/build/Release/muse_native.node');
const wasmPathFiles = ['test/kernels.test.ts', 'test/fused-ops.test.ts', 'test/fused-ops-conv.test.ts'].filter((f) =>
  selected.includes(f),
);
if (nativeBuilt && process.env.MUSE_NATIVE !== '0' && wasmPathFiles.length) {
  results.push(runTests('kernel tests on the pure-wasm path (MUSE_NATIVE=0)', wasmPathFiles, { MUSE_NATIVE: '0' }));
}
const total = results.reduce(
  (a, r) => ({ pass: a.pass + r.pass, fail: a.fail + r.fail, skipped: a.skipped + r.skipped }),
  { pass: 0, fail: 0, skipped: 0 },
);
console.log(`\n${total.pass} passed, ${total.fail} failed, ${total.skipped} skipped`);
process.exitCode = total.fail > 0 ? 1 : 0;
