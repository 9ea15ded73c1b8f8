// `muse serve`: the HTTP server (web UI, native job API with live progress, OpenAI-compatible image
// endpoints) over one or more model folders, loaded once and shared by every request.
import { resolveModelArgument } from '../hub/hub-cache.js';
import { createServer } from '../server/app.js';
import { loadModels } from '../server/models.js';
import { DEFAULT_LIMITS } from '../server/requests.js';
import { MuseError } from '../util/errors.js';
import { defaultModelFolder } from './decoding-options.js';
import { backendHelp, helpAsked, numberOption, parseFlags } from './options.js';
import { untilStopSignal } from './signals.js';

export const serveHelp = `Usage: muse serve [--model DIR ...] [--host 127.0.0.1] [--port 7860] [--max-queue ${DEFAULT_LIMITS.maxQueued}]
       muse serve --queue redis://HOST:PORT [--host ...] [--port ...] [--max-queue N]

  Serves a web UI at / and an HTTP API:
    POST /api/jobs (verb generate|inpaint|outpaint|edit|upscale|img2img) → {id};
    GET /api/jobs/:id, GET /api/jobs/:id/events (server-sent progress with previews),
    DELETE /api/jobs/:id (cancel), GET /api/models, GET /api/health;
    OpenAI-compatible POST /v1/images/generations and POST /v1/images/edits.
  Jobs run one at a time (the tensor backend is not re-entrant) from a queue of bounded length;
  a request beyond it is answered 429.

  --model DIR          a model folder (muse-ts pipeline.json or diffusers aMUSEd), or ORG/NAME
                        fetched with muse pull (served as NAME); repeat for more;
                        the first is the default (default: the shipped models/emoji)
  --host HOST          address to listen on (default 127.0.0.1: this machine only)
  --port PORT          port (default 7860; 0 picks a free one)
  --max-queue N        jobs that may wait behind the running one (default ${DEFAULT_LIMITS.maxQueued}; per model
                        with --queue)
  --queue URL          scale out: every request becomes a BullMQ job on the Redis at URL, run by
                        \`muse worker --queue URL --model DIR\` processes (any number, any machine);
                        progress and results come back to the same endpoints. The models are those
                        the live workers announce (no --model here). Redis down: 503 "queue
                        unavailable" until it returns. See docs/DEPLOY.md.
${backendHelp}`;

export async function serveCommand(args: string[]): Promise<number> {
  if (helpAsked(args, serveHelp)) return 0;
  const values = parseFlags(args, 'serve', {
    model: { type: 'string', multiple: true },
    host: { type: 'string' },
    port: { type: 'string' },
    'max-queue': { type: 'string' },
    queue: { type: 'string' },
  });
  const port = numberOption(values.port, 'port', 7860, { min: 0, max: 65535, integer: true });
  const maxQueued = numberOption(values['max-queue'], 'max-queue', DEFAULT_LIMITS.maxQueued, {
    min: 0,
    max: 10000,
    integer: true,
  });
  const host = values.host ?? '127.0.0.1';
  let app: Awaited<ReturnType<typeof createServer>>['app'];
  let what: string;
  if (values.queue !== undefined) {
    if (values.model?.length)
      throw new MuseError('with --queue the workers load the models: give --model to `muse worker`, not to serve');
    const { redisOptions } = await import('../queue/connection.js');
    redisOptions(values.queue); // a bad URL is one line before anything starts
    const { QueueJobRunner } = await import('../queue/runner.js');
    const runner = await QueueJobRunner.open({ url: values.queue, maxQueued });
    ({ app } = await createServer({ runner, limits: { maxQueued } }));
    what = `queue ${values.queue}${runner.available ? '' : ' (not reachable yet: requests answer 503 until it is)'}`;
  } else {
    const given = values.model?.length ? values.model : [defaultModelFolder()];
    // ORG/NAME pulled into the Hugging Face cache resolves as for generate, served under NAME.
    const folders = given.map((m) => resolveModelArgument(m));
    const names = given.map((m, i) => (folders[i] !== m ? m.split('/').pop() : undefined));
    console.error(`loading ${folders.join(', ')} ...`);
    const models = await loadModels(folders, names);
    ({ app } = await createServer({ models, limits: { maxQueued } }));
    what = `models: ${models.map((m) => m.name).join(', ')}`;
  }
  const address = await app.listen({ host, port });
  console.error(`muse serve: ${address} (${what}); Ctrl-C stops`);
  await untilStopSignal();
  console.error('muse serve: stopping (queued jobs are cancelled)');
  await app.close();
  return 0;
}
