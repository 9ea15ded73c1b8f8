// `muse edit`: mask-free editing (Muse §3.3), the image drifts toward a new prompt keeping its layout.
import { parseArgs } from 'node:util';
import { MuseError } from '../util/errors.js';
import {
  decodingArgs,
  decodingHelp,
  decodingOptions,
  openAnyPipeline,
  readInputImage,
  runAndWrite,
} from './decoding-options.js';
import { helpAsked, numberOption } from './options.js';

export const editHelp = `Usage: muse edit IMAGE "NEW PROMPT" [--iterations 100] [--fraction 0.08] [options]

  Resamples a random fraction of the image's tokens per iteration under the new prompt (paper
  defaults: 8%, 100 iterations, constant guidance 4, top-k 3). Fewer iterations keep more of the
  original.

  --iterations N        resampling rounds (default 100; 1 to 10000)
  --fraction F          share of the tokens resampled per round (default 0.08)
${decodingHelp}`;

export async function editCommand(args: string[]): Promise<number> {
  if (helpAsked(args, editHelp)) return 0;
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...decodingArgs, iterations: { type: 'string' }, fraction: { type: 'string' } },
  });
  if (positionals.length !== 2) throw new MuseError('usage: muse edit IMAGE "NEW PROMPT" (see --help)');
  const o = decodingOptions(values);
  const iterations = numberOption(values.iterations, 'iterations', 100, { min: 1, max: 10000, integer: true });
  const fraction = numberOption(values.fraction, 'fraction', 0.08, { min: 1e-6, max: 1 });
  const muse = await openAnyPipeline(values);
  const image = await readInputImage(positionals[0], muse.sizes, 'image');
  return runAndWrite(values, muse, o, 'editing', positionals[1], (options) =>
    muse.edit(image, positionals[1], { ...options, iterations, fraction }),
  );
}
