// aMUSEd text side against the reference outputs of transformers 4.36.2 (test/fixtures/amused):
// the CLIP tokenizer (no-ftfy path) on 40 prompts, and CLIPTextModelWithProjection on 8 prompts.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import * as tf from '@tensorflow/tfjs-core';
import { ClipTextModel } from '../src/amused/clip-text.js';
import { bpeMerge, ClipTokenizer } from '../src/amused/clip-tokenizer.js';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { encodeSafetensors, loadSafetensors, type NamedTensor } from '../src/tensor/safetensors.js';
import { MuseError } from '../src/util/errors.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'amused');
const PIPELINE = join(FIXTURES, 'tiny-amused-256');
const EXPECTED = join(FIXTURES, 'expected');
/** Largest allowed ‖ours − expected‖∞ / ‖expected‖∞ per tensor. */
const TOLERANCE = 1e-5;

let temp: string;
let tokenizerFolder: string;

before(async () => {
  await initBackend();
  temp = mkdtempSync(join(tmpdir(), 'muse-amused-text-'));
  // A tokenizer folder as real checkpoints have it: plain vocab.json and merges.txt.
  tokenizerFolder = join(temp, 'tokenizer');
  mkdirSync(tokenizerFolder);
  for (const name of ['vocab.json', 'merges.txt'])
    writeFileSync(join(tokenizerFolder, name), gunzipSync(readFileSync(join(PIPELINE, 'tokenizer', `${name}.gz`))));
  for (const name of ['tokenizer_config.json', 'special_tokens_map.json'])
    copyFileSync(join(PIPELINE, 'tokenizer', name), join(tokenizerFolder, name));
});

after(() => {
  rmSync(temp, { recursive: true, force: true });
  shutdownBackend();
});

interface TokenizerCase {
  prompt: string;
  input_ids: number[];
  attention_mask: number[];
  untruncated_ids: number[];
  tokens: string[];
}

test('CLIP tokenizer: input_ids, attention_mask, untruncated_ids and tokens of all 40 prompts match transformers (no ftfy)', () => {
  const tok = ClipTokenizer.load(tokenizerFolder);
  assert.equal(tok.bosTokenId, 49406);
  assert.equal(tok.eosTokenId, 49407);
  assert.equal(tok.padTokenId, 49407);
  assert.equal(tok.bpeRanks.size, 48894);
  const cases = JSON.parse(readFileSync(join(EXPECTED, 'tokenizer_ids.json'), 'utf8')).prompts as TokenizerCase[];
  assert.equal(cases.length, 40);
  for (const c of cases) {
    const what = JSON.stringify(c.prompt).slice(0, 60);
    const padded = tok.encode(c.prompt, { maxLength: 77, padding: 'max_length', truncation: true });
    assert.deepEqual([...padded.ids], c.input_ids, `input_ids of ${what}`);
    assert.deepEqual([...padded.attentionMask], c.attention_mask, `attention_mask of ${what}`);
    const full = tok.encode(c.prompt, { padding: 'none', truncation: false });
    assert.deepEqual([...full.ids], c.untruncated_ids, `untruncated_ids of ${what}`);
    assert.equal(full.truncated, false);
    assert.equal(padded.truncated, c.untruncated_ids.length > 77, `truncated flag of ${what}`);
    assert.deepEqual(tok.tokenize(c.prompt), c.tokens.slice(1, -1), `tokens of ${what}`);
  }
  // The gzipped fixture folder reads the same.
  const gz = ClipTokenizer.load(join(PIPELINE, 'tokenizer'));
  for (const c of cases.slice(0, 5)) assert.deepEqual([...gz.encode(c.prompt).ids], c.input_ids);
});

/** CLIP's own merge loop, quadratic: each round the lowest-ranked pair, all occurrences left to right. */
function referenceBpe(symbols: string[], ranks: Map<string, number>): string[] {
  let word = symbols.slice();
  while (word.length > 1) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < word.length; i++) {
      const r = ranks.get(`${word[i]} ${word[i + 1]}`);
      if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
    }
    if (best < 0) break;
    const [a, b] = [word[best], word[best + 1]];
    const merged: string[] = [];
    for (let i = 0; i < word.length; i++) {
      if (i + 1 < word.length && word[i] === a && word[i + 1] === b) {
        merged.push(a + b);
        i++;
      } else merged.push(word[i]);
    }
    word = merged;
  }
  return word;
}

test('CLIP tokenizer: the O(n log n) merge equals the reference loop, and a 200k-letter word is not quadratic', () => {
  const tok = ClipTokenizer.load(tokenizerFolder);
  let seed = 12345;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 16) % n;
  };
  const alphabets = ['ab', 'abc', 'etaoinshrdlu', 'abcdefghijklmnopqrstuvwxyz0123'];
  for (let trial = 0; trial < 400; trial++) {
    const letters = alphabets[trial % alphabets.length];
    const chars = Array.from({ length: 1 + rand(40) }, () => letters[rand(letters.length)]);
    const symbols = [...chars.slice(0, -1), `${chars[chars.length - 1]}</w>`];
    assert.deepEqual(bpeMerge(symbols, tok.bpeRanks), referenceBpe(symbols, tok.bpeRanks), chars.join(''));
  }
  // Overlapping runs of one symbol merge left to right ("a a a" → "aa a"), as in the reference.
  const toy = new Map([['a a', 0]]);
  assert.deepEqual(bpeMerge(['a', 'a', 'a'], toy), ['aa', 'a']);
  assert.deepEqual(bpeMerge(['a', 'a', 'a'], toy), referenceBpe(['a', 'a', 'a'], toy));
  const long = Array.from({ length: 200_000 }, () => 'abcdefghijklmnopqrstuvwxyz'[rand(26)]).join('');
  const t0 = performance.now();
  const { ids } = tok.encode(long, { padding: 'none', truncation: false });
  assert.ok(ids.length > 50_000);
  assert.ok(performance.now() - t0 < 20_000, `200k-letter word took ${performance.now() - t0} ms`);
});

test('CLIP tokenizer: a missing vocab file or malformed merges give one clear MuseError line', () => {
  const bad = join(temp, 'no-vocab');
  mkdirSync(bad);
  copyFileSync(join(tokenizerFolder, 'merges.txt'), join(bad, 'merges.txt'));
  assert.throws(
    () => ClipTokenizer.load(bad),
    (err: Error) => err instanceof MuseError && /no vocab\.json/.test(err.message) && !err.message.includes('\n'),
  );
  const badMerges = join(temp, 'bad-merges');
  mkdirSync(badMerges);
  copyFileSync(join(tokenizerFolder, 'vocab.json'), join(badMerges, 'vocab.json'));
  writeFileSync(join(badMerges, 'merges.txt'), '#version: 0.2\na b c\n');
  assert.throws(
    () => ClipTokenizer.load(badMerges),
    (err: Error) => err instanceof MuseError && /merges\.txt: line 2/.test(err.message),
  );
  writeFileSync(join(badMerges, 'vocab.json'), '{"a": "one"}');
  assert.throws(
    () => ClipTokenizer.load(badMerges),
    (err: Error) => err instanceof MuseError && /vocab\.json: token "a" has id "one"/.test(err.message),
  );
});

function maxErrors(ours: ArrayLike<number>, expected: ArrayLike<number>): { abs: number; rel: number } {
  assert.equal(ours.length, expected.length);
  let abs = 0;
  let scale = 0;
  for (let i = 0; i < ours.length; i++) {
    const d = Math.abs(ours[i] - expected[i]);
    if (!(d <= abs)) abs = d; // NaN propagates
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return { abs, rel: abs / scale };
}

test('CLIPTextModelWithProjection: every hidden state, last_hidden_state and text_embeds within 1e-5 of transformers (wasm)', async () => {
  const { tensors: expected } = await loadSafetensors(join(EXPECTED, 'text_encoder.safetensors'));
  const prompts = JSON.parse(readFileSync(join(EXPECTED, 'text_encoder.json'), 'utf8')).prompts as string[];
  const ids = expected.input_ids;
  assert.deepEqual(ids.shape, [8, 77]);
  const rows: Int32Array[] = [];
  for (let b = 0; b < 8; b++) rows.push(ids.data.subarray(b * 77, (b + 1) * 77) as Int32Array);
  // The stored ids are what our tokenizer gives for the 8 prompts.
  const tok = ClipTokenizer.load(tokenizerFolder);
  prompts.forEach((p, b) => assert.deepEqual([...tok.encode(p).ids], [...rows[b]], `ids of prompt ${b}`));

  assert.equal(tf.getBackend(), 'wasm');
  const model = await ClipTextModel.load(join(PIPELINE, 'text_encoder'));
  assert.deepEqual(model.unusedTensors, []);
  const before = tf.memory().numTensors;
  const out = model.forward(rows);
  assert.equal(out.hiddenStates.length, 3);
  const check: [string, tf.Tensor][] = [
    ['last_hidden_state', out.lastHiddenState],
    ['encoder_hidden_states', out.hiddenStates[out.hiddenStates.length - 2]],
    ...out.hiddenStates.map((t, i) => [`hidden_states.${i}`, t] as [string, tf.Tensor]),
    ['text_embeds', out.textEmbeds],
  ];
  const report: string[] = [];
  for (const [name, tensor] of check) {
    const want = expected[name] as NamedTensor;
    assert.deepEqual(tensor.shape, want.shape, `shape of ${name}`);
    const { abs, rel } = maxErrors(tensor.dataSync(), want.data);
    report.push(`${name}: max abs ${abs.toExponential(2)}, rel-to-max ${rel.toExponential(2)}`);
    assert.ok(rel <= TOLERANCE, `${name}: max |error| ${abs} is ${rel} of the max |value| (limit ${TOLERANCE})`);
  }
  console.log(report.join('\n'));
  tf.dispose([out.lastHiddenState, out.pooledOutput, out.textEmbeds, ...out.hiddenStates]);
  assert.equal(tf.memory().numTensors, before, 'forward leaks no tensors');
  model.dispose();
});

async function componentWith(name: string, edit: (t: Record<string, NamedTensor>) => void): Promise<string> {
  const folder = join(temp, name);
  mkdirSync(folder);
  copyFileSync(join(PIPELINE, 'text_encoder', 'config.json'), join(folder, 'config.json'));
  const { tensors } = await loadSafetensors(join(PIPELINE, 'text_encoder', 'model.safetensors'));
  edit(tensors);
  writeFileSync(join(folder, 'model.safetensors'), encodeSafetensors(tensors));
  return folder;
}

test('CLIP text model: a missing weight and a weight of the wrong shape are refused before any tensor is made', async () => {
  const missing = await componentWith('missing-weight', (t) => {
    delete t['text_model.encoder.layers.1.mlp.fc2.bias'];
  });
  const wrong = await componentWith('wrong-shape', (t) => {
    const w = t['text_model.encoder.layers.0.self_attn.q_proj.weight'];
    t['text_model.encoder.layers.0.self_attn.q_proj.weight'] = { shape: [4, 16], data: w.data };
  });
  const tensorsBefore = tf.memory().numTensors;
  await assert.rejects(
    ClipTextModel.load(missing),
    (err: Error) =>
      err instanceof MuseError &&
      /tensor "text_model\.encoder\.layers\.1\.mlp\.fc2\.bias" is missing/.test(err.message) &&
      !err.message.includes('\n'),
  );
  await assert.rejects(
    ClipTextModel.load(wrong),
    (err: Error) =>
      err instanceof MuseError &&
      /"text_model\.encoder\.layers\.0\.self_attn\.q_proj\.weight" has shape \[4,16\], the config needs \[8,8\]/.test(
        err.message,
      ) &&
      !err.message.includes('\n'),
  );
  assert.equal(tf.memory().numTensors, tensorsBefore, 'no tf tensor was allocated');
  // Out-of-vocabulary ids are refused too.
  const model = await ClipTextModel.load(join(PIPELINE, 'text_encoder'));
  assert.throws(() => model.forward([[49406, 49408, 49407]]), MuseError);
  assert.throws(() => model.forward([new Array(78).fill(1)]), MuseError);
  model.dispose();
});

test('CLIP text model: pooled position is argmax(ids) when eos_token_id is 2, else the first eos_token_id', async () => {
  const legacy = await ClipTextModel.load(join(PIPELINE, 'text_encoder'));
  assert.deepEqual(legacy.pooledPositions([[49406, 7, 5, 5, 49407, 49407]]), [4]);
  legacy.dispose();
  const folder = await componentWith('eos-5', () => {});
  const config = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8'));
  writeFileSync(join(folder, 'config.json'), JSON.stringify({ ...config, eos_token_id: 5 }));
  const model = await ClipTextModel.load(folder);
  assert.deepEqual(model.pooledPositions([[49406, 7, 5, 5, 49407, 49407]]), [2]);
  assert.deepEqual(model.pooledPositions([[49406, 7, 49407]]), [0], 'no eos: argmax of all-zero is 0');
  model.dispose();
});
