import { type ParseArgsConfig, parseArgs } from 'node:util';
import { MuseError } from '../util/errors.js';

/** A numeric command-line option: the fallback when absent, one clear error when out of range. */
export function numberOption(
  value: string | undefined,
  name: string,
  fallback: number,
  { min = 0, max = Number.POSITIVE_INFINITY, integer = false } = {},
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    const range = max === Number.POSITIVE_INFINITY ? `≥ ${min}` : `from ${min} to ${max}`;
    throw new MuseError(`--${name} must be ${integer ? 'an integer' : 'a number'} ${range}, got "${value}"`);
  }
  return n;
}

/** The flags of a verb that takes no positional arguments (`verb` names it in the message if some are given). */
export function parseFlags<const O extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  verb: string,
  options: O,
): ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: O }>>['values'] {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options });
  if (positionals.length) throw new MuseError(`muse ${verb} takes no positional arguments (see --help)`);
  return values;
}

/** Whether `--help` or `-h` is among a verb's arguments; if so its help is printed (the verb returns 0). */
export function helpAsked(args: string[], help: string): boolean {
  if (!args.includes('--help') && !args.includes('-h')) return false;
  console.log(help);
  return true;
}

/**
 * Help for a verb with sub-commands: prints it and gives the exit code (0 when asked for, 2 when the
 * sub-command is missing), or undefined when there is a sub-command to run.
 */
export function subcommandHelp(args: string[], help: string): number | undefined {
  const [sub, ...rest] = args;
  if (sub && sub !== '--help' && sub !== '-h' && !rest.includes('--help') && !rest.includes('-h')) return undefined;
  console.log(help);
  return sub ? 0 : 2;
}

/** The backend options every computing verb takes (muse.ts removes them before the verb parses). */
export const backendHelp = `  --backend wasm|webgpu|cpu   tensor backend (default wasm; env MUSE_BACKEND)
  --threads N           wasm worker threads (default: the cores, 1 with the native path; env MUSE_THREADS)
  --no-native           do not use the native BLAS addon (env MUSE_NATIVE=0)`;

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = up;
    }
  }
  return row[b.length];
}

/** The known option closest to `name` (e.g. --colour → --color), if one is close enough. */
export function closestOption(name: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const k of new Set(known)) {
    const d = editDistance(name, k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  const bare = name.replace(/^-+/, '');
  const prefix = [...new Set(known)].filter((k) => k.replace(/^-+/, '').startsWith(bare) && bare.length >= 2);
  if (prefix.length === 1) return prefix[0];
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

/**
 * One line for parseArgs' "Unknown option" error (whose message has an unbalanced quote), with the
 * closest option of the verb's help text; undefined for any other error.
 */
export function unknownOptionMessage(err: unknown, help = ''): string | undefined {
  if ((err as { code?: string } | undefined)?.code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return undefined;
  const name = /Unknown option '([^']+)'/.exec((err as Error).message)?.[1] ?? '?';
  const known = [...`${help}\n${backendHelp}\n--help`.matchAll(/(?<![\w-])--?[a-zA-Z][\w-]*/g)].map((m) => m[0]);
  const suggestion = closestOption(name, known);
  return `unknown option ${name}${suggestion ? ` (did you mean ${suggestion}?)` : ''}; see --help`;
}
