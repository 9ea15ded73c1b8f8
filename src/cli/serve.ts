// `muse serve`: the HTTP server (web UI, native job API with live progress, OpenAI-compatible image
// endpoints) over one or more model folders, loaded once and shared by every request.
import { parseArgs } from 'node:util';
import { createServer } from '../server/app.js';
import { loadModels } from '../server/models.js';
import { DEFAULT_LIMITS } from '../server/requests.js';
import { MuseError } from '../util/errors.js';
import { defaultModelFolder } from './decoding-options.js';
import { backendHelp, numberOption } from './options.js';

export const serveHelp = `Usage: muse serve [--model DIR ...] [--host 127.0.0.1] [--port 7860] [--max-queue ${DEFAULT_LIMITS.maxQueued}]

  Serves a web UI at / and an HTTP API:
    POST /api/jobs (verb generate|inpaint|outpaint|edit|upscale|img2img) → {id};
    GET /api/jobs/:id, GET /api/jobs/:id/events (server-sent progress with previews),
    DELETE /api/jobs/:id (cancel), GET /api/models, GET /api/health;
    OpenAI-compatible POST /v1/images/generations and POST /v1/images/edits.
  Jobs run one at a time (the tensor backend is not re-entrant) from a queue of bounded length;
  a request beyond it is answered 429.

  --model DIR          a model folder (muse-ts pipeline.json or diffusers aMUSEd); repeat for more;
                        the first is the default (default: the shipped models/emoji)
  --host HOST          address to listen on (default 127.0.0.1: this machine only)
  --port PORT          port (default 7860; 0 picks a free one)
  --max-queue N        jobs that may wait behind the running one (default ${DEFAULT_LIMITS.maxQueued})
${backendHelp}`;

export async function serveCommand(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    console.log(serveHelp);
    return 0;
  }
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: false,
    options: {
      model: { type: 'string', multiple: true },
      host: { type: 'string' },
      port: { type: 'string' },
      'max-queue': { type: 'string' },
    },
  });
  if (positionals.length) throw new MuseError('muse serve takes no positional arguments (see --help)');
  const port = numberOption(values.port, 'port', 7860, { min: 0, max: 65535, integer: true });
  const maxQueued = numberOption(values['max-queue'], 'max-queue', DEFAULT_LIMITS.maxQueued, {
    min: 0,
    max: 10000,
    integer: true,
  });
  const host = values.host ?? '127.0.0.1';
  const folders = values.model?.length ? values.model : [defaultModelFolder()];
  console.error(`loading ${folders.join(', ')} ...`);
  const models = await loadModels(folders);
  const { app } = await createServer({ models, limits: { maxQueued } });
  const address = await app.listen({ host, port });
  console.error(`muse serve: ${address} (models: ${models.map((m) => m.name).join(', ')}); Ctrl-C stops`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  console.error('muse serve: stopping (queued jobs are cancelled)');
  await app.close();
  return 0;
}
