import { userMessage as libraryMessage } from '../util/errors.js';
import { unknownOptionMessage } from './options.js';

/**
 * Library options as library messages name them (in backticks: `out`) → the flags that set them.
 * (`url` is the queue's Redis URL, the library's only option of that name.)
 */
const FLAGS: Record<string, string> = {
  config: '--config',
  frames: '--frames',
  lr: '--lr',
  out: '--out',
  overwrite: '--overwrite',
  resume: '--resume',
  revision: '--revision',
  shardSize: '--shard-size',
  url: '--queue',
  variant: '--variant',
};

/** A library message as the command line says it: the options it names become their flags. */
export function withFlags(message: string): string {
  return message.replace(/`([A-Za-z]\w*)`/g, (named, option: string) =>
    Object.hasOwn(FLAGS, option) ? FLAGS[option] : named,
  );
}

/**
 * The message of an expected error (bad input, bad option: the library's, or the command line's own);
 * undefined for a bug, which keeps its trace.
 */
export function userMessage(err: unknown): string | undefined {
  const message = libraryMessage(err);
  if (message !== undefined) return withFlags(message);
  const unknown = unknownOptionMessage(err);
  if (unknown !== undefined) return unknown;
  if (err instanceof Error && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) return err.message;
  return undefined;
}
