// The emoji image–text dataset, built offline from pinned npm packages: ten emoji styles (their
// sources and licences: emoji-styles.ts), captioned from emojibase-data (CLDR labels and tags, MIT).
// One skin tone (the default); the "component" group (skin-tone swatches, hair parts) is left out.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import {
  charsMap,
  EMOJI_STYLES,
  type EmojiNames,
  type EmojiStyle,
  type IconSet,
  iconSvg,
  loadIconSet,
  matchByName,
  normaliseCode,
  STYLE_SOURCES,
  twemojiFiles,
} from './emoji-styles.js';

export { EMOJI_STYLES, type EmojiStyle, FIRST_STYLES, normaliseCode } from './emoji-styles.js';

const require = createRequire(import.meta.url);

/** Words used for each style in captions. */
export const STYLE_WORDS = Object.fromEntries(EMOJI_STYLES.map((s) => [s, STYLE_SOURCES[s].words])) as Record<
  EmojiStyle,
  string
>;

export type EmojiSplit = 'train' | 'test_emoji' | 'test_pair';
export const EMOJI_SPLITS: EmojiSplit[] = ['train', 'test_emoji', 'test_pair'];

export interface EmojiEntry {
  /** Code points without variation selectors, lower case, joined by '-' (e.g. "1f34e"). */
  code: string;
  emoji: string;
  label: string;
  tags: string[];
  group: string;
  subgroup: string;
  styles: EmojiStyle[];
}

interface EmojibaseEntry {
  label: string;
  hexcode: string;
  tags?: string[];
  emoji: string;
  group?: number;
  subgroup?: number;
}

const COMPONENT_GROUP = 2;
const SHORTCODE_LISTS = ['github', 'emojibase', 'joypixels', 'iamcal'];

/** One style's icons: code → SVG document (undefined where the style lacks the emoji). */
type StyleLookup = { has(code: string): boolean; svg(code: string): string | undefined };

function emojibase(): EmojibaseEntry[] {
  return (require('emojibase-data/en/data.json') as EmojibaseEntry[]).filter((e) => e.group !== COMPONENT_GROUP);
}

function emojiNames(): EmojiNames[] {
  const lists = SHORTCODE_LISTS.map(
    (l) => require(`emojibase-data/en/shortcodes/${l}.json`) as Record<string, string | string[]>,
  );
  return emojibase().map((e) => ({
    code: normaliseCode(e.hexcode),
    label: e.label,
    shortcodes: lists.flatMap((l) => [l[e.hexcode] ?? []].flat()),
  }));
}

function iconLookup(set: IconSet, names: Map<string, string>): StyleLookup {
  return {
    has: (code) => names.has(code),
    svg: (code) => {
      const name = names.get(code);
      return name === undefined ? undefined : iconSvg(set, name);
    },
  };
}

const lookups = new Map<EmojiStyle, StyleLookup>();

function styleLookup(style: EmojiStyle): StyleLookup {
  let found = lookups.get(style);
  if (found) return found;
  const source = STYLE_SOURCES[style];
  if (source.lookup === 'files') {
    const files = twemojiFiles();
    found = {
      has: (code) => files.has(code),
      svg: (code) => {
        const file = files.get(code);
        return file === undefined ? undefined : readFileSync(file, 'utf8');
      },
    };
  } else if (source.lookup === 'chars') {
    found = iconLookup(loadIconSet(source.package), charsMap(source.package));
  } else {
    const set = loadIconSet(source.package);
    found = iconLookup(set, matchByName(set, emojiNames(), charsMap(STYLE_SOURCES.noto.package)));
  }
  lookups.set(style, found);
  return found;
}

/** The SVG document of an emoji in a style, or undefined when that style lacks it. */
export function emojiSvg(code: string, style: EmojiStyle): string | undefined {
  return styleLookup(style).svg(code);
}

function words(slug: string): string {
  return slug.replace(/-/g, ' ');
}

/** Every emoji (default skin tone, no components) with the styles that draw it, in emojibase order. */
export function listEmoji(): EmojiEntry[] {
  const data = require('emojibase-data/en/data.json') as EmojibaseEntry[];
  const meta = require('emojibase-data/meta/groups.json') as {
    groups: Record<string, string>;
    subgroups: Record<string, string>;
  };
  const out: EmojiEntry[] = [];
  for (const e of data) {
    if (e.group === COMPONENT_GROUP) continue;
    const code = normaliseCode(e.hexcode);
    const styles = EMOJI_STYLES.filter((st) => styleLookup(st).has(code));
    if (styles.length === 0) continue;
    out.push({
      code,
      emoji: e.emoji,
      label: e.label,
      tags: e.tags ?? [],
      group: words(meta.groups[String(e.group)] ?? 'other'),
      subgroup: words(meta.subgroups[String(e.subgroup)] ?? 'other'),
      styles,
    });
  }
  return out;
}

function article(phrase: string): string {
  return /^[aeiou]/i.test(phrase) ? `an ${phrase}` : `a ${phrase}`;
}

/**
 * Several phrasings of one emoji in one style, so a model must read the words rather than learn an
 * id (and so the words around the name vary: the cure for memorising a caption whole): "red apple",
 * "a red apple", "red apple, noto emoji style", "noto style red apple", "food fruit: red apple",
 * "an emoji of a red apple", "a picture of a red apple", "red apple icon",
 * "red apple (fruit, ripe)", "ripe, fruit: red apple".
 * The first is always the plain name (evaluations prompt with it).
 */
export function emojiCaptions(e: EmojiEntry, style: EmojiStyle): string[] {
  const label = e.label;
  const words = STYLE_WORDS[style];
  const extraTags = e.tags.filter((t) => !label.toLowerCase().includes(t.toLowerCase())).slice(0, 3);
  const captions = [label, `${label}, ${words} emoji style`, `${words} style ${label}`];
  if (!label.includes(':')) {
    captions.push(
      `${e.subgroup}: ${label}`,
      article(label),
      `an emoji of ${article(label)}`,
      `a picture of ${article(label)}`,
      `${label} icon`,
    );
  }
  if (extraTags.length) captions.push(`${label} (${extraTags.join(', ')})`);
  if (extraTags.length > 1) captions.push(`${[...extraTags].reverse().join(', ')}: ${label}`);
  return captions;
}

// FNV-1a, 32-bit: a stable hash so splits never depend on package order or the machine.
function hash01(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h / 4294967296;
}

/** Fractions held out: whole emoji identities, and emoji × style pairs of the remaining emoji. */
export const HELD_OUT = { emoji: 0.1, pair: 0.1 };

/**
 * Deterministic split of one (emoji, style) image:
 * - test_emoji: ~10% of emoji identities, in every style; never seen in training at all;
 * - test_pair: ~10% of (emoji, style) pairs of the other emoji, only where the emoji keeps at least
 *   one training style, so the emoji and the style are each seen in training but not together;
 * - train: the rest.
 */
export function emojiSplit(e: EmojiEntry, style: EmojiStyle): EmojiSplit {
  if (hash01(`emoji:${e.code}`) < HELD_OUT.emoji) return 'test_emoji';
  const heldPairs = e.styles.filter((st) => hash01(`pair:${e.code}:${st}`) < HELD_OUT.pair);
  // Keep at least one style of each emoji in training: release the last held pair if needed.
  if (heldPairs.length === e.styles.length) heldPairs.pop();
  return heldPairs.includes(style) ? 'test_pair' : 'train';
}

export const EMOJI_ATTRIBUTION = `# Attribution of the emoji dataset

Images rendered by muse-ts from these packages (pinned in package.json); no image is modified
except for rasterisation on a white background and resizing. Where a style's licence is
share-alike (CC BY-SA 4.0), its renders are under the same licence.

${EMOJI_STYLES.map((s) => `- ${STYLE_SOURCES[s].attribution} Through the npm package ${STYLE_SOURCES[s].package}.`).join('\n')}
- **Captions** — emojibase-data (Miles Johnson, MIT), CLDR annotations (Unicode License).
`;
