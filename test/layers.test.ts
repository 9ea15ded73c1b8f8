// The rooms of src/ import downward only: every relative import (static, dynamic, `export … from`,
// type-only) against the layer list in docs/ARCHITECTURE.md (its ```layers block, lowest first).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

/** Room name → layer (0 lowest), from the ```layers block of the architecture notes. */
function layersFromDoc(doc: string): Map<string, number> {
  const block = /```layers\n([\s\S]*?)```/.exec(doc);
  assert.ok(block, 'docs/ARCHITECTURE.md has a ```layers block');
  const layers = new Map<string, number>();
  block[1]
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .forEach((line, i) => {
      for (const room of line.split(/\s+/)) layers.set(room, i);
    });
  return layers;
}

/** The room of a path under src/ ('' for the files directly in src/: the entry points). */
const roomOf = (path: string) => {
  const parts = path.split(sep).join('/').split('/');
  return parts.length > 2 ? parts[1] : '';
};

interface Violation {
  file: string;
  spec: string;
  why: string;
}

/** Every import of `files` (path under src/ → source text) that runs up the layers or out of the list. */
function upwardImports(files: Map<string, string>, layers: Map<string, number>): Violation[] {
  const out: Violation[] = [];
  for (const [file, source] of files) {
    const from = roomOf(file);
    for (const { fileName: spec } of ts.preProcessFile(source, true, true).importedFiles) {
      if (!spec.startsWith('.')) continue;
      const to = roomOf(normalize(join(dirname(file), spec)));
      if (to === from) continue;
      if (to === '') out.push({ file, spec, why: 'imports the package entry point' });
      else if (from === '') continue;
      else if (!layers.has(from)) out.push({ file, spec, why: `room ${from} is not in the layer list` });
      else if (!layers.has(to)) out.push({ file, spec, why: `room ${to} is not in the layer list` });
      else if ((layers.get(to) as number) >= layers.get(from)!)
        out.push({ file, spec, why: `${from} (layer ${layers.get(from)}) imports ${to} (layer ${layers.get(to)})` });
    }
  }
  return out;
}

function sourceFiles(dir: string, into = new Map<string, string>()): Map<string, string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) sourceFiles(path, into);
    else if (/\.(ts|mts|js|mjs)$/.test(e.name)) into.set(relative('.', path), readFileSync(path, 'utf8'));
  }
  return into;
}

const layers = layersFromDoc(readFileSync('docs/ARCHITECTURE.md', 'utf8'));

test('layers: every room under src/ is in the list of docs/ARCHITECTURE.md', () => {
  const rooms = readdirSync('src', { withFileTypes: true })
    .filter((e) => e.isDirectory() && readdirSync(join('src', e.name)).length > 0)
    .map((e) => e.name);
  assert.deepEqual(
    rooms.filter((r) => !layers.has(r)),
    [],
    'rooms missing from the ```layers block',
  );
});

test('layers: no import under src/ runs back up the layers', () => {
  const found = upwardImports(sourceFiles('src'), layers);
  assert.deepEqual(
    found.map((v) => `${v.file}: '${v.spec}': ${v.why}`),
    [],
  );
});

test('layers: the check finds upward, sideways, dynamic, re-exported and type-only imports', () => {
  const files = new Map([
    ['src/util/a.ts', "import { main } from '../cli/muse.js';"],
    ['src/tokenizer/b.ts', "export { forward } from '../transformer/model.js';"],
    ['src/server/c.ts', "const q = await import('../queue/runner.js');"],
    ['src/tensor/d.ts', "import type { Stage } from '../pipeline/stage.js';"],
    ['src/image/e.ts', "import { x } from '../index.js';"],
    [
      'src/pipeline/ok.ts',
      "import { a } from './stage.js';\nimport { b } from '../decoding/x.js';\nimport c from 'sharp';",
    ],
    ['src/index.ts', "export * from './cli/muse.js';"],
  ]);
  const found = upwardImports(files, layers).map((v) => v.file);
  assert.deepEqual(found, [
    'src/util/a.ts',
    'src/tokenizer/b.ts',
    'src/server/c.ts',
    'src/tensor/d.ts',
    'src/image/e.ts',
  ]);
});
