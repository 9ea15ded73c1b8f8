// Training and validation loss of several run folders (their history.json) on one chart, and the
// validation losses side by side: how docs/PERFORMANCE.md compares a bf16 run with an fp32 one.
//   node --import tsx bench/compare-runs.ts OUT.png NAME=RUN_FOLDER NAME=RUN_FOLDER ...
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type LineSeries, lineChartPng } from '../src/util/plot.js';

const [out, ...runs] = process.argv.slice(2);
if (!out || runs.length === 0) {
  console.error('usage: compare-runs.ts OUT.png NAME=RUN_FOLDER ...');
  process.exit(2);
}
interface History {
  train: Array<{ step: number; loss: number }>;
  eval: Array<{ step: number; loss?: number; valLoss?: number; [k: string]: number | undefined }>;
}
const series: LineSeries[] = [];
const table = new Map<number, string[]>();
runs.forEach((spec, i) => {
  const [name, folder] = spec.split('=');
  const h = JSON.parse(readFileSync(join(folder, 'history.json'), 'utf8')) as History;
  series.push({ name: `${name} train`, points: h.train.map((r) => [r.step, r.loss]), smooth: 0.8 });
  const valKey = Object.keys(h.eval[0] ?? {}).find((k) => /loss/i.test(k)) ?? 'loss';
  series.push({ name: `${name} validation`, points: h.eval.map((r) => [r.step, r[valKey] as number]), smooth: 0 });
  for (const r of h.eval) {
    const row = table.get(r.step) ?? new Array(runs.length).fill('');
    row[i] = (r[valKey] as number).toFixed(3);
    table.set(r.step, row);
  }
});
writeFileSync(out, await lineChartPng(series, { title: 'bf16 vs fp32 training', xLabel: 'step', yLabel: 'loss' }));
console.log(`step  ${runs.map((r) => r.split('=')[0]).join('  ')}`);
for (const [step, row] of [...table.entries()].sort((a, b) => a[0] - b[0])) console.log(`${step}  ${row.join('  ')}`);
