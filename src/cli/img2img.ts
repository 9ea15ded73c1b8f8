// `muse img2img`: an image re-decoded toward a prompt, as diffusers' AmusedImg2ImgPipeline does (aMUSEd
// models): the image's tokens, partly masked by the schedule, then the last `strength` share of the steps.
import { parseArgs } from 'node:util';
import { AmusedPipeline } from '../amused/pipeline.js';
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

export const img2imgHelp = `Usage: muse img2img IMAGE "PROMPT" --model AMUSED_DIR [--strength 0.5] [options]

  Image-to-image with an aMUSEd model: the image (resized to the model's size, centre crop) is
  encoded to tokens; tokens are masked as the schedule does at the step where the last
  strength·steps steps begin, and those steps are decoded under the prompt. Strength 1 ignores
  the image; small strengths keep it.

  --strength S          share of the steps re-run, 0 to 1 (default 0.5)
${decodingHelp}`;

export async function img2imgCommand(args: string[]): Promise<number> {
  if (helpAsked(args, img2imgHelp)) return 0;
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...decodingArgs, strength: { type: 'string' } },
  });
  if (positionals.length !== 2) throw new MuseError('usage: muse img2img IMAGE "PROMPT" --model DIR (see --help)');
  const [imagePath, prompt] = positionals;
  const o = decodingOptions(values);
  const strength = numberOption(values.strength, 'strength', 0.5, { min: 0, max: 1 });
  if (values.model === undefined)
    throw new MuseError('img2img needs an aMUSEd model: --model DIR (a diffusers folder with model_index.json)');
  const muse = await openAnyPipeline(values);
  if (!(muse instanceof AmusedPipeline)) {
    muse.dispose();
    throw new MuseError(`${values.model} is a muse-ts model: img2img runs aMUSEd models (try muse edit)`);
  }
  const image = await readInputImage(imagePath, muse.sizes, 'image');
  return runAndWrite(values, muse, o, 'img2img', prompt, (options) =>
    muse.img2img(image, prompt, { ...options, strength }),
  );
}
