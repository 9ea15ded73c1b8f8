// A model folder (diffusers-style): pipeline.json names the components and the decoding defaults; each
// component is a safetensors file beside it. Reading one from disk (Node); the format: pipeline-spec.ts.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MuseError } from '../util/errors.js';
import { fileInside, readRegularFileSync } from '../util/untrusted.js';
import { MAX_PIPELINE_FILE_BYTES, type PipelineFile, parsePipelineFile } from './pipeline-spec.js';

export {
  DECODING_DEFAULTS,
  type DecodingDefaults,
  type EditDefaults,
  MAX_PIPELINE_FILE_BYTES,
  type PipelineFile,
  parsePipelineFile,
} from './pipeline-spec.js';

export function readPipelineFile(folder: string): PipelineFile {
  const file = join(folder, 'pipeline.json');
  if (!existsSync(folder)) throw new MuseError(`model folder ${folder} does not exist`);
  if (!existsSync(file)) throw new MuseError(`${folder} is not a model folder: it has no pipeline.json`);
  const bytes = readRegularFileSync(file, MAX_PIPELINE_FILE_BYTES, 'a pipeline.json');
  // Component files: regular files inside the folder (no "..", no absolute path, no symlink out,
  // no FIFO or device), whatever the folder's author wrote.
  return parsePipelineFile(bytes, file, (name, where) => {
    fileInside(folder, name, where);
  });
}
