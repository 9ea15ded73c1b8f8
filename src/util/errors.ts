/**
 * An error caused by input the user gave (a file, an option, a size): the message alone says what
 * is wrong, so the CLI prints it as one line with no stack trace. A message names an option as the
 * library spells it, in backticks (`out`, `shardSize`), never a command-line flag: a library user has
 * none (the CLI shows its flags instead, cli/errors.ts).
 */
export class MuseError extends Error {
  override name = 'MuseError';
}

/** The message of an expected error (a MuseError); undefined for a bug, which keeps its trace. */
export function userMessage(err: unknown): string | undefined {
  return err instanceof MuseError ? err.message : undefined;
}
