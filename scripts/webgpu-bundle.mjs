// Builds a self-contained WebGPU check for a machine with a GPU but no Node, npm or network:
//   out/gpu/check.mjs        bench/webgpu-check.ts bundled with its dependencies (esbuild)
//   out/gpu/node_modules/    webgpu (linux-x64 Dawn only) and a stub for sharp (not used there)
//   out/gpu/text.json        the prompt's text embeddings (the text encoder stays here)
//   out/gpunode/node.xz      this Node binary, compressed; out/gpunode/lib/libvulkan.so.1
// Run there: xz -dk out/gpunode/node.xz && LD_LIBRARY_PATH=out/gpunode/lib out/gpunode/node out/gpu/check.mjs
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const gpu = 'out/gpu';
const web = join(gpu, 'node_modules/webgpu');
mkdirSync(join(web, 'dist/linux-x64'), { recursive: true });
for (const f of ['index.js', 'package.json']) copyFileSync(join('node_modules/webgpu', f), join(web, f));
copyFileSync('node_modules/webgpu/dist/linux-x64/dawn.node', join(web, 'dist/linux-x64/dawn.node'));
mkdirSync(join(gpu, 'node_modules/sharp'), { recursive: true });
writeFileSync(join(gpu, 'node_modules/sharp/package.json'), '{"name":"sharp","type":"module","main":"index.js"}');
writeFileSync(
  join(gpu, 'node_modules/sharp/index.js'),
  'export default function sharp() { throw new Error("no sharp here"); }\n',
);
execFileSync(
  'npx',
  [
    'esbuild',
    'bench/webgpu-check.ts',
    '--bundle',
    '--platform=node',
    '--format=esm',
    '--target=node20',
    `--outfile=${gpu}/check.mjs`,
    '--external:webgpu',
    '--external:sharp',
    '--ignore-annotations', // keeps side-effect imports such as @tensorflow/tfjs-backend-cpu
    "--banner:js=import { createRequire as __cr } from 'module'; const require = __cr(import.meta.url);",
  ],
  { stdio: 'inherit' },
);
execFileSync(
  'npx',
  [
    'tsx',
    '-e',
    `
  import { writeFileSync } from 'node:fs';
  import { initBackend, shutdownBackend } from './src/tensor/backend.js';
  import { UseLiteEncoder } from './src/text/use-lite.js';
  await initBackend();
  const r = await (await UseLiteEncoder.load()).encode(['a red apple']);
  writeFileSync('${gpu}/text.json', JSON.stringify({ embeddings: Array.from(r.embeddings), lengths: Array.from(r.lengths) }));
  shutdownBackend();
`,
  ],
  { stdio: 'inherit' },
);
mkdirSync('out/gpunode/lib', { recursive: true });
if (!existsSync('out/gpunode/node.xz')) {
  copyFileSync(process.execPath, 'out/gpunode/node');
  execFileSync('xz', ['-T2', '-6', 'out/gpunode/node']);
}
for (const dir of ['/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/usr/lib']) {
  if (existsSync(join(dir, 'libvulkan.so.1'))) {
    copyFileSync(join(dir, 'libvulkan.so.1'), 'out/gpunode/lib/libvulkan.so.1');
    break;
  }
}
console.log('carry: out/gpu, out/gpunode, vendor');
