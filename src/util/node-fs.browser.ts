// In a browser there is no file system: files come from a ModelSource (util/model-source.ts).
import { MuseError } from './errors.js';

export async function readRegularFile(path: string, _maxBytes: number, _what?: string): Promise<Uint8Array> {
  throw new MuseError(`${path}: a browser has no file system; read model files through a FetchSource`);
}

export async function writeFileDurably(path: string, _data: Uint8Array | string): Promise<void> {
  throw new MuseError(`${path}: a browser has no file system to write to`);
}
