// Load on `muse serve` (npm run bench serve): requests per second and p50/p95 latency of
// POST /v1/images/generations at 1, 4 and 16 concurrent clients, and the server's peak resident memory
// with 50 jobs queued at once. The server runs in this process over the shipped emoji model (clients
// are fetch calls on the same event loop: their cost is small next to a generation's).
import { createServer } from '../src/server/app.js';
import { loadModels } from '../src/server/models.js';
import { packageRoot } from '../src/util/package-root.js';

export interface LoadRow {
  name: string;
  seconds: number;
  samplesPerSecond?: number;
  bytes?: number;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export async function serverLoad(
  options: { size?: number; perClient?: Record<number, number> } = {},
): Promise<LoadRow[]> {
  const size = options.size ?? 32;
  const models = await loadModels([`${packageRoot()}/models/emoji`]);
  const { app } = await createServer({ models, limits: { maxQueued: 64 } });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const rows: LoadRow[] = [];
  const body = (i: number) =>
    JSON.stringify({
      prompt: ['a red apple', 'a smiling sun', 'a blue heart', 'a cat face'][i % 4],
      n: 1,
      size: `${size}x${size}`,
      seed: i,
    });
  const generate = async (i: number): Promise<number> => {
    const t0 = performance.now();
    const res = await fetch(`${url}/v1/images/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: body(i),
    });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`status ${res.status}`);
    return (performance.now() - t0) / 1000;
  };
  try {
    await generate(0); // warm-up: kernels, text encoder caches
    const perClient = options.perClient ?? { 1: 12, 4: 6, 16: 3 };
    for (const clients of [1, 4, 16]) {
      const latencies: number[] = [];
      const t0 = performance.now();
      let next = 1;
      await Promise.all(
        Array.from({ length: clients }, async () => {
          for (let k = 0; k < perClient[clients]; k++) latencies.push(await generate(next++));
        }),
      );
      const wall = (performance.now() - t0) / 1000;
      latencies.sort((a, b) => a - b);
      const rps = latencies.length / wall;
      rows.push({
        name: `serve ${size}px: ${clients} clients, requests/s`,
        seconds: wall / latencies.length,
        samplesPerSecond: rps,
      });
      rows.push({ name: `serve ${size}px: ${clients} clients, p50 latency`, seconds: quantile(latencies, 0.5) });
      rows.push({ name: `serve ${size}px: ${clients} clients, p95 latency`, seconds: quantile(latencies, 0.95) });
    }
    // 50 jobs queued at once through the native job API; peak RSS sampled every 20 ms until all finish.
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 20);
    const t0 = performance.now();
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      const res = await fetch(`${url}/api/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ verb: 'generate', prompt: 'a red apple', options: { n: 1, size, seed: i } }),
      });
      if (res.status !== 202) throw new Error(`queueing job ${i}: status ${res.status} ${await res.text()}`);
      ids.push(((await res.json()) as { id: string }).id);
    }
    const queuedRss = process.memoryUsage().rss;
    for (const id of ids) {
      for (;;) {
        const job = (await (await fetch(`${url}/api/jobs/${id}`)).json()) as { status: string };
        if (['done', 'failed', 'cancelled', 'succeeded', 'error'].includes(job.status)) break;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    clearInterval(sampler);
    const wall = (performance.now() - t0) / 1000;
    rows.push({ name: 'serve: RSS before 50 queued jobs', seconds: 0, bytes: before });
    rows.push({ name: 'serve: RSS with 50 jobs just queued', seconds: 0, bytes: queuedRss });
    rows.push({
      name: 'serve: peak RSS while the 50 jobs ran',
      seconds: wall / 50,
      bytes: peak,
      samplesPerSecond: 50 / wall,
    });
  } finally {
    await app.close();
    for (const m of models) m.pipeline?.dispose();
  }
  return rows;
}
