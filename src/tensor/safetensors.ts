// Reading and writing Hugging Face safetensors checkpoints, in plain TypeScript over typed arrays.
//
// Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON header, then the data buffer.
// Header: {"__metadata__": {str: str}, NAME: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}}
// with offsets relative to the start of the data buffer, and all data little-endian.
// Node's fs is imported lazily in save/load, so the codec itself also runs in the browser.

import { MuseError } from '../util/errors.js';
import type { SourceFile } from '../util/model-source.js';

export type Dtype = 'F32' | 'F16' | 'BF16';

export interface NamedTensor {
  shape: number[];
  /** Floats are always decoded to Float32Array; I32, I64 (values must fit in 32 bits) and U8 to Int32Array. */
  data: Float32Array | Int32Array;
  /** On read: the stored dtype. On write: overrides the file-wide dtype for this tensor (F32, F16, BF16, I32). */
  dtype?: Dtype | 'I32' | 'I64' | 'U8';
}

export interface EncodeOptions {
  /** Storage dtype for float tensors without their own `dtype` (default F32). */
  dtype?: Dtype;
  metadata?: Record<string, string>;
}

export interface DecodedSafetensors {
  tensors: Record<string, NamedTensor>;
  metadata: Record<string, string>;
}

export interface TensorStats {
  min: number;
  max: number;
  mean: number;
  /** NaN elements, which min/max/mean leave out. */
  nan: number;
}

export class SafetensorsError extends MuseError {
  readonly file: string;
  readonly tensor?: string;
  constructor(message: string, file: string, tensor?: string) {
    super(message);
    this.name = 'SafetensorsError';
    this.file = file;
    this.tensor = tensor;
  }
}

/** Throws `FILE: [tensor "NAME": ]MESSAGE`. */
function fail(file: string, message: string, tensor?: string): never {
  const where = tensor === undefined ? '' : `tensor ${JSON.stringify(tensor)}: `;
  throw new SafetensorsError(`${file}: ${where}${message}`, file, tensor);
}

// Every dtype the safetensors spec defines, with its element size; muse-ts reads only some of them.
const DTYPE_SIZES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};
const READABLE = ['F32', 'F16', 'BF16', 'I32', 'I64', 'U8'];
const FLOAT_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];
/** The largest header a reader accepts (and so the largest a writer may write). */
export const MAX_HEADER_BYTES = 100_000_000;
/** The largest file loadSafetensors reads (what one Node buffer can hold); larger ones are refused unread. */
export const MAX_FILE_BYTES = 2 ** 31 - 1;
const METADATA_KEY = '__metadata__';

/** Bytes per element of a safetensors dtype name (undefined if the spec does not define it). */
export function bytesPerElement(dtype: string): number | undefined {
  return Object.hasOwn(DTYPE_SIZES, dtype) ? DTYPE_SIZES[dtype] : undefined;
}

function numel(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

// ---- float16 / bfloat16 bit conversion -------------------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function float32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

function bitsToFloat32(bits: number): number {
  u32[0] = bits;
  return f32[0];
}

/** `value >> shift` rounded to nearest, ties to even (value < 2^31, 1 <= shift <= 24). */
function shiftRoundEven(value: number, shift: number): number {
  const kept = value >>> shift;
  const rest = value & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rest > half || (rest === half && (kept & 1) === 1) ? kept + 1 : kept;
}

/** IEEE binary16 bits of a number, rounded to nearest even; overflow gives ±Infinity. */
export function float32ToFloat16Bits(x: number): number {
  return halfFromFloat32Bits(float32Bits(x));
}

function halfFromFloat32Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  const e = exp - 127 + 15; // rebias: float32 bias 127, float16 bias 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: value = m * 2^-24. Below 2^-25 everything rounds to zero (2^-25 itself ties to 0).
    // A carry out of the 10-bit field lands in the exponent as the smallest normal, which is correct.
    if (e < -10) return sign;
    return sign | shiftRoundEven(mant | 0x800000, 14 - e);
  }
  // Normal: drop 13 mantissa bits. A carry may bump the exponent, up to 0x7c00 = Infinity.
  return sign | shiftRoundEven((e << 23) | mant, 13);
}

export function float16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bits (the top half of a float32), rounded to nearest even. */
export function float32ToBfloat16Bits(x: number): number {
  return bfloat16FromFloat32Bits(float32Bits(x));
}

function bfloat16FromFloat32Bits(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return (bits >>> 16) | 0x0040;
  return (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
}

export function bfloat16BitsToFloat32(b: number): number {
  return bitsToFloat32(b << 16);
}

// ---- little-endian typed array I/O -----------------------------------------------------------------

const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Copies `count` little-endian elements of `width` bytes starting at `start` into a fresh typed array. */
function readLE(bytes: Uint8Array, start: number, count: number, width: 2 | 4): Uint16Array | Uint32Array {
  // Uint8Array's slice copies (a Node Buffer's own slice would only make a view into a shared pool).
  const copy = Uint8Array.prototype.slice.call(bytes, start, start + count * width);
  const Out = width === 2 ? Uint16Array : Uint32Array;
  if (littleEndianHost) return new Out(copy.buffer, 0, count);
  const view = new DataView(copy.buffer);
  const out = new Out(count);
  for (let i = 0; i < count; i++) out[i] = width === 2 ? view.getUint16(i * 2, true) : view.getUint32(i * 4, true);
  return out;
}

function writeLE(target: Uint8Array, start: number, values: Uint16Array | Uint32Array): void {
  if (littleEndianHost) {
    target.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), start);
    return;
  }
  const view = new DataView(target.buffer, target.byteOffset + start, values.byteLength);
  for (let i = 0; i < values.length; i++) {
    if (values instanceof Uint16Array) view.setUint16(i * 2, values[i], true);
    else view.setUint32(i * 4, values[i], true);
  }
}

let halfTable: Float32Array | undefined;

function decodeHalves(halves: Uint16Array): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(0x10000);
    for (let h = 0; h < 0x10000; h++) halfTable[h] = float16BitsToFloat32(h);
  }
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = halfTable[halves[i]];
  return out;
}

function decodeBfloat16s(values: Uint16Array): Float32Array {
  const out = new Uint32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i] << 16;
  return new Float32Array(out.buffer);
}

/** Little-endian int64s as int32s (token ids, position ids); a value outside the int32 range throws. */
function decodeInt64s(bytes: Uint8Array, start: number, count: number): Int32Array {
  const words = readLE(bytes, start, 2 * count, 4) as Uint32Array;
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const lo = words[2 * i];
    const hi = words[2 * i + 1];
    // In range: hi is the sign extension of lo's top bit.
    if (hi !== (lo & 0x80000000 ? 0xffffffff : 0)) throw new RangeError(`element ${i} does not fit in 32 bits`);
    out[i] = lo | 0;
  }
  return out;
}

/** Converts each float32 (as raw bits) to a 16-bit pattern. */
function mapBits(data: Float32Array, convert: (bits: number) => number): Uint16Array {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint16Array(data.length);
  for (let i = 0; i < bits.length; i++) out[i] = convert(bits[i]);
  return out;
}

function decodeData(dtype: string, bytes: Uint8Array, start: number, count: number): Float32Array | Int32Array {
  switch (dtype) {
    case 'F32':
      return new Float32Array(readLE(bytes, start, count, 4).buffer, 0, count);
    case 'I32':
      return new Int32Array(readLE(bytes, start, count, 4).buffer, 0, count);
    case 'F16':
      return decodeHalves(readLE(bytes, start, count, 2) as Uint16Array);
    case 'BF16':
      return decodeBfloat16s(readLE(bytes, start, count, 2) as Uint16Array);
    case 'U8':
      return Int32Array.from(bytes.subarray(start, start + count));
    case 'I64':
      return decodeInt64s(bytes, start, count);
    default:
      throw new Error(`decodeData: unreadable dtype ${dtype}`);
  }
}

function encodeData(dtype: Dtype | 'I32', data: Float32Array | Int32Array): Uint16Array | Uint32Array {
  switch (dtype) {
    case 'F32':
    case 'I32':
      return new Uint32Array(data.buffer, data.byteOffset, data.length);
    case 'F16':
      return mapBits(data as Float32Array, halfFromFloat32Bits);
    case 'BF16':
      return mapBits(data as Float32Array, bfloat16FromFloat32Bits);
  }
}

// ---- encode ------------------------------------------------------------------------------------------

const ENCODE_FILE = '<encode>';

function storageDtype(name: string, t: NamedTensor, fileDtype: Dtype): Dtype | 'I32' {
  if (t.data instanceof Int32Array) {
    // Integers read from I64 or U8 are written back as I32.
    if (t.dtype !== undefined && t.dtype !== 'I32' && t.dtype !== 'I64' && t.dtype !== 'U8')
      fail(ENCODE_FILE, `Int32Array data cannot be stored as ${t.dtype}`, name);
    return 'I32';
  }
  if (!(t.data instanceof Float32Array)) fail(ENCODE_FILE, 'data must be a Float32Array or Int32Array', name);
  if (t.dtype === 'I32' || t.dtype === 'I64' || t.dtype === 'U8')
    fail(ENCODE_FILE, `dtype ${t.dtype} needs Int32Array data`, name);
  const dtype = t.dtype ?? fileDtype;
  if (!FLOAT_DTYPES.includes(dtype))
    fail(ENCODE_FILE, `unsupported dtype ${String(dtype)} (use F32, F16 or BF16)`, name);
  return dtype;
}

function checkTensorForEncode(name: string, t: NamedTensor): void {
  if (name === METADATA_KEY) fail(ENCODE_FILE, `the name ${METADATA_KEY} is reserved`, name);
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(ENCODE_FILE, `shape must be non-negative integers, got ${JSON.stringify(t.shape)}`, name);
  }
  if (t.data.length !== numel(t.shape)) {
    fail(
      ENCODE_FILE,
      `shape ${formatShape(t.shape)} needs ${numel(t.shape)} elements, data has ${t.data.length}`,
      name,
    );
  }
}

function sortedRecord(record: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(record).sort()) {
    if (typeof record[key] !== 'string')
      fail(ENCODE_FILE, `metadata value for ${JSON.stringify(key)} must be a string`);
    out[key] = record[key];
  }
  return out;
}

/** Serialises tensors (sorted by name, packed back to back) with an 8-byte-aligned header. */
export function encodeSafetensors(tensors: Record<string, NamedTensor>, options: EncodeOptions = {}): Uint8Array {
  const fileDtype = options.dtype ?? 'F32';
  const header: Record<string, unknown> = {};
  if (options.metadata !== undefined) header[METADATA_KEY] = sortedRecord(options.metadata);
  const parts: { begin: number; values: Uint16Array | Uint32Array }[] = [];
  let offset = 0;
  for (const name of Object.keys(tensors).sort()) {
    const t = tensors[name];
    checkTensorForEncode(name, t);
    const dtype = storageDtype(name, t, fileDtype);
    const values = encodeData(dtype, t.data);
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + values.byteLength] };
    parts.push({ begin: offset, values });
    offset += values.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // A header the reader would refuse makes the whole file unreadable: refuse to write it.
  if (json.length > MAX_HEADER_BYTES)
    fail(ENCODE_FILE, `header of ${json.length} bytes is over the limit of ${MAX_HEADER_BYTES} that readers accept`);
  const headerLength = Math.ceil(json.length / 8) * 8; // pad with spaces so the data starts 8-byte aligned
  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.fill(0x20, 8, 8 + headerLength);
  out.set(json, 8);
  for (const part of parts) writeLE(out, 8 + headerLength + part.begin, part.values);
  return out;
}

// ---- decode ------------------------------------------------------------------------------------------

interface Entry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readHeader(bytes: Uint8Array, file: string): { header: Record<string, unknown>; dataStart: number } {
  if (bytes.length < 8) fail(file, `file is ${bytes.length} bytes, too short for the 8-byte header length`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES))
    fail(file, `header length ${n} is absurd (limit ${MAX_HEADER_BYTES} bytes); not a safetensors file?`);
  const length = Number(n);
  if (8 + length > bytes.length) {
    fail(
      file,
      `header length ${length} runs past the end of the file (${bytes.length} bytes); truncated or not safetensors?`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + length)));
  } catch (err) {
    fail(file, `header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(header)) fail(file, 'header JSON is not an object');
  return { header, dataStart: 8 + length };
}

function readMetadata(value: unknown, file: string): Record<string, string> {
  if (value === undefined) return Object.create(null) as Record<string, string>;
  if (!isPlainObject(value)) fail(file, `${METADATA_KEY} must be an object of strings`);
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string')
      fail(file, `${METADATA_KEY} value for ${JSON.stringify(key)} is ${typeof v}, expected a string`);
  }
  // A null-prototype map: a key such as "__proto__" or "constructor" is just a key.
  return Object.assign(Object.create(null) as Record<string, string>, value);
}

function isOffset(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function parseEntry(name: string, value: unknown, dataLength: number, file: string): Entry {
  if (!isPlainObject(value)) fail(file, 'entry is not an object', name);
  for (const key of ['dtype', 'shape', 'data_offsets']) {
    if (!(key in value)) fail(file, `missing "${key}"`, name);
  }
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== 'string' || bytesPerElement(dtype) === undefined)
    fail(file, `unknown dtype ${JSON.stringify(dtype)}`, name);
  if (!Array.isArray(shape) || !shape.every(isOffset)) {
    fail(file, `shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`, name);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isOffset)) {
    fail(file, `data_offsets must be two non-negative integers, got ${JSON.stringify(offsets)}`, name);
  }
  const [begin, end] = offsets as number[];
  if (begin > end) fail(file, `data_offsets [${begin}, ${end}] begin after they end`, name);
  const needed = numel(shape) * (bytesPerElement(dtype) as number);
  if (end - begin !== needed) {
    fail(
      file,
      `data_offsets [${begin}, ${end}] span ${end - begin} bytes, but ${dtype} ${formatShape(shape)} needs ${needed}`,
      name,
    );
  }
  if (end > dataLength) {
    fail(file, `file truncated: data ends at byte ${end} of the data buffer, which has only ${dataLength} bytes`, name);
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/** The spec requires the data buffer to be exactly tiled by the tensors: no overlaps, no holes. */
function checkLayout(entries: Entry[], dataLength: number, file: string): void {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous: Entry | undefined;
  for (const e of sorted) {
    if (e.begin < cursor && previous) {
      fail(
        file,
        `bytes [${e.begin}, ${e.end}) overlap tensor ${JSON.stringify(previous.name)} [${previous.begin}, ${previous.end})`,
        e.name,
      );
    }
    if (e.begin > cursor)
      fail(file, `hole in the data buffer: bytes [${cursor}, ${e.begin}) belong to no tensor`, e.name);
    cursor = e.end;
    previous = e;
  }
  if (cursor < dataLength) {
    fail(
      file,
      `hole in the data buffer: ${dataLength - cursor} trailing bytes [${cursor}, ${dataLength}) belong to no tensor`,
    );
  }
}

export function decodeSafetensors(bytes: Uint8Array, fileName = '<buffer>'): DecodedSafetensors {
  const { header, dataStart } = readHeader(bytes, fileName);
  const metadata = readMetadata(header[METADATA_KEY], fileName);
  const dataLength = bytes.length - dataStart;
  const entries = Object.entries(header)
    .filter(([name]) => name !== METADATA_KEY)
    .map(([name, value]) => parseEntry(name, value, dataLength, fileName));
  checkLayout(entries, dataLength, fileName);
  const tensors = Object.create(null) as Record<string, NamedTensor>;
  for (const e of entries) {
    if (!READABLE.includes(e.dtype)) {
      fail(fileName, `unsupported dtype ${e.dtype} (muse-ts reads ${READABLE.join(', ')})`, e.name);
    }
    let data: Float32Array | Int32Array;
    try {
      data = decodeData(e.dtype, bytes, dataStart + e.begin, numel(e.shape));
    } catch (err) {
      if (err instanceof RangeError) fail(fileName, `I64 ${err.message} (muse-ts reads I64 as int32)`, e.name);
      throw err;
    }
    tensors[e.name] = { shape: e.shape, data, dtype: e.dtype as NamedTensor['dtype'] };
  }
  return { tensors, metadata };
}

// ---- files -------------------------------------------------------------------------------------------

/** Writes atomically: a temp file in the same folder, fsync, then rename over `path`. */
export async function saveSafetensors(
  path: string,
  tensors: Record<string, NamedTensor>,
  options: EncodeOptions = {},
): Promise<void> {
  const bytes = encodeSafetensors(tensors, options);
  // Node's file system is loaded on use: the codec above also runs in browsers.
  const { writeFileDurably } = await import('../util/node-fs.js');
  try {
    await writeFileDurably(path, bytes);
  } catch (err) {
    throw new SafetensorsError(`${path}: cannot write: ${(err as Error).message}`, path);
  }
}

/**
 * Reads a safetensors file: a path (Node; a regular file, its size checked before reading) or a file
 * of a ModelSource (a folder, or a URL read with fetch under the same size limit).
 */
export async function loadSafetensors(path: string | SourceFile): Promise<DecodedSafetensors> {
  if (typeof path !== 'string') {
    const where = path.source.where(path.name);
    let bytes: Uint8Array;
    try {
      bytes = await path.source.read(path.name, MAX_FILE_BYTES, 'a safetensors file');
    } catch (err) {
      throw new SafetensorsError((err as Error).message, where);
    }
    return decodeSafetensors(bytes, where);
  }
  const { readRegularFile } = await import('../util/node-fs.js');
  let bytes: Uint8Array;
  try {
    // Only a regular file, its size checked before reading (no /dev/zero, no FIFO, no 100 GB file).
    bytes = await readRegularFile(path, MAX_FILE_BYTES, 'a safetensors file');
  } catch (err) {
    throw new SafetensorsError((err as Error).message, path);
  }
  return decodeSafetensors(bytes, path);
}

// ---- project config convention -------------------------------------------------------------------

export const FORMAT_NAME = 'muse-ts';
export const FORMAT_VERSION = 1;

/** Metadata carrying a model config: `config` (JSON), `format` = muse-ts, `format_version`. These keys win over `extra`. */
export function metadataWithConfig(config: object, extra: Record<string, string> = {}): Record<string, string> {
  return { ...extra, format: FORMAT_NAME, format_version: String(FORMAT_VERSION), config: JSON.stringify(config) };
}

export function configFromMetadata<T>(metadata: Record<string, string>, fileName: string): T {
  const { format, format_version: version, config } = metadata;
  if (format !== undefined && format !== FORMAT_NAME) {
    fail(fileName, `metadata format is ${JSON.stringify(format)}, expected ${JSON.stringify(FORMAT_NAME)}`);
  }
  if (version !== undefined) {
    if (!/^[1-9][0-9]*$/.test(version))
      fail(fileName, `metadata format_version ${JSON.stringify(version)} is not a positive integer`);
    if (Number(version) > FORMAT_VERSION) {
      fail(
        fileName,
        `written by a newer muse-ts (format_version ${version}; this version reads up to ${FORMAT_VERSION})`,
      );
    }
  }
  if (config === undefined) fail(fileName, 'no model config (metadata key "config"); not a muse-ts checkpoint?');
  let parsed: unknown;
  try {
    parsed = JSON.parse(config);
  } catch (err) {
    fail(fileName, `metadata "config" is not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(parsed)) fail(fileName, 'metadata "config" is not a JSON object');
  return parsed as T;
}

// ---- statistics ------------------------------------------------------------------------------------

/** min/max/mean over the non-NaN elements (NaN when there are none), and the NaN count. */
export function tensorStats(t: NamedTensor): TensorStats {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let nan = 0;
  for (const x of t.data) {
    if (Number.isNaN(x)) {
      nan++;
      continue;
    }
    if (x < min) min = x;
    if (x > max) max = x;
    sum += x;
  }
  const counted = t.data.length - nan;
  if (counted === 0) return { min: NaN, max: NaN, mean: NaN, nan };
  return { min, max, mean: sum / counted, nan };
}
