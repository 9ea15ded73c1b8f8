// The frozen text encoder: SentencePiece segmentation (hand-worked) and USE-lite per-token states.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { SentencePieceTokenizer } from '../src/text/sentencepiece.js';
import { UseLiteEncoder } from '../src/text/use-lite.js';

let encoder: UseLiteEncoder;
before(async () => {
  await initBackend();
  encoder = await UseLiteEncoder.load({ maxTokens: 16 });
});
after(() => {
  encoder?.dispose();
  shutdownBackend();
});

test('Viterbi picks the most probable segmentation (hand-worked)', () => {
  // ids 0–5 reserved. "▁ab" as one piece (−3) beats "▁a"+"b" (−1 + −2.5 = −3.5) and "▁"+"a"+"b".
  const vocab: Array<[string, number]> = [
    ['<unk>', 0],
    ['<s>', 0],
    ['</s>', 0],
    ['x1', 0],
    ['x2', 0],
    ['x3', 0],
    ['▁', -1],
    ['a', -1.2],
    ['b', -2.5],
    ['▁a', -1],
    ['▁ab', -3],
    ['c', -4],
  ];
  const t = new SentencePieceTokenizer(vocab);
  assert.deepEqual(t.encode('ab'), [10]);
  // "▁abc": ▁ab + c = −7 vs ▁a + b + c = −7.5.
  assert.deepEqual(t.encode('abc'), [10, 11]);
  // Two words: "▁a" "▁ab".
  assert.deepEqual(t.encode('a ab'), [9, 10]);
  // Unknown characters: one unknown id for a run of them.
  assert.deepEqual(t.encode('a☃☃b'), [9, 0, 8]);
  assert.equal(t.decode([9, 10]), 'a ab');
  assert.deepEqual(t.encode(''), []);
  // NFKC: the full-width "ａ" is "a".
  assert.deepEqual(t.encode('ａb'), t.encode('ab'));
});

test('USE-lite gives per-token states [maxTokens, 512], zero past the length', async () => {
  const { embeddings, lengths } = await encoder.encode(['a red apple', 'thumbs up']);
  assert.equal(embeddings.length, 2 * 16 * 512);
  assert.ok(lengths[0] >= 3 && lengths[0] <= 5, `length ${lengths[0]}`);
  const row = (i: number, t: number) => embeddings.subarray((i * 16 + t) * 512, (i * 16 + t + 1) * 512);
  assert.ok(row(0, 0).some((v) => v !== 0));
  assert.ok(row(0, lengths[0]).every((v) => v === 0));
  assert.ok(row(0, 0).every(Number.isFinite));
});

test('a caption encodes the same alone and in a batch with longer captions', async () => {
  const alone = await encoder.encode(['red apple']);
  const fresh = await UseLiteEncoder.load({ maxTokens: 16 });
  const batched = await fresh.encode(['a very long caption about a green dragon flying over mountains', 'red apple']);
  const a = alone.embeddings.subarray(0, 16 * 512);
  const b = batched.embeddings.subarray(16 * 512, 32 * 512);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  assert.ok(worst < 1e-4, `max difference ${worst}`);
  fresh.dispose();
});

test('meaning: paraphrases are closer than unrelated captions; the empty caption has length 0', async () => {
  const texts = ['a red apple', 'red apple fruit', 'a blue sports car'];
  const { embeddings, lengths } = await encoder.encode(texts);
  const mean = (i: number) => {
    const m = new Float64Array(512);
    for (let t = 0; t < lengths[i]; t++)
      for (let d = 0; d < 512; d++) m[d] += embeddings[(i * 16 + t) * 512 + d] / lengths[i];
    return m;
  };
  const cos = (a: Float64Array, b: Float64Array) => {
    let ab = 0,
      aa = 0,
      bb = 0;
    for (let d = 0; d < 512; d++) {
      ab += a[d] * b[d];
      aa += a[d] * a[d];
      bb += b[d] * b[d];
    }
    return ab / Math.sqrt(aa * bb);
  };
  assert.ok(cos(mean(0), mean(1)) > cos(mean(0), mean(2)));
  const empty = await encoder.encode(['']);
  assert.equal(empty.lengths[0], 0);
  assert.ok(empty.embeddings.every((v) => v === 0));
});

test('long captions are truncated to maxTokens', async () => {
  const long = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
  assert.equal(encoder.tokenize(long).length, 16);
  const { lengths } = await encoder.encode([long]);
  assert.equal(lengths[0], 16);
});
