import { userMessage as libraryMessage } from '../util/errors.js';
import { unknownOptionMessage } from './options.js';

/**
 * The message of an expected error (bad input, bad option: the library's, or the command line's own);
 * undefined for a bug, which keeps its trace.
 */
export function userMessage(err: unknown): string | undefined {
  const message = libraryMessage(err);
  if (message !== undefined) return message;
  const unknown = unknownOptionMessage(err);
  if (unknown !== undefined) return unknown;
  if (err instanceof Error && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) return err.message;
  return undefined;
}
