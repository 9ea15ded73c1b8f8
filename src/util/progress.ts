// Progress of long work on stderr: count, rate, ETA and any extra fields (loss, ...). On a terminal
// one line is redrawn in place; otherwise a line is written every `everySeconds`.

export interface ProgressOptions {
  total?: number;
  label: string;
  unit?: string;
  everySeconds?: number;
  stream?: NodeJS.WriteStream | { write(s: string): boolean; isTTY?: boolean };
  startAt?: number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export class Progress {
  private done: number;
  private readonly started = performance.now();
  private readonly startCount: number;
  private lastDraw = 0;
  private readonly stream: NonNullable<ProgressOptions['stream']>;
  private readonly tty: boolean;

  constructor(private readonly options: ProgressOptions) {
    this.done = options.startAt ?? 0;
    this.startCount = this.done;
    this.stream = options.stream ?? process.stderr;
    this.tty = !!this.stream.isTTY;
  }

  /** Advances by n and redraws when due; extra fields are shown as "name value". */
  tick(n = 1, extra: Record<string, string | number> = {}): void {
    this.done += n;
    const now = performance.now();
    const every = (this.options.everySeconds ?? (this.tty ? 0.2 : 10)) * 1000;
    const finished = this.options.total !== undefined && this.done >= this.options.total;
    if (now - this.lastDraw >= every || finished) {
      this.lastDraw = now;
      this.draw(extra, finished);
    }
  }

  /** Advances to a running total (for callbacks that report how many are done so far). */
  to(done: number, extra: Record<string, string | number> = {}): void {
    this.tick(done - this.done, extra);
  }

  /** The line as it would be drawn now. */
  line(extra: Record<string, string | number> = {}): string {
    const seconds = (performance.now() - this.started) / 1000;
    const rate = (this.done - this.startCount) / Math.max(seconds, 1e-9);
    const { total, label, unit = 'it' } = this.options;
    const parts = [total !== undefined ? `${label} ${this.done}/${total}` : `${label} ${this.done}`];
    parts.push(`${rate >= 10 ? rate.toFixed(0) : rate.toFixed(2)} ${unit}/s`);
    if (total !== undefined) parts.push(`ETA ${formatDuration((total - this.done) / rate)}`);
    parts.push(`elapsed ${formatDuration(seconds)}`);
    for (const [k, v] of Object.entries(extra)) parts.push(`${k} ${typeof v === 'number' ? formatNumber(v) : v}`);
    return parts.join('  ');
  }

  private ended = false;

  private draw(extra: Record<string, string | number>, finished: boolean): void {
    const text = this.line(extra);
    this.ended = finished;
    if (this.tty) this.stream.write(`\r\x1b[K${text}${finished ? '\n' : ''}`);
    else this.stream.write(`${text}\n`);
  }

  /** Ends the line (on a terminal) after the last tick; nothing if the last tick already did. */
  finish(extra: Record<string, string | number> = {}): void {
    if (this.ended) return;
    this.ended = true;
    if (this.tty) this.stream.write(`\r\x1b[K${this.line(extra)}\n`);
    else this.stream.write(`${this.line(extra)}\n`);
  }
}

function formatNumber(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
}
