// Opening a model named by a string: under Node a folder on disk (its pipeline.json read with every
// untrusted-file check, components read through a FolderSource); a browser build gets
// model-folder.browser.ts instead (a URL read with fetch).
import { FolderSource } from '../util/folder-source.js';
import type { ModelSource } from '../util/model-source.js';
import { readPipelineFile } from './pipeline-file.js';
import type { PipelineFile } from './pipeline-spec.js';

export async function openModel(location: string): Promise<{ source: ModelSource; file: PipelineFile }> {
  const file = readPipelineFile(location);
  return { source: new FolderSource(location), file };
}
