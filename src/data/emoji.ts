// The emoji image–text dataset, built offline from pinned npm packages: Noto (@iconify-json/noto,
// Apache-2.0), Twemoji (@twemoji/svg, graphics CC-BY-4.0) and Fluent flat
// (@iconify-json/fluent-emoji-flat, MIT), captioned from emojibase-data (CLDR labels and tags, MIT).
// One skin tone (the default); the "component" group (skin-tone swatches, hair parts) is left out.
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

export const EMOJI_STYLES = ['noto', 'twemoji', 'fluent'] as const;
export type EmojiStyle = (typeof EMOJI_STYLES)[number];

/** Words used for each style in captions. */
export const STYLE_WORDS: Record<EmojiStyle, string> = {
  noto: 'noto',
  twemoji: 'twemoji',
  fluent: 'fluent flat',
};

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

interface IconSet {
  icons: Record<string, { body: string; width?: number; height?: number }>;
  aliases?: Record<string, { parent: string; hFlip?: boolean; vFlip?: boolean; rotate?: number }>;
  width?: number;
  height?: number;
}

const COMPONENT_GROUP = 2;

export function normaliseCode(hexcode: string): string {
  return hexcode
    .toLowerCase()
    .split('-')
    .filter((c) => c !== 'fe0f')
    .join('-');
}

function byCode(chars: Record<string, string>): Map<string, string> {
  return new Map(Object.entries(chars).map(([code, name]) => [normaliseCode(code), name]));
}

class Sources {
  readonly noto = require('@iconify-json/noto/icons.json') as IconSet;
  readonly fluent = require('@iconify-json/fluent-emoji-flat/icons.json') as IconSet;
  readonly notoChars = byCode(require('@iconify-json/noto/chars.json') as Record<string, string>);
  readonly fluentChars = byCode(require('@iconify-json/fluent-emoji-flat/chars.json') as Record<string, string>);
  readonly twemojiDir = dirname(require.resolve('@twemoji/svg/package.json'));
  readonly twemojiFiles = new Map(
    readdirSync(this.twemojiDir)
      .filter((f) => f.endsWith('.svg'))
      .map((f) => [normaliseCode(f.slice(0, -4)), f]),
  );
}

let sources: Sources | undefined;
const src = () => {
  sources ??= new Sources();
  return sources;
};

function iconSvg(set: IconSet, name: string): string | undefined {
  let icon = set.icons[name];
  let flip = '';
  if (!icon) {
    const alias = set.aliases?.[name];
    if (!alias) return undefined;
    icon = set.icons[alias.parent];
    if (!icon || alias.rotate) return undefined;
    if (alias.hFlip || alias.vFlip) flip = `${alias.hFlip ? 'h' : ''}${alias.vFlip ? 'v' : ''}`;
  }
  const w = icon.width ?? set.width ?? 16;
  const h = icon.height ?? set.height ?? 16;
  const transform = flip
    ? ` transform="translate(${flip.includes('h') ? w : 0} ${flip.includes('v') ? h : 0}) scale(${flip.includes('h') ? -1 : 1} ${flip.includes('v') ? -1 : 1})"`
    : '';
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}"><g${transform}>${icon.body}</g></svg>`;
}

/** The SVG document of an emoji in a style, or undefined when that style lacks it. */
export function emojiSvg(code: string, style: EmojiStyle): string | undefined {
  const s = src();
  if (style === 'twemoji') {
    const file = s.twemojiFiles.get(code);
    return file ? readFileSync(join(s.twemojiDir, file), 'utf8') : undefined;
  }
  const name = (style === 'noto' ? s.notoChars : s.fluentChars).get(code);
  return name ? iconSvg(style === 'noto' ? s.noto : s.fluent, name) : undefined;
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
  const s = src();
  const out: EmojiEntry[] = [];
  for (const e of data) {
    if (e.group === COMPONENT_GROUP) continue;
    const code = normaliseCode(e.hexcode);
    const styles = EMOJI_STYLES.filter((st) =>
      st === 'twemoji' ? s.twemojiFiles.has(code) : (st === 'noto' ? s.notoChars : s.fluentChars).has(code),
    );
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
 * id: "red apple", "a red apple", "red apple, noto emoji style", "food fruit: red apple",
 * "an emoji of a red apple (fruit, red, ripe)".
 */
export function emojiCaptions(e: EmojiEntry, style: EmojiStyle): string[] {
  const label = e.label;
  const styled = `${label}, ${STYLE_WORDS[style]} emoji style`;
  const extraTags = e.tags.filter((t) => !label.toLowerCase().includes(t.toLowerCase())).slice(0, 3);
  const captions = [label, styled];
  if (!label.includes(':')) captions.push(`${e.subgroup}: ${label}`, article(label), `an emoji of ${article(label)}`);
  if (extraTags.length) captions.push(`${label} (${extraTags.join(', ')})`);
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
except for rasterisation on a white background and resizing.

- **Noto Emoji** — Google Inc., https://github.com/googlefonts/noto-emoji — Apache License 2.0.
  Through the npm package @iconify-json/noto (Iconify).
- **Twemoji** — Twitter, Inc. and other contributors, https://github.com/jdecked/twemoji —
  graphics licensed under CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/); code MIT.
  Through the npm package @twemoji/svg.
- **Fluent Emoji (flat)** — Microsoft Corporation, https://github.com/microsoft/fluentui-emoji —
  MIT License. Through the npm package @iconify-json/fluent-emoji-flat (Iconify).
- **Captions** — emojibase-data (Miles Johnson, MIT), CLDR annotations (Unicode License).
`;
