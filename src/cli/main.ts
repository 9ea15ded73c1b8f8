#!/usr/bin/env node
// The `muse` command: one file per verb; this file only dispatches.
import { shutdownBackend } from '../tensor/backend.js';
import { assembleCommand } from './assemble.js';
import { dataCommand } from './data.js';
import { doctorCommand } from './doctor.js';
import { editCommand } from './edit.js';
import { userMessage } from './errors.js';
import { evalCommand } from './eval.js';
import { generateCommand } from './generate.js';
import { inpaintCommand } from './inpaint.js';
import { inspectCommand } from './inspect.js';
import { outpaintCommand } from './outpaint.js';
import { tokenizerCommand } from './tokenizer.js';
import { trainCommand } from './train.js';
import { upscaleCommand } from './upscale.js';

const verbs: Record<string, { run: (args: string[]) => Promise<number>; summary: string }> = {
  generate: { run: generateCommand, summary: 'text to image (the shipped emoji model by default)' },
  inpaint: { run: inpaintCommand, summary: 'regenerate the masked part of an image under a prompt' },
  outpaint: { run: outpaintCommand, summary: 'extend an image on any side' },
  edit: { run: editCommand, summary: 'mask-free editing: move an image toward a new prompt' },
  upscale: { run: upscaleCommand, summary: 'super-resolve your own base-size image (e.g. 32 → 64 px)' },
  assemble: { run: assembleCommand, summary: 'a model folder (pipeline.json + F16 files) from training runs' },
  data: { run: dataCommand, summary: 'build emoji/shapes datasets, preview any dataset' },
  doctor: { run: doctorCommand, summary: 'backend, threads, native path, versions, a checked matmul' },
  eval: { run: evalCommand, summary: 'measure a model folder on held-out data (super-res vs bicubic, ...)' },
  inspect: { run: (a) => inspectCommand(a), summary: 'metadata and tensors of a .safetensors file' },
  train: { run: trainCommand, summary: 'train the base or super-res transformer from a token cache' },
  tokenizer: { run: tokenizerCommand, summary: 'train the VQ tokenizer; encode, decode, reconstruct, evaluate' },
};

const usage = `Usage: muse <command> [options]     (muse <command> --help for its options)

Commands:
${Object.entries(verbs)
  .map(([name, v]) => `  ${name.padEnd(10)} ${v.summary}`)
  .join('\n')}`;

async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (!verb || verb === '--help' || verb === '-h' || verb === 'help') {
    console.log(usage);
    return verb ? 0 : 2;
  }
  const command = verbs[verb];
  if (!command) {
    console.error(`muse: unknown command "${verb}"\n\n${usage}`);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    const message = userMessage(err);
    if (message === undefined) throw err;
    console.error(`muse ${verb}: ${message}`);
    return 1;
  } finally {
    shutdownBackend();
  }
}

process.exitCode = await main(process.argv.slice(2));
