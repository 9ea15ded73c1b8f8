// WebDataset shard patterns: brace expansion as bash and Python's braceexpand do it.
import { MuseError } from '../util/errors.js';

const MAX_SHARDS = 1_000_000;

/** Index of the `}` closing the `{` at `open`, or -1. */
function closingBrace(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === '{') depth++;
    else if (s[i] === '}' && --depth === 0) return i;
  }
  return -1;
}

/** Splits the inside of a brace group at its top-level commas. */
function topLevelCommas(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '{') depth++;
    else if (s[i] === '}') depth--;
    else if (s[i] === ',' && depth === 0) {
      parts.push(s.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(s.slice(start));
  return parts;
}

function range(body: string): string[] | undefined {
  const num = /^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$/.exec(body);
  if (num) {
    const [, a, b, stepText] = num;
    const from = Number(a);
    const to = Number(b);
    const step = Math.abs(Number(stepText ?? 1)) || 1;
    const count = Math.floor(Math.abs(to - from) / step) + 1;
    if (count > MAX_SHARDS) throw new MuseError(`shard pattern {${body}} expands to more than ${MAX_SHARDS} names`);
    // Zero-padded when either end is written with a leading zero: {000000..000009}.
    const padded = /^-?0\d/.test(a) || /^-?0\d/.test(b);
    const width = padded ? Math.max(a.length, b.length) : 0;
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      const v = from <= to ? from + i * step : from - i * step;
      const text = String(Math.abs(v)).padStart(width - (v < 0 ? 1 : 0), '0');
      out.push(v < 0 ? `-${text}` : text);
    }
    return out;
  }
  const chars = /^([a-zA-Z])\.\.([a-zA-Z])$/.exec(body);
  if (chars) {
    const from = chars[1].charCodeAt(0);
    const to = chars[2].charCodeAt(0);
    const out: string[] = [];
    for (let c = from; from <= to ? c <= to : c >= to; c += from <= to ? 1 : -1) out.push(String.fromCharCode(c));
    return out;
  }
  return undefined;
}

function expandOne(pattern: string): string[] {
  for (let open = pattern.indexOf('{'); open >= 0; open = pattern.indexOf('{', open + 1)) {
    const close = closingBrace(pattern, open);
    if (close < 0) break;
    const head = pattern.slice(0, open);
    const body = pattern.slice(open + 1, close);
    const tails = expandOne(pattern.slice(close + 1));
    const alternatives = topLevelCommas(body);
    let choices: string[] | undefined;
    if (alternatives.length > 1) choices = alternatives.flatMap(expandOne);
    else choices = range(body);
    if (!choices) continue; // not a range or list: the braces are literal
    const out: string[] = [];
    for (const c of choices) {
      for (const t of tails) {
        out.push(head + c + t);
        if (out.length > MAX_SHARDS) throw new MuseError(`shard pattern expands to more than ${MAX_SHARDS} names`);
      }
    }
    return out;
  }
  return [pattern];
}

/**
 * Expands a WebDataset shard pattern the way bash and Python's braceexpand do: numeric ranges
 * `{000000..000009}` (zero-padded when an end is; optional step `{0..10..2}`), letter ranges
 * `{a..e}`, lists `{train,val}`, several and nested groups; `a.tar::b.tar` joins patterns.
 */
export function expandShards(pattern: string): string[] {
  return pattern
    .split('::')
    .filter((p) => p !== '')
    .flatMap(expandOne);
}
