// Where each emoji style comes from: one pinned npm package per style, its licence and attribution,
// and how an emoji (by code point) is found in it. Iconify sets with a `chars.json` map code points
// to icon names exactly; the older sets (EmojiOne, Noto v1, Fluent colour, FxEmoji, Streamline) have
// no such map, so an emoji is found by name: its CLDR label slug first ("red apple" → red-apple),
// then the name Noto gives it, then "flag for …" for flags, and last its shortcodes (GitHub,
// Emojibase, JoyPixels, iamcal) — an icon name claimed by one emoji's label is never given to
// another emoji through a shortcode.
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

const require = createRequire(import.meta.url);

export const EMOJI_STYLES = [
  'noto',
  'twemoji',
  'fluent',
  'openmoji',
  'emojione',
  'emojione-v1',
  'noto-v1',
  'fluent-color',
  'fxemoji',
  'streamline',
] as const;
export type EmojiStyle = (typeof EMOJI_STYLES)[number];

/** The three styles of the first dataset (the shipped models of 2026-11 were trained on these). */
export const FIRST_STYLES: EmojiStyle[] = ['noto', 'twemoji', 'fluent'];

export interface StyleSource {
  /** Words used for the style in captions ("…, openmoji emoji style"). */
  words: string;
  /** The npm package the SVGs come from (pinned in package.json). */
  package: string;
  /** How an emoji's icon is found: by code point (`chars.json`), by name, or Twemoji's file names. */
  lookup: 'chars' | 'names' | 'files';
  attribution: string;
}

export const STYLE_SOURCES: Record<EmojiStyle, StyleSource> = {
  noto: {
    words: 'noto',
    package: '@iconify-json/noto',
    lookup: 'chars',
    attribution: '**Noto Emoji** — Google Inc., https://github.com/googlefonts/noto-emoji — Apache License 2.0.',
  },
  twemoji: {
    words: 'twemoji',
    package: '@twemoji/svg',
    lookup: 'files',
    attribution:
      '**Twemoji** — Twitter, Inc. and other contributors, https://github.com/jdecked/twemoji — graphics CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/); code MIT.',
  },
  fluent: {
    words: 'fluent flat',
    package: '@iconify-json/fluent-emoji-flat',
    lookup: 'chars',
    attribution:
      '**Fluent Emoji (flat)** — Microsoft Corporation, https://github.com/microsoft/fluentui-emoji — MIT License.',
  },
  openmoji: {
    words: 'openmoji',
    package: '@iconify-json/openmoji',
    lookup: 'chars',
    attribution:
      '**OpenMoji** — the OpenMoji project, HfG Schwäbisch Gmünd, https://openmoji.org — CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/); renders of it are shared alike.',
  },
  emojione: {
    words: 'emojione',
    package: '@iconify-json/emojione',
    lookup: 'names',
    attribution: '**EmojiOne 2** — Ranks.com / JoyPixels, https://github.com/joypixels/emojione — CC BY 4.0.',
  },
  'emojione-v1': {
    words: 'emojione classic',
    package: '@iconify-json/emojione-v1',
    lookup: 'names',
    attribution:
      '**EmojiOne 1** — Ranks.com / JoyPixels, https://github.com/joypixels/emojione-legacy — CC BY-SA 4.0; renders of it are shared alike.',
  },
  'noto-v1': {
    words: 'noto classic',
    package: '@iconify-json/noto-v1',
    lookup: 'names',
    attribution:
      '**Noto Emoji (2016 designs)** — Google Inc., https://github.com/googlefonts/noto-emoji — Apache License 2.0.',
  },
  'fluent-color': {
    words: 'fluent color',
    package: '@iconify-json/fluent-emoji',
    lookup: 'names',
    attribution:
      '**Fluent Emoji (colour)** — Microsoft Corporation, https://github.com/microsoft/fluentui-emoji — MIT License.',
  },
  fxemoji: {
    words: 'firefox',
    package: '@iconify-json/fxemoji',
    lookup: 'names',
    attribution: '**FxEmoji** — Mozilla, https://github.com/mozilla/fxemoji — Apache License 2.0.',
  },
  streamline: {
    words: 'streamline',
    package: '@iconify-json/streamline-emojis',
    lookup: 'names',
    attribution: '**Streamline Emojis** — Streamline, https://streamlinehq.com — CC BY 4.0.',
  },
};

export interface IconSet {
  icons: Record<string, { body: string; width?: number; height?: number }>;
  aliases?: Record<string, { parent: string; hFlip?: boolean; vFlip?: boolean; rotate?: number }>;
  width?: number;
  height?: number;
}

/** What the style lookups need to know about one emoji. */
export interface EmojiNames {
  code: string;
  label: string;
  /** Shortcodes from emojibase's lists, most common first. */
  shortcodes: string[];
}

export function normaliseCode(hexcode: string): string {
  return hexcode
    .toLowerCase()
    .split('-')
    .filter((c) => c !== 'fe0f')
    .join('-');
}

const squash = (name: string) => name.toLowerCase().replace(/[^a-z0-9]/g, '');

/** For one icon set without a code-point map: emoji code → icon name, matched as the file header says. */
export function matchByName(set: IconSet, emoji: EmojiNames[], notoNames: Map<string, string>): Map<string, string> {
  const byName = new Map<string, string>();
  for (const name of [...Object.keys(set.icons), ...Object.keys(set.aliases ?? {})]) {
    if (!byName.has(squash(name))) byName.set(squash(name), name);
  }
  const out = new Map<string, string>();
  const claimed = new Set<string>();
  const claim = (code: string, candidate: string | undefined) => {
    const name = candidate === undefined ? undefined : byName.get(squash(candidate));
    if (name === undefined || claimed.has(name) || out.has(code)) return;
    out.set(code, name);
    claimed.add(name);
  };
  for (const e of emoji) {
    claim(e.code, e.label);
    claim(e.code, notoNames.get(e.code));
    if (e.label.startsWith('flag: ')) claim(e.code, `flag for ${e.label.slice(6)}`);
  }
  for (const e of emoji) for (const s of e.shortcodes) claim(e.code, s);
  return out;
}

/** Code → icon name for a set that ships `chars.json`. */
export function charsMap(pkg: string): Map<string, string> {
  const chars = require(`${pkg}/chars.json`) as Record<string, string>;
  return new Map(Object.entries(chars).map(([code, name]) => [normaliseCode(code), name]));
}

export function loadIconSet(pkg: string): IconSet {
  return require(`${pkg}/icons.json`) as IconSet;
}

/** Twemoji ships one SVG file per emoji: code → file path. */
export function twemojiFiles(): Map<string, string> {
  const dir = dirname(require.resolve('@twemoji/svg/package.json'));
  return new Map(
    readdirSync(dir)
      .filter((f) => f.endsWith('.svg'))
      .map((f) => [normaliseCode(f.slice(0, -4)), `${dir}/${f}`]),
  );
}

/** The SVG document of one icon of an Iconify set (aliases with flips followed; rotated ones refused). */
export function iconSvg(set: IconSet, name: string): string | undefined {
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
