// `muse queue status --queue redis://...`: jobs waiting/active/completed/failed/delayed per queue, the
// live workers, and (--failed) the dead-letter view: jobs that failed for good, with their reasons.
import { MuseError } from '../util/errors.js';
import { numberOption, parseFlags, subcommandHelp } from './options.js';

export const queueHelp = `Usage: muse queue status --queue redis://HOST:PORT [--failed] [--limit 20]

  Per queue (generate.<model>, encode): waiting, active, delayed (waiting to retry), completed,
  failed; then the live workers and what they serve.
  --failed     also list the jobs that failed for good (after their retries), newest first,
               with their reasons (kept a week)
  --limit N    failed jobs listed per queue (default 20)`;

export async function queueCommand(args: string[]): Promise<number> {
  const help = subcommandHelp(args, queueHelp);
  if (help !== undefined) return help;
  const [sub, ...rest] = args;
  if (sub !== 'status') throw new MuseError(`unknown queue command "${sub}": choose status`);
  const values = parseFlags(rest, 'queue status', {
    queue: { type: 'string' },
    failed: { type: 'boolean' },
    limit: { type: 'string' },
  });
  if (!values.queue) throw new MuseError('--queue redis://HOST:PORT is required');
  const limit = numberOption(values.limit, 'limit', 20, { min: 1, max: 10000, integer: true });
  const { queueStatus } = await import('../queue/status.js');
  const s = await queueStatus(values.queue, { failed: values.failed ? limit : 0 });
  const columns = ['waiting', 'active', 'delayed', 'completed', 'failed'] as const;
  console.log(`${'queue'.padEnd(24)}${columns.map((c) => c.padStart(10)).join('')}`);
  for (const q of s.queues)
    console.log(`${q.name.padEnd(24)}${columns.map((c) => String(q.counts[c] ?? 0).padStart(10)).join('')}`);
  if (!s.queues.length) console.log('(no queues yet)');
  console.log(`\nworkers: ${s.workers.length}`);
  for (const w of s.workers)
    console.log(
      `  ${w.id}  ${[...w.models.map((m) => `model ${m.name}`), ...(w.encode ? ['encode'] : [])].join(', ')}`,
    );
  if (values.failed) {
    console.log('\nfailed jobs (after their retries):');
    let any = false;
    for (const q of s.queues)
      for (const f of q.failedJobs ?? []) {
        any = true;
        console.log(`  ${q.name} ${f.id}  tries ${f.attempts}  ${new Date(f.finishedOn).toISOString()}  ${f.reason}`);
      }
    if (!any) console.log('  none');
  }
  return 0;
}
