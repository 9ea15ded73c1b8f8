// `muse worker --queue redis://...`: runs queued jobs for `muse serve --queue` (generation on the
// models given) and `muse data encode --queue` (with --encode). SIGTERM/SIGINT: stops taking jobs and
// lets the current one finish (up to --grace seconds; after that BullMQ hands it to another worker).
import { spawn } from 'node:child_process';
import { resolveModelArgument } from '../hub/hub-cache.js';
import { MuseError } from '../util/errors.js';
import { defaultModelFolder } from './decoding-options.js';
import { backendHelp, helpAsked, numberOption, parseFlags } from './options.js';
import { untilStopSignal } from './signals.js';

export const workerHelp = `Usage: muse worker --queue redis://HOST:PORT [--model DIR ...] [--encode] [--concurrency N]
                   [--lock-duration MS] [--stalled-interval MS] [--grace S]

  Takes jobs from the Redis job queue (BullMQ) that \`muse serve --queue\` and
  \`muse data encode --queue\` fill, and runs them: one job at a time per process.

  --queue URL             the Redis server (redis://HOST:PORT[/DB])
  --model DIR             a model folder to serve (repeat for more); the worker takes only jobs for
                           the models it has loaded (default: the shipped models/emoji, unless --encode
                           alone is given)
  --encode                also take dataset-encoding jobs (one per input shard)
  --concurrency N         run N worker processes (default 1; each has its own tensor backend)
  --lock-duration MS      a running job's lock; if the worker dies, the job goes to another worker
                           once it lapses (default 30000)
  --stalled-interval MS   how often lapsed locks are looked for (default 30000)
  --grace S               on SIGTERM, how long the current job may take to finish (default 60)
  Failed jobs are retried with back-off (3 tries by default, set by the producer); jobs that keep
  failing stay in the failed list: \`muse queue status --failed\`.
${backendHelp}`;

export async function workerCommand(args: string[]): Promise<number> {
  if (helpAsked(args, workerHelp)) return 0;
  const values = parseFlags(args, 'worker', {
    queue: { type: 'string' },
    model: { type: 'string', multiple: true },
    encode: { type: 'boolean' },
    concurrency: { type: 'string' },
    'lock-duration': { type: 'string' },
    'stalled-interval': { type: 'string' },
    grace: { type: 'string' },
  });
  if (!values.queue) throw new MuseError('--queue redis://HOST:PORT is required');
  const { redisOptions } = await import('../queue/connection.js');
  redisOptions(values.queue);
  const concurrency = numberOption(values.concurrency, 'concurrency', 1, { min: 1, max: 64, integer: true });
  const lockDurationMs = numberOption(values['lock-duration'], 'lock-duration', 30_000, { min: 500, integer: true });
  const stalledIntervalMs = numberOption(values['stalled-interval'], 'stalled-interval', 30_000, {
    min: 100,
    integer: true,
  });
  const graceMs = numberOption(values.grace, 'grace', 60, { min: 0 }) * 1000;
  if (concurrency > 1) return supervise(args, concurrency);

  const given = values.model?.length ? values.model : values.encode ? [] : [defaultModelFolder()];
  const folders = given.map((m) => resolveModelArgument(m)); // ORG/NAME from the Hugging Face cache
  const names = given.map((m, i) => (folders[i] !== m ? m.split('/').pop() : undefined));
  const { loadModels } = await import('../server/models.js');
  if (folders.length) console.error(`muse worker: loading ${folders.join(', ')} ...`);
  const models = folders.length ? await loadModels(folders, names) : [];
  const { MuseWorker } = await import('../queue/worker.js');
  const worker = await MuseWorker.start({
    url: values.queue,
    models,
    encode: values.encode ?? false,
    lockDurationMs,
    stalledIntervalMs,
    log: (line) => console.error(`muse worker ${process.pid}: ${line}`),
  });
  console.error(
    `muse worker ${process.pid}: ready on ${values.queue} (${[
      ...models.map((m) => `model ${m.name}`),
      ...(values.encode ? ['encode'] : []),
    ].join(', ')})`,
  );
  await untilStopSignal();
  console.error(`muse worker ${process.pid}: stopping (the current job finishes first)`);
  await worker.close(graceMs);
  console.error(`muse worker ${process.pid}: stopped after ${worker.done} jobs`);
  return 0;
}

/** --concurrency N: N copies of this command with --concurrency 1; signals are passed on. */
async function supervise(args: string[], n: number): Promise<number> {
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--concurrency') i++;
    else if (!args[i].startsWith('--concurrency=')) rest.push(args[i]);
  }
  const children = Array.from({ length: n }, () =>
    spawn(process.execPath, [...process.execArgv, process.argv[1], 'worker', ...rest], { stdio: 'inherit' }),
  );
  const forward = (signal: NodeJS.Signals) => () => {
    for (const c of children) c.kill(signal);
  };
  const term = forward('SIGTERM');
  const int = forward('SIGINT');
  process.on('SIGTERM', term);
  process.on('SIGINT', int);
  const codes = await Promise.all(
    children.map((c) => new Promise<number>((resolve) => c.on('exit', (code) => resolve(code ?? 1)))),
  );
  process.off('SIGTERM', term);
  process.off('SIGINT', int);
  return Math.max(...codes);
}
