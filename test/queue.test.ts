// `muse serve --queue` over a real redis-server with two `muse worker` processes on the shipped emoji
// model: generations end to end through the same endpoints and SSE stream as in-process (progress
// with previews, results, cancellation, OpenAI answers); a worker killed with SIGKILL mid-job → the
// other worker runs the job again and the client still gets its image; Redis restarted → 503 "queue
// unavailable", then the server recovers by itself. Skipped only when /usr/bin/redis-server is missing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Queue } from 'bullmq';
import { decodeImage } from '../src/image/image.js';
import { BULL_PREFIX, generationQueue } from '../src/queue/protocol.js';
import { QueueJobRunner } from '../src/queue/runner.js';
import { createServer, type MuseServer } from '../src/server/app.js';
import { shutdownBackend } from '../src/tensor/backend.js';
import { SKIP_REDIS, startWorker, stopChild, TestRedis, type TestWorker } from './helpers/redis.js';
import { runMuse } from './helpers/run-cli.js';
import { readEvents } from './helpers/server.js';

// biome-ignore lint/suspicious/noExplicitAny: JSON answers, checked field by field
type Body = Record<string, any>;

let redis: TestRedis | undefined;
const workers: TestWorker[] = [];
let server: MuseServer | undefined;
let runner: QueueJobRunner | undefined;
let url = '';

/** Short locks so a killed worker's job is taken over within seconds (the default is 30 s). */
const WORKER_ARGS = [
  '--model',
  'models/emoji',
  '--lock-duration',
  '3000',
  '--stalled-interval',
  '1000',
  '--grace',
  '5',
];

async function post(path: string, body: unknown): Promise<{ status: number; body: Body }> {
  const res = await fetch(url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Body };
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits until the API lists the emoji model (a worker announced it). */
function modelsAnnounced(): Promise<true> {
  return until('a worker announcing emoji', async () => {
    const res = await fetch(`${url}/api/models`);
    const b = (await res.json()) as Body;
    return res.status === 200 && b.models?.some((m: Body) => m.name === 'emoji') ? true : undefined;
  });
}

// This process never starts the backend (the workers do); stopped anyway in case a CLI call started it.
after(() => shutdownBackend());

describe('muse serve --queue with muse worker', { skip: SKIP_REDIS, timeout: 600_000 }, () => {
  before(async () => {
    redis = await TestRedis.start();
    // Both workers load at once (each is its own process, as on separate machines).
    workers.push(...(await Promise.all([startWorker(redis.url, WORKER_ARGS), startWorker(redis.url, WORKER_ARGS)])));
    runner = await QueueJobRunner.open({ url: redis.url, pollMs: 250 });
    server = await createServer({ runner });
    url = await server.app.listen({ host: '127.0.0.1', port: 0 });
    await modelsAnnounced();
    await until('both workers announced', async () => {
      const h = (await (await fetch(`${url}/api/health`)).json()) as Body;
      return h.queue?.workers === 2 ? true : undefined;
    });
  });

  after(async () => {
    if (server) await server.app.close();
    else await runner?.close();
    await Promise.all(workers.map((w) => stopChild(w.child)));
    await redis?.close();
  });

  test('generations end to end: SSE progress with previews from both workers, then the images', async () => {
    const health = (await (await fetch(`${url}/api/health`)).json()) as Body;
    assert.equal(health.queue.mode, 'queue');
    assert.equal(health.queue.workers, 2);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await post('/api/jobs', { prompt: 'a red apple', options: { seed: 5, steps: 3, n: 1, size: 32 } });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      ids.push(r.body.id);
    }
    const runs = await Promise.all(ids.map((id) => readEvents(`${url}/api/jobs/${id}/events`)));
    const seenWorkers = new Set<string>();
    const pngs: string[] = [];
    for (const events of runs) {
      const last = events[events.length - 1];
      assert.equal(last.event, 'result', JSON.stringify(events.map((e) => e.event)));
      const progress = events.filter((e) => e.event === 'progress');
      assert.ok(progress.length >= 1, 'progress events');
      const p = progress[progress.length - 1].data as Body;
      assert.equal(p.total, 3);
      assert.ok(p.previews.length >= 1, 'a preview PNG');
      const preview = await decodeImage(Buffer.from(p.previews[0], 'base64'), 'preview');
      assert.equal(preview.width, 32);
      seenWorkers.add(p.worker);
      const image = (last.data as Body).images[0];
      assert.equal(image.width, 32);
      pngs.push(image.b64_json);
    }
    assert.equal(seenWorkers.size, 2, `jobs ran on ${[...seenWorkers]}`);
    // The same request gives the same image on either worker.
    assert.ok(
      pngs.every((p) => p === pngs[0]),
      'same seed, same image',
    );
    // The finished job is still there, with its result.
    const view = (await (await fetch(`${url}/api/jobs/${ids[0]}`)).json()) as Body;
    assert.equal(view.status, 'succeeded');
    assert.equal(view.result.images.length, 1);
  });

  test('OpenAI endpoint, request errors and cancellation reach the worker', async () => {
    const r = await post('/v1/images/generations', { prompt: 'a cat', n: 2, size: '32x32', seed: 3, steps: 2 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.data.length, 2);
    // Checked against what the workers announced, before anything is queued.
    const bad = await post('/api/jobs', { verb: 'img2img', prompt: 'x' });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /does not run img2img/);
    const unknown = await post('/api/jobs', { model: 'nope', prompt: 'x' });
    assert.equal(unknown.status, 400);
    // A running job stops between steps when cancelled.
    const long = await post('/api/jobs', { prompt: 'a dog', options: { steps: 60 } });
    let deleted = false;
    const events = await readEvents(`${url}/api/jobs/${long.body.id}/events`, async (e) => {
      if (e.event === 'progress' && !deleted) {
        deleted = true;
        const res = await fetch(`${url}/api/jobs/${long.body.id}`, { method: 'DELETE' });
        assert.equal(res.status, 202);
      }
    });
    assert.equal(events[events.length - 1].event, 'cancelled');
    const steps = events.filter((e) => e.event === 'progress').map((e) => e.data.step as number);
    assert.ok(Math.max(...steps) < 60, `stopped early (last step ${Math.max(...steps)})`);
  });

  test('a worker killed with SIGKILL mid-job: the other worker runs it and the client gets its image', async () => {
    const r = await post('/api/jobs', { prompt: 'a green tree', options: { steps: 40, seed: 9, size: 32 } });
    assert.equal(r.status, 202);
    let killed: string | undefined;
    const ran = new Set<string>();
    const events = await readEvents(`${url}/api/jobs/${r.body.id}/events`, (e) => {
      if (e.event !== 'progress') return;
      const w = e.data.worker as string;
      ran.add(w);
      if (!killed && (e.data.step as number) >= 2) {
        killed = w;
        const victim = workers.find((x) => w.includes(`-${x.child.pid}-`));
        assert.ok(victim, `worker ${w} is one of ours`);
        victim.child.kill('SIGKILL');
      }
    });
    assert.equal(events[events.length - 1].event, 'result', JSON.stringify(events.map((e) => e.event).slice(-3)));
    assert.equal(ran.size, 2, `ran on ${[...ran]} (killed ${killed})`);
    const img = (events[events.length - 1].data as Body).images[0];
    assert.equal((await decodeImage(Buffer.from(img.b64_json, 'base64'), 'result')).width, 32);
    // A replacement worker, for the tests after this one.
    const dead = workers.findIndex((x) => killed?.includes(`-${x.child.pid}-`));
    await stopChild(workers[dead].child);
    workers[dead] = await startWorker((redis as TestRedis).url, WORKER_ARGS);
  });

  test('Redis restarted: 503 "queue unavailable" while it is down, then the server recovers by itself', async () => {
    const r = redis as TestRedis;
    // A job in flight when Redis goes away ends (its record is lost with Redis), never hangs.
    const inflight = await post('/api/jobs', { prompt: 'a blue car', options: { steps: 60 } });
    const stream = readEvents(`${url}/api/jobs/${inflight.body.id}/events`);
    await new Promise((res) => setTimeout(res, 500));
    await r.stop();
    const down = await post('/v1/images/generations', { prompt: 'a cat', steps: 2 });
    assert.equal(down.status, 503, JSON.stringify(down.body));
    assert.match(down.body.error.message, /queue unavailable/);
    const down2 = await post('/api/jobs', { prompt: 'a cat' });
    assert.equal(down2.status, 503);
    await r.restart(); // empty, as after a crash without persistence
    const end = await stream;
    assert.ok(['error', 'result'].includes(end[end.length - 1].event), `in-flight job ended: ${end.at(-1)?.event}`);
    await modelsAnnounced(); // the workers re-announce on their heartbeat
    await until('both workers announced again', async () => {
      const h = (await (await fetch(`${url}/api/health`)).json()) as Body;
      return h.queue?.workers === 2 ? true : undefined;
    });
    const ok = await until('a generation after Redis returned', async () => {
      const a = await post('/v1/images/generations', { prompt: 'a cat', steps: 2, seed: 1 });
      return a.status === 200 ? a : undefined;
    });
    assert.equal(ok.body.data.length, 1);
  });

  test('a job that keeps failing is retried with back-off, then kept in the failed list', async () => {
    const r = redis as TestRedis;
    const q = new Queue(generationQueue('emoji'), {
      connection: { host: '127.0.0.1', port: r.port },
      prefix: BULL_PREFIX,
    });
    try {
      // options: null makes the work throw a TypeError (an internal error, so it is retried).
      const job = await q.add(
        'generate',
        { model: 'emoji', verb: 'generate', prompt: 'x', options: null },
        { jobId: 'always-fails', attempts: 2, backoff: { type: 'exponential', delay: 200 } },
      );
      const failed = await until('the job failing for good', async () =>
        (await job.getState()) === 'failed' ? true : undefined,
      );
      assert.ok(failed);
      const again = await q.getJob('always-fails');
      assert.equal(again?.attemptsMade, 2);
      assert.match(again?.failedReason ?? '', /^\[500\] internal error/);
    } finally {
      await q.close();
    }
    const status = await runMuse('queue', 'status', '--queue', r.url, '--failed');
    assert.equal(status.code, 0, status.err);
    assert.match(status.out, /generate\.emoji/);
    assert.match(status.out, /workers: 2/);
    assert.match(status.out, /always-fails\s+tries 2 .*internal error/);
  });

  test('SIGTERM: the worker finishes its current job, then exits', async () => {
    const r = await post('/api/jobs', { prompt: 'a yellow star', options: { steps: 30 } });
    let stopping: TestWorker | undefined;
    let exited: Promise<number | null> | undefined;
    const events = await readEvents(`${url}/api/jobs/${r.body.id}/events`, (e) => {
      if (e.event !== 'progress' || stopping) return;
      stopping = workers.find((x) => (e.data.worker as string).includes(`-${x.child.pid}-`));
      assert.ok(stopping);
      const child = stopping.child;
      exited = new Promise((res) => child.once('exit', (code) => res(code)));
      child.kill('SIGTERM');
    });
    assert.equal(events[events.length - 1].event, 'result');
    const ran = new Set(events.filter((e) => e.event === 'progress').map((e) => e.data.worker));
    assert.equal(ran.size, 1, 'the same worker finished it');
    assert.equal(await exited, 0);
    assert.match((stopping as TestWorker).log(), /stopped after \d+ jobs/);
  });
});

test('muse worker and muse queue have --help; muse queue without a sub-command is a usage error', async () => {
  for (const verb of ['worker', 'queue']) {
    const r = await runMuse(verb, '--help');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`muse ${verb}`));
  }
  assert.equal((await runMuse('queue')).code, 2);
  const bad = await runMuse('queue', 'stats', '--queue', 'redis://127.0.0.1:1');
  assert.equal(bad.code, 1);
  assert.match(bad.err, /choose status/);
});

test('muse serve/worker --queue: a bad URL is one line', async () => {
  const a = await runMuse('worker', '--queue', 'http://x');
  assert.equal(a.code, 1);
  assert.match(a.err, /redis:\/\//);
  const b = await runMuse('serve', '--queue', 'redis://127.0.0.1:1', '--model', 'models/emoji');
  assert.equal(b.code, 1);
  assert.match(b.err, /muse worker/);
});
