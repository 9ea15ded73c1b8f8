// `muse inspect FILE`: show a safetensors checkpoint's metadata and a summary of every tensor.
import { bytesPerElement, loadSafetensors, type NamedTensor, tensorStats } from '../tensor/safetensors.js';
import { MuseError } from '../util/errors.js';

export interface CliOutput {
  log(s: string): void;
  error(s: string): void;
}

const USAGE = `usage: muse inspect [--json] FILE

Prints a safetensors file's metadata (the model config pretty-printed) and, per tensor,
its dtype, shape and min/max/mean, then the parameter count and data size.

  --json   print one JSON object instead
  --help   show this help`;

interface TensorSummary {
  name: string;
  dtype: string;
  shape: number[];
  params: number;
  bytes: number;
  min: number;
  max: number;
  mean: number;
  nan: number;
}

export async function inspectCommand(args: string[], out: CliOutput = console): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out.log(USAGE);
    return 0;
  }
  const json = args.includes('--json');
  const rest = args.filter((a) => a !== '--json');
  const unknown = rest.find((a) => a.startsWith('-') && a !== '-');
  if (unknown !== undefined || rest.length !== 1) {
    if (unknown !== undefined) out.error(`muse inspect: unknown option ${unknown}`);
    else if (rest.length > 1) out.error('muse inspect: give exactly one FILE');
    out.error(USAGE);
    return 2;
  }
  const file = rest[0];
  try {
    const { tensors, metadata } = await loadSafetensors(file);
    const summaries = Object.keys(tensors)
      .sort()
      .map((name) => summarise(name, tensors[name]));
    if (json) out.log(JSON.stringify(jsonReport(file, metadata, summaries), null, 2));
    else for (const line of textReport(file, metadata, summaries)) out.log(line);
    return 0;
  } catch (err) {
    // A bad file is the user's problem: one line. Anything else is a bug and keeps its stack trace.
    if (!(err instanceof MuseError)) throw err;
    out.error(`muse inspect: ${err.message.replace(/\s*\n\s*/g, ' ')}`);
    return 1;
  }
}

function summarise(name: string, t: NamedTensor): TensorSummary {
  const dtype = t.dtype ?? (t.data instanceof Int32Array ? 'I32' : 'F32');
  const params = t.data.length;
  return { name, dtype, shape: t.shape, params, bytes: params * (bytesPerElement(dtype) ?? 4), ...tensorStats(t) };
}

function parseConfig(metadata: Record<string, string>): unknown {
  if (metadata.config === undefined) return undefined;
  try {
    return JSON.parse(metadata.config);
  } catch {
    return undefined;
  }
}

function jsonReport(file: string, metadata: Record<string, string>, summaries: TensorSummary[]): object {
  // JSON has no NaN or Infinity: such stats come out as null.
  return {
    file,
    metadata,
    config: parseConfig(metadata) ?? null,
    tensors: summaries,
    totalParams: summaries.reduce((n, s) => n + s.params, 0),
    totalBytes: summaries.reduce((n, s) => n + s.bytes, 0),
  };
}

function textReport(file: string, metadata: Record<string, string>, summaries: TensorSummary[]): string[] {
  const lines = [`${file}`];
  const keys = Object.keys(metadata).sort();
  lines.push(keys.length === 0 ? 'metadata: (none)' : 'metadata:');
  for (const key of keys) {
    if (key !== 'config') lines.push(`  ${key}: ${metadata[key]}`);
  }
  if (metadata.config !== undefined) {
    const config = parseConfig(metadata);
    if (config === undefined) lines.push(`  config (not valid JSON): ${metadata.config}`);
    else
      lines.push(
        '  config:',
        ...JSON.stringify(config, null, 2)
          .split('\n')
          .map((l) => `    ${l}`),
      );
  }
  lines.push(`tensors: ${summaries.length}`);
  const rows = summaries.map((s) => [
    s.name,
    s.dtype,
    `[${s.shape.join(', ')}]`,
    `min ${formatNumber(s.min)}`,
    `max ${formatNumber(s.max)}`,
    `mean ${formatNumber(s.mean)}`,
    s.nan > 0 ? `nan ${s.nan}` : '',
  ]);
  // No spreading into push or Math.max: a file may hold hundreds of thousands of tensors.
  for (const l of alignColumns(rows)) lines.push(`  ${l}`);
  const params = summaries.reduce((n, s) => n + s.params, 0);
  const bytes = summaries.reduce((n, s) => n + s.bytes, 0);
  lines.push(`total: ${params.toLocaleString('en-US')} parameters, ${formatBytes(bytes)}`);
  return lines;
}

function alignColumns(rows: string[][]): string[] {
  const widths = (rows[0] ?? []).map(() => 0);
  for (const r of rows) for (let i = 0; i < widths.length; i++) widths[i] = Math.max(widths[i], r[i].length);
  return rows.map((r) =>
    r
      .map((cell, i) => cell.padEnd(widths[i]))
      .join('  ')
      .trimEnd(),
  );
}

/** Compact: 4 significant digits, plain notation for 1e-3 <= |x| < 1e5, else exponent. */
export function formatNumber(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return '0';
  const abs = Math.abs(x);
  if (abs >= 1e-3 && abs < 1e5) return String(Number(x.toPrecision(4)));
  const [mantissa, exponent] = x.toExponential(3).split('e');
  return `${String(Number(mantissa))}e${exponent}`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const shown = unit === 0 ? String(value) : value.toFixed(value < 10 ? 2 : 1);
  return unit === 0 ? `${shown} B` : `${shown} ${units[unit]} (${bytes.toLocaleString('en-US')} bytes)`;
}
