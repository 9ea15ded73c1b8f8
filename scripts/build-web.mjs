// The browser build: src/browser.ts bundled by esbuild (platform=browser, ESM) into dist/web/muse.js,
// with the tfjs wasm binaries beside it. A module with a `.browser.ts` twin is replaced by it (Node's
// file system and threads → fetch, canvas and the wasm package's own loader; package.json "browser"
// maps the same files for other bundlers). The build FAILS when anything reaches a Node built-in
// (node:fs, fs, ...) or a Node-only package: that is the check that the core is clean.
//
//   node scripts/build-web.mjs [--out dist/web] [--no-minify]
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const out = resolve(args.includes('--out') ? args[args.indexOf('--out') + 1] : join(root, 'dist/web'));
const minify = !args.includes('--no-minify');
// --entry FILE: bundle another entry with the same rules (the test uses it to see a node: import fail the build).
const entry = args.includes('--entry') ? resolve(args[args.indexOf('--entry') + 1]) : undefined;

/** Packages that only run under Node (native code, servers): reaching one is a build error. */
const NODE_ONLY = ['sharp', 'webgpu', 'fastify', '@fastify/multipart', 'bullmq', 'ioredis', 'nsfwjs'];
const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

const browserTwins = {
  name: 'browser-twins',
  setup(build) {
    build.onResolve({ filter: /.*/ }, (a) => {
      if (!a.importer || a.importer.includes(`${'/'}node_modules${'/'}`)) return undefined;
      const bare = a.path.split('/')[0];
      const pkg = a.path.startsWith('@') ? a.path.split('/').slice(0, 2).join('/') : bare;
      if (builtins.has(a.path) || builtins.has(bare) || a.path.startsWith('node:'))
        return {
          errors: [
            {
              text: `the browser build reached the Node built-in "${a.path}" (from ${a.importer.slice(root.length + 1)})`,
            },
          ],
        };
      if (NODE_ONLY.includes(pkg))
        return {
          errors: [
            {
              text: `the browser build reached the Node-only package "${a.path}" (from ${a.importer.slice(root.length + 1)})`,
            },
          ],
        };
      if (!a.path.startsWith('.')) return undefined;
      const target = resolve(a.resolveDir, a.path).replace(/\.js$/, '');
      const twin = `${target}.browser.ts`;
      if (existsSync(twin)) return { path: twin };
      return undefined;
    });
  },
};

const result = await esbuild
  .build({
    entryPoints: [entry ?? join(root, 'src', 'browser.ts')],
    outfile: join(out, 'muse.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify,
    sourcemap: false,
    metafile: true,
    legalComments: 'none',
    logLevel: 'silent',
    plugins: [browserTwins],
  })
  .catch((err) => {
    for (const e of err.errors ?? [err])
      console.error(`build:web: ${e.text ?? e.message}${e.location ? ` (${e.location.file}:${e.location.line})` : ''}`);
    process.exit(1);
  });

// Nothing from Node may be left in the bundle, not even as an external import.
for (const [file, info] of Object.entries(result.metafile.inputs)) {
  for (const imp of info.imports) {
    if (imp.external || builtins.has(imp.path)) {
      console.error(`build:web: ${file} imports ${imp.path}, which a browser cannot load`);
      process.exit(1);
    }
  }
}

const require = createRequire(import.meta.url);
const wasmDir = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
mkdirSync(out, { recursive: true });
const wasm = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'];
for (const f of wasm) copyFileSync(join(wasmDir, 'dist', f), join(out, f));
writeFileSync(
  join(out, 'meta.json'),
  `${JSON.stringify({ inputs: Object.keys(result.metafile.inputs).length, wasm }, null, 2)}\n`,
);
const bytes = result.metafile.outputs[Object.keys(result.metafile.outputs)[0]].bytes;
console.log(
  `build:web: ${join(out, 'muse.js')} (${(bytes / 1e6).toFixed(2)} MB, ${Object.keys(result.metafile.inputs).length} modules) and ${wasm.length} wasm files`,
);
