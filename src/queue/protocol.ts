// What travels through Redis between `muse serve --queue`, `muse data encode --queue` and `muse worker`:
// queue names, job payloads, key names. Everything here is plain JSON (BullMQ stores job data as JSON).
import type { PixelMask, RgbImage } from '../image/image.js';
import type { ModelInfo, Verb } from '../server/models.js';
import type { RequestOptions } from '../server/requests.js';

/** Prefix of every key this project writes (BullMQ's own keys live under `<PREFIX>:bull:...`). */
export const PREFIX = 'muse';
/** BullMQ's key prefix for our queues. */
export const BULL_PREFIX = `${PREFIX}:bull`;

/**
 * The queue of generation jobs for one model: a worker listens only to the queues of the models it
 * has loaded, so a job never lands on a worker that cannot run it.
 */
export function generationQueue(model: string): string {
  return `generate.${encodeURIComponent(model)}`;
}

export function modelOfQueue(queue: string): string | undefined {
  return queue.startsWith('generate.') ? decodeURIComponent(queue.slice('generate.'.length)) : undefined;
}

/** The queue of dataset-encoding jobs (one job per input shard). */
export const ENCODE_QUEUE = 'encode';

/** An image as it travels in a job: raw pixels in base64 (small: requests are at most a few hundred px). */
export interface WireImage {
  width: number;
  height: number;
  data: string;
}

export function toWire(im: RgbImage | PixelMask): WireImage {
  return { width: im.width, height: im.height, data: Buffer.from(im.data).toString('base64') };
}

export function fromWire(w: WireImage): RgbImage {
  const b = Buffer.from(w.data, 'base64');
  return { width: w.width, height: w.height, data: new Uint8Array(b.buffer, b.byteOffset, b.length) };
}

/** A generation job: the checked request (the API checked it against the model's announced info). */
export interface GenerationJobData {
  model: string;
  verb: Verb;
  prompt: string;
  options: RequestOptions;
  /** Whether progress carries preview PNGs (a decode and an encode per step; off when no one can watch). */
  previews?: boolean;
  image?: WireImage;
  mask?: WireImage;
}

/** What a generation job returns (its images are in the result store, not in the job record). */
export interface GenerationJobReturn {
  status: 'succeeded' | 'cancelled';
}

/** Progress a worker reports after each decoding step. */
export interface GenerationProgress {
  step: number;
  total: number;
  /** Base64 PNG previews of the current decode (the first few images). */
  previews: string[];
}

/** One input shard of a dataset to encode into one cache shard. */
export interface EncodeJobData {
  /** Position of the input shard in the dataset (names the output shard). */
  index: number;
  /** The input shard: a WebDataset .tar or an image folder. */
  input: string;
  out: string;
  tokenizer: string;
  superresTokenizer?: string;
  size: number;
  superresSize?: number;
  shardSize: number;
  captions?: number;
  maxTokens: number;
}

/** A finished shard, as recorded beside it (the done record) and returned by the job. */
export interface EncodedShard {
  index: number;
  /** The output file, or undefined when the input shard had no usable sample. */
  file?: string;
  images: number;
  pairs: number;
  texts: number;
  /** Samples read from the input shard, skipped ones included. */
  samplesRead: number;
  skipped: number;
}

/** Models a worker has loaded, announced under workerKey(id) with a time to live (a heartbeat). */
export interface WorkerAnnouncement {
  id: string;
  host: string;
  pid: number;
  models: ModelInfo[];
  encode: boolean;
  started: number;
}

export const workerKey = (id: string) => `${PREFIX}:worker:${id}`;
export const WORKER_KEYS = `${PREFIX}:worker:*`;
/** A job the API asked to stop (a worker checks it between decoding steps). */
export const cancelKey = (id: string) => `${PREFIX}:cancel:${id}`;
export const resultKey = (id: string) => `${PREFIX}:result:${id}`;

/** Failure reasons carry the HTTP status they map to: "[400] the prompt ..." */
export function failureReason(status: number, message: string): string {
  return `[${status}] ${message}`;
}

export function parseFailure(reason: string | undefined): { status: number; message: string } {
  const m = /^\[(\d{3})\] ([\s\S]*)$/.exec(reason ?? '');
  if (m) return { status: Number(m[1]), message: m[2] };
  return { status: 500, message: reason ? `the job failed on its worker: ${reason}` : 'the job failed' };
}
