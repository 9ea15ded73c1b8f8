// The queue's cost (npm run bench queue; needs /usr/bin/redis-server): per-job overhead of
// `muse serve --queue` + one `muse worker` against the same generation in-process (median latency of
// POST /v1/images/generations, emoji 32 px, 2 steps, sequential requests: the difference is the
// queue's enqueue, hand-off, progress and result round trips through Redis), and dataset-encoding
// throughput with 1 and 2 encode workers (8 WebDataset shards of 16 images, emoji tokenizer).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Queue } from 'bullmq';
import { writeTar } from '../src/data/webdataset.js';
import { encodePng } from '../src/image/image.js';
import { runQueuedEncode } from '../src/queue/encode.js';
import { BULL_PREFIX, generationQueue } from '../src/queue/protocol.js';
import { QueueJobRunner } from '../src/queue/runner.js';
import { createServer } from '../src/server/app.js';
import { loadModels } from '../src/server/models.js';
import { packageRoot } from '../src/util/package-root.js';
import { startWorker, stopChild, TestRedis } from '../test/helpers/redis.js';

export interface QueueRow {
  name: string;
  seconds: number;
  samplesPerSecond?: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Latency of each of n sequential generations (after 2 warm-ups). */
async function latencies(url: string, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n + 2; i++) {
    const t0 = performance.now();
    const res = await fetch(`${url}/v1/images/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'a red apple', n: 1, size: '32x32', seed: i, steps: 2 }),
    });
    if (res.status !== 200) throw new Error(`${res.status}: ${await res.text()}`);
    await res.arrayBuffer();
    if (i >= 2) times.push((performance.now() - t0) / 1000);
  }
  return times;
}

export async function queueLoad(options: { requests?: number } = {}): Promise<QueueRow[]> {
  const n = options.requests ?? 20;
  const rows: QueueRow[] = [];
  const redis = await TestRedis.start();
  const dir = mkdtempSync(join(tmpdir(), 'muse-bench-queue-'));
  try {
    // In-process: the model in this process (the worker below has the same one, one thread each).
    const models = await loadModels([join(packageRoot(), 'models', 'emoji')]);
    const local = await createServer({ models });
    const inProcess = median(await latencies(await local.app.listen({ host: '127.0.0.1', port: 0 }), n));
    await local.app.close();
    const worker = await startWorker(redis.url, ['--model', 'models/emoji']);
    const runner = await QueueJobRunner.open({ url: redis.url, pollMs: 1000 });
    const queued = await createServer({ runner });
    const queuedUrl = await queued.app.listen({ host: '127.0.0.1', port: 0 });
    for (let i = 0; i < 100 && !runner.models().length; i++) await new Promise((r) => setTimeout(r, 100));
    const client = await latencies(queuedUrl, n);
    const onQueue = median(client);
    // The queue's own part of each job: the client's latency less the worker's run (BullMQ's
    // processedOn → finishedOn): enqueue, hand-off to the worker, completion event, result read.
    const bull = new Queue(generationQueue('emoji'), {
      connection: { host: '127.0.0.1', port: redis.port },
      prefix: BULL_PREFIX,
    });
    const jobs = (await bull.getCompleted(0, -1)).sort((a, b) => a.timestamp - b.timestamp).slice(2);
    await bull.close();
    const transport = median(
      jobs.map((j, i) => client[i] - ((j.finishedOn as number) - (j.processedOn as number)) / 1000),
    );
    await queued.app.close();
    await stopChild(worker.child);
    rows.push({ name: 'generate emoji 32 px, 2 steps, in-process (latency)', seconds: inProcess });
    rows.push({ name: 'generate emoji 32 px, 2 steps, on the queue (latency)', seconds: onQueue });
    rows.push({ name: 'queue overhead per job (latency difference)', seconds: onQueue - inProcess });
    rows.push({ name: 'queue overhead per job (outside the worker run)', seconds: transport });

    // Encoding: 8 shards × 16 images, with 1 then 2 workers (started before the clock).
    mkdirSync(join(dir, 'data'));
    for (let s = 0; s < 8; s++) {
      const entries = [];
      for (let i = 0; i < 16; i++) {
        const data = new Uint8Array(32 * 32 * 3);
        for (let p = 0; p < data.length; p++) data[p] = (p * (s + 3) + i * 71) % 256;
        entries.push({ name: `s${s}-${i}.png`, data: await encodePng({ width: 32, height: 32, data }) });
        entries.push({ name: `s${s}-${i}.txt`, data: new TextEncoder().encode(`a pattern ${s} ${i}`) });
      }
      await writeTar(join(dir, 'data', `shard-${s}.tar`), entries, { mtime: 0 });
    }
    for (const count of [1, 2]) {
      const workers = await Promise.all(Array.from({ length: count }, () => startWorker(redis.url, ['--encode'])));
      const t0 = performance.now();
      await runQueuedEncode({
        url: redis.url,
        dataset: join(dir, 'data'),
        out: join(dir, `out-${count}`),
        tokenizer: resolve('models/emoji/tokenizer.safetensors'),
        size: 32,
        shardSize: 16,
        maxTokens: 24,
        pollMs: 100,
      });
      const s = (performance.now() - t0) / 1000;
      rows.push({
        name: `queued encode, ${count} worker${count > 1 ? 's' : ''} (128 images)`,
        seconds: s,
        samplesPerSecond: 128 / s,
      });
      await Promise.all(workers.map((w) => stopChild(w.child)));
    }
  } finally {
    await redis.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
