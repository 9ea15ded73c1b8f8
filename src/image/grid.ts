// Grids of images with captions (contact sheets, sample grids, reconstruction grids) as PNG.
// Text is drawn with DejaVu Sans from the dejavu-fonts-ttf npm package, never a system font.
import { createRequire } from 'node:module';
import sharp, { type OverlayOptions } from 'sharp';
import type { RgbImage } from './image.js';

const require = createRequire(import.meta.url);
const FONT_FILE = require.resolve('dejavu-fonts-ttf/ttf/DejaVuSans.ttf');

export interface GridItem {
  image: RgbImage;
  caption?: string;
}

export interface GridOptions {
  columns?: number;
  /** Side of each image cell in pixels (images are scaled with nearest neighbour: pixels stay visible). */
  cell?: number;
  /** Height of the caption band under each image (0: no captions). */
  captionHeight?: number;
  title?: string;
}

function escapeMarkup(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

// Text at a fixed point size, wrapped to `width` (given a height too, sharp would scale the font to
// fill the box instead); clip() cuts it to a height.
interface RenderedText {
  data: Buffer;
  width: number;
  height: number;
}

async function renderText(text: string, width: number, points: number): Promise<RenderedText> {
  const rendered = await sharp({
    text: {
      text: `<span foreground="#222222">${escapeMarkup(text)}</span>`,
      fontfile: FONT_FILE,
      font: `DejaVu Sans ${points}`,
      width,
      dpi: 96,
      rgba: true,
      wrap: 'word-char',
    },
  })
    .png()
    .toBuffer({ resolveWithObject: true });
  return { data: rendered.data, width: rendered.info.width, height: rendered.info.height };
}

async function clip(t: RenderedText, height: number): Promise<Buffer> {
  if (t.height <= height) return t.data;
  return sharp(t.data).extract({ left: 0, top: 0, width: t.width, height }).png().toBuffer();
}

async function textImage(text: string, width: number, height: number, points: number): Promise<Buffer> {
  return clip(await renderText(text, width, points), height);
}

/** Most caption lines shown under an image; longer captions are cut. */
const CAPTION_LINES = 3;
const CAPTION_POINTS = 7;

/** A PNG of the items in rows, each image scaled to `cell` px with its caption under it. */
export async function imageGrid(items: GridItem[], options: GridOptions = {}): Promise<Buffer> {
  const columns = Math.max(1, Math.min(options.columns ?? 8, items.length || 1));
  const cell = options.cell ?? 96;
  // The caption band is as tall as the tallest caption (up to CAPTION_LINES lines): one-line captions
  // leave no blank band, three-line ones keep their third line.
  const captions = await Promise.all(
    items.map((i) => (i.caption ? renderText(i.caption, cell, CAPTION_POINTS) : undefined)),
  );
  const lineHeight = Math.ceil((CAPTION_POINTS * 96) / 72) + 3;
  const tallest = Math.max(0, ...captions.map((c) => c?.height ?? 0));
  const captionHeight = options.captionHeight ?? (tallest > 0 ? Math.min(tallest, CAPTION_LINES * lineHeight) + 2 : 0);
  const pad = 6;
  const titleHeight = options.title ? 24 : 0;
  const rows = Math.ceil(items.length / columns);
  const width = columns * (cell + pad) + pad;
  const height = titleHeight + rows * (cell + captionHeight + pad) + pad;
  const layers: OverlayOptions[] = [];
  if (options.title) {
    layers.push({ input: await textImage(options.title, width - 2 * pad, titleHeight - 4, 11), left: pad, top: 4 });
  }
  for (let i = 0; i < items.length; i++) {
    const { image, caption } = items[i];
    const left = pad + (i % columns) * (cell + pad);
    const top = titleHeight + pad + Math.floor(i / columns) * (cell + captionHeight + pad);
    const scaled = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
      .resize(cell, cell, { kernel: 'nearest', fit: 'contain', background: '#ffffff' })
      .png()
      .toBuffer();
    layers.push({ input: scaled, left, top });
    const rendered = captions[i];
    if (caption && rendered && captionHeight > 0) {
      layers.push({ input: await clip(rendered, captionHeight - 1), left, top: top + cell + 1 });
    }
  }
  return sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
    .composite(layers)
    .png()
    .toBuffer();
}
