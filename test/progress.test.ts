// The progress line: counts advanced by steps (tick) or to running totals (to).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Progress } from '../src/util/progress.js';

test('progress: tick adds, to() moves to a running total; the line shows the count of the total', () => {
  const lines: string[] = [];
  const p = new Progress({ total: 10, label: 'gen', unit: 'img', stream: { write: (s: string) => lines.push(s) > 0 } });
  p.tick(2);
  p.to(5);
  assert.match(p.line(), /^gen 5\/10 /);
  p.to(10); // finished: drawn even between redraw intervals
  assert.match(lines.at(-1) ?? '', /^gen 10\/10 /);
});
