// `muse export-web OUTDIR`: the web UI, the browser bundle, the wasm binaries, the text encoder and the
// model files in one folder that any static host serves; the page then generates in the browser.
import { copyFileSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { clientFiles, ISOLATION_HEADERS } from '../server/client-files.js';
import { MuseError } from '../util/errors.js';
import { makeFolder } from '../util/files.js';
import { defaultModelFolder } from './decoding-options.js';
import { helpAsked } from './options.js';

export const exportWebHelp = `Usage: muse export-web OUTDIR [--model DIR ...] [--bundle DIR]

  Writes a static site to OUTDIR (an empty or new folder): the web UI, the browser bundle (muse.js,
  from "npm run build:web"), tfjs's wasm files, the text encoder and the model folders. Served by any
  static host, the page generates entirely in the browser (tfjs-wasm; threaded when the host sends
  the COOP/COEP headers listed in OUTDIR/_headers, single-threaded otherwise).

  --model DIR   a muse-ts model folder; repeat for more (default: the shipped models/emoji)
  --bundle DIR  where muse.js and the wasm files are (default: the package's dist/web)`;

/** Writes the site; returns the number of files and bytes written. */
export function exportWeb(
  out: string,
  folders: string[],
  options: { bundleDir?: string; webRoot?: string } = {},
): { files: number; bytes: number } {
  const models: Array<{ name: string; folder: string }> = [];
  for (const folder of folders) {
    let name = basename(resolve(folder));
    for (let i = 2; models.some((m) => m.name === name); i++) name = `${basename(resolve(folder))}-${i}`;
    models.push({ name, folder });
  }
  const { files, index } = clientFiles(models, { ...options, includeUi: true });
  makeFolder(out, 'OUTDIR');
  if (readdirSync(out).length) throw new MuseError(`OUTDIR ${out} is not empty: give a new or empty folder`);
  let bytes = 0;
  for (const f of files) {
    const target = join(out, f.url);
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(f.path, target);
    bytes += statSync(target).size;
  }
  writeFileSync(join(out, 'models', 'index.json'), `${JSON.stringify(index, null, 2)}\n`);
  const headers = Object.entries(ISOLATION_HEADERS)
    .map(([k, v]) => `  ${k}: ${v}`)
    .join('\n');
  writeFileSync(join(out, '_headers'), `/*\n${headers}\n`);
  return { files: files.length + 2, bytes };
}

export async function exportWebCommand(args: string[]): Promise<number> {
  if (helpAsked(args, exportWebHelp)) return 0;
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { model: { type: 'string', multiple: true }, bundle: { type: 'string' } },
  });
  if (positionals.length !== 1) throw new MuseError('muse export-web takes one OUTDIR (see --help)');
  const folders = values.model?.length ? values.model : [defaultModelFolder()];
  const { files, bytes } = exportWeb(positionals[0], folders, { bundleDir: values.bundle });
  console.error(
    `muse export-web: ${files} files (${(bytes / 1e6).toFixed(1)} MB) in ${positionals[0]}; serve the folder with any static server`,
  );
  return 0;
}
