/** An error caused by the user's input: printed as one line, no stack trace. */
export class UserError extends Error {
  override name = 'UserError';
}

/** The message of an expected error; undefined for a bug that deserves its stack trace. */
export function userMessage(err: unknown): string | undefined {
  if (err instanceof UserError) return err.message;
  if (err instanceof Error && (err.name === 'SafetensorsError' || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')) {
    return err.message;
  }
  if (err instanceof Error && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) return err.message;
  return undefined;
}
