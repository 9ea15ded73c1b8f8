// tfjs-core 4.22 ships its gradient definitions only as extensionless ESM (dist/gradients/*.js)
// that Node cannot load, and its Node bundle registers none of them. This bundles
// register_all_gradients into one CommonJS file at build time. The copy of core code it carries
// shares the process-wide engine and kernel/gradient registries (tfjs-core keeps them on a global),
// and tfjs tensors pass `instanceof` across copies (Tensor defines Symbol.hasInstance).
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { build } from 'esbuild';

const require = createRequire(import.meta.url);
const entry = require.resolve('@tensorflow/tfjs-core/dist/register_all_gradients.js');
mkdirSync('vendor', { recursive: true });
await build({
  entryPoints: [entry],
  bundle: true,
  format: 'cjs',
  platform: 'neutral',
  mainFields: ['module', 'main'],
  outfile: 'vendor/tfjs-gradients.cjs',
  logLevel: 'warning',
  minify: true,
  legalComments: 'inline',
});
