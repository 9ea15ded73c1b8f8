// `muse outpaint`: extend an image on any side, beyond the model's grid, window by window.
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

export const outpaintHelp = `Usage: muse outpaint IMAGE "PROMPT" [--left PX] [--right PX] [--top PX] [--bottom PX] [options]

  Extends the canvas by the given pixels on each side (rounded up to whole tokens) and generates the
  new area window by window at the model's grid size, each window seeing its known neighbours. The
  original pixels are kept. An image of the super-res size (e.g. 64 px) is outpainted at both
  scales: low-res first, then high-res windows conditioned on the low-res tokens under them. The
  canvas must fit in memory to decode (about 0.16 megapixels in all with the emoji model).

  --left PX, --right PX, --top PX, --bottom PX   pixels to add on each side (default 0)
${decodingHelp}`;

export async function outpaintCommand(args: string[]): Promise<number> {
  if (helpAsked(args, outpaintHelp)) return 0;
  const sides = {
    left: { type: 'string' },
    right: { type: 'string' },
    top: { type: 'string' },
    bottom: { type: 'string' },
  } as const;
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...decodingArgs, ...sides } });
  if (positionals.length !== 2) throw new MuseError('usage: muse outpaint IMAGE "PROMPT" --right 16 (see --help)');
  const px = (v: string | undefined, name: string) => numberOption(v, name, 0, { max: 4096, integer: true });
  const extension = {
    left: px(values.left, 'left'),
    right: px(values.right, 'right'),
    top: px(values.top, 'top'),
    bottom: px(values.bottom, 'bottom'),
  };
  if (extension.left + extension.right + extension.top + extension.bottom === 0)
    throw new MuseError('say how far to extend: --left, --right, --top and/or --bottom in pixels');
  const o = decodingOptions(values);
  const muse = await openAnyPipeline(values);
  const image = await readInputImage(positionals[0], muse.sizes, 'image');
  return runAndWrite(values, muse, o, 'outpainting', positionals[1], (options) =>
    muse.outpaint(image, extension, positionals[1], options),
  );
}
