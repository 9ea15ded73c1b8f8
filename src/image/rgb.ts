// Images as plain typed arrays, and their conversion to the tokenizer's range: no dependency, so the
// core (tokenizer, pipeline) runs in browsers too. Decoding and encoding files: image.ts (sharp, Node),
// png.ts (pure PNG encoder) and browser-image.ts (canvas).

/** An 8-bit RGB image, row-major, 3 bytes per pixel. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** A pixel mask: 1 = regenerate, 0 = keep; width·height bytes. */
export interface PixelMask {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Pixels as floats in [-1, 1], HWC (the tokenizer's input range). */
export function toUnitRange(img: RgbImage): Float32Array {
  const out = new Float32Array(img.data.length);
  for (let i = 0; i < out.length; i++) out[i] = img.data[i] / 127.5 - 1;
  return out;
}

/** Floats in [-1, 1] (HWC) back to 8-bit RGB, clamped. */
export function fromUnitRange(values: Float32Array, width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.min(255, Math.round((values[i] + 1) * 127.5)));
  return { width, height, data };
}
