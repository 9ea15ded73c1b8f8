// What starting the tensor backend needs from Node: core count, the threaded wasm module started from
// files (wasm-node-threads.ts), the native addon's thread default, WebGPU through the `webgpu` package,
// and tfjs's gradient definitions from vendor/. A browser build gets platform.browser.ts instead.

import { BackendWasm, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import type { WasmModule } from './wasm-node-threads.js';

export const isNode = true;

export async function cores(): Promise<number> {
  return (await import('node:os')).availableParallelism();
}

/** Whether the native BLAS addon loads (then one wasm thread is the default). */
export async function nativeAvailable(): Promise<boolean> {
  const { loadNative } = await import('./native.js');
  return !!loadNative();
}

// In Node the package's own wasm backend factory cannot use threads (see wasm-node-threads.ts), so
// it is replaced by one that can. Browsers keep the package's factory.
export async function registerWasm(threads: number, started: (m: WasmModule) => void): Promise<void> {
  const { instantiateThreadedWasm, instantiateSimdWasm } = await import('./wasm-node-threads.js');
  // The package registers its factory on import; shutdownBackend removed it (a restart after shutdown).
  if (tf.findBackendFactory('wasm')) tf.removeBackend('wasm');
  tf.registerBackend(
    'wasm',
    async () => {
      const module = threads > 1 ? await instantiateThreadedWasm(threads) : await instantiateSimdWasm();
      started(module);
      setThreadsCount(threads);
      return new BackendWasm(module as never);
    },
    3,
  );
}

/** After the wasm backend started (or failed to): nothing to undo under Node. */
export function wasmStarted(): void {}

export async function registerWebgpu(): Promise<void> {
  const webgpu = (await import('webgpu')) as unknown as {
    create(flags: string[]): unknown;
    globals: Record<string, unknown>;
  };
  Object.assign(globalThis, webgpu.globals);
  const nav = (globalThis.navigator ?? {}) as { gpu?: unknown };
  if (!nav.gpu) {
    Object.defineProperty(globalThis, 'navigator', {
      value: Object.assign(nav, { gpu: webgpu.create([]) }),
      configurable: true,
    });
  }
}

/**
 * Registers tfjs-core's gradient definitions. Its Node bundle registers none, and the ESM files that
 * hold them cannot be loaded by Node directly; scripts/bundle-gradients.mjs packs them into
 * vendor/tfjs-gradients.cjs at build time (see there for why one extra copy of core code is safe).
 */
export async function loadGradientDefinitions(): Promise<void> {
  const { createRequire } = await import('node:module');
  const { join } = await import('node:path');
  const { packageRoot } = await import('../util/package-root.js');
  const file = join(packageRoot(), 'vendor', 'tfjs-gradients.cjs');
  try {
    createRequire(import.meta.url)(file);
  } catch (err) {
    throw new Error(`cannot load ${file} (run "npm run build" to make it): ${(err as Error).message}`);
  }
}
