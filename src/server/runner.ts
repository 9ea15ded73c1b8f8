// How the HTTP app runs a job: one small interface with two implementations.
// - InProcessRunner (here): the models are loaded in this process and jobs run one at a time on the
//   bounded JobQueue (jobs.ts).
// - QueueJobRunner (src/queue/runner.ts, loaded only by `muse serve --queue`): jobs become BullMQ jobs
//   on Redis, run by `muse worker` processes; progress and results come back as the same Job events.
// The app sees only Job objects (status, progress events, result), whichever runs them.
import { type Job, JobQueue, type QueueOptions } from './jobs.js';
import type { ServedModel } from './models.js';
import { type ComputeRequest, requestSummary, workFor } from './requests.js';

export interface JobRunner {
  /** The models requests may name: loaded here (in-process) or announced by workers (queue). */
  models(): ServedModel[];
  /**
   * Queues a checked request; HttpError 429 (queue full) or 503 (shutting down, queue unavailable).
   * previews: false when no one can watch the job (in-process previews are made only for listeners anyway).
   */
  submit(r: ComputeRequest, options?: { previews?: boolean }): Promise<Job>;
  /** A job submitted here, while it is kept. */
  get(id: string): Job | undefined;
  /** Cancels a waiting job at once, a running one at its next decoding step. */
  cancel(job: Job): Promise<void>;
  /** 1 for the next job to run; undefined when not known. */
  position(job: Job): number | undefined;
  /** What /api/health reports about the queue. */
  health(): Promise<Record<string, unknown>>;
  /** Cancels what is left and lets go of resources. */
  close(): Promise<void>;
}

export class InProcessRunner implements JobRunner {
  readonly queue: JobQueue;

  constructor(
    private readonly served: ServedModel[],
    options: QueueOptions & { maxQueued: number },
  ) {
    if (!served.length) throw new Error('a server needs at least one model');
    this.queue = new JobQueue(options);
  }

  models(): ServedModel[] {
    return this.served;
  }

  async submit(r: ComputeRequest): Promise<Job> {
    return this.queue.submit(requestSummary(r), workFor(r));
  }

  get(id: string): Job | undefined {
    return this.queue.get(id);
  }

  async cancel(job: Job): Promise<void> {
    this.queue.cancel(job);
  }

  position(job: Job): number {
    return this.queue.position(job);
  }

  async health(): Promise<Record<string, unknown>> {
    return { waiting: this.queue.length, running: this.queue.busy, max: this.queue.maxQueued };
  }

  close(): Promise<void> {
    return this.queue.close();
  }
}
