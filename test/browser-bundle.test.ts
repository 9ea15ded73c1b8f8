// The browser build and client-side generation. npm run build:web's script bundles src/browser.ts for
// browsers (and refuses a bundle that reaches a Node built-in); `muse export-web` writes a static site;
// served by a plain static file server, the page generates in Debian's chromium (playwright-core, no
// download) with no muse server, and the image is the SAME, pixel for pixel, as MusePipeline's in Node
// for the same prompt, seed and steps (measured: identical with threaded and single-threaded wasm in
// the browser, and pure-wasm or native-BLAS Node). `muse serve` serves the same files with the
// cross-origin isolation headers, and FetchSource keeps the untrusted-input limits on fetched bytes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, normalize, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { type Browser, chromium } from 'playwright-core';
import { exportWeb } from '../src/cli/export-web.js';
import { decodeImage } from '../src/image/image.js';
import { encodePngPure, encodePngStored } from '../src/image/png.js';
import { MusePipeline } from '../src/pipeline/pipeline.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { setMatmulPolicy } from '../src/tensor/native.js';
import { MuseError } from '../src/util/errors.js';
import { FetchSource } from '../src/util/model-source.js';
import { startTestServer } from './helpers/server.js';

const root = resolve(import.meta.dirname, '..');
const CHROMIUM = '/usr/bin/chromium';
const skip = !existsSync(CHROMIUM) && !process.env.CI ? `${CHROMIUM} is missing (apt-get install -y chromium)` : false;
const EMOJI = join(root, 'models', 'emoji');

let dir: string;
let bundle: string;
let browser: Browser | undefined;
let emoji: MusePipeline;
const servers: Server[] = [];

/** A plain static file server over `folder` (what any static host does), with or without COOP/COEP. */
async function staticServer(folder: string, isolated: boolean): Promise<string> {
  const types: Record<string, string> = {
    html: 'text/html',
    js: 'text/javascript',
    css: 'text/css',
    json: 'application/json',
    wasm: 'application/wasm',
  };
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (path === '/chunked') {
      // No content-length: the size limit must hold while streaming.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let i = 0; i < 8; i++) res.write(Buffer.alloc(1024, i));
      res.end();
      return;
    }
    const file = normalize(join(folder, path.endsWith('/') ? `${path}index.html` : path));
    if (!file.startsWith(folder) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      'content-type': types[file.split('.').pop() ?? ''] ?? 'application/octet-stream',
      'content-length': statSync(file).size,
      ...(isolated
        ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' }
        : {}),
    });
    createReadStream(file).pipe(res);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'muse-browser-'));
  bundle = join(dir, 'bundle');
  const build = spawnSync(process.execPath, [join(root, 'scripts', 'build-web.mjs'), '--out', bundle], {
    encoding: 'utf8',
  });
  assert.equal(build.status, 0, `build:web failed:\n${build.stdout}${build.stderr}`);
  // The browser computes in fp32; so does the Node reference (bf16 matmul units would round differently).
  setMatmulPolicy({ precision: 'fp32' });
  await initBackend();
  emoji = await MusePipeline.load(EMOJI);
  if (!skip)
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
    });
});

after(async () => {
  await browser?.close();
  for (const s of servers) s.close();
  emoji?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
  shutdownBackend();
});

test('build:web bundles the core for browsers, and fails when a node: import is reached', () => {
  assert.ok(statSync(join(bundle, 'muse.js')).size > 100_000);
  for (const f of ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'])
    assert.ok(existsSync(join(bundle, f)), f);
  // An entry that reaches the Node file-source (node:fs through util/untrusted.ts) must not build.
  const bad = join(dir, 'bad-entry.ts');
  spawnSync('sh', [
    '-c',
    `printf '%s' "import { FolderSource } from '${join(root, 'src/util/folder-source.ts')}'; console.log(FolderSource);" > ${bad}`,
  ]);
  const r = spawnSync(
    process.execPath,
    [join(root, 'scripts', 'build-web.mjs'), '--entry', bad, '--out', join(dir, 'bad')],
    {
      encoding: 'utf8',
    },
  );
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /reached the Node built-in "node:(fs|path)"/);
});

test("the pure PNG encoder (the bundle's) writes PNGs sharp reads back exactly", async () => {
  const img = { width: 37, height: 5, data: Uint8Array.from({ length: 37 * 5 * 3 }, (_, i) => (i * 37) % 256) };
  for (const bytes of [encodePngStored(img), await encodePngPure(img)]) {
    const back = await decodeImage(bytes, 'png');
    assert.equal(back.width, 37);
    assert.deepEqual(back.data, img.data);
  }
});

test('static export: the page generates in Chromium without a server, the same image as Node', {
  skip,
  timeout: 600_000,
}, async () => {
  const site = join(dir, 'site');
  const { files } = exportWeb(site, [EMOJI], { bundleDir: bundle });
  assert.ok(files >= 20);
  for (const f of [
    'index.html',
    'app.js',
    'muse.js',
    'models/index.json',
    'models/emoji/pipeline.json',
    'text-encoder/model.json',
    '_headers',
  ])
    assert.ok(existsSync(join(site, f)), f);
  const url = await staticServer(site, true);
  const page = await (browser as Browser).newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await page.goto(url);
    await page.waitForFunction(() => /in-browser/.test(document.getElementById('health')?.textContent ?? ''));
    assert.equal(await page.evaluate(() => crossOriginIsolated), true);
    assert.equal(await page.isChecked('#in-browser'), true);
    // Through the UI: prompt, fixed seed, one image, 4 steps; the default size (64 px, both stages).
    await page.fill('#prompt', 'a red apple');
    await page.check('#seed-fixed');
    await page.fill('#seed', '7');
    await page.fill('#count', '1');
    await page.fill('#steps', '4');
    await page.click('#generate');
    await page.waitForSelector('#gallery li img', { timeout: 300_000 });
    const status = (await page.textContent('#status')) ?? '';
    assert.match(status, /Done in this browser/);
    const src = (await page.getAttribute('#gallery li img', 'src')) ?? '';
    const browserImage = await decodeImage(Buffer.from(src.split(',')[1], 'base64'), 'browser image');
    const node = await emoji.generate('a red apple', { n: 1, seed: 7, steps: 4 });
    assert.equal(browserImage.width, node.images[0].width);
    assert.deepEqual(browserImage.data, node.images[0].data, 'the browser image differs from Node’s');
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('the page outpaints (chosen sides), edits without a mask and upscales, in the browser', {
  skip,
  timeout: 600_000,
}, async () => {
  const url = await staticServer(join(dir, 'site'), true);
  const page = await (browser as Browser).newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await page.goto(url);
    await page.waitForFunction(() => /in-browser/.test(document.getElementById('health')?.textContent ?? ''));
    await page.fill('#prompt', 'a green frog');
    await page.selectOption('#size', '32');
    await page.fill('#count', '1');
    await page.fill('#steps', '4');
    await page.click('#generate');
    await page.waitForFunction(() => document.querySelectorAll('#gallery li').length === 1, undefined, {
      timeout: 300_000,
    });
    // "Edit" on the gallery image puts it in the editor; every verb then adds one image to the gallery.
    await page.click('#gallery li button:has-text("Edit")');
    await page.waitForFunction(() => !(document.getElementById('outpaint') as HTMLButtonElement).disabled);
    const sizes: string[] = [];
    for (const [verb, count] of [
      ['outpaint', 2],
      ['edit', 3],
      ['upscale', 4],
    ] as const) {
      if (verb === 'outpaint') {
        await page.check('#side-left');
        await page.uncheck('#side-right');
        await page.fill('#extend-px', '16');
      }
      if (verb === 'edit') await page.fill('#edit-iterations', '5');
      await page.click(`#${verb}`);
      await page.waitForFunction((n) => document.querySelectorAll('#gallery li').length === n, count, {
        timeout: 300_000,
      });
      assert.match((await page.textContent('#status')) ?? '', /Done in this browser/, verb);
      sizes.push(
        await page.evaluate(() => {
          const img = document.querySelector('#gallery li img') as HTMLImageElement;
          return `${img.naturalWidth}x${img.naturalHeight}`;
        }),
      );
    }
    // Outpainted 16 px on the left only; edited at the same size; upscaled to the super-res size.
    assert.deepEqual(sizes, ['48x32', '32x32', '64x64']);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('static export without COOP/COEP (single-threaded wasm): still the same image as Node', {
  skip,
  timeout: 600_000,
}, async () => {
  const url = await staticServer(join(dir, 'site'), false);
  const page = await (browser as Browser).newPage();
  try {
    await page.goto(url);
    await page.waitForFunction(() => /in-browser/.test(document.getElementById('health')?.textContent ?? ''));
    assert.equal(await page.evaluate(() => crossOriginIsolated), false);
    const b64 = await page.evaluate(async () => {
      const w = window as unknown as {
        museGenerateInBrowser(r: object, onStep: () => void): Promise<{ images: Array<{ b64_json: string }> }>;
      };
      const r = await w.museGenerateInBrowser(
        { verb: 'generate', model: 'emoji', prompt: 'a smiling sun', options: { n: 2, seed: 3, steps: 5, size: 32 } },
        () => {},
      );
      return r.images.map((im) => im.b64_json);
    });
    const node = await emoji.generate('a smiling sun', { n: 2, seed: 3, steps: 5, size: 32 });
    for (let i = 0; i < 2; i++) {
      const img = await decodeImage(Buffer.from(b64[i], 'base64'), 'browser image');
      assert.deepEqual(img.data, node.images[i].data, `image ${i} differs from Node’s`);
    }
  } finally {
    await page.close();
  }
});

test('muse serve: client files with cross-origin isolation; FetchSource keeps the size and path limits', {
  timeout: 300_000,
}, async () => {
  const server = await startTestServer({}, emoji, 'emoji', { bundleDir: bundle });
  try {
    const index = await fetch(`${server.url}/models/index.json`);
    assert.equal(index.headers.get('cross-origin-embedder-policy'), 'require-corp');
    assert.equal(index.headers.get('cross-origin-opener-policy'), 'same-origin');
    const body = (await index.json()) as { models: Array<{ name: string; sizes: number[]; verbs: string[] }> };
    assert.deepEqual(body.models[0].name, 'emoji');
    assert.deepEqual(body.models[0].sizes, [32, 64]);
    assert.ok(body.models[0].verbs.includes('upscale'));
    const js = await fetch(`${server.url}/muse.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /javascript/);
    await js.arrayBuffer();
    // Only the files laid out for the client are served: nothing else of the model folder or disk.
    for (const path of [
      '/models/emoji/TRAINING.md',
      '/models/emoji/%2e%2e/%2e%2e/package.json',
      '/models/../package.json',
    ])
      assert.notEqual((await fetch(`${server.url}${path}`)).status, 200, path);

    const source = new FetchSource(`${server.url}/models/emoji/`);
    const spec = new TextDecoder().decode(await source.read('pipeline.json', 1 << 20));
    assert.match(spec, /muse-ts-pipeline/);
    // A declared size over the limit is refused before the body is read...
    await assert.rejects(
      source.read('base.safetensors', 1000, 'a test file'),
      /too large for a test file \(limit 1,000 bytes\)/,
    );
    // ...and names that would leave the folder never make a request.
    for (const name of ['../pipeline.json', '/etc/passwd', 'http://example.com/x', 'a/./b', ''])
      await assert.rejects(source.read(name, 1000), MuseError, name);
    await assert.rejects(source.read('missing.safetensors', 1000), /no such file/);
    // MusePipeline.load through fetch gives the same model as from the folder.
    const viaFetch = await MusePipeline.load(source, {});
    const a = await viaFetch.generate('a cat', { seed: 1, steps: 3, size: 32 });
    const b = await emoji.generate('a cat', { seed: 1, steps: 3, size: 32 });
    assert.deepEqual(a.tokens, b.tokens);
    viaFetch.dispose();
  } finally {
    await server.close();
  }
  // A body without content-length that grows past the limit is cut off while streaming.
  const url = await staticServer(join(dir, 'site'), false);
  await assert.rejects(new FetchSource(url).read('chunked', 4096, 'a test file'), /over [\d,]+ bytes is too large/);
});
