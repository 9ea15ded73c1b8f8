// Evaluation subsets spread evenly over a dataset (folders list files sorted by name, so taking the
// first N would take one style or one category).
import type { Sample } from '../data/sample.js';
import { MuseError } from '../util/errors.js';

export async function spreadSamples(
  samples: AsyncIterable<Sample>,
  count: number,
  keep: (s: Sample) => boolean = () => true,
): Promise<Sample[]> {
  const all: Sample[] = [];
  for await (const s of samples) if (keep(s)) all.push(s);
  if (all.length === 0) throw new MuseError('no samples to evaluate');
  if (all.length <= count) return all;
  return Array.from({ length: count }, (_, i) => all[Math.floor((i * all.length) / count)]);
}
