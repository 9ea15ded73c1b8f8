import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { inspectCommand } from '../src/cli/inspect.js';
import {
  bfloat16BitsToFloat32,
  configFromMetadata,
  decodeSafetensors,
  encodeSafetensors,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  loadSafetensors,
  metadataWithConfig,
  type NamedTensor,
  SafetensorsError,
  saveSafetensors,
  tensorStats,
} from '../src/tensor/safetensors.js';

/** Builds a file per the spec: u64 LE header length, the header JSON, then the data bytes. */
function buildFile(header: string | Uint8Array | object, data: number[] | Uint8Array = []): Uint8Array {
  const json =
    header instanceof Uint8Array
      ? header
      : new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function f32Bytes(...values: number[]): number[] {
  const view = new DataView(new ArrayBuffer(values.length * 4));
  for (const [i, v] of values.entries()) view.setFloat32(i * 4, v, true);
  return [...new Uint8Array(view.buffer)];
}

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'muse-safetensors-'));
}

function capture(): { out: { log(s: string): void; error(s: string): void }; stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { out: { log: (s) => stdout.push(s), error: (s) => stderr.push(s) }, stdout, stderr };
}

test('decodes a hand-built file, byte by byte from the spec', () => {
  const header =
    '{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
    '"b":{"dtype":"F16","shape":[1],"data_offsets":[8,10]},"c":{"dtype":"BF16","shape":[],"data_offsets":[10,12]},' +
    '"d":{"dtype":"I32","shape":[1,1],"data_offsets":[12,16]}}';
  const length = header.length; // ASCII, so bytes == characters
  const bytes = [
    length & 0xff,
    (length >> 8) & 0xff,
    0,
    0,
    0,
    0,
    0,
    0, // u64 little-endian header length
    ...Array.from(header, (c) => c.charCodeAt(0)),
    0x00,
    0x00,
    0xc0,
    0x3f, // F32 1.5   = 0x3FC00000
    0x00,
    0x00,
    0x10,
    0xc0, // F32 -2.25 = 0xC0100000
    0x00,
    0x38, // F16 0.5 = 0x3800
    0x80,
    0xbf, // BF16 -1 = 0xBF80
    0xfe,
    0xff,
    0xff,
    0xff, // I32 -2
  ];
  const { tensors, metadata } = decodeSafetensors(new Uint8Array(bytes), 'hand.safetensors');
  assert.deepEqual({ ...metadata }, { k: 'v' });
  assert.deepEqual(Object.keys(tensors).sort(), ['a', 'b', 'c', 'd']);
  assert.deepEqual(tensors.a, { shape: [2], data: new Float32Array([1.5, -2.25]), dtype: 'F32' });
  assert.deepEqual(tensors.b, { shape: [1], data: new Float32Array([0.5]), dtype: 'F16' });
  assert.deepEqual(tensors.c, { shape: [], data: new Float32Array([-1]), dtype: 'BF16' });
  assert.deepEqual(tensors.d, { shape: [1, 1], data: new Int32Array([-2]), dtype: 'I32' });
});

test('encodes exactly the bytes the spec describes: sorted names, space-padded header', () => {
  const bytes = encodeSafetensors(
    { z: { shape: [1], data: new Float32Array([1.5]) }, a: { shape: [1], data: new Float32Array([-2]), dtype: 'F16' } },
    { metadata: { m: 'x' } },
  );
  const json =
    '{"__metadata__":{"m":"x"},"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},' +
    '"z":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}';
  const padded = json + ' '.repeat((8 - (json.length % 8)) % 8);
  assert.equal(padded.length % 8, 0);
  const expected = buildFile(padded, [0x00, 0xc0, ...f32Bytes(1.5)]);
  assert.deepEqual(bytes, expected);
});

test('F32 round trip is exact, including special values; I32 round trips', () => {
  const data = new Float32Array([0, -0, 1, -1.5, 3.4e38, 1e-45, Infinity, -Infinity, NaN, Math.PI]);
  const ids = new Int32Array([0, -1, 2147483647, -2147483648]);
  const tensors = { w: { shape: [2, 5], data }, ids: { shape: [4], data: ids } };
  const back = decodeSafetensors(encodeSafetensors(tensors)).tensors;
  assert.deepEqual(back.w, { shape: [2, 5], data, dtype: 'F32' });
  assert.deepEqual(back.ids, { shape: [4], data: ids, dtype: 'I32' });
  assert.ok(Object.is(back.w.data[1], -0));
});

test('F16 and BF16 round trips stay within their precision', () => {
  const values = Array.from({ length: 257 }, (_, i) => Math.sin(i * 0.37) * 10 ** ((i % 7) - 3));
  const data = new Float32Array(values);
  for (const [dtype, relError] of [
    ['F16', 2 ** -11],
    ['BF16', 2 ** -8],
  ] as const) {
    const file = encodeSafetensors({ t: { shape: [257], data } }, { dtype });
    assert.equal(file.length % 2, 0);
    const back = decodeSafetensors(file).tensors.t;
    assert.equal(back.dtype, dtype);
    back.data.forEach((x, i) => {
      // F16 subnormals have an absolute step of 2^-24, so allow half of that too.
      const tolerance = Math.abs(data[i]) * relError + (dtype === 'F16' ? 2 ** -25 : 0);
      assert.ok(Math.abs(x - data[i]) <= tolerance, `${dtype}[${i}]: ${x} vs ${data[i]}`);
    });
  }
});

test('per-tensor dtype overrides the file dtype, and a read tensor keeps its stored dtype', () => {
  const file = encodeSafetensors(
    { a: { shape: [1], data: new Float32Array([1]) }, b: { shape: [1], data: new Float32Array([1]), dtype: 'F32' } },
    { dtype: 'BF16' },
  );
  const { tensors } = decodeSafetensors(file);
  assert.equal(tensors.a.dtype, 'BF16');
  assert.equal(tensors.b.dtype, 'F32');
});

test('float32 -> float16 bits, hand-worked', () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [0, 0x0000],
    [-0, 0x8000],
    [65504, 0x7bff], // largest half
    [65519, 0x7bff], // just below the halfway point to 65536: rounds down
    [65520, 0x7c00], // halfway to 2^16, ties to even = overflow to Infinity
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [6.1035e-5, 0x0400], // just under 2^-14: the largest subnormal rounds up into the smallest normal
    [2 ** -14, 0x0400],
    [6.0975e-5, 0x03ff], // largest subnormal, 1023 * 2^-24
    [5.96e-8, 0x0001], // smallest subnormal 2^-24 = 5.9605e-8
    [2 ** -25, 0x0000], // exactly half the smallest subnormal: ties to even (0)
    [1.5 * 2 ** -25, 0x0001],
    [2 ** -26, 0x0000],
    [3 * 2 ** -25, 0x0002], // 1.5 * 2^-24: tie between 1 and 2 subnormal steps, to even (2)
    [0.1, 0x2e66], // 0.1 = 1.6 * 2^-4: mantissa 0.6 * 1024 = 614.4 -> 614 = 0x266, exponent 11 -> 0x2e66
    [1 + 2 ** -11, 0x3c00], // tie between 0x3c00 and 0x3c01: even is 0x3c00
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02: even is 0x3c02
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
  ];
  for (const [x, bits] of cases) {
    assert.equal(float32ToFloat16Bits(x).toString(16), bits.toString(16), `f16(${x})`);
  }
  assert.equal(float32ToFloat16Bits(NaN) & 0x7e00, 0x7e00);
  assert.ok(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(NaN))));
});

test('float16 -> float32 decodes every finite half exactly and inverts the encoder', () => {
  assert.equal(float16BitsToFloat32(0x7bff), 65504);
  assert.equal(float16BitsToFloat32(0x0001), 2 ** -24);
  assert.equal(float16BitsToFloat32(0x2e66), 0.0999755859375);
  assert.equal(float16BitsToFloat32(0xfc00), -Infinity);
  for (let h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue; // NaNs
    assert.equal(float32ToFloat16Bits(float16BitsToFloat32(h)), h);
  }
});

test('float32 -> bfloat16 bits round to nearest even', () => {
  assert.equal(float32ToBfloat16Bits(1), 0x3f80);
  assert.equal(float32ToBfloat16Bits(-2), 0xc000);
  assert.equal(float32ToBfloat16Bits(1 + 2 ** -8), 0x3f80); // tie, to even
  assert.equal(float32ToBfloat16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie, to even
  assert.equal(float32ToBfloat16Bits(0.1), 0x3dcd);
  assert.equal(float32ToBfloat16Bits(3.4e38), 0x7f80); // rounds past the largest bfloat16: Infinity
  assert.equal(float32ToBfloat16Bits(NaN) & 0x7fc0, 0x7fc0);
  assert.equal(bfloat16BitsToFloat32(0x3dcd), 0.10009765625);
});

// ---- corruption: every case throws one SafetensorsError naming the file (and the tensor) ----

const FILE = 'bad.safetensors';
const good = (name = 'w', extra: object = {}) => ({
  [name]: { dtype: 'F32', shape: [2], data_offsets: [0, 8], ...extra },
});

function assertBad(bytes: Uint8Array, pattern: RegExp, tensor?: string): void {
  assert.throws(
    () => decodeSafetensors(bytes, FILE),
    (err: unknown) => {
      assert.ok(err instanceof SafetensorsError, `not a SafetensorsError: ${String(err)}`);
      assert.ok(err.message.startsWith(`${FILE}: `), err.message);
      assert.match(err.message, pattern);
      assert.ok(!err.message.includes('\n'), 'one line');
      if (tensor !== undefined) {
        assert.ok(err.message.includes(`tensor "${tensor}"`), err.message);
        assert.equal(err.tensor, tensor);
      }
      assert.equal(err.file, FILE);
      return true;
    },
  );
}

test('corrupt: file shorter than 8 bytes', () => {
  assertBad(new Uint8Array([1, 0, 0]), /too short/);
  assertBad(new Uint8Array(0), /0 bytes/);
});

test('corrupt: header length past the end of the file, or absurd', () => {
  const file = buildFile(good(), f32Bytes(1, 2));
  new DataView(file.buffer).setBigUint64(0, BigInt(file.length), true);
  assertBad(file, /runs past the end/);
  new DataView(file.buffer).setBigUint64(0, 2n ** 63n, true);
  assertBad(file, /absurd/);
});

test('corrupt: header not JSON, not UTF-8, not an object', () => {
  assertBad(buildFile('{"w": {'), /not valid UTF-8 JSON/);
  assertBad(buildFile(new Uint8Array([0x7b, 0xff, 0x7d])), /not valid UTF-8 JSON/);
  assertBad(buildFile('[1, 2]'), /not an object/);
  assertBad(buildFile('null'), /not an object/);
});

test('corrupt: __metadata__ not a string map', () => {
  assertBad(buildFile({ __metadata__: { n: 1 }, ...good() }, f32Bytes(1, 2)), /__metadata__ value for "n" is number/);
  assertBad(buildFile({ __metadata__: ['a'], ...good() }, f32Bytes(1, 2)), /__metadata__ must be an object/);
});

test('corrupt: tensor entries', () => {
  const data = f32Bytes(1, 2);
  assertBad(buildFile({ w: 3 }, data), /entry is not an object/, 'w');
  for (const key of ['dtype', 'shape', 'data_offsets']) {
    const entry = { dtype: 'F32', shape: [2], data_offsets: [0, 8] } as Record<string, unknown>;
    delete entry[key];
    assertBad(buildFile({ w: entry }, data), new RegExp(`missing "${key}"`), 'w');
  }
  assertBad(buildFile(good('w', { shape: [-2] }), data), /shape must be a list of non-negative integers/, 'w');
  assertBad(buildFile(good('w', { shape: [1.5] }), data), /shape/, 'w');
  assertBad(buildFile(good('w', { shape: 2 }), data), /shape/, 'w');
  assertBad(buildFile(good('w', { dtype: 'F42' }), data), /unknown dtype "F42"/, 'w');
  assertBad(
    buildFile(good('w', { data_offsets: [0, 8.5] }), data),
    /data_offsets must be two non-negative integers/,
    'w',
  );
  assertBad(buildFile(good('w', { data_offsets: [0] }), data), /data_offsets/, 'w');
  assertBad(buildFile(good('w', { data_offsets: ['0', 8] }), data), /data_offsets/, 'w');
  assertBad(buildFile(good('w', { data_offsets: [8, 0] }), data), /begin after they end/, 'w');
  assertBad(buildFile(good('w', { shape: [3] }), data), /span 8 bytes, but F32 \[3\] needs 12/, 'w');
  assertBad(buildFile(good('w', { shape: [2], data_offsets: [4, 12] }), data), /truncated/, 'w');
});

test('corrupt: file truncated', () => {
  assertBad(buildFile(good(), f32Bytes(1, 2).slice(0, 6)), /file truncated: data ends at byte 8 .* only 6 bytes/, 'w');
});

test('corrupt: overlapping tensors, holes and trailing bytes', () => {
  const twoTensors = (b: number[]) => ({
    a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
    b: { dtype: 'F32', shape: [2], data_offsets: b },
  });
  assertBad(buildFile(twoTensors([4, 12]), f32Bytes(1, 2, 3)), /overlap tensor "a" \[0, 8\)/, 'b');
  assertBad(buildFile(twoTensors([0, 8]), f32Bytes(1, 2)), /overlap/, 'b');
  assertBad(buildFile(twoTensors([12, 20]), f32Bytes(1, 2, 3, 4, 5)), /hole in the data buffer: bytes \[8, 12\)/, 'b');
  assertBad(buildFile(good('w', { data_offsets: [4, 12] }), f32Bytes(1, 2, 3)), /hole .* \[0, 4\)/, 'w');
  assertBad(buildFile(good(), f32Bytes(1, 2, 3)), /4 trailing bytes/);
});

test('unsupported dtypes are recognised and rejected by name', () => {
  const file = buildFile({ pos: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8));
  assertBad(file, /unsupported dtype F64/, 'pos');
  // A known dtype still gets its size checked first.
  assertBad(buildFile({ m: { dtype: 'F64', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)), /needs 8/, 'm');
});

test('encode rejects malformed tensors', () => {
  assert.throws(
    () => encodeSafetensors({ w: { shape: [3], data: new Float32Array(2) } }),
    /shape \[3\] needs 3 elements, data has 2/,
  );
  assert.throws(() => encodeSafetensors({ __metadata__: { shape: [0], data: new Float32Array(0) } }), /reserved/);
  assert.throws(() => encodeSafetensors({ i: { shape: [1], data: new Int32Array(1), dtype: 'F16' } }), /Int32Array/);
  assert.throws(() => encodeSafetensors({ f: { shape: [1], data: new Float32Array(1), dtype: 'I32' } }), /Int32Array/);
});

test('empty and zero-size tensors round trip', () => {
  const none = decodeSafetensors(encodeSafetensors({}));
  assert.deepEqual([Object.keys(none.tensors), Object.keys(none.metadata)], [[], []]);
  const t = { e: { shape: [0, 3], data: new Float32Array(0) }, s: { shape: [1], data: new Float32Array([7]) } };
  const back = decodeSafetensors(encodeSafetensors(t, { dtype: 'F16' })).tensors;
  assert.deepEqual(back.e.shape, [0, 3]);
  assert.equal(back.s.data[0], 7);
});

// ---- config convention ----

test('metadataWithConfig / configFromMetadata', () => {
  const config = { hidden: 512, layers: [1, 2], name: 'tiny' };
  const metadata = metadataWithConfig(config, { note: 'hi', format: 'ignored' });
  assert.deepEqual(metadata, { note: 'hi', format: 'muse-ts', format_version: '1', config: JSON.stringify(config) });
  const back = decodeSafetensors(encodeSafetensors({}, { metadata }), 'm.safetensors').metadata;
  assert.deepEqual(configFromMetadata<typeof config>(back, 'm.safetensors'), config);

  const bad = (m: Record<string, string>, pattern: RegExp) =>
    assert.throws(
      () => configFromMetadata(m, 'c.safetensors'),
      (err: unknown) => {
        assert.ok(err instanceof SafetensorsError);
        assert.match(err.message, /^c\.safetensors: /);
        assert.match(err.message, pattern);
        return true;
      },
    );
  bad({ format: 'muse-ts', format_version: '1' }, /no model config/);
  bad({ config: '{"a":' }, /not valid JSON/);
  bad({ config: '[1]' }, /not a JSON object/);
  bad({ ...metadata, format_version: '2' }, /newer muse-ts \(format_version 2; this version reads up to 1\)/);
  bad({ ...metadata, format_version: 'x' }, /not a positive integer/);
  bad({ ...metadata, format: 'other' }, /format is "other"/);
});

test('tensorStats counts NaN and leaves it out of min/max/mean', () => {
  assert.deepEqual(tensorStats({ shape: [4], data: new Float32Array([1, NaN, -3, 5]) }), {
    min: -3,
    max: 5,
    mean: 1,
    nan: 1,
  });
  assert.deepEqual(tensorStats({ shape: [2], data: new Int32Array([2, 4]) }), { min: 2, max: 4, mean: 3, nan: 0 });
  const empty = tensorStats({ shape: [0], data: new Float32Array(0) });
  assert.ok(Number.isNaN(empty.min) && Number.isNaN(empty.mean) && empty.nan === 0);
});

// ---- files ----

test('save is atomic: replaces an existing file, leaves no temp file', async () => {
  const dir = await tempDir();
  try {
    const path = join(dir, 'model.safetensors');
    await writeFile(path, 'old contents');
    const tensors: Record<string, NamedTensor> = { w: { shape: [3], data: new Float32Array([1, 2, 3]) } };
    await saveSafetensors(path, tensors, { metadata: metadataWithConfig({ a: 1 }) });
    assert.deepEqual(await readdir(dir), ['model.safetensors']);
    const loaded = await loadSafetensors(path);
    assert.deepEqual(loaded.tensors.w.data, new Float32Array([1, 2, 3]));
    assert.deepEqual(configFromMetadata(loaded.metadata, path), { a: 1 });
    assert.deepEqual(
      new Uint8Array(await readFile(path)),
      encodeSafetensors(tensors, { metadata: metadataWithConfig({ a: 1 }) }),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a failed save removes its temp file and reports the path', async () => {
  const dir = await tempDir();
  try {
    const path = join(dir, 'model.safetensors');
    await mkdir(path); // rename over a non-empty folder fails
    await writeFile(join(path, 'keep'), 'x');
    await assert.rejects(saveSafetensors(path, {}), (err: unknown) => {
      assert.ok(err instanceof SafetensorsError);
      assert.ok(err.message.startsWith(`${path}: cannot write`), err.message);
      return true;
    });
    assert.deepEqual(await readdir(dir), ['model.safetensors']);
    await assert.rejects(saveSafetensors(join(dir, 'missing', 'x.safetensors'), {}), /cannot write/);
    assert.deepEqual(await readdir(dir), ['model.safetensors']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('load of a missing file says so', async () => {
  await assert.rejects(loadSafetensors('/nonexistent/x.safetensors'), (err: unknown) => {
    assert.ok(err instanceof SafetensorsError);
    assert.equal(err.message, 'no such file: /nonexistent/x.safetensors');
    return true;
  });
});

// ---- muse inspect ----

test('inspect prints metadata, config, one line per tensor and totals', async () => {
  const dir = await tempDir();
  try {
    const path = join(dir, 'm.safetensors');
    await saveSafetensors(
      path,
      {
        'layer.weight': { shape: [2, 3], data: new Float32Array([-1, 0.5, 2, 3, 4, 1e-6]), dtype: 'F16' },
        bias: { shape: [2], data: new Float32Array([NaN, 12345678]) },
      },
      { metadata: metadataWithConfig({ hidden: 4 }, { note: 'test' }) },
    );
    const { out, stdout, stderr } = capture();
    assert.equal(await inspectCommand([path], out), 0);
    assert.deepEqual(stderr, []);
    const text = stdout.join('\n');
    assert.match(text, /format: muse-ts/);
    assert.match(text, /note: test/);
    assert.match(text, /config:\n\s+\{\n\s+"hidden": 4\n\s+\}/);
    const bias = stdout.find((l) => l.trim().startsWith('bias'));
    assert.match(bias ?? '', /bias\s+F32\s+\[2\]\s+min 1\.235e\+7\s+max 1\.235e\+7\s+mean 1\.235e\+7\s+nan 1/);
    const weight = stdout.find((l) => l.trim().startsWith('layer.weight'));
    assert.match(weight ?? '', /layer\.weight\s+F16\s+\[2, 3\]\s+min -1\s+max 4\s+mean 1\.417/);
    assert.match(text, /total: 8 parameters, 20 B/);

    const json = capture();
    assert.equal(await inspectCommand(['--json', path], json.out), 0);
    const report = JSON.parse(json.stdout.join('\n'));
    assert.deepEqual(report.config, { hidden: 4 });
    assert.equal(report.totalParams, 8);
    assert.equal(report.totalBytes, 20);
    assert.deepEqual(
      report.tensors.map((t: { name: string }) => t.name),
      ['bias', 'layer.weight'],
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('inspect: corrupt or missing file gives one line and exit 1; usage errors exit 2', async () => {
  const dir = await tempDir();
  try {
    const path = join(dir, 'bad.safetensors');
    await writeFile(path, buildFile(good(), f32Bytes(1)));
    const bad = capture();
    assert.equal(await inspectCommand([path], bad.out), 1);
    assert.deepEqual(bad.stdout, []);
    assert.equal(bad.stderr.length, 1);
    assert.match(
      bad.stderr[0],
      new RegExp(`^muse inspect: ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: tensor "w": file truncated`),
    );

    const missing = capture();
    assert.equal(await inspectCommand([join(dir, 'nope')], missing.out), 1);
    assert.deepEqual(missing.stderr, [`muse inspect: no such file: ${join(dir, 'nope')}`]);

    const none = capture();
    assert.equal(await inspectCommand([], none.out), 2);
    assert.match(none.stderr.join('\n'), /usage: muse inspect/);
    assert.equal(await inspectCommand(['--bogus', path], capture().out), 2);

    const help = capture();
    assert.equal(await inspectCommand(['--help'], help.out), 0);
    assert.match(help.stdout[0], /usage: muse inspect/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('I64 and U8 tensors (PyTorch token ids, images) read as int32; an I64 beyond 32 bits is refused', () => {
  const header = (entries: object) => {
    const json = new TextEncoder().encode(JSON.stringify(entries));
    const out = new Uint8Array(8 + json.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    return out;
  };
  const ids = new BigInt64Array([0n, 49407n, -3n, 2147483647n, -2147483648n]);
  const pixels = Uint8Array.from([0, 7, 255]);
  const head = header({
    ids: { dtype: 'I64', shape: [5], data_offsets: [0, 40] },
    px: { dtype: 'U8', shape: [1, 3], data_offsets: [40, 43] },
  });
  const file = new Uint8Array(head.length + 43);
  file.set(head);
  file.set(new Uint8Array(ids.buffer), head.length);
  file.set(pixels, head.length + 40);
  const { tensors } = decodeSafetensors(file, 'ids.safetensors');
  assert.deepEqual(Array.from(tensors.ids.data), [0, 49407, -3, 2147483647, -2147483648]);
  assert.ok(tensors.ids.data instanceof Int32Array);
  assert.equal(tensors.ids.dtype, 'I64');
  assert.deepEqual(Array.from(tensors.px.data), [0, 7, 255]);
  assert.deepEqual(tensors.px.shape, [1, 3]);
  const big = new Uint8Array(file);
  new DataView(big.buffer).setBigInt64(head.length + 8, 2n ** 40n, true);
  assert.throws(
    () => decodeSafetensors(big, 'big.safetensors'),
    /big.safetensors: tensor "ids": I64 element 1 does not fit in 32 bits/,
  );
  // Written back (as I32) and read again: the same values.
  const again = decodeSafetensors(encodeSafetensors(tensors), 'again');
  assert.deepEqual(Array.from(again.tensors.ids.data), Array.from(tensors.ids.data));
});
