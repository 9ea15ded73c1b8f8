// A queue worker: takes generation jobs from the queues of the models it has loaded, and (with
// `encode`) dataset-encoding jobs, one job at a time per process (the tensor backend is not
// re-entrant: one mutex is shared by every BullMQ worker of the process).
//
// Generation: the request is rebuilt from the job's data and run by the same work function as
// in-process (src/server/requests.ts workFor); after each decoding step the worker reports progress
// (step, total, PNG previews) and checks the job's cancel flag. The images go to the result store.
// A request error (bad input for this model) fails at once; any other error is retried with back-off.
// A worker that dies mid-job (kill -9) stops renewing its lock: BullMQ's stalled-job check moves the
// job back to the queue and another worker runs it.
//
// The worker announces its models under muse:worker:<id> with a short time to live, refreshed while
// it runs: the API lists and accepts exactly the models some live worker serves.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { type Job as BullJob, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { JobCancelled } from '../server/errors.js';
import { modelInfo, type ServedModel } from '../server/models.js';
import { type ComputeRequest, workFor } from '../server/requests.js';
import { userMessage } from '../util/errors.js';
import { blockingOptions, commandConnection } from './connection.js';
import { type EncoderCache, encodeShard } from './encode.js';
import {
  BULL_PREFIX,
  cancelKey,
  ENCODE_QUEUE,
  type EncodedShard,
  type EncodeJobData,
  failureReason,
  fromWire,
  type GenerationJobData,
  type GenerationJobReturn,
  generationQueue,
  type WorkerAnnouncement,
  workerKey,
} from './protocol.js';
import { ResultStore } from './results.js';

export interface MuseWorkerOptions {
  url: string;
  /** Loaded models: one queue each. */
  models: ServedModel[];
  /** Also take dataset-encoding jobs. */
  encode?: boolean;
  /** BullMQ lock of an active job (default 30 s); a dead worker's job is retried after it lapses. */
  lockDurationMs?: number;
  /** How often stalled jobs are looked for (default 30 s). */
  stalledIntervalMs?: number;
  /** Seconds results are kept (default 15 minutes). */
  resultTtlSeconds?: number;
  log?: (line: string) => void;
}

/** One job at a time in this process. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async run<T>(f: () => Promise<T>): Promise<T> {
    const before = this.tail;
    let release!: () => void;
    this.tail = new Promise((r) => {
      release = r;
    });
    await before;
    try {
      return await f();
    } finally {
      release();
    }
  }
}

export class MuseWorker {
  readonly id = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  private readonly redis: Redis;
  private readonly results: ResultStore;
  private readonly workers: Worker[] = [];
  private readonly mutex = new Mutex();
  private readonly encoders: EncoderCache = new Map();
  private heartbeat?: NodeJS.Timeout;
  private readonly log: (line: string) => void;
  /** Jobs finished by this process (for logs and tests). */
  done = 0;

  private constructor(private readonly options: MuseWorkerOptions) {
    this.redis = commandConnection(options.url, 'muse-worker');
    this.results = new ResultStore(this.redis, options.resultTtlSeconds);
    this.log = options.log ?? (() => {});
  }

  static async start(options: MuseWorkerOptions): Promise<MuseWorker> {
    const w = new MuseWorker(options);
    const common = {
      connection: blockingOptions(options.url),
      prefix: BULL_PREFIX,
      concurrency: 1,
      lockDuration: options.lockDurationMs ?? 30_000,
      stalledInterval: options.stalledIntervalMs ?? 30_000,
      maxStalledCount: 2,
    };
    for (const m of options.models) {
      const worker = new Worker<GenerationJobData, GenerationJobReturn>(
        generationQueue(m.name),
        (job, _token, signal) => w.mutex.run(() => w.generate(m, job, signal)),
        common,
      );
      w.watch(worker);
    }
    if (options.encode) {
      const worker = new Worker<EncodeJobData, EncodedShard>(
        ENCODE_QUEUE,
        (job) => w.mutex.run(() => w.encodeJob(job)),
        common,
      );
      w.watch(worker);
    }
    await w.announce();
    w.heartbeat = setInterval(() => void w.announce(), 3000);
    return w;
  }

  private watch(worker: Worker): void {
    worker.on('error', () => {}); // Redis away: BullMQ reconnects and resumes
    worker.on('failed', (job, err) =>
      this.log(`job ${job?.id} (${worker.name}) failed, attempt ${job?.attemptsMade}: ${err.message}`),
    );
    worker.on('completed', (job) => {
      this.done++;
      this.log(`job ${job.id} (${worker.name}) done`);
    });
    this.workers.push(worker);
  }

  private async announce(): Promise<void> {
    const a: WorkerAnnouncement = {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      models: this.options.models.map(modelInfo),
      encode: this.options.encode ?? false,
      started: Date.now(),
    };
    await this.redis.set(workerKey(this.id), JSON.stringify(a), 'EX', 10).catch(() => {});
  }

  private async cancelled(id: string | undefined): Promise<boolean> {
    return id !== undefined && (await this.redis.exists(cancelKey(id))) === 1;
  }

  private async generate(
    model: ServedModel,
    job: BullJob<GenerationJobData, GenerationJobReturn>,
    signal?: AbortSignal,
  ): Promise<GenerationJobReturn> {
    if (await this.cancelled(job.id)) return { status: 'cancelled' };
    const d = job.data;
    const r: ComputeRequest = {
      verb: d.verb,
      model,
      prompt: d.prompt,
      options: d.options,
      ...(d.image ? { image: fromWire(d.image) } : {}),
      ...(d.mask ? { mask: fromWire(d.mask) } : {}),
    };
    this.log(`job ${job.id}: ${d.verb} "${d.prompt.slice(0, 60)}" on ${model.name} (attempt ${job.attemptsMade + 1})`);
    try {
      const result = await workFor(r)({
        signal: signal ?? new AbortController().signal,
        progress: async (step, total, previews) => {
          if (signal?.aborted || (await this.cancelled(job.id))) throw new JobCancelled();
          const shown = d.previews === false ? [] : await previews();
          await job.updateProgress({ step, total, previews: shown, worker: this.id });
          // Let timers run between steps (BullMQ renews the job's lock on one).
          await new Promise((resolve) => setImmediate(resolve));
        },
      });
      await this.results.put(job.id as string, result);
      return { status: 'succeeded' };
    } catch (err) {
      if (err instanceof JobCancelled) return { status: 'cancelled' };
      const message = userMessage(err);
      if (message !== undefined) throw new UnrecoverableError(failureReason(400, message));
      throw new Error(failureReason(500, `internal error: ${(err as Error)?.message ?? err}`));
    }
  }

  private async encodeJob(job: BullJob<EncodeJobData, EncodedShard>): Promise<EncodedShard> {
    this.log(`job ${job.id}: encode shard ${job.data.index} (${job.data.input})`);
    try {
      return await encodeShard(job.data, this.encoders);
    } catch (err) {
      if (err instanceof UnrecoverableError) throw err;
      const message = userMessage(err);
      if (message !== undefined) throw new UnrecoverableError(failureReason(400, message));
      throw err;
    }
  }

  /**
   * Stops taking jobs; the current one finishes (up to graceMs), else it is left to BullMQ, which
   * gives it to another worker once its lock lapses.
   */
  async close(graceMs = 60_000): Promise<void> {
    clearInterval(this.heartbeat);
    await this.redis.del(workerKey(this.id)).catch(() => {});
    const graceful = Promise.all(this.workers.map((w) => w.close()));
    const timedOut = await Promise.race([
      graceful.then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), graceMs).unref()),
    ]);
    if (timedOut) await Promise.all(this.workers.map((w) => w.close(true)));
    this.redis.disconnect();
  }
}
