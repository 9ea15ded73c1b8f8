// `muse inpaint`: regenerate the white part of a mask under a prompt; the rest of the image is kept.
import { parseArgs } from 'node:util';
import { decodeImage } from '../image/image.js';
import { maskFromImage, resizeMask } from '../pipeline/masks.js';
import { MuseError } from '../util/errors.js';
import {
  decodingArgs,
  decodingHelp,
  decodingOptions,
  openAnyPipeline,
  readImageBytes,
  readInputImage,
  runAndWrite,
} from './decoding-options.js';
import { helpAsked, numberOption } from './options.js';

export const inpaintHelp = `Usage: muse inpaint IMAGE MASK "PROMPT" [--feather 2] [options]

  Regenerates the tokens under the mask (white = regenerate, black = keep; any image mode, resized
  to the image if its size differs) conditioned on the prompt and the kept tokens. Pixels outside
  the mask stay the original's; the seam is feathered over --feather pixels inside the mask.

  --feather PX          width of the seam blend inside the mask (default 2, at most 64)
${decodingHelp}`;

export async function inpaintCommand(args: string[]): Promise<number> {
  if (helpAsked(args, inpaintHelp)) return 0;
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...decodingArgs, feather: { type: 'string' } },
  });
  if (positionals.length !== 3) throw new MuseError('usage: muse inpaint IMAGE MASK "PROMPT" (see --help)');
  const [imagePath, maskPath, prompt] = positionals;
  const o = decodingOptions(values);
  const feather = numberOption(values.feather, 'feather', 2, { max: 64 });
  const muse = await openAnyPipeline(values);
  const image = await readInputImage(imagePath, muse.sizes, 'image');
  let mask = maskFromImage(await decodeImage(await readImageBytes(maskPath, 'mask'), maskPath), maskPath);
  if (mask.width !== image.width || mask.height !== image.height) {
    console.error(
      `${maskPath}: ${mask.width}×${mask.height} resized to ${image.width}×${image.height} to match the image`,
    );
    mask = resizeMask(mask, image.width, image.height);
  }
  return runAndWrite(values, muse, o, 'inpainting', prompt, (options) =>
    muse.inpaint(image, mask, prompt, { ...options, feather }),
  );
}
