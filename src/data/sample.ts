// What every dataset yields, and how a long job accounts for the samples it had to skip.
import type { RgbImage } from '../image/image.js';

/** One image–text pair. `captions` holds every phrasing; training samples one per visit. */
export interface Sample {
  key: string;
  image: RgbImage;
  captions: string[];
  /** Free-form facts about the sample (style, emoji code point, shapes ground truth, source file). */
  meta?: Record<string, unknown>;
}

/** Counts and lists samples skipped for a reason (unreadable image, empty caption, ...). */
export class SkipReport {
  private readonly byReason = new Map<string, string[]>();

  add(key: string, reason: string): void {
    const keys = this.byReason.get(reason) ?? [];
    keys.push(key);
    this.byReason.set(reason, keys);
  }

  get total(): number {
    let n = 0;
    for (const keys of this.byReason.values()) n += keys.length;
    return n;
  }

  counts(): Record<string, number> {
    return Object.fromEntries([...this.byReason].map(([r, k]) => [r, k.length]));
  }

  /** A short human summary: one line per reason with up to `examples` keys. */
  summary(examples = 5): string {
    if (this.total === 0) return 'no samples skipped';
    const lines = [...this.byReason].map(([reason, keys]) => {
      const shown = keys.slice(0, examples).join(', ');
      return `  ${keys.length} × ${reason}: ${shown}${keys.length > examples ? ', …' : ''}`;
    });
    return `${this.total} samples skipped:\n${lines.join('\n')}`;
  }

  toJSON(): Record<string, string[]> {
    return Object.fromEntries(this.byReason);
  }
}
