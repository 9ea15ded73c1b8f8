// `muse assemble`: a model folder (pipeline.json + F16 safetensors) from training runs.
import { parseArgs } from 'node:util';
import { assemblePipeline } from '../pipeline/assemble.js';
import { initBackend } from '../tensor/backend.js';
import { MuseError } from '../util/errors.js';
import { decodingOptions, samplingArgs } from './decoding-options.js';
import { helpAsked, numberOption } from './options.js';

export const assembleHelp = `Usage: muse assemble --tokenizer FILE --base FILE [--superres FILE [--superres-tokenizer FILE]] --out DIR
    [--steps 12] [--superres-steps 8] [--superres-choice sample] [--guidance 3] [--guidance-schedule linear] [--temperature 1]
    [--top-k 0] [--choice-temperature 4.5] [--schedule cosine] [--default-size PX] [--text-encoder ID]
    [--note key=value ...]

  Re-saves each component in F16 with its training metadata (and the last validation figures of the
  run folder it comes from), and writes DIR/pipeline.json for \`muse generate --model DIR\`; the
  decoding options given become the model's defaults. --superres-tokenizer gives the super-res stage
  its own tokenizer (the one its training cache was encoded with; Muse pairs the super-res stage with
  a second VQ tokenizer): the base stage's images are re-encoded by it before the super-res stage.`;

export async function assembleCommand(args: string[]): Promise<number> {
  if (helpAsked(args, assembleHelp)) return 0;
  const { values } = parseArgs({
    args,
    options: {
      tokenizer: { type: 'string' },
      base: { type: 'string' },
      superres: { type: 'string' },
      'superres-tokenizer': { type: 'string' },
      out: { type: 'string' },
      ...samplingArgs,
      note: { type: 'string', multiple: true },
      'text-encoder': { type: 'string' },
      'default-size': { type: 'string' },
    },
  });
  if (!values.tokenizer || !values.base || !values.out)
    throw new MuseError('--tokenizer, --base and --out are required (see --help)');
  const notes: Record<string, string> = {};
  for (const n of values.note ?? []) {
    const i = n.indexOf('=');
    if (i < 1) throw new MuseError(`--note must be key=value, got "${n}"`);
    notes[n.slice(0, i)] = n.slice(i + 1);
  }
  await initBackend();
  if (values.negative !== undefined) throw new MuseError('--negative is a per-run option, not a model default');
  const { n: _n, size: _size, negative: _negative, seed: _seed, ...decoding } = decodingOptions(values);
  const defaults = Object.fromEntries(Object.entries(decoding).filter(([, v]) => v !== undefined));
  const file = await assemblePipeline({
    tokenizer: values.tokenizer,
    base: values.base,
    superres: values.superres,
    superresTokenizer: values['superres-tokenizer'],
    out: values.out,
    defaults,
    notes,
    textEncoder: values['text-encoder'],
    defaultSize:
      values['default-size'] === undefined
        ? undefined
        : numberOption(values['default-size'], 'default-size', 0, { min: 1, integer: true }),
  });
  console.log(
    `${values.out}: ${file.imageSize} px${file.superres ? ` → ${file.superresSize} px` : ''} pipeline (text encoder ${file.textEncoder})`,
  );
  return 0;
}
