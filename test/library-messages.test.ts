// Library messages name options as the library spells them, never a command-line flag (a library
// user has none); the CLI shows its flags instead (cli/errors.ts withFlags).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { userMessage, withFlags } from '../src/cli/errors.js';
import { MuseError } from '../src/util/errors.js';

/** The text of every string and template piece in a TypeScript source (comments are not strings). */
function strings(file: string): string[] {
  const out: string[] = [];
  const visit = (node: ts.Node) => {
    if (
      ts.isStringLiteral(node) ||
      ts.isNoSubstitutionTemplateLiteral(node) ||
      ts.isTemplateHead(node) ||
      ts.isTemplateMiddle(node) ||
      ts.isTemplateTail(node)
    )
      out.push(node.text);
    ts.forEachChild(node, visit);
  };
  visit(ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true));
  return out;
}

function libraryFiles(dir: string, into: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) {
      if (path !== join('src', 'cli')) libraryFiles(path, into);
    } else if (e.name.endsWith('.ts')) into.push(path);
  }
  return into;
}

test('no string outside src/cli names a command-line flag', () => {
  const found = libraryFiles('src').flatMap((f) =>
    strings(f)
      .filter((s) => /(^|[\s(`'"])--[a-z][a-z0-9-]*/.test(s))
      .map((s) => `${f}: ${JSON.stringify(s)}`),
  );
  assert.deepEqual(found, []);
});

test('the CLI shows its flags for the options a library message names', () => {
  assert.equal(
    withFlags('x is not empty: continue it with `resume`, start over with `overwrite`, or choose another `out`'),
    'x is not empty: continue it with --resume, start over with --overwrite, or choose another --out',
  );
  assert.equal(
    withFlags('give a `shardSize` of at least 8; `url` "x": no host'),
    'give a --shard-size of at least 8; --queue "x": no host',
  );
  // names that are no option are left as they are
  assert.equal(withFlags('made by `muse data encode`; `notAnOption`'), 'made by `muse data encode`; `notAnOption`');
  assert.equal(userMessage(new MuseError('lower `lr`')), 'lower --lr');
  assert.equal(userMessage(new Error('a bug')), undefined);
});
