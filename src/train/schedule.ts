// Learning-rate schedule: linear warm-up, then cosine decay to minRatio·peak (Loshchilov & Hutter
// 2017, without restarts), the schedule of the Muse paper and open-muse.
export interface CosineSchedule {
  peak: number;
  warmup: number;
  total: number;
  /** Final learning rate as a fraction of the peak (default 0.1). */
  minRatio?: number;
}

export function learningRate(s: CosineSchedule, step: number): number {
  const minRatio = s.minRatio ?? 0.1;
  if (s.warmup > 0 && step < s.warmup) return (s.peak * (step + 1)) / s.warmup;
  const span = Math.max(1, s.total - s.warmup);
  const progress = Math.min(1, Math.max(0, (step - s.warmup) / span));
  return s.peak * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * progress)));
}
