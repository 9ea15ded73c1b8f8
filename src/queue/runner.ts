// The queue implementation of the server's JobRunner (src/server/runner.ts): every request becomes a
// BullMQ job on the queue of its model; `muse worker` processes run them. The API keeps a local Job
// record per request it submitted, fed by BullMQ's queue events (active, progress, completed, failed),
// so the HTTP endpoints and the SSE stream are the same as in-process. Events are fast but can be
// missed (a Redis restart, a reconnect), so a poll every `pollMs` reconciles each unfinished job with
// its state in Redis: a job that completed is finished from the result store, one that Redis no longer
// knows (Redis restarted without its data) fails with a 503 message.
//
// Redis down: `models()` and `submit` answer 503 "queue unavailable" at once (the command connection
// has no offline queue); ioredis reconnects by itself and the next request succeeds.
import { Job as BullJob, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { HttpError } from '../server/errors.js';
import { Job, type JobWork } from '../server/jobs.js';
import type { ModelInfo, ServedModel } from '../server/models.js';
import { type ComputeRequest, requestSummary } from '../server/requests.js';
import type { JobRunner } from '../server/runner.js';
import { blockingOptions, commandConnection, isReady, waitReady } from './connection.js';
import {
  BULL_PREFIX,
  cancelKey,
  type GenerationJobData,
  type GenerationJobReturn,
  type GenerationProgress,
  generationQueue,
  parseFailure,
  toWire,
  WORKER_KEYS,
  type WorkerAnnouncement,
} from './protocol.js';
import { ResultStore } from './results.js';

export interface QueueRunnerOptions {
  /** redis://HOST:PORT */
  url: string;
  /** Jobs that may wait per model queue; beyond it a request is 429 (default 8). */
  maxQueued?: number;
  /** Tries per job (default 3), with exponential back-off from `backoffMs` (default 1000). */
  attempts?: number;
  backoffMs?: number;
  /** How long finished jobs and their results are kept (default 15 minutes). */
  keepMs?: number;
  /** Reconciliation and model-refresh period (default 1000 ms). */
  pollMs?: number;
  /** Longest wait for Redis to accept a job before answering 503 (default 3000 ms). */
  addTimeoutMs?: number;
}

const notRunHere: JobWork = async () => {
  throw new Error('a queued job runs on a worker');
};

function unavailable(url: string): HttpError {
  return new HttpError(503, `queue unavailable: Redis at ${url} cannot be reached; try again shortly`);
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export class QueueJobRunner implements JobRunner {
  private readonly redis: Redis;
  private readonly results: ResultStore;
  private readonly queues = new Map<string, Queue>();
  private readonly events = new Map<string, QueueEvents>();
  private readonly jobs = new Map<string, Job>();
  /** Which model queue each local job went to. */
  private readonly jobQueue = new Map<string, Queue>();
  private announced: ServedModel[] = [];
  private workers = 0;
  private readonly timer: NodeJS.Timeout;
  private polling = false;
  private closed = false;
  readonly maxQueued: number;
  private readonly keepMs: number;

  private constructor(private readonly options: QueueRunnerOptions) {
    this.redis = commandConnection(options.url, 'muse-api');
    this.maxQueued = options.maxQueued ?? 8;
    this.keepMs = options.keepMs ?? 15 * 60_000;
    this.results = new ResultStore(this.redis, Math.ceil(this.keepMs / 1000));
    this.timer = setInterval(() => void this.poll(), options.pollMs ?? 1000);
  }

  /** A runner on the Redis at options.url; starts even while Redis is down (requests are then 503). */
  static async open(options: QueueRunnerOptions): Promise<QueueJobRunner> {
    const runner = new QueueJobRunner(options);
    await waitReady(runner.redis, options.url, 3000).catch(() => {});
    await runner.poll().catch(() => {});
    return runner;
  }

  /** Whether Redis is reachable now. */
  get available(): boolean {
    return isReady(this.redis);
  }

  models(): ServedModel[] {
    if (!this.available) throw unavailable(this.options.url);
    return this.announced;
  }

  async submit(r: ComputeRequest, submit: { previews?: boolean } = {}): Promise<Job> {
    if (this.closed) throw new HttpError(503, 'the server is shutting down');
    if (!this.available) throw unavailable(this.options.url);
    const queue = this.queueFor(r.model.name);
    let waiting: number;
    try {
      waiting = await withTimeout(queue.getWaitingCount(), this.options.addTimeoutMs ?? 3000);
    } catch {
      throw unavailable(this.options.url);
    }
    if (waiting >= this.maxQueued)
      throw new HttpError(429, `the queue is full (${this.maxQueued} jobs waiting); try again later`);
    this.prune();
    const job = new Job(requestSummary(r), notRunHere);
    const data: GenerationJobData = {
      model: r.model.name,
      verb: r.verb,
      prompt: r.prompt,
      options: r.options,
      previews: submit.previews ?? true,
      ...(r.image ? { image: toWire(r.image) } : {}),
      ...(r.mask ? { mask: toWire(r.mask) } : {}),
    };
    this.jobs.set(job.id, job);
    this.jobQueue.set(job.id, queue);
    try {
      await withTimeout(
        queue.add('generate', data, {
          jobId: job.id,
          attempts: this.options.attempts ?? 3,
          backoff: { type: 'exponential', delay: this.options.backoffMs ?? 1000 },
          removeOnComplete: { age: Math.ceil(this.keepMs / 1000) },
          // Failed jobs stay a week (the dead-letter view of `muse queue status --failed`).
          removeOnFail: { age: 7 * 24 * 3600, count: 1000 },
        }),
        this.options.addTimeoutMs ?? 3000,
      );
    } catch {
      this.jobs.delete(job.id);
      this.jobQueue.delete(job.id);
      throw unavailable(this.options.url);
    }
    job.emit({ type: 'queued', data: { id: job.id, position: waiting + 1 } });
    return job;
  }

  get(id: string): Job | undefined {
    this.prune();
    return this.jobs.get(id);
  }

  async cancel(job: Job): Promise<void> {
    if (job.finishedState) return;
    const queue = this.jobQueue.get(job.id);
    try {
      // The flag reaches a worker that runs (or is about to run) the job: it stops at its next step.
      await this.redis.set(cancelKey(job.id), '1', 'EX', 3600);
      const bull = queue ? await BullJob.fromId(queue, job.id) : undefined;
      if (bull && ((await bull.isWaiting()) || (await bull.isDelayed()))) {
        await bull.remove().then(
          () => job.finish('cancelled', {}),
          () => {}, // taken by a worker meanwhile: the flag stops it
        );
      }
    } catch {
      throw unavailable(this.options.url);
    }
  }

  position(): undefined {
    return undefined;
  }

  async health(): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = { mode: 'queue', available: this.available, workers: this.workers };
    if (!this.available) return out;
    let waiting = 0;
    let active = 0;
    for (const q of this.queues.values()) {
      const c = await q.getJobCounts('waiting', 'active').catch(() => ({ waiting: 0, active: 0 }));
      waiting += c.waiting ?? 0;
      active += c.active ?? 0;
    }
    return { ...out, waiting, running: active, max: this.maxQueued };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const job of this.jobs.values()) {
      if (job.finishedState) continue;
      await withTimeout(this.cancel(job), 1000).catch(() => {});
      if (!job.finishedState) job.finish('cancelled', {});
    }
    await Promise.all([...this.events.values()].map((e) => e.close().catch(() => {})));
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => {})));
    this.redis.disconnect();
  }

  /** Forgets finished jobs older than keepMs. */
  private prune(): void {
    const now = Date.now();
    for (const [id, job] of this.jobs)
      if (job.finishedState && now - (job.finished as number) > this.keepMs) {
        this.jobs.delete(id);
        this.jobQueue.delete(id);
      }
  }

  /** The BullMQ queue of a model, with its event reader (made on first use). */
  private queueFor(model: string): Queue {
    const name = generationQueue(model);
    let queue = this.queues.get(name);
    if (queue) return queue;
    queue = new Queue(name, { connection: this.redis, prefix: BULL_PREFIX });
    queue.on('error', () => {});
    this.queues.set(name, queue);
    const events = new QueueEvents(name, { connection: blockingOptions(this.options.url), prefix: BULL_PREFIX });
    events.on('error', () => {});
    events.on('active', ({ jobId }) => {
      const job = this.jobs.get(jobId);
      if (job && job.status === 'queued') this.start(job);
    });
    events.on('progress', ({ jobId, data }) => {
      const job = this.jobs.get(jobId);
      if (!job || job.finishedState || typeof data !== 'object') return;
      if (job.status === 'queued') this.start(job);
      const p = data as unknown as GenerationProgress & { worker?: string };
      job.step = p.step;
      job.total = p.total;
      job.emit({
        type: 'progress',
        data: { id: job.id, step: p.step, total: p.total, previews: p.previews, worker: p.worker },
      });
    });
    events.on('completed', ({ jobId, returnvalue }) => {
      const job = this.jobs.get(jobId);
      if (job && !job.finishedState) void this.complete(job, returnvalue as unknown);
    });
    events.on('failed', ({ jobId, failedReason }) => {
      const job = this.jobs.get(jobId);
      if (job && !job.finishedState) this.fail(job, failedReason);
    });
    this.events.set(name, events);
    return queue;
  }

  private start(job: Job): void {
    job.status = 'running';
    job.started = Date.now();
    job.emit({ type: 'started', data: { id: job.id } });
  }

  private async complete(job: Job, returnvalue: unknown): Promise<void> {
    const rv = (typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue) as GenerationJobReturn | null;
    if (rv?.status === 'cancelled') {
      if (!job.finishedState) job.finish('cancelled', {});
      return;
    }
    try {
      const result = await this.results.get(job.id);
      if (job.finishedState) return;
      if (result) job.finish('succeeded', { result });
      else job.finish('failed', { error: 'the result of this job is gone (expired or lost)', errorStatus: 500 });
    } catch {
      // Redis went away between the event and the read: the poll finishes the job later.
    }
  }

  private fail(job: Job, reason: string | undefined): void {
    const f = parseFailure(reason);
    job.finish('failed', { error: f.message, errorStatus: f.status });
  }

  /** Refreshes the announced models and reconciles unfinished jobs with Redis. */
  private async poll(): Promise<void> {
    if (this.polling || this.closed || !this.available) return;
    this.polling = true;
    try {
      await this.refreshModels();
      const now = Date.now();
      for (const job of [...this.jobs.values()]) {
        if (job.finishedState) continue;
        const queue = this.jobQueue.get(job.id);
        if (!queue) continue;
        const state = await queue.getJobState(job.id);
        if (job.finishedState) continue;
        if (state === 'completed') {
          const bull = await BullJob.fromId(queue, job.id);
          await this.complete(job, bull?.returnvalue);
        } else if (state === 'failed') {
          const bull = await BullJob.fromId(queue, job.id);
          this.fail(job, bull?.failedReason);
        } else if (state === 'unknown' && now - job.created > 2000) {
          job.finish('failed', {
            error: 'queue unavailable: the queue lost this job (Redis restarted without its data); submit it again',
            errorStatus: 503,
          });
        } else if (state === 'active' && job.status === 'queued') this.start(job);
      }
    } catch {
      // Redis away: the next poll tries again.
    } finally {
      this.polling = false;
    }
  }

  private async refreshModels(): Promise<void> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await this.redis.scan(cursor, 'MATCH', WORKER_KEYS, 'COUNT', 200);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0');
    const values = keys.length ? await this.redis.mget(...keys) : [];
    const byName = new Map<string, ModelInfo>();
    let workers = 0;
    for (const v of values) {
      if (!v) continue;
      workers++;
      for (const info of (JSON.parse(v) as WorkerAnnouncement).models)
        if (!byName.has(info.name)) byName.set(info.name, info);
    }
    this.workers = workers;
    this.announced = [...byName.values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((info) => ({ name: info.name, info }));
    for (const m of this.announced) this.queueFor(m.name);
  }
}
