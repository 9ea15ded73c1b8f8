// The state of every queue on a Redis: counts per queue, live workers, failed jobs (dead letters).
import { Queue } from 'bullmq';
import { commandConnection, waitReady } from './connection.js';
import { BULL_PREFIX, WORKER_KEYS, type WorkerAnnouncement } from './protocol.js';

export interface QueueState {
  name: string;
  counts: Record<string, number>;
  failedJobs?: { id: string; attempts: number; finishedOn: number; reason: string }[];
}

export async function queueStatus(
  url: string,
  options: { failed?: number } = {},
): Promise<{ queues: QueueState[]; workers: WorkerAnnouncement[] }> {
  const redis = commandConnection(url, 'muse-status');
  try {
    await waitReady(redis, url, 5000);
    const names = new Set<string>();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${BULL_PREFIX}:*:meta`, 'COUNT', 500);
      cursor = next;
      for (const k of keys) names.add(k.slice(BULL_PREFIX.length + 1, -':meta'.length));
    } while (cursor !== '0');
    const queues: QueueState[] = [];
    for (const name of [...names].sort()) {
      const q = new Queue(name, { connection: redis, prefix: BULL_PREFIX });
      const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
      const state: QueueState = { name, counts };
      if (options.failed)
        state.failedJobs = (await q.getFailed(0, options.failed - 1)).map((j) => ({
          id: j.id as string,
          attempts: j.attemptsMade,
          finishedOn: j.finishedOn ?? 0,
          reason: j.failedReason,
        }));
      queues.push(state);
    }
    const workerKeys: string[] = [];
    cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', WORKER_KEYS, 'COUNT', 500);
      cursor = next;
      workerKeys.push(...keys);
    } while (cursor !== '0');
    const workers = (workerKeys.length ? await redis.mget(...workerKeys) : [])
      .filter((v): v is string => v !== null)
      .map((v) => JSON.parse(v) as WorkerAnnouncement);
    return { queues, workers };
  } finally {
    redis.disconnect();
  }
}
