// The real OpenAI client library (the `openai` npm package, unchanged) against `muse serve`: baseURL
// http://127.0.0.1:PORT/v1 and a dummy key; images.generate (b64_json and url) and images.edit
// (multipart image + mask: white mask pixels are regenerated, every other pixel is kept).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI, { toFile } from 'openai';
import { decodeImage, encodePng, type RgbImage } from '../src/image/image.js';
import { shutdownBackend } from '../src/tensor/backend.js';
import { removeTinyFolder, startTestServer, type TestServer } from './helpers/server.js';

let server: TestServer;
let client: OpenAI;

before(async () => {
  server = await startTestServer();
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sk-dummy', maxRetries: 0, timeout: 120_000 });
});

after(async () => {
  await server?.close();
  removeTinyFolder();
  shutdownBackend();
});

test('openai images.generate: b64_json and url answers, muse options passed through', async () => {
  const r = await client.images.generate({
    prompt: 'a smiling sun',
    n: 2,
    size: '32x32' as never,
    response_format: 'b64_json',
    // muse's own fields ride along in the body (the client sends unknown keys as given)
    ...({ seed: 5, steps: 3 } as object),
  });
  assert.equal(typeof r.created, 'number');
  assert.equal(r.data?.length, 2);
  const images: RgbImage[] = [];
  for (const d of r.data ?? []) images.push(await decodeImage(Buffer.from(d.b64_json as string, 'base64'), 'gen'));
  assert.equal(images[0].width, 32);
  // Same seed, same image: the second request's first image equals this one's first.
  const again = await client.images.generate({
    prompt: 'a smiling sun',
    n: 1,
    size: '32x32' as never,
    response_format: 'b64_json',
    ...({ seed: 5, steps: 3 } as object),
  });
  const first = await decodeImage(Buffer.from(again.data?.[0].b64_json as string, 'base64'), 'gen');
  assert.deepEqual(first.data, images[0].data);

  const byUrl = await client.images.generate({
    prompt: 'a red apple',
    n: 1,
    response_format: 'url',
    ...({ steps: 2 } as object),
  });
  const url = byUrl.data?.[0].url as string;
  assert.match(url, /\/v1\/files\//);
  const png = await fetch(url.startsWith('http') ? url : `${server.url}${url}`);
  assert.equal(png.status, 200);
  assert.equal(png.headers.get('content-type'), 'image/png');
});

test('openai images.edit: multipart image and mask; pixels outside the mask are kept', async () => {
  const gen = await client.images.generate({
    prompt: 'a blue hat',
    n: 1,
    response_format: 'b64_json',
    ...({ seed: 2, steps: 3 } as object),
  });
  const originalPng = Buffer.from(gen.data?.[0].b64_json as string, 'base64');
  const original = await decodeImage(originalPng, 'original');
  const maskImg: RgbImage = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3) };
  for (let y = 8; y < 24; y++)
    for (let x = 0; x < 16; x++) maskImg.data.fill(255, (y * 32 + x) * 3, (y * 32 + x) * 3 + 3);
  const r = await client.images.edit({
    image: await toFile(originalPng, 'image.png', { type: 'image/png' }),
    mask: await toFile(await encodePng(maskImg), 'mask.png', { type: 'image/png' }),
    prompt: 'a green frog',
    response_format: 'b64_json',
  });
  assert.equal(r.data?.length, 1);
  const out = await decodeImage(Buffer.from(r.data?.[0].b64_json as string, 'base64'), 'edit');
  let changed = 0;
  for (let p = 0; p < 32 * 32; p++) {
    const inside = maskImg.data[p * 3] > 0;
    for (let c = 0; c < 3; c++) {
      if (!inside) assert.equal(out.data[p * 3 + c], original.data[p * 3 + c], `pixel ${p} outside the mask changed`);
      else if (out.data[p * 3 + c] !== original.data[p * 3 + c]) changed++;
    }
  }
  assert.ok(changed > 0, 'the masked area was regenerated');
  // A bad request comes back as the client's typed error with the server's message.
  await assert.rejects(
    client.images.generate({ prompt: 'a cat', n: 1000 }),
    (err: unknown) => err instanceof OpenAI.APIError && err.status === 400 && /\bn\b/.test(err.message),
  );
});
