// `muse serve`'s HTTP server (fastify): the native job API with server-sent progress events, the
// OpenAI-compatible image endpoints, served result files and the web UI at /.
//
//   POST   /api/jobs               {verb, model, prompt, options, image, mask} → {id, status}
//   GET    /api/jobs/:id           status, progress and (when done) the images as base64 PNG
//   GET    /api/jobs/:id/events    text/event-stream: queued, started, progress {step, total, previews},
//                                  then result {images}, error {message} or cancelled
//   DELETE /api/jobs/:id           cancels (a running job stops between decoding steps)
//   GET    /api/models, /api/health
//   POST   /v1/images/generations  OpenAI: {prompt, n, size "32x32", response_format, ...}
//   POST   /v1/images/edits        OpenAI: multipart image, mask, prompt → inpainting
//   GET    /v1/files/:name         images answered with response_format "url" (kept fileTtlMs)
//
// Every computation goes through a JobRunner (runner.ts): in-process, one bounded JobQueue (see
// jobs.ts: the tensor backend is not re-entrant, so jobs run one at a time); with `muse serve --queue`,
// BullMQ jobs on Redis run by `muse worker` processes (src/queue), with the same events and answers. Every error is JSON {error: {message}} with a 4xx status
// for a bad request; the server keeps serving after any of them.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import multipart from '@fastify/multipart';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { MuseError, userMessage } from '../util/errors.js';
import { packageRoot } from '../util/package-root.js';
import { registerClientRoutes } from './client-routes.js';
import { HttpError } from './errors.js';
import { fromBase64, readMask, readUpload } from './image-input.js';
import { type Job, terminalEvent } from './jobs.js';
import { ModelSet, modelInfo, type ServedModel, VERBS, type Verb } from './models.js';
import {
  type ComputeRequest,
  checkRequest,
  DEFAULT_LIMITS,
  number,
  parseOptions,
  type ServerLimits,
  text,
} from './requests.js';
import { InProcessRunner, type JobRunner } from './runner.js';

export interface ServerOptions {
  /** Models loaded in this process: jobs run here, one at a time (the default runner). */
  models?: ServedModel[];
  /** Runs jobs elsewhere instead (src/queue's QueueJobRunner: BullMQ workers); then `models` is unused. */
  runner?: JobRunner;
  limits?: Partial<ServerLimits>;
  /** Folder of the web UI (default: the package's web/). */
  webRoot?: string;
  /** Folder of the browser bundle served for client-side generation (default: the package's dist/web). */
  bundleDir?: string;
  /** fastify's logger option (default off). */
  logger?: boolean;
}

export interface MuseServer {
  app: FastifyInstance;
  runner: JobRunner;
  limits: ServerLimits;
}

const WEB_FILES: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/app.js': 'app.js',
  '/style.css': 'style.css',
};
const WEB_TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

/** OpenAI request fields that are accepted and ignored (they have no meaning for these models). */
const OPENAI_IGNORED = ['quality', 'style', 'user', 'background', 'moderation', 'output_format', 'output_compression'];

/** Images answered as URLs: kept for a limited time, the oldest dropped beyond a count. */
class FileStore {
  private readonly files = new Map<string, { png: Buffer; expires: number }>();
  constructor(private readonly limits: ServerLimits) {}

  add(png: Buffer): string {
    this.prune();
    const name = `${randomUUID()}.png`;
    this.files.set(name, { png, expires: Date.now() + this.limits.fileTtlMs });
    while (this.files.size > this.limits.maxFiles) this.files.delete(this.files.keys().next().value as string);
    return name;
  }

  get(name: string): Buffer | undefined {
    this.prune();
    return this.files.get(name)?.png;
  }

  private prune(): void {
    const now = Date.now();
    for (const [name, f] of this.files) if (f.expires < now) this.files.delete(name);
  }
}

function requireJson(request: FastifyRequest): Record<string, unknown> {
  const type = request.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type))
    throw new HttpError(
      415,
      `send the request as application/json (got ${type ? JSON.stringify(type) : 'no content type'})`,
    );
  const body = request.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new HttpError(400, 'the request body must be a JSON object');
  return body as Record<string, unknown>;
}

/** "32x32" (OpenAI's size) → 32; the model must make square images of that size. */
function openAiSize(value: unknown, model: ServedModel): number | undefined {
  if (value === undefined || value === null || value === 'auto') return undefined;
  const m = typeof value === 'string' ? /^(\d{1,5})x(\d{1,5})$/.exec(value) : null;
  if (!m) throw new HttpError(400, `size must be like "32x32", got ${JSON.stringify(value)}`);
  if (m[1] !== m[2]) throw new HttpError(400, `size ${value}: this server makes square images only`);
  const size = Number(m[1]);
  const sizes = modelInfo(model).sizes;
  if (!sizes.includes(size))
    throw new HttpError(400, `size ${value}: model ${model.name} makes ${sizes.map((s) => `${s}x${s}`).join(' or ')}`);
  return size;
}

function responseFormat(value: unknown): 'b64_json' | 'url' {
  if (value === undefined || value === null) return 'b64_json';
  if (value !== 'b64_json' && value !== 'url')
    throw new HttpError(400, `response_format must be b64_json or url, got ${JSON.stringify(value)}`);
  return value;
}

/** The state of a job as GET /api/jobs/:id reports it. */
function jobView(job: Job, runner: JobRunner): Record<string, unknown> {
  const view: Record<string, unknown> = {
    id: job.id,
    status: job.status,
    ...job.summary,
    created: job.created,
    started: job.started ?? null,
    finished: job.finished ?? null,
    progress: { step: job.step, total: job.total },
  };
  if (job.status === 'queued') view.position = runner.position(job) ?? null;
  if (job.status === 'succeeded') view.result = terminalEvent(job).data;
  if (job.status === 'failed') view.error = { message: job.error };
  return view;
}

export async function createServer(options: ServerOptions): Promise<MuseServer> {
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const webRoot = options.webRoot ?? join(packageRoot(), 'web');
  const runner =
    options.runner ??
    new InProcessRunner(options.models ?? [], {
      maxQueued: limits.maxQueued,
      describeError: (err) => {
        const message = userMessage(err);
        if (message !== undefined) return { status: 400, message };
        app.log.error(err);
        return { status: 500, message: `internal error: ${(err as Error)?.message ?? err}` };
      },
    });
  const models = new ModelSet(() => runner.models());
  const files = new FileStore(limits);
  const app = Fastify({
    bodyLimit: limits.maxBodyBytes,
    logger: options.logger ?? false,
    forceCloseConnections: true,
  });
  await app.register(multipart, {
    limits: { fileSize: limits.maxImageBytes, files: 2, fields: 24, fieldSize: 64 * 1024, parts: 26 },
  });

  app.setErrorHandler((err: unknown, request, reply) => {
    const e = err as { statusCode?: number; message?: string; code?: string };
    let status = 500;
    let message = 'internal server error';
    if (err instanceof HttpError) [status, message] = [err.statusCode, err.message];
    else if (err instanceof MuseError) [status, message] = [400, err.message];
    else if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500)
      [status, message] = [e.statusCode, e.message ?? 'bad request'];
    else request.log.error(err);
    if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      message = `unsupported content type ${JSON.stringify(request.headers['content-type'] ?? '')}: send application/json (multipart/form-data for /v1/images/edits)`;
    if (status === 413 && !/\d/.test(message))
      message = `${message} (this server takes bodies up to ${limits.maxBodyBytes} bytes, images up to ${limits.maxImageBytes})`;
    reply.code(status).send({ error: { message, ...(e.code && status < 500 ? { code: e.code } : {}) } });
  });
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({ error: { message: `no such endpoint: ${request.method} ${request.url.split('?')[0]}` } });
  });
  app.addHook('onClose', async () => {
    await runner.close();
  });

  // The web UI: three static files, read once.
  const web = new Map<string, { body: string; type: string }>();
  for (const [route, file] of Object.entries(WEB_FILES)) {
    app.get(route, async (_request, reply) => {
      let f = web.get(file);
      if (!f) {
        f = { body: readFileSync(join(webRoot, file), 'utf8'), type: WEB_TYPES[file.split('.').pop() as string] };
        web.set(file, f);
      }
      reply.type(f.type).header('cache-control', 'no-cache').send(f.body);
    });
  }

  // Client-side generation: bundle, wasm, text encoder and model files; COOP/COEP on every answer.
  registerClientRoutes(app, options.models ?? [], { bundleDir: options.bundleDir });

  app.get('/api/health', async () => ({
    status: 'ok',
    models: models.models.map((m) => m.name),
    queue: await runner.health(),
  }));

  app.get('/api/models', async () => ({ models: models.info(), limits }));

  const getJob = (id: string): Job => {
    const job = runner.get(id);
    if (!job) throw new HttpError(404, `no job ${id} (unknown, or finished long ago and forgotten)`);
    return job;
  };

  app.post('/api/jobs', async (request, reply) => {
    const body = requireJson(request);
    for (const key of Object.keys(body))
      if (!['verb', 'model', 'prompt', 'options', 'image', 'mask'].includes(key))
        throw new HttpError(
          400,
          `unknown field ${JSON.stringify(key)}; fields are verb, model, prompt, options, image, mask`,
        );
    const verb = (body.verb ?? 'generate') as Verb;
    if (!VERBS.includes(verb))
      throw new HttpError(400, `verb must be one of ${VERBS.join(', ')}, got ${JSON.stringify(body.verb)}`);
    const model = models.get(body.model);
    const prompt = text(body.prompt, 'prompt', limits, verb !== 'upscale') ?? '';
    const options = parseOptions(body.options, model, limits);
    const r: ComputeRequest = { verb, model, prompt, options };
    if (body.image !== undefined)
      r.image = await readUpload(
        fromBase64(body.image, 'image', limits.maxImageBytes),
        'image',
        modelInfo(model).sizes,
        limits.maxInputSide,
      );
    if (body.mask !== undefined) {
      if (!r.image) throw new HttpError(400, 'a mask needs an image');
      r.mask = await readMask(
        fromBase64(body.mask, 'mask', limits.maxImageBytes),
        'mask',
        r.image,
        limits.maxInputSide,
      );
    }
    checkRequest(r);
    const job = await runner.submit(r);
    reply.code(202);
    return { id: job.id, status: job.status };
  });

  app.get<{ Params: { id: string } }>('/api/jobs/:id', async (request) => jobView(getJob(request.params.id), runner));

  app.delete<{ Params: { id: string } }>('/api/jobs/:id', async (request, reply) => {
    const job = getJob(request.params.id);
    if (job.status === 'succeeded' || job.status === 'failed')
      throw new HttpError(409, `job ${job.id} has already ${job.status === 'failed' ? 'failed' : 'finished'}`);
    await runner.cancel(job);
    reply.code(202);
    return { id: job.id, status: job.status === 'running' ? 'cancelling' : job.status };
  });

  app.get<{ Params: { id: string } }>('/api/jobs/:id/events', (request, reply) => {
    const job = getJob(request.params.id);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    const send = (type: string, data: unknown) => res.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
    send('status', { id: job.id, status: job.status, step: job.step, total: job.total });
    if (job.finishedState) {
      const end = terminalEvent(job);
      send(end.type, end.data);
      res.end();
      return;
    }
    if (job.lastProgress) send('progress', job.lastProgress.data);
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
    const listener = (event: { type: string; data: unknown }) => {
      send(event.type, event.data);
      if (event.type === 'result' || event.type === 'error' || event.type === 'cancelled') {
        cleanup();
        res.end();
      }
    };
    const cleanup = () => {
      clearInterval(ping);
      job.events.off('event', listener);
    };
    job.events.on('event', listener);
    res.on('close', cleanup);
  });

  /** Queues a request and waits for it; a client that goes away cancels its job. */
  async function runNow(r: ComputeRequest, request: FastifyRequest, reply: FastifyReply): Promise<Job> {
    checkRequest(r);
    // Nobody can watch this job's progress (its id is not answered): no previews.
    const job = await runner.submit(r, { previews: false });
    const gone = () => {
      if (!reply.raw.writableEnded) void runner.cancel(job).catch(() => {});
    };
    request.raw.socket.once('close', gone);
    try {
      await job.done;
    } finally {
      request.raw.socket.off('close', gone);
    }
    if (job.status === 'cancelled') throw new HttpError(409, `job ${job.id} was cancelled`);
    if (job.status === 'failed') throw new HttpError(job.errorStatus ?? 500, job.error ?? 'the job failed');
    return job;
  }

  const openAiAnswer = (job: Job, format: 'b64_json' | 'url', request: FastifyRequest) => ({
    created: Math.floor(Date.now() / 1000),
    data: (job.result?.images ?? []).map((im) =>
      format === 'b64_json'
        ? { b64_json: im.png.toString('base64'), revised_prompt: job.summary.prompt, seed: im.seed }
        : { url: `${request.protocol}://${request.host}/v1/files/${files.add(im.png)}`, seed: im.seed },
    ),
  });

  /** The options OpenAI requests share (plus seed, negative_prompt, steps, guidance). */
  function openAiOptions(f: Record<string, unknown>, model: ServedModel, known: string[]) {
    for (const key of Object.keys(f))
      if (!known.includes(key) && !OPENAI_IGNORED.includes(key))
        throw new HttpError(400, `unknown field ${JSON.stringify(key)}; fields are ${known.join(', ')}`);
    return parseOptions(
      {
        n: number(f.n, 'n', { min: 1, max: limits.maxImages, integer: true }),
        size: openAiSize(f.size, model),
        seed: f.seed,
        steps: f.steps,
        guidance: f.guidance,
        negative: f.negative_prompt,
      },
      model,
      limits,
    );
  }

  const generationFields = [
    'prompt',
    'model',
    'n',
    'size',
    'response_format',
    'seed',
    'negative_prompt',
    'steps',
    'guidance',
  ];

  app.post('/v1/images/generations', async (request, reply) => {
    const body = requireJson(request);
    const model = models.get(body.model);
    const format = responseFormat(body.response_format);
    const prompt = text(body.prompt, 'prompt', limits, true) as string;
    const options = openAiOptions(body, model, generationFields);
    const job = await runNow({ verb: 'generate', model, prompt, options }, request, reply);
    return openAiAnswer(job, format, request);
  });

  app.post('/v1/images/edits', async (request, reply) => {
    if (!request.isMultipart())
      throw new HttpError(415, 'send /v1/images/edits as multipart/form-data (image, mask, prompt, ...)');
    const fields: Record<string, unknown> = {};
    const uploads: Record<string, Buffer> = {};
    for await (const part of request.parts()) {
      const name = part.fieldname.replace(/\[\]$/, '');
      if (part.type === 'file') {
        if (name !== 'image' && name !== 'mask')
          throw new HttpError(400, `unexpected file field ${JSON.stringify(part.fieldname)}; send image and mask`);
        uploads[name] = await part.toBuffer();
      } else fields[name] = part.value;
    }
    if (!uploads.image) throw new HttpError(400, 'image (a PNG file) is required');
    const model = models.get(fields.model);
    const format = responseFormat(fields.response_format);
    const prompt = text(fields.prompt, 'prompt', limits, true) as string;
    const options = openAiOptions(fields, model, generationFields);
    const image = await readUpload(uploads.image, 'image', modelInfo(model).sizes, limits.maxInputSide);
    // OpenAI's convention: transparent pixels of the mask (or of the image, with no mask) are edited;
    // a mask without alpha is read as white = regenerate.
    const mask = await readMask(
      uploads.mask ?? uploads.image,
      uploads.mask ? 'mask' : 'image (as mask)',
      image,
      limits.maxInputSide,
      true,
    );
    const job = await runNow({ verb: 'inpaint', model, prompt, options, image, mask }, request, reply);
    return openAiAnswer(job, format, request);
  });

  app.get<{ Params: { name: string } }>('/v1/files/:name', async (request, reply) => {
    const png = files.get(request.params.name);
    if (!png)
      throw new HttpError(
        404,
        `no file ${request.params.name} (unknown, or older than the ${limits.fileTtlMs / 60000} minutes files are kept)`,
      );
    reply.type('image/png').send(png);
  });

  return { app, runner, limits };
}
