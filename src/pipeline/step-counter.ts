// The one progress count of a pipeline call: every decoding step and edit iteration of every stage
// (and of every memory chunk of a batch) adds one to `done`; `total` is planned before the first step
// and shrinks when a part runs fewer steps than planned (fewer masked tokens than steps, a window
// already filled), so the last report reads total/total.
import type { RgbImage } from '../image/image.js';
import type { StepCallback } from './options.js';

export class StepCounter {
  private done = 0;

  constructor(
    private total: number,
    private readonly onStep?: StepCallback,
  ) {}

  /** A part planned for `planned` steps ran only `ran`. */
  ranFewer(planned: number, ran: number): void {
    this.total -= planned - ran;
  }

  async step(images: () => RgbImage[] | Promise<RgbImage[]>, tokens: Int32Array): Promise<void> {
    this.done++;
    await this.onStep?.(this.done, this.total, images, tokens);
  }
}
