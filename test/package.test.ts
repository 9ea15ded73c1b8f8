// The package a user installs: `npm pack`, install the tarball into a fresh app (offline, from the
// npm cache that `npm ci` filled), and run the README's library snippet there, as written.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';

const root = resolve(import.meta.dirname, '..');

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 600_000 });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${output.slice(-4000)}`);
  return { output, stdout: r.stdout };
}

/** The README's "From code" snippet, verbatim. */
function readmeSnippet(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]).find((b) => b.includes('MusePipeline'));
  assert.ok(block, 'README has a ts snippet using MusePipeline');
  return block;
}

/** A fresh app depending on the tarball, with a lock file holding muse-ts's runtime dependencies. */
function writeAppWithLock(app: string, tarballName: string): void {
  const spec = `file:../${tarballName}`;
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
  const packages: Record<string, unknown> = {
    '': { name: 'app', version: '1.0.0', dependencies: { 'muse-ts': spec } },
    'node_modules/muse-ts': {
      version: pkg.version,
      resolved: spec,
      hasInstallScript: true,
      license: pkg.license,
      dependencies: pkg.dependencies,
      optionalDependencies: pkg.optionalDependencies,
      bin: pkg.bin,
      engines: pkg.engines,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages as Record<string, { dev?: boolean }>)) {
    if (path.startsWith('node_modules/') && !entry.dev) packages[path] = entry;
  }
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'app', version: '1.0.0', type: 'module', dependencies: { 'muse-ts': spec } }),
  );
  // As muse-ts's own .npmrc: nsfwjs names the whole @tensorflow/tfjs as a peer, which muse-ts does not use
  // (it depends on the tfjs parts it runs); a default install would fetch it, which this offline test cannot.
  writeFileSync(join(app, '.npmrc'), 'legacy-peer-deps=true\n');
  writeFileSync(
    join(app, 'package-lock.json'),
    JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages }),
  );
}

test('the packed tarball installs into a fresh app and runs the README snippet', { timeout: 900_000 }, () => {
  const work = mkdtempSync(join(tmpdir(), 'muse-pack-'));
  try {
    // What `npm pack` runs first (the prepare script), then the packing itself with clean JSON output.
    run('npm', ['run', 'build'], root);
    const packed = JSON.parse(
      run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], root).stdout,
    );
    const paths: string[] = packed[0].files.map((f: { path: string }) => f.path);
    for (const needed of [
      'vendor/tfjs-gradients.cjs',
      'dist/src/index.js',
      'dist/src/cli/main.js',
      'dist/web/muse.js',
    ]) {
      assert.ok(paths.includes(needed), `the tarball lacks ${needed}`);
    }
    const strays = paths.filter((p) => /^(test|bench|\.ci|scratch|src|dist\/test|dist\/bench)\//.test(p));
    assert.deepEqual(strays, [], 'the tarball carries only what users run');
    assert.ok(packed[0].size < 60e6, `tarball of ${packed[0].size} bytes`);

    const app = join(work, 'app');
    run('mkdir', ['-p', app], work);
    writeAppWithLock(app, packed[0].filename);
    // Offline: the app's lock file pins what muse-ts's own lock file pins, so `npm ci` takes every
    // package from the npm cache that installing muse-ts filled. The native build is checked elsewhere.
    run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], app, { MUSE_NATIVE: '0' });

    const snippet = readmeSnippet();
    const check = `
if (images.length !== 4) throw new Error('expected 4 images, got ' + images.length);
for (const im of images) if (im.data.length !== im.width * im.height * 3) throw new Error('bad image');
console.log('SNIPPET OK ' + images[0].width + 'x' + images[0].height);
`;
    // The snippet disposes the pipeline and stops the backend last: check before that.
    const body = snippet.replace(/muse\.dispose\(\);/, `${check}muse.dispose();`);
    writeFileSync(join(app, 'index.mjs'), body);
    const out = run(process.execPath, ['index.mjs'], app, { MUSE_NATIVE: '0' }).output;
    assert.match(out, /SNIPPET OK \d+x\d+/);
    const cli = run(join(app, 'node_modules', '.bin', 'muse'), ['--help'], app).output;
    assert.match(cli, /generate/);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
