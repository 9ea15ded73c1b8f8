// Decoding as pictures: every step's images as PNG frames and one animated GIF, so users can watch an
// image appear (masked tokens grey).
import { join } from 'node:path';
import sharp from 'sharp';
import { imageGrid } from '../image/grid.js';
import type { RgbImage } from '../image/image.js';
import { makeFolder, writeFileAtomic } from '../util/files.js';

export class FrameWriter {
  private readonly frames: Buffer[] = [];

  constructor(
    readonly folder: string,
    readonly cell = 128,
  ) {
    makeFolder(folder, '`frames`');
  }

  /** One frame: the batch's images side by side. */
  async add(step: number, steps: number, images: RgbImage[]): Promise<void> {
    const png = await imageGrid(
      images.map((image) => ({ image })),
      { columns: Math.min(8, images.length), cell: this.cell, title: `step ${step}/${steps}` },
    );
    writeFileAtomic(join(this.folder, `frame-${String(step).padStart(4, '0')}.png`), png);
    this.frames.push(png);
  }

  /** Writes decoding.gif (each frame 250 ms, the last held 2 s); returns its path. */
  async finish(): Promise<string | undefined> {
    if (this.frames.length === 0) return undefined;
    const delays = this.frames.map((_, i) => (i === this.frames.length - 1 ? 2000 : 250));
    const gif = await sharp(this.frames, { join: { animated: true } })
      .gif({ delay: delays, loop: 0 })
      .toBuffer();
    const file = join(this.folder, 'decoding.gif');
    writeFileAtomic(file, gif);
    return file;
  }
}
