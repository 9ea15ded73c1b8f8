// `muse generate`: text to image with the shipped (or any) model folder.
import { parseArgs } from 'node:util';
import { MuseError } from '../util/errors.js';
import { decodingArgs, decodingHelp, decodingOptions, openAnyPipeline, runAndWrite } from './decoding-options.js';
import { helpAsked } from './options.js';

export const generateHelp = `Usage: muse generate "PROMPT" ["PROMPT" ...] [options]

  Generates images from text with parallel decoding (MaskGIT/Muse) and classifier-free guidance.
  An empty prompt ("") generates unconditionally.

${decodingHelp}`;

export async function generateCommand(args: string[]): Promise<number> {
  if (helpAsked(args, generateHelp)) return 0;
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: decodingArgs });
  if (positionals.length === 0) throw new MuseError('give a prompt: muse generate "a red apple" -o apple.png');
  const o = decodingOptions(values);
  const muse = await openAnyPipeline(values);
  return runAndWrite(
    values,
    muse,
    o,
    'decoding',
    positionals.flatMap((p) => Array.from({ length: o.n ?? 1 }, () => p)),
    (options) => muse.generate(positionals, options),
  );
}
