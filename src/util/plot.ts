// PNG line charts (loss curves written during training): white background, axes with nice ticks,
// grid, legend, title. Lines, axes and boxes are SVG shapes rendered by sharp (librsvg); every
// piece of text is rendered separately with sharp's text input in DejaVu Sans from the
// dejavu-fonts-ttf npm package and composited, so no system font (fontconfig) is ever used.
import { createRequire } from 'node:module';
import sharp, { type OverlayOptions } from 'sharp';

const require = createRequire(import.meta.url);
const FONT_FILE = require.resolve('dejavu-fonts-ttf/ttf/DejaVuSans.ttf');

export interface LineSeries {
  name: string;
  /** [x, y] points; non-finite coordinates (and y ≤ 0 with logY) are skipped. */
  points: Array<[number, number]>;
  /** CSS colour (#rgb, #rrggbb, a colour name, rgb(…)); default from a 10-colour palette. */
  color?: string;
  /** This series' EMA factor, overriding the chart's `smooth` (0: no overlay, e.g. for sparse eval points). */
  smooth?: number;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** PNG size in pixels (default 800×480). */
  width?: number;
  height?: number;
  /** Logarithmic y axis; points with y ≤ 0 are skipped. */
  logY?: boolean;
  /**
   * EMA factor in [0, 1) for a smoothed overlay (TensorBoard style, debiased: s_t = f·s_{t−1} +
   * (1 − f)·y_t, divided by 1 − f^(t+1)). When set (> 0) the raw curve is drawn faint under it.
   */
  smooth?: number;
}

// matplotlib's tab10
const PALETTE = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
];
const TEXT_COLOR = '#222222';
const AXIS_COLOR = '#333333';
const GRID_COLOR = '#e6e6e6';
const COLOR_RE = /^(#[0-9a-fA-F]{3,8}|[a-zA-Z]{3,30}|rgba?\(\s*[0-9.%,\s]+\))$/;

interface Text {
  png: Buffer;
  width: number;
  height: number;
}

function escapeMarkup(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** One line of text in DejaVu Sans at `px` pixels (dpi 72: points are pixels). */
async function renderText(text: string, px: number, color = TEXT_COLOR): Promise<Text | null> {
  const clean = text.replace(/[\r\n\t]+/g, ' ').trim();
  if (!clean) return null;
  const { data, info } = await sharp({
    text: {
      text: `<span foreground="${color}">${escapeMarkup(clean)}</span>`,
      fontfile: FONT_FILE,
      font: `DejaVu Sans ${px}`,
      dpi: 72,
      rgba: true,
    },
  })
    .png()
    .toBuffer({ resolveWithObject: true });
  return { png: data, width: info.width, height: info.height };
}

/**
 * Crops `t` to `maxWidth` and to a W×H canvas at (left, top), clamping the position into it (sharp
 * refuses overlays that stick out).
 */
async function place(
  t: Text,
  left: number,
  top: number,
  W: number,
  H: number,
  maxWidth = W,
): Promise<OverlayOptions | null> {
  let l = Math.round(left);
  let tp = Math.round(top);
  const w = Math.min(t.width, W, Math.floor(maxWidth));
  const h = Math.min(t.height, H);
  l = Math.max(0, Math.min(W - w, l));
  tp = Math.max(0, Math.min(H - h, tp));
  if (w <= 0 || h <= 0) return null;
  const input =
    w === t.width && h === t.height
      ? t.png
      : await sharp(t.png).extract({ left: 0, top: 0, width: w, height: h }).png().toBuffer();
  return { input, left: l, top: tp };
}

// ---- ticks ----

interface Axis {
  min: number;
  max: number;
  /** Tick positions in data units. */
  ticks: number[];
  labels: string[];
  log: boolean;
}

function niceStep(rough: number): number {
  const mag = 10 ** Math.floor(Math.log10(rough));
  const norm = rough / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

function formatNumber(v: number, step: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-4) {
    // enough significant digits to tell neighbouring ticks apart
    const digits = Math.max(0, Math.min(6, Math.floor(Math.log10(a)) - Math.floor(Math.log10(step))));
    return v
      .toExponential(digits)
      .replace(/\.?0+e/, 'e')
      .replace('e+', 'e');
  }
  const decimals = Math.max(0, Math.min(10, -Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(decimals);
}

/** ~5 nice ticks covering [lo, hi]; the axis is widened to the outer ticks. */
function linearAxis(lo: number, hi: number, integer: boolean): Axis {
  if (lo === hi) {
    const d = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= d;
    hi += d;
  }
  let step = niceStep((hi - lo) / 4);
  if (integer && step < 1) step = 1;
  if (!Number.isFinite(step) || step <= 0) step = 1;
  const start = Math.floor(lo / step + 1e-9);
  const end = Math.ceil(hi / step - 1e-9);
  const n = Math.min(50, Math.max(1, end - start));
  const ticks: number[] = [];
  for (let i = 0; i <= n; i++) {
    const t = (start + i) * step;
    ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  }
  return {
    min: ticks[0],
    max: ticks[ticks.length - 1],
    ticks,
    labels: ticks.map((t) => formatNumber(t, step)),
    log: false,
  };
}

function formatLog(v: number): string {
  const e = Math.log10(v);
  if (Math.abs(e - Math.round(e)) < 1e-9 && (e < -3 || e > 5)) return `1e${Math.round(e)}`;
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-3) return v.toExponential(0).replace('e+', 'e');
  // shortest decimal that reproduces a 1-2-5 series value
  return String(Number(v.toPrecision(6)));
}

/** Log axis over [lo, hi] (both > 0). Full decades when the data spans one or more. */
function logAxis(lo: number, hi: number): Axis {
  let a = Math.log10(lo);
  let b = Math.log10(hi);
  if (b - a < 1e-9) {
    a -= 0.5;
    b += 0.5;
  }
  if (b - a >= 1) {
    const start = Math.floor(a + 1e-9);
    const end = Math.ceil(b - 1e-9);
    const every = Math.max(1, Math.ceil((end - start) / 6));
    const top = start + Math.ceil((end - start) / every) * every;
    const ticks: number[] = [];
    for (let e = start; e <= top; e += every) ticks.push(10 ** e);
    return { min: 10 ** start, max: 10 ** top, ticks, labels: ticks.map(formatLog), log: true };
  }
  // Less than a decade: pad 5% (in log space) and pick the sparsest series with ≥ 3 ticks inside.
  const pad = (b - a) * 0.05;
  a -= pad;
  b += pad;
  const min = 10 ** a;
  const max = 10 ** b;
  for (const mantissas of [
    [1, 2, 5],
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
  ]) {
    const ticks: number[] = [];
    for (let e = Math.floor(a) - 1; e <= Math.ceil(b); e++) {
      for (const m of mantissas) {
        const t = Number((m * 10 ** e).toPrecision(12));
        if (t >= min * (1 - 1e-12) && t <= max * (1 + 1e-12)) ticks.push(t);
      }
    }
    if (ticks.length >= 3) return { min, max, ticks, labels: ticks.map(formatLog), log: true };
  }
  // Very narrow: linear nice ticks inside the range, placed on the log scale.
  const lin = linearAxis(min, max, false);
  const step = lin.ticks.length > 1 ? lin.ticks[1] - lin.ticks[0] : 1;
  const ticks = lin.ticks.filter((t) => t >= min && t <= max);
  return { min, max, ticks, labels: ticks.map((t) => formatNumber(t, step)), log: true };
}

// ---- data ----

function ema(points: Array<[number, number]>, f: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let s = 0;
  let w = 0;
  for (const [x, y] of points) {
    s = f * s + (1 - f) * y;
    w = f * w + (1 - f);
    out.push([x, s / w]);
  }
  return out;
}

/** Keeps at most ~4 points per pixel column (first, min, max, last in x order). */
function decimate(points: Array<[number, number]>, xmin: number, xmax: number, columns: number) {
  if (points.length <= columns * 4) return points;
  const out: Array<[number, number]> = [];
  let i = 0;
  while (i < points.length) {
    const col = Math.floor(((points[i][0] - xmin) / (xmax - xmin || 1)) * columns);
    let j = i;
    let lo = i;
    let hi = i;
    while (j < points.length && Math.floor(((points[j][0] - xmin) / (xmax - xmin || 1)) * columns) === col) {
      if (points[j][1] < points[lo][1]) lo = j;
      if (points[j][1] > points[hi][1]) hi = j;
      j++;
    }
    const keep = [...new Set([i, lo, hi, j - 1])].sort((p, q) => p - q);
    for (const k of keep) out.push(points[k]);
    i = j;
  }
  return out;
}

const fmt = (v: number) => (Math.round(v * 100) / 100).toString();
/** A 1-px line's coordinate on a pixel centre (crisp, not smeared over two pixels), kept in [lo, hi). */
const crisp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi - 1, Math.floor(v))) + 0.5;

/** A PNG line chart of the series (loss curves and the like). */
export async function lineChartPng(series: LineSeries[], options: LineChartOptions): Promise<Buffer> {
  const W = Math.round(options.width ?? 800);
  const H = Math.round(options.height ?? 480);
  if (!(W >= 120 && H >= 100 && W <= 10000 && H <= 10000)) {
    throw new Error(`chart size must be between 120×100 and 10000×10000, got ${W}×${H}`);
  }
  const logY = options.logY ?? false;
  const smooth = options.smooth ?? 0;
  if (!(smooth >= 0 && smooth < 1)) throw new Error(`smooth must be in [0, 1), got ${smooth}`);
  const factors = series.map((s) => {
    const f = s.smooth ?? smooth;
    if (!(f >= 0 && f < 1)) throw new Error(`series "${s.name}": smooth must be in [0, 1), got ${f}`);
    return f;
  });
  const colors = series.map((s, i) => {
    const c = s.color ?? PALETTE[i % PALETTE.length];
    if (!COLOR_RE.test(c)) throw new Error(`series "${s.name}": invalid colour ${JSON.stringify(c)}`);
    return c;
  });

  // Clean points: finite, y > 0 for log, sorted by x.
  const clean = series.map((s) =>
    s.points
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0))
      .sort((p, q) => p[0] - q[0]),
  );
  const smoothed = clean.map((pts, i) => (factors[i] > 0 ? ema(pts, factors[i]) : null));
  const all = clean.flat();
  const hasData = all.length > 0;

  let xmin = Number.POSITIVE_INFINITY;
  let xmax = Number.NEGATIVE_INFINITY;
  let ymin = Number.POSITIVE_INFINITY;
  let ymax = Number.NEGATIVE_INFINITY;
  for (const [x, y] of all) {
    xmin = Math.min(xmin, x);
    xmax = Math.max(xmax, x);
    ymin = Math.min(ymin, y);
    ymax = Math.max(ymax, y);
  }
  if (!hasData) {
    xmin = 0;
    xmax = 1;
    ymin = logY ? 1 : 0;
    ymax = logY ? 10 : 1;
  }
  const xInteger = hasData && all.every(([x]) => Number.isInteger(x));
  const xAxis = linearAxis(xmin, xmax, xInteger);
  const yAxis = logY ? logAxis(ymin, ymax) : linearAxis(ymin, ymax, false);

  // Text first: its sizes decide the margins.
  const fontSize = Math.max(10, Math.min(14, Math.round(Math.min(W, H) / 40)));
  const [title, xLabel, yLabelFlat, yTicks, xTicks, names, noData] = await Promise.all([
    renderText(options.title, fontSize + 3),
    renderText(options.xLabel, fontSize),
    renderText(options.yLabel, fontSize),
    Promise.all(yAxis.labels.map((l) => renderText(l, fontSize - 1))),
    Promise.all(xAxis.labels.map((l) => renderText(l, fontSize - 1))),
    Promise.all(series.map((s) => renderText(s.name, fontSize - 1))),
    hasData ? Promise.resolve(null) : renderText('no data', fontSize + 2, '#888888'),
  ]);
  let yLabel: Text | null = null;
  if (yLabelFlat) {
    const { data, info } = await sharp(yLabelFlat.png).rotate(270).png().toBuffer({ resolveWithObject: true });
    yLabel = { png: data, width: info.width, height: info.height };
  }

  const tickLen = 5;
  const gap = 4;
  const maxYTick = Math.max(0, ...yTicks.map((t) => t?.width ?? 0));
  const xTickH = Math.max(0, ...xTicks.map((t) => t?.height ?? 0));
  const left = Math.min(Math.round(W * 0.4), 8 + (yLabel ? yLabel.width + gap : 0) + maxYTick + gap + tickLen);
  const top = Math.min(Math.round(H * 0.3), 8 + (title ? title.height + 6 : 0));
  const lastXTickHalf = (xTicks[xTicks.length - 1]?.width ?? 0) / 2;
  const right = W - Math.max(16, Math.ceil(lastXTickHalf) + 6);
  const bottom = H - Math.min(Math.round(H * 0.4), 8 + (xLabel ? xLabel.height + gap : 0) + xTickH + gap + tickLen);
  const pw = right - left;
  const ph = bottom - top;

  const px = (x: number) => left + ((x - xAxis.min) / (xAxis.max - xAxis.min)) * pw;
  const py = logY
    ? (y: number) =>
        bottom - ((Math.log10(y) - Math.log10(yAxis.min)) / (Math.log10(yAxis.max) - Math.log10(yAxis.min))) * ph
    : (y: number) => bottom - ((y - yAxis.min) / (yAxis.max - yAxis.min)) * ph;

  const svg: string[] = [];
  svg.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`);
  svg.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  svg.push(`<defs><clipPath id="plot"><rect x="${left}" y="${top}" width="${pw}" height="${ph}"/></clipPath></defs>`);
  const layers: Array<Promise<OverlayOptions | null>> = [];

  // grid, ticks and tick labels
  yAxis.ticks.forEach((t, i) => {
    const y = py(t);
    if (y < top - 0.5 || y > bottom + 0.5) return;
    const cy = crisp(y, top, bottom);
    svg.push(`<line x1="${left}" y1="${cy}" x2="${right}" y2="${cy}" stroke="${GRID_COLOR}" stroke-width="1"/>`);
    svg.push(
      `<line x1="${left - tickLen}" y1="${cy}" x2="${left}" y2="${cy}" stroke="${AXIS_COLOR}" stroke-width="1"/>`,
    );
    const label = yTicks[i];
    if (label) layers.push(place(label, left - tickLen - gap - label.width, y - label.height / 2, W, H));
  });
  xAxis.ticks.forEach((t, i) => {
    const x = px(t);
    const cx = crisp(x, left, right);
    svg.push(`<line x1="${cx}" y1="${top}" x2="${cx}" y2="${bottom}" stroke="${GRID_COLOR}" stroke-width="1"/>`);
    svg.push(
      `<line x1="${cx}" y1="${bottom}" x2="${cx}" y2="${bottom + tickLen}" stroke="${AXIS_COLOR}" stroke-width="1"/>`,
    );
    const label = xTicks[i];
    if (label) layers.push(place(label, x - label.width / 2, bottom + tickLen + gap, W, H));
  });
  // axes box
  svg.push(
    `<rect x="${left + 0.5}" y="${top + 0.5}" width="${pw - 1}" height="${ph - 1}" fill="none" stroke="${AXIS_COLOR}" stroke-width="1"/>`,
  );

  // curves
  const lineWidth = Math.max(1.5, Math.min(W, H) / 300);
  const drawCurve = (pts: Array<[number, number]>, color: string, opacity: number, width: number) => {
    if (pts.length === 0) return;
    if (pts.length === 1) {
      svg.push(
        `<circle cx="${fmt(px(pts[0][0]))}" cy="${fmt(py(pts[0][1]))}" r="${fmt(width + 2)}" fill="${color}" fill-opacity="${opacity}" clip-path="url(#plot)"/>`,
      );
      return;
    }
    const reduced = decimate(pts, xAxis.min, xAxis.max, pw);
    const coords = reduced.map(([x, y]) => `${fmt(px(x))},${fmt(py(y))}`).join(' ');
    svg.push(
      `<polyline points="${coords}" fill="none" stroke="${color}" stroke-opacity="${opacity}" stroke-width="${fmt(width)}" stroke-linejoin="round" stroke-linecap="round" clip-path="url(#plot)"/>`,
    );
  };
  const drawn: Array<Array<[number, number]>> = [];
  clean.forEach((pts, i) => {
    const sm = smoothed[i];
    drawCurve(pts, colors[i], sm ? 0.3 : 1, sm ? lineWidth * 0.8 : lineWidth);
    drawn.push(pts);
    if (sm) {
      drawCurve(sm, colors[i], 1, lineWidth);
      drawn.push(sm);
    }
  });

  // legend: the plot corner with the fewest points under it
  const legendItems = series.map((_, i) => ({ name: names[i], color: colors[i] })).filter((it) => it.name);
  if (legendItems.length > 0) {
    const rowH = Math.max(...legendItems.map((it) => it.name?.height ?? 0)) + 4;
    const swatch = 22;
    const lw = Math.min(pw - 8, 8 + swatch + 6 + Math.max(...legendItems.map((it) => it.name?.width ?? 0)) + 8);
    const lh = Math.min(ph - 8, 6 + rowH * legendItems.length + 2);
    const corners = [
      [right - lw - 6, top + 6],
      [left + 6, top + 6],
      [right - lw - 6, bottom - lh - 6],
      [left + 6, bottom - lh - 6],
    ];
    // Ink under each corner: the drawn curves sampled every ~3 px along each segment.
    const counts = corners.map(() => 0);
    const hit = (x: number, y: number) => {
      corners.forEach((c, k) => {
        if (x >= c[0] - 4 && x <= c[0] + lw + 4 && y >= c[1] - 4 && y <= c[1] + lh + 4) counts[k]++;
      });
    };
    for (const pts of drawn) {
      const reduced = decimate(pts, xAxis.min, xAxis.max, pw);
      let prev: [number, number] | null = null;
      for (const [x, y] of reduced) {
        const p: [number, number] = [px(x), py(y)];
        if (prev) {
          const steps = Math.min(200, Math.ceil(Math.hypot(p[0] - prev[0], p[1] - prev[1]) / 3));
          for (let k = 1; k <= steps; k++)
            hit(prev[0] + ((p[0] - prev[0]) * k) / steps, prev[1] + ((p[1] - prev[1]) * k) / steps);
        } else hit(p[0], p[1]);
        prev = p;
      }
    }
    let best = corners[0];
    let bestCount = Number.POSITIVE_INFINITY;
    corners.forEach((c, k) => {
      if (counts[k] < bestCount) {
        bestCount = counts[k];
        best = c;
      }
    });
    const [lx, ly] = best;
    svg.push(
      `<rect x="${fmt(lx)}" y="${fmt(ly)}" width="${fmt(lw)}" height="${fmt(lh)}" fill="#ffffff" fill-opacity="0.9" stroke="#cccccc" stroke-width="1" rx="3"/>`,
    );
    legendItems.forEach((it, i) => {
      const cy = ly + 6 + rowH * i + rowH / 2;
      if (cy > ly + lh) return;
      svg.push(
        `<line x1="${fmt(lx + 8)}" y1="${fmt(cy)}" x2="${fmt(lx + 8 + swatch)}" y2="${fmt(cy)}" stroke="${it.color}" stroke-width="${fmt(Math.max(2.5, lineWidth))}"/>`,
      );
      if (it.name) {
        const textLeft = lx + 8 + swatch + 6;
        layers.push(place(it.name, textLeft, cy - it.name.height / 2, W, H, lx + lw - 4 - textLeft));
      }
    });
  }
  svg.push('</svg>');

  // titles
  if (title) layers.push(place(title, left + pw / 2 - title.width / 2, 6, W, H));
  if (xLabel) layers.push(place(xLabel, left + pw / 2 - xLabel.width / 2, H - 6 - xLabel.height, W, H));
  if (yLabel) layers.push(place(yLabel, 6, top + ph / 2 - yLabel.height / 2, W, H));
  if (noData) layers.push(place(noData, left + pw / 2 - noData.width / 2, top + ph / 2 - noData.height / 2, W, H));

  const overlays = (await Promise.all(layers)).filter((o): o is OverlayOptions => o !== null);
  const base = await sharp(Buffer.from(svg.join('\n')), { density: 72 })
    .flatten({ background: '#ffffff' })
    .png()
    .toBuffer({ resolveWithObject: true });
  if (base.info.width !== W || base.info.height !== H) {
    throw new Error(`chart rendered at ${base.info.width}×${base.info.height}, expected ${W}×${H}`);
  }
  const composed = await sharp(base.data).composite(overlays).raw().toBuffer({ resolveWithObject: true });
  return sharp(composed.data, { raw: { width: W, height: H, channels: composed.info.channels } })
    .flatten({ background: '#ffffff' })
    .removeAlpha()
    .png({ compressionLevel: 9 })
    .toBuffer();
}
