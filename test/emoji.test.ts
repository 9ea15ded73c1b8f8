// The emoji dataset: sources, captions, deterministic splits that never leak, and a small build.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildEmojiDataset } from '../src/data/build-emoji.js';
import { EMOJI_STYLES, emojiCaptions, emojiSplit, emojiSvg, FIRST_STYLES, listEmoji } from '../src/data/emoji.js';
import { type IconSet, matchByName } from '../src/data/emoji-styles.js';
import { decodeImage } from '../src/image/image.js';

const all = listEmoji();

test('every emoji of the ten packages is listed once, with the styles that draw it', () => {
  assert.ok(all.length > 1800, `${all.length} emoji`);
  assert.equal(new Set(all.map((e) => e.code)).size, all.length);
  const perStyle = Object.fromEntries(EMOJI_STYLES.map((s) => [s, all.filter((e) => e.styles.includes(s)).length]));
  // Measured 2026-12-01: noto 1678, twemoji 1882, fluent 1594, openmoji 1940, emojione 1355,
  // emojione-v1 1139, noto-v1 1260, fluent-color 1570, fxemoji 603, streamline 405.
  for (const s of FIRST_STYLES) assert.ok(perStyle[s] > 1500, `${s}: ${perStyle[s]}`);
  for (const s of EMOJI_STYLES) assert.ok(perStyle[s] > 350, `${s}: ${perStyle[s]}`);
  const fiveOrMore = all.filter((e) => e.styles.length >= 5).length;
  assert.ok(fiveOrMore > 0.8 * all.length, `${fiveOrMore} of ${all.length} emoji have 5 styles or more`);
  assert.ok(!all.some((e) => e.group === 'component'), 'skin-tone and hair components are left out');
  assert.ok(!all.some((e) => /skin tone/.test(e.label)), 'one skin tone');
  const apple = all.find((e) => e.code === '1f34e');
  assert.equal(apple?.label, 'red apple');
  for (const s of EMOJI_STYLES) assert.match(emojiSvg('1f34e', s) ?? '', /<svg/);
});

test('icon sets without a code-point map are matched by label first, and a claimed name is never reused', () => {
  const set: IconSet = {
    icons: { 'red-apple': { body: '' }, apple: { body: '' }, 'flag-for-france': { body: '' }, dog: { body: '' } },
  };
  const emoji = [
    { code: 'a', label: 'red apple', shortcodes: ['apple'] },
    { code: 'b', label: 'green apple', shortcodes: ['green_apple', 'red_apple'] },
    { code: 'c', label: 'flag: France', shortcodes: ['fr'] },
    { code: 'd', label: 'dog face', shortcodes: ['dog'] },
    { code: 'e', label: 'apple', shortcodes: [] },
  ];
  const m = matchByName(set, emoji, new Map());
  assert.equal(m.get('a'), 'red-apple');
  assert.equal(m.get('b'), undefined, 'red-apple is the red apple, not the green one');
  assert.equal(m.get('c'), 'flag-for-france');
  assert.equal(m.get('d'), 'dog', 'a shortcode finds the icon when no label does');
  assert.equal(m.get('e'), 'apple', 'a label match wins over another emoji shortcode');
  // The real sets: the same emoji in the same place in every style.
  for (const s of EMOJI_STYLES)
    if (s !== 'fxemoji' && s !== 'streamline') assert.match(emojiSvg('1f600', s) ?? '', /<svg/, s);
});

test('captions give several phrasings that name the emoji and, in one, the style', () => {
  const apple = all.find((e) => e.code === '1f34e');
  assert.ok(apple);
  const caps = emojiCaptions(apple, 'noto');
  assert.ok(caps.length >= 4);
  assert.ok(caps.every((c) => c.includes('red apple')));
  assert.ok(caps.includes('a red apple'));
  assert.ok(caps.includes('red apple, noto emoji style'));
  assert.ok(caps.some((c) => c.startsWith('food fruit: ')));
  assert.equal(caps[0], 'red apple', 'evaluations prompt with the first: the plain name');
  assert.ok(caps.includes('noto style red apple'), 'the style before the name too');
  assert.equal(new Set(caps).size, caps.length, 'no phrasing twice');
  // Tags not already in the name, in two orders.
  assert.ok(caps.includes('red apple (diet, food, fruit)'), caps.join(' | '));
  assert.ok(caps.includes('fruit, food, diet: red apple'), caps.join(' | '));
  const keycap = all.find((e) => e.label.startsWith('keycap'));
  assert.ok(keycap);
  assert.ok(!emojiCaptions(keycap, 'twemoji').some((c) => /keycap: keycap/.test(c)));
  const eight = all.find((e) => e.label === 'eight-thirty');
  assert.ok(eight && emojiCaptions(eight, 'fluent').includes('an eight-thirty'));
});

test('splits: held-out emoji never train; held-out pairs keep the emoji and the style in training', () => {
  const trainCodes = new Set<string>();
  const trainStyles = new Set<string>();
  let testEmoji = 0;
  let testPair = 0;
  let pairs = 0;
  for (const e of all) {
    for (const s of e.styles) {
      pairs++;
      const split = emojiSplit(e, s);
      assert.equal(split, emojiSplit(e, s), 'deterministic');
      if (split === 'train') {
        trainCodes.add(e.code);
        trainStyles.add(s);
      }
      if (split === 'test_emoji') testEmoji++;
      if (split === 'test_pair') testPair++;
    }
  }
  for (const e of all) {
    const splits = e.styles.map((s) => emojiSplit(e, s));
    if (splits.includes('test_emoji')) {
      assert.ok(
        splits.every((s) => s === 'test_emoji'),
        `${e.code}: a held-out emoji is held out in every style`,
      );
      assert.ok(!trainCodes.has(e.code));
    }
    if (splits.includes('test_pair')) assert.ok(trainCodes.has(e.code), `${e.code}: seen in training in another style`);
  }
  assert.equal(trainStyles.size, EMOJI_STYLES.length);
  assert.ok(testEmoji / pairs > 0.07 && testEmoji / pairs < 0.13, `test_emoji ${testEmoji}/${pairs}`);
  assert.ok(testPair / pairs > 0.05 && testPair / pairs < 0.13, `test_pair ${testPair}/${pairs}`);
});

test('a small build writes images, captions, counts and the attribution', async () => {
  const out = mkdtempSync(join(tmpdir(), 'muse-emoji-'));
  const r = await buildEmojiDataset({ size: 32, out, limit: 40, quiet: true });
  assert.equal(r.skipped.total, 0, r.skipped.summary());
  const summary = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8'));
  let files = 0;
  for (const split of ['train', 'test_emoji', 'test_pair']) {
    const dir = join(out, split);
    const pngs = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.png')) : [];
    files += pngs.length;
    const counted = Object.values(summary.counts[split] as Record<string, number>).reduce((a, b) => a + b, 0);
    assert.equal(pngs.length, counted, `${split} count`);
  }
  assert.ok(files > 80);
  assert.match(readFileSync(join(out, 'ATTRIBUTION.md'), 'utf8'), /CC-BY 4\.0/);
  const first = readdirSync(join(out, 'train')).find((f) => f.endsWith('.png')) ?? '';
  const img = await decodeImage(readFileSync(join(out, 'train', first)), first);
  assert.deepEqual([img.width, img.height], [32, 32]);
  const meta = JSON.parse(readFileSync(join(out, 'train', first.replace('.png', '.json')), 'utf8'));
  assert.ok(meta.captions.length >= 2 && meta.caption === meta.captions[0]);
  assert.ok(EMOJI_STYLES.includes(meta.style));
  // Not blank: an emoji has non-white pixels.
  assert.ok(img.data.some((v) => v < 200));
});

test('bad options are clear errors', async () => {
  await assert.rejects(
    buildEmojiDataset({ size: 3, out: tmpdir(), quiet: true }),
    /size must be an integer from 8 to 1024, got 3/,
  );
  await assert.rejects(
    buildEmojiDataset({ size: 32, out: tmpdir(), styles: ['pixel' as never], quiet: true }),
    /unknown emoji style/,
  );
});
