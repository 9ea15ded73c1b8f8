// Starting the tensor backend in a browser: the wasm package's own factory (threaded when the page is
// cross-origin isolated, SIMD otherwise; the .wasm files fetched from `wasmPaths` or beside the
// bundle), WebGPU from navigator.gpu, gradient definitions from tfjs-core's ESM build.
import { setThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import type { WasmModule } from './wasm-node-threads.js';

export const isNode = false;

export async function cores(): Promise<number> {
  return globalThis.navigator?.hardwareConcurrency ?? 1;
}

export async function nativeAvailable(): Promise<boolean> {
  return false;
}

let wasmPaths: string | undefined;

/** Where the tfjs-backend-wasm*.wasm files are (a URL prefix ending in "/"); default: beside the bundle. */
export function setWasmLocation(prefix: string): void {
  wasmPaths = prefix;
}

export async function registerWasm(threads: number, _started: (m: WasmModule) => void): Promise<void> {
  setWasmPaths(wasmPaths ?? new URL('./', import.meta.url).href);
  setThreadsCount(threads);
}

export async function registerWebgpu(): Promise<void> {}

export async function loadGradientDefinitions(): Promise<void> {
  await import('@tensorflow/tfjs-core/dist/register_all_gradients.js');
}
