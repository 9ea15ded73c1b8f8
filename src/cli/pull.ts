// `muse pull ORG/NAME`: download a Hugging Face Hub model into the standard cache, so that
// `--model ORG/NAME` finds it.
import { parseArgs } from 'node:util';
import { pullRepo } from '../hub/pull.js';
import { MuseError } from '../util/errors.js';
import { numberOption } from './options.js';

export const pullHelp = `Usage: muse pull ORG/NAME [--revision main] [--variant fp16]

Downloads a Hugging Face Hub model (e.g. amused/amused-256) into the Hugging Face cache
($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub; the layout the Python tools use,
so a model they fetched is found too). Only what an aMUSEd pipeline reads is fetched: *.json,
*.txt and *.safetensors. An interrupted download resumes; every file is checked against the hub's
sha256 (or size) before it enters the cache. Then --model ORG/NAME uses it. Hub: $HF_ENDPOINT
(default https://huggingface.co).

  --revision REV   branch, tag or commit (default main)
  --variant NAME   prefer <file>.NAME.safetensors (e.g. fp16: half the download)
  --timeout S      seconds without data before a download counts as stalled; it is cut and resumed
                   (up to 5 tries per file; default 60, env MUSE_PULL_TIMEOUT)

Two pulls of the same model at once share the work: each file is fetched by one of them (a lock in
the cache's .locks/ folder) while the other waits; a lock left by a killed pull is taken over.`;

function megabytes(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

export async function pullCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      revision: { type: 'string' },
      variant: { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(pullHelp);
    return 0;
  }
  if (positionals.length !== 1) throw new MuseError('give one model id: muse pull ORG/NAME');
  const repo = positionals[0];
  const tty = !!process.stderr.isTTY;
  let last = 0;
  const result = await pullRepo(repo, {
    revision: values.revision,
    variant: values.variant,
    stallSeconds:
      values.timeout === undefined ? undefined : numberOption(values.timeout, 'timeout', 60, { min: 0.001 }),
    onWait: (file, pid) =>
      console.error(`pull ${repo}: ${file} is being fetched by another muse pull (pid ${pid}); waiting`),
    onProgress: (p) => {
      if (p.file === '') return;
      const now = performance.now();
      const finished = p.size !== undefined && p.bytes >= p.size;
      if (!finished && now - last < (tty ? 200 : 10_000)) return;
      last = now;
      const size = p.size !== undefined ? `/${megabytes(p.size)}` : '';
      const line = `pull ${repo}: file ${p.filesDone + 1}/${p.files} ${p.file} ${megabytes(p.bytes)}${size}`;
      process.stderr.write(tty ? `\r${line.slice(0, (process.stderr.columns || 100) - 1)}\x1b[K` : `${line}\n`);
    },
  });
  if (tty) process.stderr.write('\r\x1b[K');
  console.error(
    result.downloaded.length === 0
      ? `${repo}: all ${result.files.length} files already in the cache`
      : `${repo}: downloaded ${result.downloaded.length} of ${result.files.length} files (${megabytes(result.bytes)})`,
  );
  console.log(result.snapshot);
  return 0;
}
