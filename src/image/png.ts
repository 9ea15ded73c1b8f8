// A PNG encoder with no dependency (the browser bundle's; Node uses sharp in image.ts): 8-bit RGB,
// filter 0 on every row, the zlib stream from CompressionStream('deflate') where the platform has it
// (browsers, Node ≥ 18) or stored (uncompressed) deflate blocks otherwise.
import type { RgbImage } from './rgb.js';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array, crc = 0xffffffff): number {
  let c = crc;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function adler32(bytes: Uint8Array): number {
  let a = 1;
  let b = 0;
  for (let i = 0; i < bytes.length; i += 5552) {
    const end = Math.min(i + 5552, bytes.length);
    for (let j = i; j < end; j++) {
      a += bytes[j];
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  return ((b << 16) | a) >>> 0;
}

/** A zlib stream of stored deflate blocks (no compression). */
export function zlibStored(raw: Uint8Array): Uint8Array {
  const blocks = Math.max(1, Math.ceil(raw.length / 65535));
  const out = new Uint8Array(2 + raw.length + blocks * 5 + 4);
  const view = new DataView(out.buffer);
  out[0] = 0x78;
  out[1] = 0x01;
  let at = 2;
  for (let b = 0; b < blocks; b++) {
    const start = b * 65535;
    const len = Math.min(65535, raw.length - start);
    out[at] = b === blocks - 1 ? 1 : 0;
    view.setUint16(at + 1, len, true);
    view.setUint16(at + 3, ~len & 0xffff, true);
    out.set(raw.subarray(start, start + len), at + 5);
    at += 5 + len;
  }
  view.setUint32(at, adler32(raw));
  return out;
}

async function zlibCompressed(raw: Uint8Array): Promise<Uint8Array> {
  const Stream = (globalThis as { CompressionStream?: typeof CompressionStream }).CompressionStream;
  if (!Stream) return zlibStored(raw);
  const stream = new Blob([raw as BlobPart]).stream().pipeThrough(new Stream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function scanlines(img: RgbImage): Uint8Array {
  const row = img.width * 3;
  const raw = new Uint8Array((row + 1) * img.height);
  for (let y = 0; y < img.height; y++) raw.set(img.data.subarray(y * row, (y + 1) * row), y * (row + 1) + 1);
  return raw;
}

function assemble(img: RgbImage, idat: Uint8Array): Uint8Array {
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, img.width);
  view.setUint32(4, img.height);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, adaptive filtering, no interlace
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', idat),
    chunk('IEND', new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** PNG bytes of an image, uncompressed (synchronous). */
export function encodePngStored(img: RgbImage): Uint8Array {
  return assemble(img, zlibStored(scanlines(img)));
}

/** PNG bytes of an image (deflate-compressed where CompressionStream exists). */
export async function encodePngPure(img: RgbImage): Promise<Uint8Array> {
  return assemble(img, await zlibCompressed(scanlines(img)));
}
