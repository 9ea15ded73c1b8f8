// Model files from a folder on disk (Node only): every name is kept inside the folder (fileInside:
// relative, no "..", no symbolic link out, a regular file) and read with its size checked first
// (readRegularFile: no FIFO, no device, nothing over the limit).
import { join } from 'node:path';
import type { ModelSource } from './model-source.js';
import { fileInside, readRegularFile } from './untrusted.js';

export class FolderSource implements ModelSource {
  constructor(readonly location: string) {}

  where(name: string): string {
    return join(this.location, name);
  }

  async read(name: string, maxBytes: number, what = 'this file'): Promise<Uint8Array> {
    const path = fileInside(this.location, name, this.location);
    return readRegularFile(path, maxBytes, what);
  }
}
