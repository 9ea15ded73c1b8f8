// PNG line charts (loss curves written during training): one SVG document — scales, nice ticks and
// line paths from d3-scale and d3-shape, every piece of text as glyph outlines of DejaVu Sans (the
// dejavu-fonts-ttf npm package, read with opentype.js) so that no system font (fontconfig) is ever
// used — rasterised by sharp (librsvg). What is ours: the series/options API, the smoothing, the
// colours, the layout and our limits. Node-only (sharp, node:fs): never reached from src/browser.ts.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { type ScaleLinear, type ScaleLogarithmic, scaleLinear, scaleLog } from 'd3-scale';
import { line } from 'd3-shape';
import opentype from 'opentype.js';
import sharp from 'sharp';

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

let font: opentype.Font | undefined;
function dejaVuSans(): opentype.Font {
  if (!font) {
    const file = createRequire(import.meta.url).resolve('dejavu-fonts-ttf/ttf/DejaVuSans.ttf');
    const b = readFileSync(file);
    font = opentype.parse(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  }
  return font;
}

const fmt = (v: number) => (Math.round(v * 100) / 100).toString();
const attr = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** One line of text at `px` pixels, measured; `at` draws it as glyph outlines (aria-label: the text). */
interface Text {
  width: number;
  height: number;
  /** SVG for the text with its box's top-left corner at (x, y). */
  at(x: number, y: number, color?: string, extra?: string): string;
}
function text(raw: string, px: number): Text | null {
  const s = raw.replace(/[\r\n\t]+/g, ' ').trim();
  if (!s) return null;
  const f = dejaVuSans();
  const scale = px / f.unitsPerEm;
  const ascent = f.ascender * scale;
  return {
    width: f.getAdvanceWidth(s, px),
    height: Math.ceil((f.ascender - f.descender) * scale),
    at: (x, y, color = TEXT_COLOR, extra = '') =>
      `<path aria-label="${attr(s)}" fill="${color}"${extra} d="${f.getPath(s, x, y + ascent, px).toPathData(2)}"/>`,
  };
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

/** Keeps at most ~4 points per pixel column (first, min, max, last in x order): bounded SVG size. */
function decimate(points: Array<[number, number]>, column: (x: number) => number, columns: number) {
  if (points.length <= columns * 4) return points;
  const out: Array<[number, number]> = [];
  let i = 0;
  while (i < points.length) {
    const col = Math.floor(column(points[i][0]));
    let j = i;
    let lo = i;
    let hi = i;
    while (j < points.length && Math.floor(column(points[j][0])) === col) {
      if (points[j][1] < points[lo][1]) lo = j;
      if (points[j][1] > points[hi][1]) hi = j;
      j++;
    }
    for (const k of [...new Set([i, lo, hi, j - 1])].sort((p, q) => p - q)) out.push(points[k]);
    i = j;
  }
  return out;
}

// ---- axes ----

type Scale = ScaleLinear<number, number> | ScaleLogarithmic<number, number>;

/** A linear scale over [lo, hi] widened to nice ticks (integer ticks only when every x is an integer). */
function linearAxis(lo: number, hi: number, integer: boolean): { scale: Scale; ticks: number[]; labels: string[] } {
  if (lo === hi) {
    const d = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= d;
    hi += d;
  }
  const scale = scaleLinear().domain([lo, hi]).nice(5);
  let ticks = scale.ticks(5);
  if (integer && ticks.some((t) => !Number.isInteger(t))) ticks = ticks.filter(Number.isInteger);
  const big = Math.max(...scale.domain().map(Math.abs));
  const format = integer ? String : scale.tickFormat(5, big >= 1e6 || big < 1e-3 ? '~e' : undefined);
  return { scale, ticks, labels: ticks.map((t) => (t === 0 ? '0' : format(t).replace('e+', 'e'))) };
}

/** A log scale over [lo, hi] (both > 0): whole decades when the data spans one or more, else padded 5%. */
function logAxis(lo: number, hi: number): { scale: Scale; ticks: number[]; labels: string[] } {
  let a = Math.log10(lo);
  let b = Math.log10(hi);
  if (b - a < 1e-9) {
    a -= 0.5;
    b += 0.5;
  }
  const pad = b - a < 1 ? (b - a) * 0.05 : 0;
  const scale = scaleLog()
    .domain([10 ** (a - pad), 10 ** (b + pad)])
    .clamp(false);
  if (b - a >= 1) scale.nice();
  const ticks = scale.ticks(6);
  // tickFormat(count) blanks the labels of minor ticks when there are many: drop those ticks.
  const format = scale.tickFormat(6, '~g');
  const labelled = ticks.filter((t) => format(t) !== '');
  const short = (t: number) => (t >= 1e6 || t < 1e-3 ? t.toExponential().replace('e+', 'e') : format(t));
  return { scale, ticks: labelled, labels: labelled.map(short) };
}

/** Smallest and largest value (a loop: spreading a long run's history into Math.min overflows the stack). */
function extent(values: number[]): [number, number] {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/** A 1-px line's coordinate on a pixel centre (crisp, not smeared over two pixels), kept in [lo, hi). */
const crisp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi - 1, Math.floor(v))) + 0.5;

/** The chart as an SVG document (text as outlines labelled with aria-label): what `lineChartPng` rasterises. */
export function lineChartSvg(series: LineSeries[], options: LineChartOptions): string {
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
  const all = clean.flat();
  const hasData = all.length > 0;
  const xs = hasData ? all.map(([x]) => x) : [0, 1];
  const ys = hasData ? all.map(([, y]) => y) : logY ? [1, 10] : [0, 1];
  const [xmin, xmax] = extent(xs);
  const [ymin, ymax] = extent(ys);
  const xAxis = linearAxis(xmin, xmax, hasData && xs.every(Number.isInteger));
  const yAxis = logY ? logAxis(ymin, ymax) : linearAxis(ymin, ymax, false);

  // Text first: its sizes decide the margins.
  const fontSize = Math.max(10, Math.min(14, Math.round(Math.min(W, H) / 40)));
  const title = text(options.title, fontSize + 3);
  const xLabel = text(options.xLabel, fontSize);
  const yLabel = text(options.yLabel, fontSize);
  const yTicks = yAxis.labels.map((l) => text(l, fontSize - 1));
  const xTicks = xAxis.labels.map((l) => text(l, fontSize - 1));
  const tickLen = 5;
  const gap = 4;
  const maxYTick = Math.max(0, ...yTicks.map((t) => t?.width ?? 0));
  const xTickH = Math.max(0, ...xTicks.map((t) => t?.height ?? 0));
  const left = Math.round(Math.min(W * 0.4, 8 + (yLabel ? yLabel.height + gap : 0) + maxYTick + gap + tickLen));
  const top = Math.round(Math.min(H * 0.3, 8 + (title ? title.height + 6 : 0)));
  const right = W - Math.max(16, Math.ceil((xTicks[xTicks.length - 1]?.width ?? 0) / 2) + 6);
  const bottom = H - Math.round(Math.min(H * 0.4, 8 + (xLabel ? xLabel.height + gap : 0) + xTickH + gap + tickLen));
  const pw = right - left;
  const ph = bottom - top;
  const px = xAxis.scale.copy().range([left, right]);
  const py = yAxis.scale.copy().range([bottom, top]);

  const svg: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`,
    `<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`,
    `<defs><clipPath id="plot"><rect x="${left}" y="${top}" width="${pw}" height="${ph}"/></clipPath></defs>`,
  ];
  const hLine = (x1: number, x2: number, y: number, c: string) =>
    `<line x1="${x1}" y1="${y}" x2="${x2}" y2="${y}" stroke="${c}" stroke-width="1"/>`;
  const vLine = (x: number, y1: number, y2: number, c: string) =>
    `<line x1="${x}" y1="${y1}" x2="${x}" y2="${y2}" stroke="${c}" stroke-width="1"/>`;

  // grid, ticks and tick labels
  yAxis.ticks.forEach((t, i) => {
    const y = py(t);
    if (!(y >= top - 0.5 && y <= bottom + 0.5)) return;
    const cy = crisp(y, top, bottom);
    svg.push(hLine(left, right, cy, GRID_COLOR), hLine(left - tickLen, left, cy, AXIS_COLOR));
    const label = yTicks[i];
    if (label) svg.push(label.at(Math.max(0, left - tickLen - gap - label.width), y - label.height / 2));
  });
  xAxis.ticks.forEach((t, i) => {
    const x = px(t);
    const cx = crisp(x, left, right);
    svg.push(vLine(cx, top, bottom, GRID_COLOR), vLine(cx, bottom, bottom + tickLen, AXIS_COLOR));
    const label = xTicks[i];
    if (label) svg.push(label.at(Math.min(W - label.width, x - label.width / 2), bottom + tickLen + gap));
  });
  svg.push(
    `<rect x="${left + 0.5}" y="${top + 0.5}" width="${pw - 1}" height="${ph - 1}" fill="none" stroke="${AXIS_COLOR}" stroke-width="1"/>`,
  );

  // curves: the raw points, faint under their EMA overlay when the series is smoothed
  const lineWidth = Math.max(1.5, Math.min(W, H) / 300);
  const path = line<[number, number]>()
    .x(([x]) => px(x))
    .y(([, y]) => py(y))
    .digits(2);
  const drawn: Array<Array<[number, number]>> = [];
  const drawCurve = (pts: Array<[number, number]>, color: string, opacity: number, width: number) => {
    if (pts.length === 1) {
      svg.push(
        `<circle cx="${fmt(px(pts[0][0]))}" cy="${fmt(py(pts[0][1]))}" r="${fmt(width + 2)}" fill="${color}" fill-opacity="${opacity}" clip-path="url(#plot)"/>`,
      );
    } else if (pts.length > 1) {
      const reduced = decimate(pts, (x) => px(x) - left, pw);
      drawn.push(reduced);
      svg.push(
        `<path d="${path(reduced)}" fill="none" stroke="${color}" stroke-opacity="${opacity}" stroke-width="${fmt(width)}" stroke-linejoin="round" stroke-linecap="round" clip-path="url(#plot)"/>`,
      );
    }
  };
  clean.forEach((pts, i) => {
    const sm = factors[i] > 0 ? ema(pts, factors[i]) : null;
    drawCurve(pts, colors[i], sm ? 0.3 : 1, sm ? lineWidth * 0.8 : lineWidth);
    if (sm) drawCurve(sm, colors[i], 1, lineWidth);
  });

  // legend: in the plot corner with the least ink under it
  const items = series
    .map((s, i) => ({ name: text(s.name, fontSize - 1), color: colors[i] }))
    .filter((it): it is { name: Text; color: string } => it.name !== null);
  if (items.length > 0) {
    const rowH = Math.max(...items.map((it) => it.name.height)) + 4;
    const swatch = 22;
    const lw = Math.min(pw - 8, 8 + swatch + 6 + Math.max(...items.map((it) => it.name.width)) + 8);
    const lh = Math.min(ph - 8, 6 + rowH * items.length + 2);
    const corners = [
      [right - lw - 6, top + 6],
      [left + 6, top + 6],
      [right - lw - 6, bottom - lh - 6],
      [left + 6, bottom - lh - 6],
    ];
    // Ink under each corner: the drawn curves sampled every ~3 px along each segment.
    const counts = corners.map(() => 0);
    const hit = (x: number, y: number) =>
      corners.forEach(([cx, cy], k) => {
        if (x >= cx - 4 && x <= cx + lw + 4 && y >= cy - 4 && y <= cy + lh + 4) counts[k]++;
      });
    for (const pts of drawn) {
      for (let k = 1; k < pts.length; k++) {
        const [x0, y0, x1, y1] = [px(pts[k - 1][0]), py(pts[k - 1][1]), px(pts[k][0]), py(pts[k][1])];
        const steps = Math.min(200, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / 3));
        for (let s = 0; s <= steps; s++) hit(x0 + ((x1 - x0) * s) / (steps || 1), y0 + ((y1 - y0) * s) / (steps || 1));
      }
    }
    const [lx, ly] = corners[counts.indexOf(Math.min(...counts))];
    svg.push(
      `<clipPath id="legend"><rect x="${fmt(lx)}" y="${fmt(ly)}" width="${fmt(lw - 4)}" height="${fmt(lh)}"/></clipPath>`,
      `<rect x="${fmt(lx)}" y="${fmt(ly)}" width="${fmt(lw)}" height="${fmt(lh)}" fill="#ffffff" fill-opacity="0.9" stroke="#cccccc" stroke-width="1" rx="3"/>`,
    );
    items.forEach((it, i) => {
      const cy = ly + 6 + rowH * i + rowH / 2;
      if (cy > ly + lh) return;
      svg.push(
        `<line x1="${fmt(lx + 8)}" y1="${fmt(cy)}" x2="${fmt(lx + 8 + swatch)}" y2="${fmt(cy)}" stroke="${it.color}" stroke-width="${fmt(Math.max(2.5, lineWidth))}"/>`,
        it.name.at(lx + 8 + swatch + 6, cy - it.name.height / 2, TEXT_COLOR, ' clip-path="url(#legend)"'),
      );
    });
  }

  // titles
  if (title) svg.push(title.at(Math.max(0, left + pw / 2 - title.width / 2), 6));
  if (xLabel) svg.push(xLabel.at(left + pw / 2 - xLabel.width / 2, H - 6 - xLabel.height));
  if (yLabel) {
    // drawn flat at the origin, then turned a quarter anticlockwise into the left margin
    const [cx, cy] = [6, top + ph / 2 + yLabel.width / 2];
    svg.push(yLabel.at(0, 0, TEXT_COLOR, ` transform="translate(${fmt(cx)} ${fmt(cy)}) rotate(-90)"`));
  }
  if (!hasData) {
    const noData = text('no data', fontSize + 2);
    if (noData) svg.push(noData.at(left + pw / 2 - noData.width / 2, top + ph / 2 - noData.height / 2, '#888888'));
  }
  svg.push('</svg>');
  return svg.join('\n');
}

/** A PNG line chart of the series (loss curves and the like). */
export async function lineChartPng(series: LineSeries[], options: LineChartOptions): Promise<Buffer> {
  const svg = lineChartSvg(series, options);
  const { data, info } = await sharp(Buffer.from(svg), { density: 72 })
    .flatten({ background: '#ffffff' })
    .png({ compressionLevel: 9 })
    .toBuffer({ resolveWithObject: true });
  const [W, H] = [Math.round(options.width ?? 800), Math.round(options.height ?? 480)];
  if (info.width !== W || info.height !== H) {
    throw new Error(`chart rendered at ${info.width}×${info.height}, expected ${W}×${H}`);
  }
  return data;
}
