// Results of generation jobs, kept in Redis with a time to live: a worker puts them, the API reads them
// when BullMQ says the job completed. (Kept out of the job record and the event stream, which every
// listener reads: images are the bulk of a job.)
import type { Redis } from 'ioredis';
import type { JobResult } from '../server/jobs.js';
import { resultKey } from './protocol.js';

interface StoredResult {
  images: { png: string; width: number; height: number; seed: number }[];
  notes: string[];
}

export class ResultStore {
  constructor(
    private readonly redis: Redis,
    /** Seconds a result is kept (default 15 minutes, as in-process). */
    readonly ttlSeconds = 15 * 60,
  ) {}

  async put(id: string, result: JobResult): Promise<void> {
    const stored: StoredResult = {
      images: result.images.map((im) => ({
        png: im.png.toString('base64'),
        width: im.width,
        height: im.height,
        seed: im.seed,
      })),
      notes: result.notes,
    };
    await this.redis.set(resultKey(id), JSON.stringify(stored), 'EX', this.ttlSeconds);
  }

  /** The result, or undefined when there is none (never made, or expired). */
  async get(id: string): Promise<JobResult | undefined> {
    const raw = await this.redis.get(resultKey(id));
    if (raw === null) return undefined;
    const s = JSON.parse(raw) as StoredResult;
    return {
      images: s.images.map((im) => ({ ...im, png: Buffer.from(im.png, 'base64') })),
      notes: s.notes,
    };
  }
}
