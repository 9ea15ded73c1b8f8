// The `muse` command's dispatcher, importable so tests can run it in-process: main(argv) → exit code.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configureBackend, shutdownBackend } from '../tensor/backend.js';
import { MuseError } from '../util/errors.js';
import { packageRoot } from '../util/package-root.js';
import { assembleCommand, assembleHelp } from './assemble.js';
import { dataCommand, dataHelp } from './data.js';
import { doctorCommand, doctorHelp } from './doctor.js';
import { editCommand, editHelp } from './edit.js';
import { userMessage } from './errors.js';
import { evalCommand, evalHelp } from './eval.js';
import { generateCommand, generateHelp } from './generate.js';
import { img2imgCommand, img2imgHelp } from './img2img.js';
import { inpaintCommand, inpaintHelp } from './inpaint.js';
import { inspectCommand } from './inspect.js';
import { backendHelp, unknownOptionMessage } from './options.js';
import { outpaintCommand, outpaintHelp } from './outpaint.js';
import { tokenizerCommand, tokenizerHelp } from './tokenizer.js';
import { trainCommand, trainHelp } from './train.js';
import { upscaleCommand, upscaleHelp } from './upscale.js';

interface Verb {
  run: (args: string[]) => Promise<number>;
  summary: string;
  /** The verb's help text: the options it knows, for "did you mean" suggestions. */
  help?: string;
}

const verbs: Record<string, Verb> = {
  generate: {
    run: generateCommand,
    summary: 'text to image (the shipped emoji model by default)',
    help: generateHelp,
  },
  inpaint: {
    run: inpaintCommand,
    summary: 'regenerate the masked part of an image under a prompt',
    help: inpaintHelp,
  },
  img2img: {
    run: img2imgCommand,
    summary: 'an image re-decoded toward a prompt with a strength (aMUSEd models)',
    help: img2imgHelp,
  },
  outpaint: { run: outpaintCommand, summary: 'extend an image on any side', help: outpaintHelp },
  edit: { run: editCommand, summary: 'mask-free editing: move an image toward a new prompt', help: editHelp },
  upscale: {
    run: upscaleCommand,
    summary: 'super-resolve your own base-size image (e.g. 32 → 64 px)',
    help: upscaleHelp,
  },
  assemble: {
    run: assembleCommand,
    summary: 'a model folder (pipeline.json + F16 files) from training runs',
    help: assembleHelp,
  },
  data: { run: dataCommand, summary: 'build emoji/shapes datasets, preview any dataset', help: dataHelp },
  doctor: {
    run: doctorCommand,
    summary: 'backend, threads, native path, versions, a checked matmul',
    help: doctorHelp,
  },
  eval: {
    run: evalCommand,
    summary: 'measure a model folder on held-out data (super-res vs bicubic, ...)',
    help: evalHelp,
  },
  inspect: { run: (a) => inspectCommand(a), summary: 'metadata and tensors of a .safetensors file' },
  train: {
    run: trainCommand,
    summary: 'train the base or super-res transformer from a token cache',
    help: trainHelp,
  },
  tokenizer: {
    run: tokenizerCommand,
    summary: 'train the VQ tokenizer; encode, decode, reconstruct, evaluate',
    help: tokenizerHelp,
  },
};

const usage = `Usage: muse <command> [options]     (muse <command> --help for its options)
       muse --version

Commands:
${Object.entries(verbs)
  .map(([name, v]) => `  ${name.padEnd(10)} ${v.summary}`)
  .join('\n')}

Every command that computes also takes:
${backendHelp}`;

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

/**
 * Takes --backend, --threads and --no-native out of a verb's arguments (they are the same for every
 * verb) and makes them initBackend's defaults. Arguments after `--` are left alone.
 */
function takeBackendOptions(args: string[]): string[] {
  const rest: string[] = [];
  const options: { backend?: string; threads?: string; native?: boolean } = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') {
      rest.push(...args.slice(i));
      break;
    }
    const [name, inline] =
      a.startsWith('--') && a.includes('=')
        ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
        : [a, undefined];
    if (name === '--backend' || name === '--threads') {
      const value = inline ?? args[++i];
      if (value === undefined) throw new MuseError(`${name} needs a value`);
      options[name === '--backend' ? 'backend' : 'threads'] = value;
    } else if (a === '--no-native') {
      options.native = false;
    } else {
      rest.push(a);
    }
  }
  configureBackend(options);
  return rest;
}

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (!verb || verb === '--help' || verb === '-h' || verb === 'help') {
    console.log(usage);
    return verb ? 0 : 2;
  }
  if (verb === '--version' || verb === '-v' || verb === 'version') {
    console.log(packageVersion());
    return 0;
  }
  const command = verbs[verb];
  if (!command) {
    console.error(`muse: unknown command "${verb}"\n\n${usage}`);
    return 2;
  }
  try {
    // doctor declares the backend options itself (and reports what they give).
    return await command.run(verb === 'doctor' ? rest : takeBackendOptions(rest));
  } catch (err) {
    const message = unknownOptionMessage(err, command.help) ?? userMessage(err);
    if (message === undefined) throw err;
    console.error(`muse ${verb}: ${message}`);
    return 1;
  } finally {
    configureBackend({});
  }
}

/**
 * The process entry: main(), then the backend's worker threads are stopped so Node can exit. (In-process
 * callers of main, such as tests, keep one backend for many calls: a threaded wasm backend cannot be
 * started again after it was shut down.)
 */
export async function runAsProcess(argv: string[]): Promise<number> {
  try {
    return await main(argv);
  } finally {
    try {
      shutdownBackend();
    } catch {
      // A backend that aborted (out of memory) cannot be shut down cleanly; its error was reported.
    }
  }
}
