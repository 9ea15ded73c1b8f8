// Node only: the folder holding muse-ts's package.json, found by walking up from this module, so
// files shipped beside the code (vendor/, native/build/, models/) resolve from src/ and dist/src/.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'muse-ts') {
          root = dir;
          return dir;
        }
      } catch {
        // an unreadable package.json on the way up: keep walking
      }
    }
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error(`cannot find the muse-ts package folder above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}
