// The WebGPU backend in a real browser: Debian's chromium (playwright-core, no download) with
// --enable-unsafe-webgpu offers a SwiftShader (software) adapter, slow but exact enough to check
// correctness. The VQ decoder's ops and the whole decoder of a tiny tokenizer, run on webgpu in the
// page, must give the tfjs cpu backend's numbers, and VqTokenizer's decode/encode the same images and
// tokens. (Decoded images used to come out all grey on webgpu: the pixels were read with dataSync,
// which tfjs-webgpu does through canvases, and in this Chromium that read is all zeros.)
// The shipped emoji model also generates end to end on WebGPU in the page (32 px, 4 steps: ~1 minute on
// SwiftShader and 2 shared cores, most of it compiling shaders); its image is Node's decoding of its
// tokens, and most tokens are Node's (not all: float sums in another order flip near-ties in sampling).
// Skipped only when chromium is missing or the page gets no WebGPU adapter.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, normalize, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { type Browser, chromium } from 'playwright-core';
import { exportWeb } from '../src/cli/export-web.js';
import { MusePipeline } from '../src/pipeline/pipeline.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { setMatmulPolicy } from '../src/tensor/native.js';

const root = resolve(import.meta.dirname, '..');
const CHROMIUM = '/usr/bin/chromium';
const skip = !existsSync(CHROMIUM) && !process.env.CI ? `${CHROMIUM} is missing (apt-get install -y chromium)` : false;
const EMOJI = join(root, 'models', 'emoji');

/** Largest |a − b| relative to max(1, max |b|): the tolerance below is on this. */
const TOLERANCE = 1e-4;

let dir: string;
let url: string;
let server: Server | undefined;
let browser: Browser | undefined;

function buildWeb(...args: string[]): void {
  const build = spawnSync(process.execPath, [join(root, 'scripts/build-web.mjs'), ...args], { encoding: 'utf8' });
  assert.equal(build.status, 0, `build failed:\n${build.stdout}${build.stderr}`);
}

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'muse-webgpu-'));
  // /decoder/: the tokenizer's parts; /site/: the static export with the emoji model.
  buildWeb('--entry', join(root, 'test/helpers/webgpu-decoder-entry.ts'), '--out', join(dir, 'decoder'));
  buildWeb('--out', join(dir, 'bundle'));
  exportWeb(join(dir, 'site'), [EMOJI], { bundleDir: join(dir, 'bundle') });
  writeFileSync(
    join(dir, 'decoder', 'index.html'),
    '<!doctype html><script type="module">import * as m from "./muse.js"; window.m = m; window.loaded = true;</script>',
  );
  server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = normalize(join(dir, path.endsWith('/') ? `${path}index.html` : path));
    if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    const types: Record<string, string> = { js: 'text/javascript', html: 'text/html', json: 'application/json' };
    res.writeHead(200, { 'content-type': types[file.split('.').pop() ?? ''] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update'],
  });
});

after(async () => {
  await browser?.close();
  server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  shutdownBackend();
});

interface BackendRun {
  decodeMs: number;
  images: number[][];
  encoded: number[];
  ops: Record<string, number[]>;
}

function maxRelativeDiff(a: number[], b: number[]): number {
  assert.equal(a.length, b.length);
  let diff = 0;
  let scale = 1;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

test('the VQ decoder on WebGPU gives the cpu backend’s output (tiny tokenizer, in Chromium)', {
  skip,
  timeout: 300_000,
}, async (t) => {
  const page = await (browser as Browser).newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await page.goto(`${url}decoder/`);
    await page.waitForFunction(() => (window as unknown as { loaded?: boolean }).loaded);
    const r = await page.evaluate(async () => {
      // biome-ignore lint/suspicious/noExplicitAny: the test bundle's exports, untyped in the page.
      const m = (window as any).m;
      // biome-ignore lint/suspicious/noExplicitAny: navigator.gpu is not in this project's DOM types.
      const adapter = await (navigator as any).gpu?.requestAdapter();
      if (!adapter) return { adapter: undefined };
      const { tf, Rng, VqTokenizer } = m;
      await m.initBackend({ backend: 'webgpu' });
      // The tiny preset: 16–32 channels, 4 groups, f = 4; a 4×4 grid decodes to 16×16 px.
      const config = m.tokenizerPreset('tiny');
      const start = m.initTokenizer(config, new Rng(5));
      const weights: Record<string, { shape: number[]; data: Float32Array }> = {};
      for (const [k, v] of Object.entries(start) as Array<[string, { shape: number[]; data(): Promise<Float32Array> }]>)
        weights[k] = { shape: v.shape, data: await v.data() };
      const rng = new Rng(6);
      const tokens = Int32Array.from({ length: 2 * 4 * 4 }, () => rng.int(config.codebookSize));
      const x = rng.normals(2 * 8 * 8 * 16, 2);
      const gamma = rng.uniforms(16, 0.5, 1.5);
      const beta = rng.normals(16, 0.1);
      const kernel = rng.normals(3 * 3 * 16 * 8, 0.2);
      // A loop, not a helper function: tsx would wrap a named function in __name, unknown in the page.
      const runs: BackendRun[] = [];
      for (const backend of ['webgpu', 'cpu']) {
        await tf.setBackend(backend);
        const p = Object.fromEntries(Object.entries(weights).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]));
        const tok = new VqTokenizer(p, config, 'tiny');
        const t0 = performance.now();
        const images = await tok.decode(tokens, 4, 4);
        const decodeMs = performance.now() - t0;
        const encoded = await tok.encode(images);
        const xt = tf.tensor4d(x, [2, 8, 8, 16]);
        const ops = {
          groupNorm: m.groupNorm(xt, tf.tensor1d(gamma), tf.tensor1d(beta), 4),
          silu: m.silu(xt),
          conv2d: tf.conv2d(xt, tf.tensor4d(kernel, [3, 3, 16, 8]), 1, 'same'),
          resizeNearestNeighbor: tf.image.resizeNearestNeighbor(xt, [16, 16]),
          // The decoder's raw output (unclipped), from the same codes.
          decoder: m.decodeLatents(p, config, m.codesToLatents(p, tf.tensor3d(tokens, [2, 4, 4], 'int32'))),
        };
        const out: Record<string, number[]> = {};
        for (const [k, v] of Object.entries(ops) as Array<[string, { data(): Promise<Float32Array> }]>)
          out[k] = Array.from(await v.data());
        runs.push({
          decodeMs,
          images: images.map((im: { data: Uint8Array }) => Array.from(im.data)),
          encoded: Array.from(encoded as Int32Array),
          ops: out,
        });
      }
      const info = adapter.info ?? {};
      return { adapter: `${info.vendor ?? '?'} ${info.architecture ?? ''}`.trim(), webgpu: runs[0], cpu: runs[1] };
    });
    if (!r.adapter) {
      t.skip('this Chromium offers no WebGPU adapter');
      return;
    }
    const { webgpu, cpu } = r as { webgpu: BackendRun; cpu: BackendRun };
    t.diagnostic(`adapter: ${r.adapter}; tokenizer decode of 2 grids 4×4: webgpu ${webgpu.decodeMs.toFixed(0)} ms`);
    for (const op of Object.keys(cpu.ops)) {
      const d = maxRelativeDiff(webgpu.ops[op], cpu.ops[op]);
      t.diagnostic(`${op}: max |webgpu − cpu| / max(1, max |cpu|) = ${d.toExponential(1)}`);
      assert.ok(d <= TOLERANCE, `${op} on webgpu differs from cpu by ${d} (tolerance ${TOLERANCE})`);
    }
    // The decoded images (what the pipeline returns): within one level of 255, and far from uniform grey.
    for (let i = 0; i < cpu.images.length; i++) {
      const a = webgpu.images[i];
      const b = cpu.images[i];
      assert.ok(
        a.every((v, j) => Math.abs(v - b[j]) <= 1),
        `decoded image ${i} on webgpu differs from cpu by more than 1 level`,
      );
      assert.ok(new Set(b).size > 20, `the tiny decoder's image ${i} should not be flat`);
    }
    assert.deepEqual(webgpu.encoded, cpu.encoded, 'encode on webgpu chose other codes than on cpu');
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('the emoji model generates end to end on WebGPU in Chromium: Node decodes its tokens to the same image', {
  skip,
  timeout: 600_000,
}, async (t) => {
  const page = await (browser as Browser).newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const options = { n: 1, seed: 7, steps: 4, size: 32 };
  // tsx compiles the function below with esbuild's keepNames: it names arrow functions with __name.
  await page.addInitScript({ content: 'window.__name = (f) => f;' });
  try {
    await page.goto(`${url}site/`);
    const r = await page.evaluate(async (o) => {
      // biome-ignore lint/suspicious/noExplicitAny: navigator.gpu is not in this project's DOM types.
      if (!(await (navigator as any).gpu?.requestAdapter())) return undefined;
      const lib = await import(`${location.href}muse.js`);
      await lib.initBackend({ backend: 'webgpu' });
      const backend = lib.backendInfo().backend;
      const pipeline = await lib.MusePipeline.load('models/emoji/');
      const t0 = performance.now();
      let preview: number[] = [];
      const out = await pipeline.generate('a red apple', {
        ...o,
        onStep: async (step: number, steps: number, images: () => Promise<Array<{ data: Uint8Array }>>) => {
          if (step === steps) preview = Array.from((await images())[0].data);
        },
      });
      return {
        backend,
        ms: performance.now() - t0,
        tokens: Array.from(out.tokens as Int32Array),
        image: Array.from((out.images[0] as { data: Uint8Array }).data),
        preview,
      };
    }, options);
    if (!r) {
      t.skip('this Chromium offers no WebGPU adapter');
      return;
    }
    assert.equal(r.backend, 'webgpu');
    setMatmulPolicy({ precision: 'fp32' });
    await initBackend();
    const emoji = await MusePipeline.load(EMOJI);
    try {
      const node = await emoji.generate('a red apple', options);
      const same = r.tokens.filter((v, i) => v === node.tokens[i]).length / r.tokens.length;
      t.diagnostic(`webgpu generation (32 px, 4 steps, in the page): ${(r.ms / 1000).toFixed(1)} s`);
      t.diagnostic(`tokens equal to Node's: ${(100 * same).toFixed(1)}%`);
      // The decoder at the model's size: Node's decoding of the page's tokens, within one level.
      const [expected] = await emoji.tokenizer.decode(Int32Array.from(r.tokens), 8, 8);
      assert.ok(
        r.image.every((v, i) => Math.abs(v - expected.data[i]) <= 1),
        'the webgpu image is not the decoding of its tokens',
      );
      assert.deepEqual(r.preview, r.image, 'the last progress preview is the final image');
      assert.ok(same >= 0.75, `only ${(100 * same).toFixed(1)}% of the tokens are Node's`);
    } finally {
      emoji.dispose();
    }
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});
