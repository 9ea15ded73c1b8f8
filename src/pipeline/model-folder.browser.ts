// Opening a model named by a string in a browser: a URL (relative to the page) read with fetch.
import { FetchSource, type ModelSource } from '../util/model-source.js';
import { type PipelineFile, readPipelineFrom } from './pipeline-spec.js';

export async function openModel(location: string): Promise<{ source: ModelSource; file: PipelineFile }> {
  const source = new FetchSource(location);
  return { source, file: await readPipelineFrom(source) };
}
