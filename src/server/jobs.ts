// Jobs and the queue that runs them one at a time.
//
// Why one at a time: the tensor backend (tfjs on wasm, one heap, kernels that keep state between
// calls) is not re-entrant, and a pipeline call awaits between its decoding steps, so two requests
// running at once would interleave their steps on the same backend. Every request that computes is
// therefore a Job in one FIFO queue; a single worker loop takes the next job when the previous one
// has finished. The queue is bounded (maxQueued waiting jobs): beyond it a request is refused at once
// (429) rather than left to wait without end. Finished jobs are kept for `keepMs` (and at most
// `keepJobs` of them) so their results can be fetched, then forgotten.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { HttpError, JobCancelled } from './errors.js';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface JobImage {
  /** PNG bytes. */
  png: Buffer;
  width: number;
  height: number;
  /** The seed that makes this image alone (n = 1) for generate; the request's seed otherwise. */
  seed: number;
}

export interface JobResult {
  images: JobImage[];
  notes: string[];
}

/** One server-sent event: progress (step, total, previews), then result, error or cancelled. */
export interface JobEvent {
  type: 'queued' | 'started' | 'progress' | 'result' | 'error' | 'cancelled';
  data: Record<string, unknown>;
}

/** What a job runs: reports progress through `progress` and may be stopped through `signal`. */
export type JobWork = (ctx: {
  signal: AbortSignal;
  progress: (step: number, total: number, previews: () => Promise<string[]>) => Promise<void>;
}) => Promise<JobResult>;

export class Job {
  readonly id = randomUUID();
  readonly created = Date.now();
  status: JobStatus = 'queued';
  started?: number;
  finished?: number;
  step = 0;
  total = 0;
  result?: JobResult;
  error?: string;
  /** The HTTP status a failure maps to (400: the request could not be done; 500: a bug). */
  errorStatus?: number;
  /** The last progress event (a late subscriber gets it first). */
  lastProgress?: JobEvent;
  readonly events = new EventEmitter();
  readonly abort = new AbortController();
  /** Settles when the job is finished (any way). */
  readonly done: Promise<void>;
  private settle!: () => void;

  constructor(
    readonly summary: Record<string, unknown>,
    readonly work: JobWork,
  ) {
    this.events.setMaxListeners(100);
    this.done = new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  get finishedState(): boolean {
    return this.status === 'succeeded' || this.status === 'failed' || this.status === 'cancelled';
  }

  emit(event: JobEvent): void {
    if (event.type === 'progress') this.lastProgress = event;
    this.events.emit('event', event);
  }

  finish(
    status: 'succeeded' | 'failed' | 'cancelled',
    detail: { result?: JobResult; error?: string; errorStatus?: number },
  ): void {
    this.status = status;
    this.finished = Date.now();
    this.result = detail.result;
    this.error = detail.error;
    this.errorStatus = detail.errorStatus;
    this.emit(terminalEvent(this));
    this.settle();
  }
}

/** The event that ends a job's stream. */
export function terminalEvent(job: Job): JobEvent {
  if (job.status === 'succeeded')
    return {
      type: 'result',
      data: {
        id: job.id,
        images: (job.result as JobResult).images.map((im) => ({
          b64_json: im.png.toString('base64'),
          width: im.width,
          height: im.height,
          seed: im.seed,
        })),
        notes: (job.result as JobResult).notes,
      },
    };
  if (job.status === 'cancelled') return { type: 'cancelled', data: { id: job.id } };
  return { type: 'error', data: { id: job.id, message: job.error ?? 'failed' } };
}

export interface QueueOptions {
  /** Jobs that may wait behind the running one (default 8). */
  maxQueued?: number;
  /** How long a finished job is kept (default 15 minutes). */
  keepMs?: number;
  /** Most finished jobs kept (default 200). */
  keepJobs?: number;
  /** Turns a failure into the message a client sees (undefined: a generic one, logged). */
  describeError?: (err: unknown) => { status: number; message: string };
}

export class JobQueue {
  private readonly jobs = new Map<string, Job>();
  private readonly waiting: Job[] = [];
  private running?: Job;
  readonly maxQueued: number;
  private readonly keepMs: number;
  private readonly keepJobs: number;
  private closed = false;

  constructor(private readonly options: QueueOptions = {}) {
    this.maxQueued = options.maxQueued ?? 8;
    this.keepMs = options.keepMs ?? 15 * 60_000;
    this.keepJobs = options.keepJobs ?? 200;
  }

  get(id: string): Job | undefined {
    this.prune();
    return this.jobs.get(id);
  }

  /** 1 for the next job to run. */
  position(job: Job): number {
    return this.waiting.indexOf(job) + 1;
  }

  get length(): number {
    return this.waiting.length;
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  /** Adds a job; 429 when maxQueued jobs already wait. */
  submit(summary: Record<string, unknown>, work: JobWork): Job {
    if (this.closed) throw new HttpError(503, 'the server is shutting down');
    if (this.waiting.length >= this.maxQueued)
      throw new HttpError(429, `the queue is full (${this.maxQueued} jobs waiting); try again later`);
    this.prune();
    const job = new Job(summary, work);
    this.jobs.set(job.id, job);
    this.waiting.push(job);
    job.emit({ type: 'queued', data: { id: job.id, position: this.waiting.length } });
    queueMicrotask(() => void this.pump());
    return job;
  }

  /** Cancels a waiting job at once, a running one at its next decoding step. */
  cancel(job: Job): void {
    if (job.finishedState) return;
    const at = this.waiting.indexOf(job);
    if (at >= 0) {
      this.waiting.splice(at, 1);
      job.finish('cancelled', {});
      return;
    }
    job.abort.abort();
  }

  /** Cancels everything (server close) and waits for the running job to stop. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of [...this.waiting]) this.cancel(job);
    const running = this.running;
    if (running) {
      this.cancel(running);
      await running.done;
    }
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    const job = this.waiting.shift();
    if (!job) return;
    this.running = job;
    job.status = 'running';
    job.started = Date.now();
    job.emit({ type: 'started', data: { id: job.id } });
    try {
      const result = await job.work({
        signal: job.abort.signal,
        progress: async (step, total, previews) => {
          if (job.abort.signal.aborted) throw new JobCancelled();
          job.step = step;
          job.total = total;
          const data: Record<string, unknown> = { id: job.id, step, total };
          // Previews cost a decode and a PNG encode: only made when someone listens.
          if (job.events.listenerCount('event') > 0) data.previews = await previews();
          job.emit({ type: 'progress', data });
          // Let the event loop run between steps: events flush, other requests (health, cancel) answer.
          await new Promise((resolve) => setImmediate(resolve));
          if (job.abort.signal.aborted) throw new JobCancelled();
        },
      });
      if (job.abort.signal.aborted) job.finish('cancelled', {});
      else job.finish('succeeded', { result });
    } catch (err) {
      if (err instanceof JobCancelled || job.abort.signal.aborted) job.finish('cancelled', {});
      else {
        const d = this.options.describeError?.(err) ?? { status: 500, message: 'the job failed' };
        job.finish('failed', { error: d.message, errorStatus: d.status });
      }
    } finally {
      this.running = undefined;
      queueMicrotask(() => void this.pump());
    }
  }

  /** Forgets finished jobs older than keepMs, and the oldest beyond keepJobs. */
  private prune(): void {
    const now = Date.now();
    const finished = [...this.jobs.values()].filter((j) => j.finishedState);
    for (const j of finished) if (now - (j.finished as number) > this.keepMs) this.jobs.delete(j.id);
    const left = finished.filter((j) => this.jobs.has(j.id));
    for (let i = 0; i < left.length - this.keepJobs; i++) this.jobs.delete(left[i].id);
  }
}
