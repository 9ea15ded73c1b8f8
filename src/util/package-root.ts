// Node only: the folder holding muse-ts's package.json, found by walking up from this module, so
// files shipped beside the code (vendor/, native/build/, models/) resolve from src/ and dist/src/.
// Node's modules are reached through process.getBuiltinModule, not static imports, so modules that
// browsers also load (the native-addon loader) can use this.

let root: string | undefined;

export function packageRoot(): string {
  if (root) return root;
  const proc = (globalThis as { process?: NodeJS.Process }).process;
  if (!proc?.versions?.node || typeof proc.getBuiltinModule !== 'function') {
    throw new Error('the muse-ts package folder can only be found under Node ≥ 20.16');
  }
  const fs = proc.getBuiltinModule('node:fs');
  const path = proc.getBuiltinModule('node:path');
  const here = proc.getBuiltinModule('node:url').fileURLToPath(import.meta.url);
  let dir = path.dirname(here);
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        if ((JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'muse-ts') {
          root = dir;
          return dir;
        }
      } catch {
        // an unreadable package.json on the way up: keep walking
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the muse-ts package folder above ${here}`);
    dir = parent;
  }
}
