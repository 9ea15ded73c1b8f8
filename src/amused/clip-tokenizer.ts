// CLIP's byte-level BPE tokenizer (the one aMUSEd's text encoder was trained with), read from a
// tokenizer folder as transformers' CLIPTokenizer.save_pretrained writes it: vocab.json, merges.txt,
// tokenizer_config.json and special_tokens_map.json. vocab.json.gz / merges.txt.gz are read as well.
//
// Behaviour follows transformers 4.36's slow CLIPTokenizer when the optional `ftfy` package is NOT
// installed (the default there):
//   1. the text is split on the added/special tokens (their literal strings become their ids);
//   2. every other piece is cleaned like BasicTokenizer(strip_accents=False, do_split_on_punc=False):
//      NUL, U+FFFD and category-C characters dropped, whitespace (tab, newline, Zs) made a space,
//      spaces put around CJK ideographs, NFC, split on whitespace, each word lower-cased (full Unicode
//      mapping with the final-sigma rule, as Python's str.lower), then joined with single spaces;
//   3. CLIP's regex picks words; each word's UTF-8 bytes are mapped to printable characters and merged
//      by BPE (merge ranks from merges.txt, `</w>` marking the end of a word);
//   4. BOS + ids + EOS, truncated to maxLength, padded with the pad token to maxLength.

import { statSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { MuseError } from '../util/errors.js';
import { readRegularFileSync } from '../util/untrusted.js';

/** Largest vocab.json / merges.txt accepted (the real ones are 1.6 MB and 0.5 MB). */
const MAX_TOKENIZER_FILE_BYTES = 64_000_000;
/** Largest tokenizer_config.json / special_tokens_map.json accepted. */
const MAX_SMALL_JSON_BYTES = 4_000_000;
/** transformers reads merges.txt lines [1, 49152 - 256 - 2 + 1): at most this many merges. */
const MAX_MERGES = 49152 - 256 - 2;
/** Entries kept in the BPE cache before it is cleared (bounds memory on untrusted input). */
const MAX_CACHE_ENTRIES = 100_000;

export interface ClipEncodeOptions {
  /** Length of the output when padding/truncating (default 77, the CLIP context). */
  maxLength?: number;
  /** 'max_length' (default) pads to maxLength; 'none' leaves the sequence as long as it is. */
  padding?: 'max_length' | 'none';
  /** Cut to maxLength (BOS + maxLength-2 tokens + EOS). Default true. */
  truncation?: boolean;
}

export interface ClipEncoding {
  ids: Int32Array;
  /** 1 for BOS, the tokens and EOS; 0 for padding. */
  attentionMask: Int32Array;
  /** Whether tokens were dropped to fit maxLength. */
  truncated: boolean;
}

interface AddedToken {
  content: string;
  id: number;
  lstrip: boolean;
  rstrip: boolean;
}

// ---- byte <-> unicode -----------------------------------------------------------------------------

/** GPT-2/CLIP's reversible map from the 256 byte values to printable characters. */
function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table: string[] = new Array(256);
  for (const b of printable) table[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCodePoint(256 + n++);
  }
  return table;
}

const BYTE_ENCODER = bytesToUnicode();
const utf8 = new TextEncoder();

// ---- BasicTokenizer clean-up (no ftfy) --------------------------------------------------------------

const CONTROL = /^\p{C}$/u;
const SPACE_SEPARATOR = /^\p{Zs}$/u;
/**
 * What Python's str.split() splits on, among the characters the clean-up leaves (space, U+2028, U+2029):
 * the other Python whitespace (U+001C..U+001F, U+0085, ...) is category Cc and already removed.
 */
const PY_WHITESPACE = /\s+/u;

function isChineseChar(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

/** BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize(text), joined with spaces. */
export function basicClean(text: string): string {
  let cleaned = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0) as number;
    if (ch === '\t' || ch === '\n' || ch === '\r' || SPACE_SEPARATOR.test(ch)) {
      cleaned += ' ';
      continue;
    }
    if (cp === 0 || cp === 0xfffd || CONTROL.test(ch)) continue;
    cleaned += isChineseChar(cp) ? ` ${ch} ` : ch;
  }
  const words = cleaned
    .normalize('NFC')
    .split(PY_WHITESPACE)
    .filter((w) => w.length > 0);
  // str.lower per word: JS toLowerCase is the same full Unicode mapping (İ → i̇, final sigma by context).
  return words.map((w) => w.toLowerCase()).join(' ');
}

function escapeRegex(s: string): string {
  // Only the syntax characters and '/': with the `u` flag any other escape (`\-`) is a SyntaxError.
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * Byte-pair merging with exactly the semantics of CLIP's quadratic loop (each round: the pair of
 * lowest rank present; every non-overlapping occurrence of it merged, left to right), in
 * O(n log n) with a linked list and a heap, so a long untrusted word cannot stall the tokenizer.
 */
export function bpeMerge(symbols: string[], ranks: Map<string, number>): string[] {
  const n = symbols.length;
  if (n < 2) return symbols.slice();
  const sym = symbols.slice();
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  const alive = new Uint8Array(n).fill(1);
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  // Heap of candidate pairs (rank, left node); stale entries are checked when used.
  const heapRank: number[] = [];
  const heapLeft: number[] = [];
  const less = (a: number, b: number) =>
    heapRank[a] < heapRank[b] || (heapRank[a] === heapRank[b] && heapLeft[a] < heapLeft[b]);
  const swap = (a: number, b: number) => {
    [heapRank[a], heapRank[b]] = [heapRank[b], heapRank[a]];
    [heapLeft[a], heapLeft[b]] = [heapLeft[b], heapLeft[a]];
  };
  const push = (left: number) => {
    const right = next[left];
    if (right < 0) return;
    const rank = ranks.get(`${sym[left]} ${sym[right]}`);
    if (rank === undefined) return;
    heapRank.push(rank);
    heapLeft.push(left);
    for (let i = heapRank.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!less(i, parent)) break;
      swap(i, parent);
      i = parent;
    }
  };
  const pop = (): [number, number] => {
    const top: [number, number] = [heapRank[0], heapLeft[0]];
    const lastRank = heapRank.pop() as number;
    const lastLeft = heapLeft.pop() as number;
    if (heapRank.length > 0) {
      heapRank[0] = lastRank;
      heapLeft[0] = lastLeft;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heapRank.length && less(l, m)) m = l;
        if (r < heapRank.length && less(r, m)) m = r;
        if (m === i) break;
        swap(i, m);
        i = m;
      }
    }
    return top;
  };
  /** The rank of the pair starting at `left` now (undefined when it is no pair or no merge). */
  const rankAt = (left: number) =>
    alive[left] && next[left] >= 0 ? ranks.get(`${sym[left]} ${sym[next[left]]}`) : undefined;
  for (let i = 0; i < n - 1; i++) push(i);
  while (heapRank.length > 0) {
    const rank = heapRank[0];
    // Every occurrence of this round's pair, in left-to-right order (node ids keep the word order).
    const lefts: number[] = [];
    while (heapRank.length > 0 && heapRank[0] === rank) lefts.push(pop()[1]);
    const touched: number[] = [];
    for (const left of lefts) {
      if (rankAt(left) !== rank) continue; // stale, or consumed by the merge just to its left
      const right = next[left];
      sym[left] += sym[right];
      alive[right] = 0;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      touched.push(left);
    }
    for (const left of touched) {
      if (!alive[left]) continue;
      if (prev[left] >= 0) push(prev[left]);
      push(left);
    }
  }
  const out: string[] = [];
  for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
  return out;
}

// ---- the tokenizer ------------------------------------------------------------------------------------

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** `name` or `name.gz` from the folder, as UTF-8 text; `undefined` when neither exists and optional. */
function readText(folder: string, name: string, limit: number, optional = false): string | undefined {
  const plain = join(folder, name);
  const gz = `${plain}.gz`;
  let path: string;
  let bytes: Uint8Array;
  if (exists(plain)) {
    path = plain;
    bytes = readRegularFileSync(plain, limit, name);
  } else if (exists(gz)) {
    path = gz;
    const packed = readRegularFileSync(gz, limit, name);
    try {
      bytes = gunzipSync(packed, { maxOutputLength: limit });
    } catch (err) {
      throw new MuseError(`${gz}: cannot gunzip (${(err as Error).message})`);
    }
  } else {
    if (optional) return undefined;
    throw new MuseError(`${folder}: no ${name} (is this a CLIP tokenizer folder?)`);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new MuseError(`${path}: not valid UTF-8`);
  }
}

function readJson(folder: string, name: string, limit: number, optional: boolean): Record<string, unknown> | undefined {
  const text = readText(folder, name, limit, optional);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new MuseError(`${join(folder, name)}: not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(value)) throw new MuseError(`${join(folder, name)}: not a JSON object`);
  return value;
}

/** A token entry of tokenizer_config / special_tokens_map: a string or {content, lstrip, rstrip, ...}. */
function tokenSpec(v: unknown): { content: string; lstrip: boolean; rstrip: boolean } | undefined {
  if (typeof v === 'string') return { content: v, lstrip: false, rstrip: false };
  if (isPlainObject(v) && typeof v.content === 'string')
    return { content: v.content, lstrip: v.lstrip === true, rstrip: v.rstrip === true };
  return undefined;
}

export class ClipTokenizer {
  readonly folder: string;
  readonly vocab: Map<string, number>;
  readonly bpeRanks: Map<string, number>;
  readonly bosToken: string;
  readonly eosToken: string;
  readonly padToken: string;
  readonly unkToken: string;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly unkTokenId: number;
  /** model_max_length from tokenizer_config.json (77 for CLIP). */
  readonly modelMaxLength: number;
  private readonly added: AddedToken[];
  private readonly addedByContent: Map<string, AddedToken>;
  private readonly pattern: RegExp;
  private readonly cache = new Map<string, string[]>();

  private constructor(
    folder: string,
    vocab: Map<string, number>,
    merges: Map<string, number>,
    cfg: ClipTokenizerFiles,
  ) {
    this.folder = folder;
    this.vocab = vocab;
    this.bpeRanks = merges;
    this.bosToken = cfg.bos;
    this.eosToken = cfg.eos;
    this.padToken = cfg.pad;
    this.unkToken = cfg.unk;
    this.modelMaxLength = cfg.modelMaxLength;
    this.added = cfg.added;
    this.addedByContent = new Map(cfg.added.map((t) => [t.content, t]));
    const idOf = (token: string, role: string): number => {
      const id = this.addedByContent.get(token)?.id ?? vocab.get(token);
      if (id === undefined)
        throw new MuseError(`${folder}: the ${role} token ${JSON.stringify(token)} is not in the vocabulary`);
      return id;
    };
    this.bosTokenId = idOf(cfg.bos, 'bos');
    this.eosTokenId = idOf(cfg.eos, 'eos');
    this.padTokenId = idOf(cfg.pad, 'pad');
    this.unkTokenId = idOf(cfg.unk, 'unk');
    // CLIP's pattern (case-insensitive): its two special strings, the English contractions, runs of
    // letters, single digits, runs of anything else but whitespace.
    const specials = [cfg.bos, cfg.eos].map(escapeRegex).join('|');
    this.pattern = new RegExp(`${specials}|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^\\s\\p{L}\\p{N}]+`, 'giu');
    this.cache.set(cfg.bos, [cfg.bos]);
    this.cache.set(cfg.eos, [cfg.eos]);
  }

  /** Reads a tokenizer folder (vocab.json, merges.txt plain or gzipped; the two config files when present). */
  static load(folder: string): ClipTokenizer {
    if (!exists(folder) || !statSync(folder).isDirectory()) throw new MuseError(`${folder}: no such tokenizer folder`);
    const vocabText = readText(folder, 'vocab.json', MAX_TOKENIZER_FILE_BYTES) as string;
    let parsed: unknown;
    try {
      parsed = JSON.parse(vocabText);
    } catch (err) {
      throw new MuseError(`${join(folder, 'vocab.json')}: not valid JSON (${(err as Error).message})`);
    }
    if (!isPlainObject(parsed)) throw new MuseError(`${join(folder, 'vocab.json')}: not a JSON object of token → id`);
    const vocab = new Map<string, number>();
    for (const [token, id] of Object.entries(parsed)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= 2 ** 31)
        throw new MuseError(
          `${join(folder, 'vocab.json')}: token ${JSON.stringify(token)} has id ${JSON.stringify(id)}, not a non-negative integer`,
        );
      vocab.set(token, id);
    }
    if (vocab.size === 0) throw new MuseError(`${join(folder, 'vocab.json')}: empty vocabulary`);

    const mergesText = readText(folder, 'merges.txt', MAX_TOKENIZER_FILE_BYTES) as string;
    // As transformers: strip, split on newlines, skip the first (#version) line, keep at most MAX_MERGES.
    const lines = mergesText
      .trim()
      .split('\n')
      .slice(1, MAX_MERGES + 1);
    const merges = new Map<string, number>();
    // As dict(zip(merges, ranks)): a repeated pair keeps its last rank.
    lines.forEach((line, rank) => {
      const parts = line.trim().split(/\s+/);
      if (parts.length !== 2)
        throw new MuseError(`${join(folder, 'merges.txt')}: line ${rank + 2} is not two symbols separated by a space`);
      merges.set(`${parts[0]} ${parts[1]}`, rank);
    });

    const config = readJson(folder, 'tokenizer_config.json', MAX_SMALL_JSON_BYTES, true) ?? {};
    const specialMap = readJson(folder, 'special_tokens_map.json', MAX_SMALL_JSON_BYTES, true) ?? {};
    return new ClipTokenizer(folder, vocab, merges, readSpecials(folder, config, specialMap, vocab));
  }

  /** The BPE symbols of one regex-matched word (already byte-mapped). */
  private bpe(token: string): string[] {
    const hit = this.cache.get(token);
    if (hit) return hit;
    const chars = Array.from(token);
    const symbols = chars.slice(0, -1);
    symbols.push(`${chars[chars.length - 1]}</w>`);
    const word = bpeMerge(symbols, this.bpeRanks);
    if (this.cache.size >= MAX_CACHE_ENTRIES) this.cache.clear();
    this.cache.set(token, word);
    return word;
  }

  /** The BPE tokens (strings) of a piece of text without special tokens. */
  private tokenizePiece(text: string): string[] {
    const out: string[] = [];
    const cleaned = basicClean(text);
    for (const match of cleaned.matchAll(this.pattern)) {
      let mapped = '';
      for (const b of utf8.encode(match[0])) mapped += BYTE_ENCODER[b];
      out.push(...this.bpe(mapped));
    }
    return out;
  }

  /** Splits text on the added tokens' literal strings (leftmost, longest first), honouring lstrip/rstrip. */
  private splitOnAdded(text: string): (string | AddedToken)[] {
    const parts: (string | AddedToken)[] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      let found: AddedToken | undefined;
      for (const t of this.added) {
        if (
          t.content.length > 0 &&
          text.startsWith(t.content, i) &&
          (!found || t.content.length > found.content.length)
        )
          found = t;
      }
      if (found) {
        parts.push(text.slice(start, i), found);
        i += found.content.length;
        start = i;
      } else i++;
    }
    parts.push(text.slice(start));
    for (let k = 0; k < parts.length; k++) {
      const t = parts[k];
      if (typeof t === 'string') continue;
      if (t.rstrip && typeof parts[k + 1] === 'string') parts[k + 1] = (parts[k + 1] as string).trimStart();
      if (t.lstrip && typeof parts[k - 1] === 'string') parts[k - 1] = (parts[k - 1] as string).trimEnd();
    }
    return parts;
  }

  /** The BPE token strings of a text (no BOS/EOS). */
  tokenize(text: string): string[] {
    if (typeof text !== 'string') throw new MuseError(`prompt must be a string, got ${typeof text}`);
    const out: string[] = [];
    for (const part of this.splitOnAdded(text)) {
      if (typeof part === 'string') {
        if (part) out.push(...this.tokenizePiece(part));
      } else out.push(part.content);
    }
    return out;
  }

  tokenToId(token: string): number {
    return this.addedByContent.get(token)?.id ?? this.vocab.get(token) ?? this.unkTokenId;
  }

  /** ids = BOS + tokens + EOS, truncated and padded as asked. */
  encode(text: string, options: ClipEncodeOptions = {}): ClipEncoding {
    const maxLength = options.maxLength ?? 77;
    const padding = options.padding ?? 'max_length';
    const truncation = options.truncation ?? true;
    if (!Number.isInteger(maxLength) || maxLength < 2 || maxLength > 1_000_000)
      throw new MuseError(`maxLength must be an integer from 2 to 1000000, got ${maxLength}`);
    if (padding !== 'max_length' && padding !== 'none')
      throw new MuseError(`padding must be 'max_length' or 'none', got ${JSON.stringify(padding)}`);
    let body = this.tokenize(text).map((t) => this.tokenToId(t));
    let truncated = false;
    if (truncation && body.length + 2 > maxLength) {
      body = body.slice(0, maxLength - 2);
      truncated = true;
    }
    const real = body.length + 2;
    const length = padding === 'max_length' ? Math.max(real, maxLength) : real;
    const ids = new Int32Array(length).fill(this.padTokenId);
    const attentionMask = new Int32Array(length);
    ids[0] = this.bosTokenId;
    ids.set(body, 1);
    ids[real - 1] = this.eosTokenId;
    attentionMask.fill(1, 0, real);
    return { ids, attentionMask, truncated };
  }
}

interface ClipTokenizerFiles {
  bos: string;
  eos: string;
  pad: string;
  unk: string;
  modelMaxLength: number;
  added: AddedToken[];
}

function readSpecials(
  folder: string,
  config: Record<string, unknown>,
  specialMap: Record<string, unknown>,
  vocab: Map<string, number>,
): ClipTokenizerFiles {
  const pick = (key: string, fallback: string) =>
    tokenSpec(config[key]) ?? tokenSpec(specialMap[key]) ?? { content: fallback, lstrip: false, rstrip: false };
  // The CLIPTokenizer defaults, used only when neither file names the token.
  const bos = pick('bos_token', '<|startoftext|>');
  const eos = pick('eos_token', '<|endoftext|>');
  const unk = pick('unk_token', '<|endoftext|>');
  const pad = pick('pad_token', '<|endoftext|>');
  const added = new Map<string, AddedToken>();
  const decoder = config.added_tokens_decoder;
  if (decoder !== undefined) {
    if (!isPlainObject(decoder))
      throw new MuseError(`${join(folder, 'tokenizer_config.json')}: added_tokens_decoder is not an object`);
    for (const [key, value] of Object.entries(decoder)) {
      const id = Number(key);
      const spec = tokenSpec(value);
      if (!/^[0-9]+$/.test(key) || !Number.isSafeInteger(id) || !spec)
        throw new MuseError(
          `${join(folder, 'tokenizer_config.json')}: added_tokens_decoder entry ${JSON.stringify(key)} is malformed`,
        );
      added.set(spec.content, { ...spec, id });
    }
  }
  // Special tokens not listed as added tokens are added with their vocabulary id (as transformers does).
  for (const spec of [bos, eos, unk, pad]) {
    if (added.has(spec.content)) continue;
    const id = vocab.get(spec.content);
    if (id !== undefined) added.set(spec.content, { ...spec, id });
  }
  const mml = config.model_max_length;
  const modelMaxLength = typeof mml === 'number' && Number.isInteger(mml) && mml > 0 && mml <= 1_000_000 ? mml : 77;
  return {
    bos: bos.content,
    eos: eos.content,
    pad: pad.content,
    unk: unk.content,
    modelMaxLength,
    added: [...added.values()],
  };
}
