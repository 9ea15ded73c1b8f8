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
