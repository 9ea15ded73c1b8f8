// The `muse` command's dispatcher, importable so tests can run it in-process: main(argv) → exit code.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MuseError } from '../util/errors.js';
import { packageRoot } from '../util/package-root.js';
import { userMessage } from './errors.js';
import { backendHelp, unknownOptionMessage } from './options.js';

interface LoadedVerb {
  run: (args: string[]) => Promise<number>;
  /** The verb's help text: the options it knows, for "did you mean" suggestions. */
  help?: string;
}

// Verbs load on use: `muse --help` and `--version` start without tfjs, the models or sharp.
interface Verb {
  summary: string;
  load: () => Promise<LoadedVerb>;
}

const verbs: Record<string, Verb> = {
  generate: {
    summary: 'text to image (the shipped emoji model by default)',
    load: async () => {
      const m = await import('./generate.js');
      return { run: m.generateCommand, help: m.generateHelp };
    },
  },
  inpaint: {
    summary: 'regenerate the masked part of an image under a prompt',
    load: async () => {
      const m = await import('./inpaint.js');
      return { run: m.inpaintCommand, help: m.inpaintHelp };
    },
  },
  img2img: {
    summary: 'an image re-decoded toward a prompt with a strength (aMUSEd models)',
    load: async () => {
      const m = await import('./img2img.js');
      return { run: m.img2imgCommand, help: m.img2imgHelp };
    },
  },
  outpaint: {
    summary: 'extend an image on any side',
    load: async () => {
      const m = await import('./outpaint.js');
      return { run: m.outpaintCommand, help: m.outpaintHelp };
    },
  },
  edit: {
    summary: 'mask-free editing: move an image toward a new prompt',
    load: async () => {
      const m = await import('./edit.js');
      return { run: m.editCommand, help: m.editHelp };
    },
  },
  upscale: {
    summary: 'super-resolve your own base-size image (e.g. 32 → 64 px)',
    load: async () => {
      const m = await import('./upscale.js');
      return { run: m.upscaleCommand, help: m.upscaleHelp };
    },
  },
  serve: {
    summary: 'web UI and HTTP API (jobs with live progress, OpenAI-compatible image endpoints)',
    load: async () => {
      const m = await import('./serve.js');
      return { run: m.serveCommand, help: m.serveHelp };
    },
  },
  'export-web': {
    summary: 'a static site (UI, browser bundle, models) that generates in the browser',
    load: async () => {
      const m = await import('./export-web.js');
      return { run: m.exportWebCommand, help: m.exportWebHelp };
    },
  },
  worker: {
    summary: 'run queued jobs (generation, dataset encoding) from Redis for `serve --queue`',
    load: async () => {
      const m = await import('./worker.js');
      return { run: m.workerCommand, help: m.workerHelp };
    },
  },
  queue: {
    summary: 'status of the Redis job queues: waiting/active/completed/failed, failed jobs',
    load: async () => {
      const m = await import('./queue.js');
      return { run: m.queueCommand, help: m.queueHelp };
    },
  },
  assemble: {
    summary: 'a model folder (pipeline.json + F16 files) from training runs',
    load: async () => {
      const m = await import('./assemble.js');
      return { run: m.assembleCommand, help: m.assembleHelp };
    },
  },
  data: {
    summary: 'build emoji/shapes datasets, preview any dataset',
    load: async () => {
      const m = await import('./data.js');
      return { run: m.dataCommand, help: m.dataHelp };
    },
  },
  doctor: {
    summary: 'backend, threads, native path, versions, a checked matmul',
    load: async () => {
      const m = await import('./doctor.js');
      return { run: m.doctorCommand, help: m.doctorHelp };
    },
  },
  eval: {
    summary: 'measure a model folder on held-out data (super-res vs bicubic, ...)',
    load: async () => {
      const m = await import('./eval.js');
      return { run: m.evalCommand, help: m.evalHelp };
    },
  },
  inspect: {
    summary: 'metadata and tensors of a .safetensors file',
    load: async () => {
      const m = await import('./inspect.js');
      return { run: (a: string[]) => m.inspectCommand(a) };
    },
  },
  pull: {
    summary: 'download a Hugging Face Hub model (e.g. amused/amused-256) for --model ORG/NAME',
    load: async () => {
      const m = await import('./pull.js');
      return { run: m.pullCommand, help: m.pullHelp };
    },
  },
  train: {
    summary: 'train the base or super-res transformer from a token cache',
    load: async () => {
      const m = await import('./train.js');
      return { run: m.trainCommand, help: m.trainHelp };
    },
  },
  tokenizer: {
    summary: 'train the VQ tokenizer; encode, decode, reconstruct, evaluate',
    load: async () => {
      const m = await import('./tokenizer.js');
      return { run: m.tokenizerCommand, help: m.tokenizerHelp };
    },
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
async function takeBackendOptions(args: string[]): Promise<string[]> {
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
  (await import('../tensor/backend.js')).configureBackend(options);
  return rest;
}

let verbRan = false;

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
  const entry = Object.hasOwn(verbs, verb) ? verbs[verb] : undefined;
  if (!entry) {
    console.error(`muse: unknown command "${verb}"\n\n${usage}`);
    return 2;
  }
  const command = await entry.load();
  verbRan = true;
  try {
    // doctor declares the backend options itself (and reports what they give); pull and queue compute nothing.
    return await command.run(
      verb === 'doctor' || verb === 'pull' || verb === 'queue' ? rest : await takeBackendOptions(rest),
    );
  } catch (err) {
    const message = unknownOptionMessage(err, command.help) ?? userMessage(err);
    if (message === undefined) throw err;
    console.error(`muse ${verb}: ${message}`);
    return 1;
  } finally {
    (await import('../tensor/backend.js')).configureBackend({});
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
      // Only after a verb ran (loading the backend module just to stop nothing would cost start-up).
      if (verbRan) (await import('../tensor/backend.js')).shutdownBackend();
    } catch {
      // A backend that aborted (out of memory) cannot be shut down cleanly; its error was reported.
    }
  }
}
