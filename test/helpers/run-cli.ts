// Runs the `muse` command in this process (no tsx start-up per case): its exit code and what it printed.
import { main } from '../../src/cli/muse.js';

export async function runMuse(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const log = console.log;
  const error = console.error;
  let out = '';
  let err = '';
  console.log = (...a: unknown[]) => {
    out += `${a.join(' ')}\n`;
  };
  console.error = (...a: unknown[]) => {
    err += `${a.join(' ')}\n`;
  };
  try {
    const code = await main(args);
    return { code, out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}
