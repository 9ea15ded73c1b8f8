// A `muse serve` server in-process on a free port over the tiny test pipeline, and an SSE reader.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MusePipeline } from '../../src/pipeline/pipeline.js';
import { createServer, type MuseServer } from '../../src/server/app.js';
import type { ServerLimits } from '../../src/server/requests.js';
import { initBackend } from '../../src/tensor/backend.js';
import { writeTinyPipeline } from './tiny-pipeline.js';

export interface TestServer extends MuseServer {
  url: string;
  close: () => Promise<void>;
}

let tiny: Promise<MusePipeline> | undefined;
let folder: string | undefined;

/** The tiny 32 px pipeline, written and loaded once per process. */
export function tinyPipeline(): Promise<MusePipeline> {
  tiny ??= (async () => {
    await initBackend();
    folder = mkdtempSync(join(tmpdir(), 'muse-serve-'));
    await writeTinyPipeline(join(folder, 'tiny'), 32);
    return MusePipeline.load(join(folder, 'tiny'));
  })();
  return tiny;
}

export async function startTestServer(
  limits: Partial<ServerLimits> = {},
  pipeline?: MusePipeline,
  name = 'tiny',
  options: { bundleDir?: string } = {},
): Promise<TestServer> {
  const p = pipeline ?? (await tinyPipeline());
  const server = await createServer({ models: [{ name, pipeline: p }], limits, ...options });
  const address = await server.app.listen({ host: '127.0.0.1', port: 0 });
  return { ...server, url: address, close: () => server.app.close() };
}

export function removeTinyFolder(): void {
  if (folder) rmSync(folder, { recursive: true, force: true });
}

export interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

/** Reads a text/event-stream until it ends (or `until` says stop), collecting its events. */
export async function readEvents(
  url: string,
  onEvent?: (e: SseEvent) => void | Promise<void>,
  until?: (e: SseEvent) => boolean,
): Promise<SseEvent[]> {
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  const events: SseEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let at = buffer.indexOf('\n\n');
    while (at >= 0) {
      const block = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      at = buffer.indexOf('\n\n');
      let event = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (!data) continue;
      const e = { event, data: JSON.parse(data) as Record<string, unknown> };
      events.push(e);
      await onEvent?.(e);
      if (until?.(e)) {
        await reader.cancel();
        return events;
      }
    }
  }
  return events;
}
