// In a browser the USE-lite files are fetched from text-encoder/ beside the page (as `muse serve` and
// `muse export-web` lay them out) unless a ModelSource is given.
import { FetchSource, type ModelSource } from '../util/model-source.js';

export function defaultUseLiteFiles(): ModelSource {
  return new FetchSource('text-encoder/');
}
