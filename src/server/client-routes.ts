// `muse serve`'s routes for generating in the browser: the browser bundle, the wasm files, the text
// encoder and the model files (client-files.ts lays them out, the same as `muse export-web`), and the
// cross-origin isolation headers on every answer, so the page can run tfjs-wasm threaded. When the
// bundle is not built (no dist/web), models/index.json lists no models and the page keeps to the server.
import { createReadStream, statSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { MusePipeline } from '../pipeline/pipeline.js';
import { type ClientFile, clientFiles, ISOLATION_HEADERS } from './client-files.js';
import type { ServedModel } from './models.js';

export function registerClientRoutes(
  app: FastifyInstance,
  models: ServedModel[],
  options: { bundleDir?: string } = {},
): { files: number; reason?: string } {
  app.addHook('onSend', async (_request, reply, payload) => {
    for (const [k, v] of Object.entries(ISOLATION_HEADERS)) reply.header(k, v);
    return payload;
  });
  const muse = models.filter((m) => m.pipeline instanceof MusePipeline);
  let files: ClientFile[] = [];
  let index: { models: unknown[] } = { models: [] };
  let reason: string | undefined;
  try {
    ({ files, index } = clientFiles(
      muse.map((m) => ({ name: m.name, folder: (m.pipeline as MusePipeline).folder })),
      options,
    ));
  } catch (err) {
    reason = (err as Error).message;
  }
  app.get('/models/index.json', async (_request, reply) => {
    reply.header('cache-control', 'no-cache').send({ ...index, ...(reason ? { unavailable: reason } : {}) });
  });
  for (const f of files) {
    app.get(`/${f.url}`, async (_request, reply) => {
      const size = statSync(f.path).size;
      reply.type(f.type).header('content-length', size).header('cache-control', 'no-cache');
      return reply.send(createReadStream(f.path));
    });
  }
  return { files: files.length, reason };
}
