// A sample's files to a Sample's parts: its captions (from .txt, .json or .caption) and its image
// (decoded, resized, centre-cropped), with the reason when a sample must be skipped. Shared by the
// WebDataset and image-folder readers.
import { type RgbImage, resizeCenterCrop } from '../image/image.js';
import { MuseError } from '../util/errors.js';
import type { SkipReport } from './sample.js';

/** Image extensions a sample's image may have, in order of preference (compared lower-cased). */
export const IMAGE_EXTENSIONS = ['jpg', 'jpeg', 'png', 'webp', 'gif', 'bmp', 'tif', 'tiff', 'avif'] as const;

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** The caption sources of one sample, as raw bytes. */
export interface CaptionFiles {
  txt?: Uint8Array;
  json?: Uint8Array;
  caption?: Uint8Array;
}

export type CaptionResult =
  | { ok: true; captions: string[]; meta: Record<string, unknown> }
  | { ok: false; reason: string };

const JSON_CAPTION_FIELDS = ['caption', 'captions', 'text'];

function decodeText(bytes: Uint8Array): string | undefined {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * A sample's captions: the trimmed UTF-8 text of `.txt`; else the `.json` object's `caption`
 * string, `captions` string array and `text` (string or string array), in that order, trimmed,
 * empty ones dropped, duplicates removed; else the trimmed `.caption` file. The first source giving
 * a non-empty caption wins. The json's other fields become meta (also when the caption came from
 * .txt). Failure reasons: 'no caption', 'empty caption', 'unreadable caption' (not UTF-8, or a
 * json that is not an object).
 */
export function captionsFrom(files: CaptionFiles): CaptionResult {
  if (!files.txt && !files.json && !files.caption) return { ok: false, reason: 'no caption' };
  let meta: Record<string, unknown> = {};
  let unreadable = false;
  let empty = false;
  const fromText = (bytes: Uint8Array | undefined): string[] | undefined => {
    if (!bytes) return undefined;
    const text = decodeText(bytes);
    if (text === undefined) {
      unreadable = true;
      return undefined;
    }
    const t = text.trim();
    if (!t) empty = true;
    return t ? [t] : undefined;
  };
  let jsonCaptions: string[] | undefined;
  if (files.json) {
    const text = decodeText(files.json);
    let obj: unknown;
    try {
      obj = text === undefined ? undefined : JSON.parse(text);
    } catch {
      obj = undefined;
    }
    if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
      const record = obj as Record<string, unknown>;
      const found: string[] = [];
      for (const field of JSON_CAPTION_FIELDS) {
        const v = record[field];
        const list = typeof v === 'string' ? [v] : Array.isArray(v) ? v : [];
        for (const c of list) if (typeof c === 'string' && c.trim()) found.push(c.trim());
      }
      meta = Object.fromEntries(Object.entries(record).filter(([k]) => !JSON_CAPTION_FIELDS.includes(k)));
      jsonCaptions = [...new Set(found)];
      if (jsonCaptions.length === 0) {
        empty = true;
        jsonCaptions = undefined;
      }
    } else {
      unreadable = true;
    }
  }
  const captions = fromText(files.txt) ?? jsonCaptions ?? fromText(files.caption);
  if (captions) return { ok: true, captions, meta };
  return { ok: false, reason: unreadable ? 'unreadable caption' : empty ? 'empty caption' : 'no caption' };
}

/** Decodes, resizes and centre-crops a sample's image bytes; a skip reason when it cannot. */
export async function loadSampleImage(
  bytes: Uint8Array,
  size: number,
  name: string,
): Promise<{ ok: true; image: RgbImage } | { ok: false; reason: string }> {
  if (bytes.length === 0) return { ok: false, reason: 'empty image file' };
  try {
    return { ok: true, image: await resizeCenterCrop(bytes, size, name) };
  } catch {
    return { ok: false, reason: 'unreadable image' };
  }
}

export function checkSize(size: number): void {
  if (!Number.isInteger(size) || size < 1) throw new MuseError(`image size must be a positive integer, got ${size}`);
}

/** Options for the dataset readers. */
export interface ReadOptions {
  /** Side of the square images yielded (resized so the short side fits, then centre-cropped). */
  size: number;
  /** Where skipped samples are recorded, by reason. */
  skip: SkipReport;
  /** The largest image or caption file read (default MAX_MEMBER_BYTES); a sample with a larger one is skipped. */
  maxMemberBytes?: number;
}
