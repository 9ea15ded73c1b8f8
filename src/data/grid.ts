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

// Text at a fixed point size, wrapped to `width` and clipped to `height` (given both, sharp would
// scale the font to fill the box instead).
async function textImage(text: string, width: number, height: number, points: number): Promise<Buffer> {
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
  if (rendered.info.height <= height) return rendered.data;
  return sharp(rendered.data).extract({ left: 0, top: 0, width: rendered.info.width, height }).png().toBuffer();
}

/** A PNG of the items in rows, each image scaled to `cell` px with its caption under it. */
export async function imageGrid(items: GridItem[], options: GridOptions = {}): Promise<Buffer> {
  const columns = Math.max(1, Math.min(options.columns ?? 8, items.length || 1));
  const cell = options.cell ?? 96;
  const captionHeight = options.captionHeight ?? (items.some((i) => i.caption) ? 28 : 0);
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
    if (caption && captionHeight > 0) {
      layers.push({ input: await textImage(caption, cell, captionHeight, 7), left, top: top + cell + 1 });
    }
  }
  return sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
    .composite(layers)
    .png()
    .toBuffer();
}
