// `muse upscale`: the super-res stage on a user's own image of the base size (e.g. 32 → 64 px).
import { parseArgs } from 'node:util';
import { isAmusedFolder } from '../amused/pipeline.js';
import { MuseError } from '../util/errors.js';
import {
  decodingArgs,
  decodingHelp,
  decodingOptions,
  modelFolder,
  openPipeline,
  readInputImage,
  runAndWrite,
} from './decoding-options.js';
import { helpAsked } from './options.js';

export const upscaleHelp = `Usage: muse upscale IMAGE "PROMPT" [options]

  Tokenizes IMAGE at the base size (resized if it differs) and decodes the super-res stage's grid
  conditioned on those tokens and the prompt: e.g. 32 px → 64 px with the emoji model.

${decodingHelp}`;

export async function upscaleCommand(args: string[]): Promise<number> {
  if (helpAsked(args, upscaleHelp)) return 0;
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: decodingArgs });
  if (positionals.length !== 2) throw new MuseError('usage: muse upscale IMAGE "PROMPT" (see --help)');
  const o = decodingOptions(values);
  const folder = modelFolder(values);
  if (isAmusedFolder(folder))
    throw new MuseError(`${folder} is an aMUSEd model: it makes one size and has no super-res stage to upscale with`);
  const muse = await openPipeline(values);
  if (!muse.superres) throw new MuseError(`${muse.folder} has no super-res stage to upscale with`);
  const image = await readInputImage(positionals[0], [muse.imageSize], 'image');
  return runAndWrite(values, muse, o, 'upscaling', positionals[1], (options) =>
    muse.upscale(image, positionals[1], options),
  );
}
