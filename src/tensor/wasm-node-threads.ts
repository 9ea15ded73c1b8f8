// Multi-threaded tfjs-wasm under Node. tfjs-backend-wasm 4.22 cannot start its threaded build in Node
// as shipped (measured, docs/ARCHITECTURE.md): WASM_HAS_MULTITHREAD_SUPPORT is forced false there, the pthread
// worker script and main script are handed over as Blob URLs that worker_threads cannot load, and the
// default thread count is cores/2. Here the threaded-SIMD module is instantiated with file paths
// instead, and wrapped in the package's own BackendWasm class.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);

// The emscripten module object: only the members this project touches are typed.
export interface WasmModule {
  HEAPU8: Uint8Array;
  HEAPF32: Float32Array;
  PThread?: { terminateAllThreads(): void };
  cwrap(name: string, ret: string | null, args: string[]): (...a: number[]) => number;
  tfjs: Record<string, (...a: number[]) => number>;
  [key: string]: unknown;
}

let workerScriptPath: string | undefined;

function writeWorkerScript(): string {
  if (workerScriptPath) return workerScriptPath;
  const { wasmWorkerContents } =
    require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js') as {
      wasmWorkerContents: string;
    };
  const dir = mkdtempSync(join(tmpdir(), 'muse-wasm-'));
  workerScriptPath = join(dir, 'worker.cjs');
  // Same escape as the package applies before making its Blob: string literals hold '\\n'.
  writeFileSync(workerScriptPath, wasmWorkerContents.replace(/\n/g, '\\n'));
  return workerScriptPath;
}

/** Instantiates the threaded SIMD wasm module with `threads` worker threads available. */
export async function instantiateThreadedWasm(threads: number): Promise<WasmModule> {
  const mainScript = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js');
  const wasmFile = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.wasm');
  const factory = require(mainScript) as (config: object) => Promise<WasmModule>;
  const worker = writeWorkerScript();
  // The C++ side caps the thread pool at emscripten_num_logical_cores()/2, read once while the module
  // starts; in Node that is os.cpus().length, so it is made to read 2 × threads for that moment.
  const cpus = os.cpus;
  const reported = cpus();
  os.cpus = () => Array.from({ length: 2 * threads }, (_, i) => reported[i % reported.length]);
  let module: WasmModule;
  try {
    module = await factory({
      wasmBinary: readFileSync(wasmFile),
      mainScriptUrlOrBlob: mainScript,
      locateFile: (path: string) => (path.endsWith('.worker.js') ? worker : path),
    });
  } finally {
    os.cpus = cpus;
  }
  wrapTfjsEntryPoints(module);
  return module;
}

/** Instantiates the single-threaded SIMD wasm module. */
export async function instantiateSimdWasm(): Promise<WasmModule> {
  const mainScript = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm.js');
  const wasmFile = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-simd.wasm');
  const factory = require(mainScript) as (config: object) => Promise<WasmModule>;
  const module = await factory({ wasmBinary: readFileSync(wasmFile) });
  wrapTfjsEntryPoints(module);
  return module;
}

// The same C entry points BackendWasm expects on `module.tfjs` (see tfjs-backend-wasm's init()).
function wrapTfjsEntryPoints(module: WasmModule): void {
  module.tfjs = {
    init: module.cwrap('init', null, []),
    initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: module.cwrap('get_threads_count', 'number', []),
    registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: module.cwrap('dispose_data', null, ['number']),
    dispose: module.cwrap('dispose', null, []),
  };
}
