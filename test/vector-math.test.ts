// The addon's vectorised exponential (native/vector_math.h) and the kernels built on it — softmax
// rows, GELU and SiLU with their gradients — against float64, on every instruction-set variant the
// CPU runs (each in a child process with MUSE_VECTOR_ISA set, since the addon picks once per process).
//
// - e^x within 3e-7 relative over [−87.3, 88] (a truncated Taylor series or a float-only range
//   reduction is off by far more near the ends); 0 below −87.34 and for −∞; NaN for NaN; finite at 88+.
// - Lengths 1…40 exercise the row tails: a tail that skipped values, read past the end or padded
//   with zeros instead of −∞ in a softmax row fails.
// - softmax rows sum to 1, match float64 to 1e-6, and a row of −∞ stays NaN (as the unfused 0/0).
// Skipped without the addon (failing under MUSE_REQUIRE_NATIVE=1).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { type TestContext, test } from 'node:test';
import { loadNative, type NativeAddon } from '../src/tensor/native.js';
import { checkVariant } from './helpers/vector-math-checks.js';

const addon = loadNative();
const requireNative = process.env.MUSE_REQUIRE_NATIVE === '1' && process.env.MUSE_NATIVE !== '0';

function need(t: TestContext): NativeAddon | undefined {
  if (addon?.expForward) return addon;
  if (requireNative) assert.fail('native addon without expForward: rebuild it');
  t.skip(addon ? 'addon built before expForward' : 'native addon not built or off');
  return undefined;
}

test('vectorised exp, softmax, GELU and SiLU match float64 (the variant this CPU runs)', (t) => {
  const a = need(t);
  if (!a) return;
  checkVariant(a);
});

for (const variant of ['avx2', 'baseline']) {
  test(`the same checks with MUSE_VECTOR_ISA=${variant}`, (t) => {
    if (!need(t)) return;
    const script = `import { loadNative } from './src/tensor/native.ts';
import { checkVariant } from './test/helpers/vector-math-checks.ts';
console.log('variant', checkVariant(loadNative()));`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, MUSE_VECTOR_ISA: variant },
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const ran = /variant (\S+)/.exec(r.stdout)?.[1];
    // avx2 falls back to baseline on a CPU without AVX2+FMA; baseline is always baseline.
    assert.ok(ran === variant || (variant === 'avx2' && ran === 'baseline'), `ran ${ran}`);
  });
}
