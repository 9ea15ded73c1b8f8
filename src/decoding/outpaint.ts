// Outpainting beyond the model's native grid: the canvas grows by whole token rows and columns, and the
// new tokens are generated window by window. Windows have the model's grid size and sit on a lattice
// of half-window strides anchored at the original image, so the original grid is one window and every
// other window overlaps tokens that are already known; windows nearest the original go first.
import { MuseError } from '../util/errors.js';

/** Token rows/columns added on each side. */
export interface Extension {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

export interface TokenCanvas {
  /** [batch, height, width] row-major; unknown positions hold the mask id. */
  tokens: Int32Array;
  batch: number;
  height: number;
  width: number;
}

export function validateExtension(e: Extension): Extension {
  for (const side of ['top', 'bottom', 'left', 'right'] as const) {
    const v = e[side];
    if (!Number.isInteger(v) || v < 0) throw new MuseError(`outpaint: ${side} must be a whole number ≥ 0, got ${v}`);
  }
  if (e.top + e.bottom + e.left + e.right === 0) throw new MuseError('outpaint: extend at least one side');
  return e;
}

/** The grids [batch, h, w] placed on a larger canvas; new positions hold maskId. */
export function extendCanvas(
  tokens: Int32Array,
  batch: number,
  h: number,
  w: number,
  e: Extension,
  maskId: number,
): TokenCanvas {
  validateExtension(e);
  if (tokens.length !== batch * h * w)
    throw new MuseError(`${tokens.length} tokens are not ${batch} grids of ${h}×${w}`);
  const height = h + e.top + e.bottom;
  const width = w + e.left + e.right;
  const out = new Int32Array(batch * height * width).fill(maskId);
  for (let b = 0; b < batch; b++) {
    for (let y = 0; y < h; y++) {
      const src = (b * h + y) * w;
      out.set(tokens.subarray(src, src + w), (b * height + y + e.top) * width + e.left);
    }
  }
  return { tokens: out, batch, height, width };
}

function latticeOffsets(origin: number, stride: number, last: number): number[] {
  const offsets = new Set<number>();
  for (let o = origin; o > -stride; o -= stride) offsets.add(Math.max(0, o));
  for (let o = origin; o < last + stride; o += stride) offsets.add(Math.min(last, o));
  return [...offsets].sort((a, b) => a - b);
}

/**
 * Window positions (top-left, in tokens) covering a canvas of height×width with windows of the
 * model's grid, ordered by lattice distance from the original image at (top, left).
 */
export function outpaintWindows(
  height: number,
  width: number,
  grid: [number, number],
  origin: { row: number; col: number },
): Array<{ row: number; col: number }> {
  const [h, w] = grid;
  if (height < h || width < w) throw new MuseError(`a ${height}×${width} canvas is smaller than the ${h}×${w} window`);
  const rows = latticeOffsets(origin.row, Math.max(1, Math.floor(h / 2)), height - h);
  const cols = latticeOffsets(origin.col, Math.max(1, Math.floor(w / 2)), width - w);
  const windows = rows.flatMap((row) => cols.map((col) => ({ row, col })));
  const distance = (x: { row: number; col: number }) => {
    const dy = Math.abs(x.row - origin.row) / h;
    const dx = Math.abs(x.col - origin.col) / w;
    return [Math.max(dy, dx), dy + dx];
  };
  return windows.sort((a, b) => {
    const [da, sa] = distance(a);
    const [db, sb] = distance(b);
    return da - db || sa - sb || a.row - b.row || a.col - b.col;
  });
}

/** Copies the h×w window at (row, col) out of (or back into) every canvas of the batch. */
export function windowTokens(c: TokenCanvas, row: number, col: number, grid: [number, number]): Int32Array {
  const [h, w] = grid;
  const out = new Int32Array(c.batch * h * w);
  for (let b = 0; b < c.batch; b++) {
    for (let y = 0; y < h; y++) {
      const src = (b * c.height + row + y) * c.width + col;
      out.set(c.tokens.subarray(src, src + w), (b * h + y) * w);
    }
  }
  return out;
}

function writeWindow(c: TokenCanvas, row: number, col: number, grid: [number, number], window: Int32Array): void {
  const [h, w] = grid;
  for (let b = 0; b < c.batch; b++) {
    for (let y = 0; y < h; y++) {
      const src = (b * h + y) * w;
      c.tokens.set(window.subarray(src, src + w), (b * c.height + row + y) * c.width + col);
    }
  }
}

/**
 * The windows of outpaintWindows that hold a masked position of the canvas as it is now, in order;
 * outpaintCanvas decodes these (less any that earlier windows fill completely).
 */
export function windowsToFill(
  canvas: TokenCanvas,
  grid: [number, number],
  origin: { row: number; col: number },
  maskId: number,
): Array<{ row: number; col: number }> {
  return outpaintWindows(canvas.height, canvas.width, grid, origin).filter((x) =>
    windowTokens(canvas, x.row, x.col, grid).includes(maskId),
  );
}

/**
 * Fills every masked position of the canvas, window by window: `decodeWindow` gets the window's
 * tokens ([batch, h·w], unknown = maskId) and returns them with the unknown ones decoded; `place`
 * shows a window's tokens on (a copy of) the canvas so far, for progress pictures.
 */
export async function outpaintCanvas(
  canvas: TokenCanvas,
  grid: [number, number],
  origin: { row: number; col: number },
  maskId: number,
  decodeWindow: (
    window: Int32Array,
    index: number,
    count: number,
    place: (window: Int32Array) => TokenCanvas,
    at: { row: number; col: number },
  ) => Promise<Int32Array>,
): Promise<TokenCanvas> {
  const out: TokenCanvas = { ...canvas, tokens: Int32Array.from(canvas.tokens) };
  const windows = windowsToFill(canvas, grid, origin, maskId);
  for (let i = 0; i < windows.length; i++) {
    const { row, col } = windows[i];
    const before = windowTokens(out, row, col, grid);
    if (!before.includes(maskId)) continue;
    const place = (win: Int32Array) => {
      const copy = { ...out, tokens: Int32Array.from(out.tokens) };
      writeWindow(copy, row, col, grid, win);
      return copy;
    };
    const after = await decodeWindow(before, i, windows.length, place, { row, col });
    for (let j = 0; j < before.length; j++) {
      if (before[j] !== maskId && after[j] !== before[j]) throw new Error('outpaint: a known token changed');
    }
    writeWindow(out, row, col, grid, after);
  }
  if (out.tokens.includes(maskId)) throw new Error('outpaint: windows left tokens undecoded');
  return out;
}
