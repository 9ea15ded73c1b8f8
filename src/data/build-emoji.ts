// `muse data build emoji`: renders every (emoji, style) pair at one size into the folder format.

import { renderSvg } from '../image/image.js';
import { MuseError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { forEachLimited, writeBuiltSample, writeSummary } from './build.js';
import {
  EMOJI_ATTRIBUTION,
  EMOJI_SPLITS,
  EMOJI_STYLES,
  type EmojiEntry,
  type EmojiStyle,
  emojiCaptions,
  emojiSplit,
  emojiSvg,
  HELD_OUT,
  listEmoji,
} from './emoji.js';
import { SkipReport } from './sample.js';

export interface BuildEmojiOptions {
  size: number;
  out: string;
  styles?: EmojiStyle[];
  /** Only the first n emoji (for quick tries and tests). */
  limit?: number;
  quiet?: boolean;
}

export interface BuildEmojiResult {
  counts: Record<string, Record<string, number>>;
  emoji: number;
  skipped: SkipReport;
}

export async function buildEmojiDataset(options: BuildEmojiOptions): Promise<BuildEmojiResult> {
  const { size, out } = options;
  if (!Number.isInteger(size) || size < 8 || size > 1024) {
    throw new MuseError(`size must be an integer from 8 to 1024, got ${size}`);
  }
  const styles = options.styles ?? [...EMOJI_STYLES];
  for (const s of styles) if (!EMOJI_STYLES.includes(s)) throw new MuseError(`unknown emoji style "${s}"`);
  const entries = listEmoji().slice(0, options.limit);
  const jobs: Array<{ e: EmojiEntry; style: EmojiStyle }> = [];
  for (const e of entries) for (const style of e.styles) if (styles.includes(style)) jobs.push({ e, style });
  const counts = Object.fromEntries(EMOJI_SPLITS.map((s) => [s, Object.fromEntries(styles.map((st) => [st, 0]))]));
  const skipped = new SkipReport();
  const progress = options.quiet
    ? undefined
    : new Progress({ total: jobs.length, label: 'rendering emoji', unit: 'img' });
  await forEachLimited(jobs, 4, async ({ e, style }) => {
    const key = `${style}-${e.code}`;
    const svg = emojiSvg(e.code, style);
    try {
      if (!svg) throw new Error('no SVG');
      const image = await renderSvg(svg, size, key);
      const split = emojiSplit(e, style);
      await writeBuiltSample(out, {
        split,
        key,
        image,
        captions: emojiCaptions(e, style),
        meta: { code: e.code, emoji: e.emoji, label: e.label, style, group: e.group, subgroup: e.subgroup, split },
      });
      counts[split][style]++;
    } catch (err) {
      skipped.add(key, (err as Error).message.split(':').pop()?.trim() || 'render failed');
    }
    progress?.tick();
  });
  writeSummary(
    out,
    {
      name: 'emoji',
      size,
      styles,
      emoji: entries.length,
      counts,
      heldOut: HELD_OUT,
      splits: {
        train: 'training images',
        test_emoji: 'emoji identities never seen in training (every style)',
        test_pair: 'emoji × style pairs never seen in training (the emoji and the style are)',
      },
      skipped: skipped.toJSON(),
      builtWith: 'muse data build emoji',
    },
    EMOJI_ATTRIBUTION,
  );
  return { counts, emoji: entries.length, skipped };
}
