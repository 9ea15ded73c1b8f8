// Hardening: a downloaded model folder or checkpoint must be as safe to open as it is to read a
// safetensors header. Devices, FIFOs and paths out of the folder are refused at once; a config is
// checked against the file's tensors before any model memory is allocated; NaN weights and NaN
// logits stop with one clear error; names like __proto__ are only names.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { inspectCommand } from '../src/cli/inspect.js';
import { parallelDecode } from '../src/decoding/parallel-decode.js';
import { readPipelineFile } from '../src/pipeline/pipeline-file.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { Rng } from '../src/tensor/random.js';
import {
  decodeSafetensors,
  encodeSafetensors,
  loadSafetensors,
  metadataWithConfig,
  type NamedTensor,
  SafetensorsError,
  saveSafetensors,
} from '../src/tensor/safetensors.js';
import { loadTokenizer } from '../src/tokenizer/checkpoint.js';
import { tokenizerPreset } from '../src/tokenizer/config.js';
import { loadTransformer, saveTransformer } from '../src/transformer/checkpoint.js';
import { transformerConfig } from '../src/transformer/config.js';
import { initTransformer } from '../src/transformer/model.js';
import { MuseError } from '../src/util/errors.js';

after(() => shutdownBackend());

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'muse-untrusted-'));
}

function capture(): { out: { log(s: string): void; error(s: string): void }; stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { out: { log: (s) => stdout.push(s), error: (s) => stderr.push(s) }, stdout, stderr };
}

/** u64 LE header length, the header text, then the data bytes. */
function buildFile(header: string, data: number[] = []): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** Read through a variable: a literal `.__proto__` would be the accessor on a plain object. */
const PROTO = '__proto__';

function f32Bytes(...values: number[]): number[] {
  return [...new Uint8Array(new Float32Array(values).buffer)];
}

// ---- safetensors files ----

// A FIFO or device read would hang or grow without end: the test's timeout catches that, not a clock assertion.
test('load refuses devices and FIFOs at once, without reading or waiting', { timeout: 30_000 }, async () => {
  await assert.rejects(loadSafetensors('/dev/zero'), (err: unknown) => {
    assert.ok(err instanceof SafetensorsError);
    assert.equal(err.message, '/dev/zero: is a device, not a regular file');
    return true;
  });
  const dir = await tempDir();
  try {
    const fifo = join(dir, 'model.safetensors');
    execFileSync('mkfifo', [fifo]);
    await assert.rejects(loadSafetensors(fifo), /^SafetensorsError: .*: is a FIFO, not a regular file$/);
    await assert.rejects(loadSafetensors(dir), /is a folder, not a regular file/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a tensor or metadata key named __proto__ or constructor is only a name', () => {
  // JSON.stringify drops a literal __proto__ key; build the header text by hand.
  const text = '{"__metadata__":{"__proto__":"m"},"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
  const { tensors, metadata } = decodeSafetensors(buildFile(text, f32Bytes(3)));
  assert.equal(Object.getPrototypeOf(tensors), null);
  assert.equal(Object.getPrototypeOf(metadata), null);
  assert.deepEqual(Object.keys(tensors), ['__proto__']);
  assert.deepEqual(tensors[PROTO].data, new Float32Array([3]));
  assert.equal(metadata[PROTO], 'm');
  assert.equal(tensors.constructor, undefined);
});

test('inspect handles a file with 200k tensors', async () => {
  const dir = await tempDir();
  try {
    const path = join(dir, 'many.safetensors');
    const tensors: Record<string, NamedTensor> = {};
    for (let i = 0; i < 200_000; i++) tensors[`t${i}`] = { shape: [0], data: new Float32Array(0) };
    await saveSafetensors(path, tensors);
    const { out, stdout, stderr } = capture();
    assert.equal(await inspectCommand([path], out), 0);
    assert.deepEqual(stderr, []);
    assert.match(stdout.at(-1) ?? '', /total: 0 parameters/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// ---- model folders ----

/** A folder with a pipeline.json naming `fields` (components are plain files: nothing is loaded). */
function modelFolder(fields: Record<string, unknown> | string): string {
  const folder = mkdtempSync(join(tmpdir(), 'muse-folder-'));
  writeFileSync(join(folder, 'tokenizer.safetensors'), 'x');
  writeFileSync(join(folder, 'base.safetensors'), 'x');
  const text =
    typeof fields === 'string'
      ? fields
      : JSON.stringify({
          format: 'muse-ts-pipeline',
          version: 1,
          tokenizer: 'tokenizer.safetensors',
          base: 'base.safetensors',
          textEncoder: 'use-lite',
          imageSize: 16,
          ...fields,
        });
  writeFileSync(join(folder, 'pipeline.json'), text);
  return folder;
}

function refused(folder: string, pattern: RegExp): void {
  assert.throws(
    () => readPipelineFile(folder),
    (err: unknown) => {
      assert.ok(err instanceof MuseError, String(err));
      assert.match(err.message, pattern);
      assert.ok(!err.message.includes('\n'), err.message);
      return true;
    },
  );
}

test('pipeline.json components must be regular files inside the folder', () => {
  assert.equal(readPipelineFile(modelFolder({})).base, 'base.safetensors');
  refused(
    modelFolder({ tokenizer: '../../../../dev/zero' }),
    /"tokenizer": "\.\.\/\.\.\/\.\.\/\.\.\/dev\/zero" must be a path inside the model folder/,
  );
  refused(modelFolder({ base: '/dev/zero' }), /"base": "\/dev\/zero" must be a path inside the model folder/);
  const out = modelFolder({ base: 'link.safetensors' });
  symlinkSync('/dev/zero', join(out, 'link.safetensors'));
  refused(out, /"base": "link.safetensors" leads out of the model folder \(to \/dev\/zero\)/);
  const outside = mkdtempSync(join(tmpdir(), 'muse-outside-'));
  writeFileSync(join(outside, 'secret.safetensors'), 'x');
  const out2 = modelFolder({ base: 'sub/link.safetensors' });
  mkdirSync(join(out2, 'sub'));
  symlinkSync(join(outside, 'secret.safetensors'), join(out2, 'sub', 'link.safetensors'));
  refused(out2, /leads out of the model folder/);
  const fifo = modelFolder({ superres: 'sr.safetensors', superresSize: 32 });
  execFileSync('mkfifo', [join(fifo, 'sr.safetensors')]);
  refused(fifo, /"superres": "sr.safetensors" is a FIFO, not a regular file/);
  const dir = modelFolder({ base: 'sub' });
  mkdirSync(join(dir, 'sub'));
  refused(dir, /"base": "sub" is a folder, not a regular file/);
  // A symlink that stays inside the folder is fine.
  const inside = modelFolder({ base: 'alias.safetensors' });
  symlinkSync('base.safetensors', join(inside, 'alias.safetensors'));
  assert.equal(readPipelineFile(inside).base, 'alias.safetensors');
});

test('pipeline.json that is null, an array, a FIFO or huge: one clear error', () => {
  refused(modelFolder('null'), /pipeline.json: not a muse-ts pipeline file \(a JSON null, not an object\)/);
  refused(modelFolder('[1]'), /a JSON array, not an object/);
  refused(modelFolder('"x"'), /a JSON string, not an object/);
  refused(modelFolder({ defaults: null }), /"defaults" must be an object/);
  const huge = modelFolder({});
  writeFileSync(join(huge, 'pipeline.json'), Buffer.alloc(2 << 20, 0x20));
  refused(huge, /too large for a pipeline.json/);
  const fifo = mkdtempSync(join(tmpdir(), 'muse-folder-'));
  execFileSync('mkfifo', [join(fifo, 'pipeline.json')]);
  refused(fifo, /pipeline.json: is a FIFO, not a regular file/);
});

// ---- configs checked against the file before any model is built ----

// Before the fix this took 48 s and 4.8 GB: the memory checks and the test's timeout hold it now.
test('an absurd config in a tiny file fails at once, before any model memory is allocated', {
  timeout: 60_000,
}, async () => {
  await initBackend();
  const dir = await tempDir();
  try {
    const tok = join(dir, 'tok.safetensors');
    const config = { ...tokenizerPreset('tiny'), channels: 8192 };
    await saveSafetensors(
      tok,
      { w: { shape: [1], data: new Float32Array(1) } },
      {
        metadata: metadataWithConfig(config, { kind: 'muse-tokenizer' }),
      },
    );
    const before = tf.memory().numBytes;
    await assert.rejects(loadTokenizer(tok), (err: unknown) => {
      assert.ok(err instanceof MuseError, String(err));
      assert.match(err.message, /tok.safetensors: tensor "enc.conv_in.w" is missing/);
      return true;
    });
    assert.equal(tf.memory().numBytes, before);

    const base = join(dir, 'base.safetensors');
    const bc = transformerConfig('tiny', { codebookSize: 16, grid: [2, 2], textDim: 8, textTokens: 4 });
    const p = initTransformer(bc, new Rng(0));
    await saveTransformer(base, p, bc);
    // The same tensors under a config with a million layers, or a width of 2^20.
    const { tensors } = await loadSafetensors(base);
    for (const bad of [{ layers: 1_000_000 }, { width: 1 << 20, heads: 1 }]) {
      const file = join(dir, `bad-${Object.keys(bad)[0]}.safetensors`);
      await saveSafetensors(file, tensors, { metadata: metadataWithConfig({ ...bc, ...bad }, { kind: 'muse-base' }) });
      const mem = tf.memory().numBytes;
      await assert.rejects(loadTransformer(file), /safetensors: tensor "[^"]+" (is missing|has shape)/);
      assert.equal(tf.memory().numBytes, mem);
    }
    // A misshapen tensor anywhere allocates nothing either (all are checked before any variable).
    const shifted: Record<string, NamedTensor> = { ...tensors, 'head.b': { shape: [3], data: new Float32Array(3) } };
    const file = join(dir, 'misshapen.safetensors');
    await saveSafetensors(file, shifted, { metadata: metadataWithConfig(bc, { kind: 'muse-base' }) });
    const mem = tf.memory().numBytes;
    await assert.rejects(loadTransformer(file), /tensor "head.b" has shape \[3\], expected \[16\]/);
    assert.equal(tf.memory().numBytes, mem);
    tf.dispose(Object.values(p));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('NaN or infinite weights are refused on load, naming the tensor', async () => {
  await initBackend();
  const dir = await tempDir();
  try {
    const bc = transformerConfig('tiny', { codebookSize: 16, grid: [2, 2], textDim: 8, textTokens: 4 });
    const p = initTransformer(bc, new Rng(0));
    const path = join(dir, 'nan.safetensors');
    await saveTransformer(path, p, bc);
    const { tensors, metadata } = await loadSafetensors(path);
    for (const [value, shown] of [
      [Number.NaN, 'NaN'],
      [Number.POSITIVE_INFINITY, 'Infinity'],
    ] as const) {
      const data = Float32Array.from(tensors['blocks.1.mlp.fc2.w'].data);
      data[5] = value;
      await saveSafetensors(
        path,
        { ...tensors, 'blocks.1.mlp.fc2.w': { shape: tensors['blocks.1.mlp.fc2.w'].shape, data } },
        {
          metadata: { ...metadata },
        },
      );
      await assert.rejects(loadTransformer(path), (err: unknown) => {
        assert.ok(err instanceof MuseError, String(err));
        assert.match(
          err.message,
          new RegExp(`nan.safetensors: tensor "blocks.1.mlp.fc2.w" holds ${shown} \\(element 5\\)`),
        );
        return true;
      });
    }
    tf.dispose(Object.values(p));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('NaN or infinite logits stop decoding with one clear error instead of an image', async () => {
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    const logits = async (tokens: Int32Array) => {
      const out = new Float32Array(tokens.length * 4).fill(0.5);
      out[3] = bad;
      return out;
    };
    await assert.rejects(
      parallelDecode(
        logits,
        { tokens: new Int32Array(4).fill(4), batch: 1, codebookSize: 4, maskId: 4 },
        {
          steps: 2,
          rng: new Rng(0),
        },
      ),
      (err: unknown) => {
        assert.ok(err instanceof MuseError, String(err));
        assert.match(err.message, /^decoding step 1 of 2: the model's logits hold (NaN|-?Infinity)/);
        return true;
      },
    );
  }
});

test('decoded tensors and metadata are null-prototype maps', () => {
  const { tensors, metadata } = decodeSafetensors(encodeSafetensors({ a: { shape: [0], data: new Float32Array(0) } }));
  assert.equal(Object.getPrototypeOf(tensors), null);
  assert.equal(Object.getPrototypeOf(metadata), null);
  assert.equal((tensors as Record<string, unknown>).constructor, undefined);
  assert.equal((metadata as Record<string, unknown>).toString, undefined);
});
