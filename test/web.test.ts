// The web UI in a real browser: playwright-core drives Debian's chromium (/usr/bin/chromium; nothing is
// downloaded) against `muse serve` in-process over the tiny test pipeline. Type a prompt, generate,
// watch previews arrive and the images land in the gallery; upload an image, paint a mask, inpaint,
// and check through the API that every pixel outside the mask is unchanged.
// Skipped (with the reason) only when chromium is missing outside CI; in CI (CI set) it must run.
// MUSE_SCREENSHOTS=DIR saves screenshots there (docs/screenshots was made with MUSE_WEB_MODEL=models/emoji).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type Page } from 'playwright-core';
import { decodeImage, encodePng } from '../src/image/image.js';
import { MusePipeline } from '../src/pipeline/pipeline.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { removeTinyFolder, startTestServer, type TestServer } from './helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = !existsSync(CHROMIUM) && !process.env.CI ? `${CHROMIUM} is missing (apt-get install -y chromium)` : false;
const shots = process.env.MUSE_SCREENSHOTS;
const modelFolder = process.env.MUSE_WEB_MODEL;

let server: TestServer;
let dir: string;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'muse-web-'));
  let pipeline: MusePipeline | undefined;
  if (modelFolder) {
    await initBackend();
    pipeline = await MusePipeline.load(modelFolder);
  }
  server = await startTestServer({}, pipeline, modelFolder ? 'emoji' : 'tiny');
});

after(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  removeTinyFolder();
  if (!skip) shutdownBackend();
});

async function shot(page: Page, name: string): Promise<void> {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

test('web UI: generate with live previews into the gallery; paint a mask and inpaint', {
  skip,
  timeout: 300_000,
}, async () => {
  const context = await chromium.launchPersistentContext(join(dir, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    viewport: { width: 1280, height: 1000 },
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(server.url);
    await page.waitForFunction(() => (document.getElementById('model') as HTMLSelectElement).options.length > 0);
    assert.match((await page.textContent('#health')) ?? '', /ok/);

    // Count the preview images the page shows while decoding.
    await page.evaluate(() => {
      const w = window as unknown as { previewsSeen: number };
      w.previewsSeen = 0;
      new MutationObserver((records) => {
        for (const r of records) w.previewsSeen += [...r.addedNodes].filter((n) => n.nodeName === 'IMG').length;
      }).observe(document.getElementById('previews') as HTMLElement, { childList: true });
    });

    // Generate: prompt, count 2, enough steps that the event stream is open while it decodes.
    await page.fill('#prompt', 'a smiling sun');
    await page.fill('#count', '2');
    await page.fill('#steps', modelFolder ? '12' : '40');
    await page.click('#seed-fixed');
    await page.fill('#seed', '5');
    await page.click('#generate');
    await page.waitForFunction(() => (window as unknown as { previewsSeen: number }).previewsSeen > 0, null, {
      timeout: 120_000,
    });
    await shot(page, 'generating');
    await page.waitForFunction(() => document.querySelectorAll('#gallery li').length === 2, null, { timeout: 120_000 });
    assert.match((await page.textContent('#status')) ?? '', /Done: 2 images/);
    const seeds = await page.$$eval('#gallery li img', (imgs) => imgs.map((i) => (i as HTMLImageElement).alt));
    assert.ok(seeds.some((s) => s.includes('seed 5')) && seeds.some((s) => s.includes('seed 6')), seeds.join());
    const loaded = await page.$$eval('#gallery li img', (imgs) =>
      imgs.every((i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth > 0),
    );
    assert.ok(loaded, 'gallery images decode');
    await shot(page, 'gallery');

    // "Reuse seed" fills the seed back in.
    await page.click('#gallery li:last-child button:has-text("Reuse seed")');
    assert.equal(await page.inputValue('#seed'), '5');
    assert.equal(await page.inputValue('#count'), '1');

    // Inpaint: upload an image of the model's size, paint a stroke over its left half, press Inpaint.
    const size = (await (await fetch(`${server.url}/api/models`)).json()).models[0].defaultSize as number;
    const pixels = new Uint8Array(size * size * 3);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) pixels.set([(x * 255) / size, (y * 255) / size, 128], (y * size + x) * 3);
    const upload = join(dir, 'upload.png');
    writeFileSync(upload, await encodePng({ width: size, height: size, data: pixels }));
    await page.setInputFiles('#upload', upload);
    await page.waitForFunction(() => (document.getElementById('editor-empty') as HTMLElement).hidden);
    await page.fill('#prompt', 'a blue hat');
    const box = await page.locator('#mask-canvas').boundingBox();
    assert.ok(box);
    await page.mouse.move(box.x + box.width * 0.15, box.y + box.height * 0.3);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.35, box.y + box.height * 0.5, { steps: 8 });
    await page.mouse.move(box.x + box.width * 0.2, box.y + box.height * 0.7, { steps: 8 });
    await page.mouse.up();
    // A keyboard stroke too: focus the mask, move, paint.
    await page.focus('#mask-canvas');
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('Space');
    await shot(page, 'inpainting');
    const posted = page.waitForRequest((r) => r.url().endsWith('/api/jobs') && r.method() === 'POST');
    const answered = page.waitForResponse((r) => r.url().endsWith('/api/jobs') && r.request().method() === 'POST');
    await page.click('#inpaint');
    const request = (await posted).postDataJSON() as { verb: string; image: string; mask: string };
    const { id } = (await (await answered).json()) as { id: string };
    assert.equal(request.verb, 'inpaint');
    await page.waitForFunction(() => document.querySelectorAll('#gallery li').length === 3, null, { timeout: 120_000 });
    await shot(page, 'inpainted');

    // Through the API: the result keeps every pixel outside the painted mask.
    const job = (await (await fetch(`${server.url}/api/jobs/${id}`)).json()) as {
      status: string;
      result: { images: { b64_json: string }[] };
    };
    assert.equal(job.status, 'succeeded');
    const original = await decodeImage(Buffer.from(request.image, 'base64'), 'upload');
    const mask = await decodeImage(Buffer.from(request.mask, 'base64'), 'mask');
    const out = await decodeImage(Buffer.from(job.result.images[0].b64_json, 'base64'), 'result');
    assert.equal(mask.width, size);
    let inside = 0;
    let kept = 0;
    for (let p = 0; p < size * size; p++) {
      if (mask.data[p * 3] > 127) {
        inside++;
        continue;
      }
      for (let c = 0; c < 3; c++)
        assert.equal(out.data[p * 3 + c], original.data[p * 3 + c], `pixel ${p} outside the mask`);
      kept++;
    }
    assert.ok(inside > 0 && kept > 0, `mask covers ${inside} px, keeps ${kept}`);

    // Readable at phone width.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling at 390 px (${overflow} px too wide)`);
    await shot(page, 'phone');
    assert.deepEqual(pageErrors, []);
  } finally {
    await context.close();
  }
});
