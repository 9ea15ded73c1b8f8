// Starting the tensor backend in a browser: the wasm package's own factory (threaded when the page is
// cross-origin isolated, SIMD otherwise; the .wasm files fetched from `wasmPaths` or beside the
// bundle), WebGPU from navigator.gpu, gradient definitions from tfjs-core's ESM build.
import { setThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import type { WasmModule } from './wasm-node-threads.js';

export const isNode = false;

// The default thread count: half the logical cores, as tfjs-wasm itself picks (browser pthreads on the
// page's main thread spin while they wait; measured here on 2 shared cores, 2 threads took a 64 px
// emoji generation from 3.1–4.4 s to 7.9–12.8 s, so more is only worth it where cores are idle).
export async function cores(): Promise<number> {
  return Math.max(1, Math.floor((globalThis.navigator?.hardwareConcurrency ?? 1) / 2));
}

export async function nativeAvailable(): Promise<boolean> {
  return false;
}

let wasmPaths: string | undefined;

/** Where the tfjs-backend-wasm*.wasm files are (a URL prefix ending in "/"); default: beside the bundle. */
export function setWasmLocation(prefix: string): void {
  wasmPaths = prefix;
}

/**
 * The threaded build sizes its worker pool and caps its thread count at hardwareConcurrency / 2, both
 * read while the module starts (measured in Chromium here: 2 cores gave 1 thread). As under Node
 * (wasm-node-threads.ts), the count it reads is made 2 × threads for that moment: wasmStarted undoes it.
 */
export async function registerWasm(threads: number, _started: (m: WasmModule) => void): Promise<void> {
  setWasmPaths(wasmPaths ?? new URL('./', import.meta.url).href);
  setThreadsCount(threads);
  const nav = globalThis.navigator as (Navigator & { hardwareConcurrency: number }) | undefined;
  if (nav && threads > 1) Object.defineProperty(nav, 'hardwareConcurrency', { value: 2 * threads, configurable: true });
}

/** After the wasm backend started (or failed to). */
export function wasmStarted(): void {
  const nav = globalThis.navigator as Navigator | undefined;
  if (nav && Object.hasOwn(nav, 'hardwareConcurrency'))
    delete (nav as { hardwareConcurrency?: number }).hardwareConcurrency;
}

export async function registerWebgpu(): Promise<void> {}

export async function loadGradientDefinitions(): Promise<void> {
  await import('@tensorflow/tfjs-core/dist/register_all_gradients.js');
}
