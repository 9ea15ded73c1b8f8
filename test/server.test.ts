// `muse serve`: the HTTP API in-process on port 0 over the tiny test pipeline. OpenAI endpoints answer
// images of the asked size, the SSE stream delivers progress with previews then the result,
// cancellation stops a running job, and every bad request is a JSON 4xx after which the server
// still answers.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { decodeImage, encodePng, type RgbImage } from '../src/image/image.js';
import { pngDimensions } from '../src/server/image-input.js';
import { shutdownBackend } from '../src/tensor/backend.js';
import { runMuse } from './helpers/run-cli.js';
import { readEvents, removeTinyFolder, startTestServer, type TestServer } from './helpers/server.js';

// biome-ignore lint/suspicious/noExplicitAny: JSON answers, checked field by field
type Body = Record<string, any>;

let server: TestServer;

before(async () => {
  server = await startTestServer({ maxQueued: 3 });
});

after(async () => {
  await server?.close();
  removeTinyFolder();
  shutdownBackend();
});

async function json(path: string, body: unknown, method = 'POST') {
  const res = await fetch(server.url + path, {
    method,
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Body };
}

async function healthy(): Promise<void> {
  const res = await fetch(`${server.url}/api/health`);
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { status: string }).status, 'ok');
}

/** A JSON error answer: the status, {error: {message}} with one line, and the server still serving. */
async function assertError(res: { status: number; body: Body }, status: number, pattern: RegExp): Promise<void> {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(typeof res.body.error?.message, 'string');
  assert.match(res.body.error.message, pattern);
  assert.ok(!res.body.error.message.includes('\n'), 'one line');
  await healthy();
}

function image(seed: number, size = 32): RgbImage {
  const data = new Uint8Array(size * size * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + seed * 101) % 256;
  return { width: size, height: size, data };
}

/** A PNG whose header claims w×h (a decompression bomb's shape): signature, IHDR, nothing else. */
function bombHeader(w: number, h: number): Buffer {
  const b = Buffer.alloc(8 + 25);
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(b, 0);
  b.writeUInt32BE(13, 8);
  b.write('IHDR', 12, 'latin1');
  b.writeUInt32BE(w, 16);
  b.writeUInt32BE(h, 20);
  b[24] = 8;
  b[25] = 2;
  return b;
}

async function waitFor(id: string, statuses: string[]): Promise<Body> {
  for (let i = 0; i < 600; i++) {
    const res = await fetch(`${server.url}/api/jobs/${id}`);
    const body = (await res.json()) as Body;
    if (statuses.includes(body.status)) return body;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`job ${id} never reached ${statuses}`);
}

describe('muse serve API', { timeout: 120_000 }, () => {
  test('health and models', async () => {
    await healthy();
    const res = await fetch(`${server.url}/api/models`);
    const body = (await res.json()) as { models: { name: string; sizes: number[]; verbs: string[] }[] };
    assert.equal(body.models[0].name, 'tiny');
    assert.deepEqual(body.models[0].sizes, [32]);
    assert.ok(body.models[0].verbs.includes('inpaint'));
  });

  test('POST /v1/images/generations answers base64 PNGs of the asked size; the seed reproduces', async () => {
    const r = await json('/v1/images/generations', { prompt: 'a red apple', n: 2, size: '32x32', seed: 7, steps: 3 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(typeof r.body.created, 'number');
    assert.equal(r.body.data.length, 2);
    const imgs = [];
    for (const d of r.body.data) {
      const img = await decodeImage(Buffer.from(d.b64_json, 'base64'), 'answer');
      assert.equal(img.width, 32);
      assert.equal(img.height, 32);
      imgs.push(img);
    }
    // Image 1 of seed 7 is image 0 of seed 8.
    const again = await json('/v1/images/generations', { prompt: 'a red apple', n: 1, seed: 8, steps: 3 });
    const one = await decodeImage(Buffer.from(again.body.data[0].b64_json, 'base64'), 'again');
    assert.deepEqual(one.data, imgs[1].data);
  });

  test('response_format url serves the image under /v1/files/', async () => {
    const r = await json('/v1/images/generations', { prompt: 'a cat', response_format: 'url', steps: 2 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const url = r.body.data[0].url as string;
    assert.match(url, /\/v1\/files\/[0-9a-f-]+\.png$/);
    const res = await fetch(url);
    assert.equal(res.headers.get('content-type'), 'image/png');
    const img = await decodeImage(new Uint8Array(await res.arrayBuffer()), 'file');
    assert.equal(img.width, 32);
    await assertError(
      { status: (await fetch(`${server.url}/v1/files/nope.png`)).status, body: { error: { message: 'no file x' } } },
      404,
      /no file/,
    );
  });

  test('POST /v1/images/edits (multipart) inpaints: pixels outside the mask are kept', async () => {
    const original = image(1);
    const maskImg: RgbImage = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3) };
    for (let y = 8; y < 20; y++)
      for (let x = 4; x < 16; x++) maskImg.data.fill(255, (y * 32 + x) * 3, (y * 32 + x) * 3 + 3);
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(await encodePng(original))], { type: 'image/png' }), 'image.png');
    form.append('mask', new Blob([new Uint8Array(await encodePng(maskImg))], { type: 'image/png' }), 'mask.png');
    form.append('prompt', 'a blue hat');
    form.append('steps', '3');
    const res = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form });
    const body = (await res.json()) as Body;
    assert.equal(res.status, 200, JSON.stringify(body));
    const out = await decodeImage(Buffer.from(body.data[0].b64_json, 'base64'), 'edit');
    assert.equal(out.width, 32);
    let changedInside = 0;
    for (let p = 0; p < 32 * 32; p++) {
      const inside = maskImg.data[p * 3] > 0;
      for (let c = 0; c < 3; c++) {
        if (!inside) assert.equal(out.data[p * 3 + c], original.data[p * 3 + c], `pixel ${p} outside the mask changed`);
        else if (out.data[p * 3 + c] !== original.data[p * 3 + c]) changedInside++;
      }
    }
    assert.ok(changedInside > 0, 'the masked area was regenerated');
  });

  test('SSE stream: queued/started, progress events with PNG previews, then the result', async () => {
    const r = await json('/api/jobs', {
      verb: 'generate',
      prompt: 'a smiling sun',
      options: { steps: 4, n: 2, seed: 3 },
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const events = await readEvents(`${server.url}/api/jobs/${r.body.id}/events`);
    const progress = events.filter((e) => e.event === 'progress');
    assert.ok(progress.length >= 1, `progress events: ${events.map((e) => e.event)}`);
    const last = events[events.length - 1];
    assert.equal(last.event, 'result');
    const withPreview = progress.filter((e) => Array.isArray(e.data.previews));
    assert.ok(withPreview.length >= 1, 'previews arrive');
    for (const e of withPreview) {
      assert.equal(e.data.total, 4);
      assert.ok((e.data.step as number) >= 1 && (e.data.step as number) <= 4);
      const png = Buffer.from((e.data.previews as string[])[0], 'base64');
      assert.deepEqual(pngDimensions(png), { width: 32, height: 32 });
    }
    const images = last.data.images as { b64_json: string; seed: number }[];
    assert.equal(images.length, 2);
    assert.deepEqual(
      images.map((i) => i.seed),
      [3, 4],
    );
    const done = await waitFor(r.body.id, ['succeeded']);
    assert.equal(done.result.images.length, 2);
    // A late subscriber gets the status and the result at once.
    const late = await readEvents(`${server.url}/api/jobs/${r.body.id}/events`);
    assert.deepEqual(
      late.map((e) => e.event),
      ['status', 'result'],
    );
  });

  test('DELETE cancels a running job between steps, and a queued one at once', async () => {
    const running = await json('/api/jobs', { prompt: 'long', options: { steps: 64, n: 4 } });
    const queued = await json('/api/jobs', { prompt: 'waiting', options: { steps: 64 } });
    assert.equal(running.status, 202);
    assert.equal(queued.status, 202);
    const qd = await fetch(`${server.url}/api/jobs/${queued.body.id}`, { method: 'DELETE' });
    assert.equal(qd.status, 202);
    assert.equal(((await qd.json()) as { status: string }).status, 'cancelled');
    let cancelledAt = 0;
    const events = await readEvents(`${server.url}/api/jobs/${running.body.id}/events`, async (e) => {
      if (e.event === 'progress' && !cancelledAt) {
        cancelledAt = e.data.step as number;
        const res = await fetch(`${server.url}/api/jobs/${running.body.id}`, { method: 'DELETE' });
        assert.equal(res.status, 202);
      }
    });
    assert.equal(events[events.length - 1].event, 'cancelled');
    const lastStep = Math.max(...events.filter((e) => e.event === 'progress').map((e) => e.data.step as number));
    assert.ok(lastStep < 64, `stopped early (step ${lastStep})`);
    const state = await waitFor(running.body.id, ['cancelled']);
    assert.equal(state.status, 'cancelled');
    await healthy();
    // A cancelled job stays cancelled; a finished one cannot be cancelled; an unknown one is 404.
    const again = await fetch(`${server.url}/api/jobs/${running.body.id}`, { method: 'DELETE' });
    assert.equal(again.status, 202);
    const unknown = await fetch(`${server.url}/api/jobs/nope`, { method: 'DELETE' });
    await assertError({ status: unknown.status, body: (await unknown.json()) as Body }, 404, /no job/);
    const ok = await json('/api/jobs', { prompt: 'quick', options: { steps: 1 } });
    await waitFor(ok.body.id, ['succeeded']);
    const late = await fetch(`${server.url}/api/jobs/${ok.body.id}`, { method: 'DELETE' });
    await assertError({ status: late.status, body: (await late.json()) as Body }, 409, /already finished/);
  });

  test('the queue is bounded: beyond maxQueued a request is 429', async () => {
    const ids: string[] = [];
    let full: { status: number; body: Body } | undefined;
    for (let i = 0; i < 6 && !full; i++) {
      const r = await json('/api/jobs', { prompt: `job ${i}`, options: { steps: 64, n: 4 } });
      if (r.status === 202) ids.push(r.body.id);
      else full = r;
    }
    assert.ok(full, 'some request was refused');
    await assertError(full, 429, /queue is full/);
    for (const id of ids) await fetch(`${server.url}/api/jobs/${id}`, { method: 'DELETE' });
    for (const id of ids) await waitFor(id, ['cancelled', 'succeeded']);
  });

  test('bad requests are JSON 4xx with one message, and the server keeps serving', async () => {
    const raw = async (path: string, init: RequestInit) => {
      const res = await fetch(server.url + path, { method: 'POST', ...init });
      return { status: res.status, body: (await res.json()) as Body };
    };
    // Malformed JSON.
    await assertError(
      await raw('/v1/images/generations', { headers: { 'content-type': 'application/json' }, body: '{"prompt": "x",' }),
      400,
      /JSON/i,
    );
    await assertError(
      await raw('/api/jobs', { headers: { 'content-type': 'application/json' }, body: '[1,2]' }),
      400,
      /JSON object/,
    );
    // Wrong content types.
    await assertError(
      await raw('/api/jobs', { headers: { 'content-type': 'text/plain' }, body: 'generate a cat' }),
      415,
      /application\/json/,
    );
    await assertError(
      await raw('/v1/images/edits', { headers: { 'content-type': 'application/json' }, body: '{"prompt":"x"}' }),
      415,
      /multipart/,
    );
    await assertError(
      await raw('/api/jobs', { headers: { 'content-type': 'application/xml' }, body: '<a/>' }),
      415,
      /unsupported content type "application\/xml": send application\/json/,
    );
    // Oversized body.
    const huge = JSON.stringify({ prompt: 'x', image: 'A'.repeat(server.limits.maxBodyBytes + 10) });
    await assertError(
      await raw('/api/jobs', { headers: { 'content-type': 'application/json' }, body: huge }),
      413,
      /./,
    );
    // A PNG header claiming 20000×20000: refused from the header, as base64 and as an upload.
    const bomb = bombHeader(20000, 20000);
    await assertError(
      await json('/api/jobs', {
        verb: 'inpaint',
        prompt: 'x',
        image: bomb.toString('base64'),
        mask: bomb.toString('base64'),
      }),
      413,
      /20000×20000/,
    );
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(bomb)], { type: 'image/png' }), 'bomb.png');
    form.append('prompt', 'x');
    const res = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form });
    await assertError({ status: res.status, body: (await res.json()) as Body }, 413, /20000×20000/);
    // Not an image; not base64.
    await assertError(
      await json('/api/jobs', { verb: 'upscale', prompt: '', image: 'aGVsbG8=' }),
      400,
      /not a readable image/,
    );
    await assertError(await json('/api/jobs', { verb: 'inpaint', prompt: 'x', image: '%%%' }), 400, /base64/);
    // Absurd options.
    await assertError(await json('/v1/images/generations', { prompt: 'x', n: 1e9 }), 400, /n must be/);
    await assertError(await json('/v1/images/generations', { prompt: 'x', n: -1 }), 400, /n must be/);
    await assertError(await json('/v1/images/generations', { prompt: 'x', size: '20000x20000' }), 400, /size/);
    await assertError(await json('/v1/images/generations', { prompt: 'x', size: 'big' }), 400, /size/);
    await assertError(await json('/v1/images/generations', { prompt: 'x', steps: 1e6 }), 400, /steps must be/);
    await assertError(await json('/v1/images/generations', { prompt: 'x', guidance: 'NaN' }), 400, /guidance/);
    await assertError(
      await json('/v1/images/generations', { prompt: 'x', response_format: 'gif' }),
      400,
      /response_format/,
    );
    await assertError(await json('/v1/images/generations', { prompt: 'x', model: 'dall-e-9' }), 400, /unknown model/);
    await assertError(await json('/v1/images/generations', { prompt: 'x', frobnicate: 1 }), 400, /unknown field/);
    await assertError(await json('/v1/images/generations', { n: 1 }), 400, /prompt is required/);
    await assertError(await json('/v1/images/generations', { prompt: 42 }), 400, /prompt must be a string/);
    await assertError(await json('/v1/images/generations', { prompt: 'x'.repeat(5000) }), 400, /characters/);
    await assertError(await json('/api/jobs', { verb: 'explode', prompt: 'x' }), 400, /verb must be/);
    await assertError(await json('/api/jobs', { prompt: 'x', options: { seed: -4 } }), 400, /seed/);
    await assertError(await json('/api/jobs', { prompt: 'x', options: { warp: 9 } }), 400, /unknown option/);
    await assertError(await json('/api/jobs', { prompt: 'x', options: 'fast' }), 400, /options/);
    await assertError(await json('/api/jobs', { verb: 'inpaint', prompt: 'x' }), 400, /needs an image/);
    await assertError(
      await json('/api/jobs', { verb: 'upscale', prompt: 'x', image: (await encodePng(image(2))).toString('base64') }),
      400,
      /does not run upscale/,
    );
    const black = await encodePng({ width: 32, height: 32, data: new Uint8Array(32 * 32 * 3) });
    await assertError(
      await json('/api/jobs', {
        verb: 'inpaint',
        prompt: 'x',
        image: black.toString('base64'),
        mask: black.toString('base64'),
      }),
      400,
      /all black/,
    );
    // Unknown routes and jobs.
    await assertError(
      { status: (await fetch(`${server.url}/api/nothing`)).status, body: { error: { message: 'no such endpoint' } } },
      404,
      /./,
    );
    const unknown = await fetch(`${server.url}/api/jobs/0000/events`);
    await assertError({ status: unknown.status, body: (await unknown.json()) as Body }, 404, /no job/);
    // And it still computes.
    const ok = await json('/v1/images/generations', { prompt: 'still here', steps: 1 });
    assert.equal(ok.status, 200);
  });

  test('the web UI is served at /', async () => {
    const res = await fetch(`${server.url}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/html/);
    assert.match(await res.text(), /<script[^>]+app\.js/);
    for (const f of ['app.js', 'style.css']) assert.equal((await fetch(`${server.url}/${f}`)).status, 200);
  });

  test('a real 4096-px-wide PNG header is refused before decoding', async () => {
    const wide = await sharp({ create: { width: 4096, height: 8, channels: 3, background: '#fff' } })
      .png()
      .toBuffer();
    await assertError(
      await json('/api/jobs', { verb: 'edit', prompt: 'x', image: wide.toString('base64') }),
      413,
      /4096×8/,
    );
  });
});

test('muse serve: --help, and bad options are one line before any model loads', async () => {
  const help = await runMuse('serve', '--help');
  assert.equal(help.code, 0);
  assert.match(help.out, /muse serve \[--model DIR/);
  assert.match(help.out, /one at a time/);
  const port = await runMuse('serve', '--port', '70000');
  assert.equal(port.code, 1);
  assert.match(port.err, /port/);
  assert.equal(port.err.trim().split('\n').length, 1, port.err);
  const extra = await runMuse('serve', 'models/emoji');
  assert.equal(extra.code, 1);
  assert.match(extra.err, /positional/);
});
