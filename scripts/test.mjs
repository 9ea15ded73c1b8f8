// The whole test suite: type check, lint, then every test file on the native BLAS path when the addon
// is built, and every test file again with MUSE_NATIVE=0 (the pure-wasm path every browser and every
// machine without OpenBLAS gets). Output streams as the tests run; one closing line counts them all.
//
//   npm test                      everything
//   npm test -- test/x.test.ts    only these files (no type check or lint)
//   MUSE_NATIVE=0 npm test        the pure-wasm path only
//   MUSE_REQUIRE_NATIVE=1         (CI, where OpenBLAS is installed) the native pass may skip nothing
//   MUSE_FP32=0 npm test          the native pass with bf16 matmuls where the CPU has bf16 units; by
//                                 default the suite runs fp32 (MUSE_FP32=1), since fixtures and
//                                 reproducibility checks are written to fp32 tolerances
//                                 (test/native-bf16.test.ts tests the bf16 path in either case)
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

const files = readdirSync('test')
  .filter((f) => f.endsWith('.test.ts'))
  .sort()
  .map((f) => `test/${f}`);
const only = process.argv.slice(2);
const selected = only.length ? only : files;

/** A pass silent for this long has hung (a test file whose process never exits): it is stopped and fails. */
const SILENCE_LIMIT_MS = 10 * 60 * 1000;

/** Runs a command, echoing its output as it comes; resolves with the exit code and the output. */
function runStreaming(label, command, args, env = {}) {
  console.log(`\n== ${label} ==`);
  return new Promise((resolve) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let watchdog;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        console.log(`\n== ${label}: no output for ${SILENCE_LIMIT_MS / 60000} minutes; stopped as hung ==`);
        child.kill('SIGKILL');
      }, SILENCE_LIMIT_MS);
    };
    arm();
    child.stdout.on('data', arm);
    child.stderr.on('data', arm);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      process.stdout.write(chunk);
    });
    child.stderr.on('data', (chunk) => process.stderr.write(chunk));
    child.on('close', (code, signal) => {
      clearTimeout(watchdog);
      resolve({ code: code ?? (signal ? 1 : 0), out });
    });
  });
}

async function runTests(label, testFiles, env) {
  const started = Date.now();
  const { code, out } = await runStreaming(
    label,
    process.execPath,
    ['--import', 'tsx', '--test', '--test-reporter=tap', ...testFiles],
    env,
  );
  const count = (name) => Number(out.match(new RegExp(`^# ${name} (\\d+)$`, 'm'))?.[1] ?? 0);
  // A run that crashed before reporting counts as one failure.
  const crashed = code !== 0 && count('fail') === 0 ? 1 : 0;
  const result = { pass: count('pass'), fail: count('fail') + crashed, skipped: count('skipped') };
  console.log(
    `== ${label}: ${result.pass} passed, ${result.fail} failed, ${result.skipped} skipped in ${((Date.now() - started) / 1000).toFixed(0)} s ==`,
  );
  return result;
}

async function check(label, args) {
  const { code } = await runStreaming(label, process.execPath, args);
  return { pass: code === 0 ? 1 : 0, fail: code === 0 ? 0 : 1, skipped: 0 };
}

const results = [];
if (!only.length) {
  results.push(await check('type check (tsc --noEmit)', ['node_modules/typescript/bin/tsc', '--noEmit', '-p', '.']));
  results.push(await check('lint and format (biome check)', ['node_modules/@biomejs/biome/bin/biome', 'check', '.']));
}
const nativeBuilt = existsSync('native/build/Release/muse_native.node');
const nativePass = nativeBuilt && process.env.MUSE_NATIVE !== '0';
if (nativePass) {
  const fp32 = process.env.MUSE_FP32 === undefined ? { MUSE_FP32: '1' } : {};
  const native = await runTests('all tests, native BLAS path', selected, fp32);
  if (process.env.MUSE_REQUIRE_NATIVE === '1' && native.skipped > 0) {
    console.log(`== MUSE_REQUIRE_NATIVE=1: ${native.skipped} skipped test(s) on the native path count as failures ==`);
    native.fail += native.skipped;
  }
  results.push(native);
}
results.push(await runTests('all tests, pure-wasm path (MUSE_NATIVE=0)', selected, { MUSE_NATIVE: '0' }));

const total = results.reduce(
  (a, r) => ({ pass: a.pass + r.pass, fail: a.fail + r.fail, skipped: a.skipped + r.skipped }),
  { pass: 0, fail: 0, skipped: 0 },
);
console.log(`\n${total.pass} passed, ${total.fail} failed, ${total.skipped} skipped`);
process.exitCode = total.fail > 0 ? 1 : 0;
