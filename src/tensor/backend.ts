// The one place a tensor backend is chosen and started. Default: tfjs-wasm with this project's kernel
// pack (and the native BLAS path when its addon is built); `webgpu` where a GPU exists.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { MuseError } from '../util/errors.js';
import { registerGradientFixes, registerGradients } from './gradients.js';
import { type KernelPackInfo, registerKernelPack } from './kernels/index.js';
import { cores, isNode, nativeAvailable, registerWasm, registerWebgpu, wasmStarted } from './platform.js';
import type { WasmModule } from './wasm-node-threads.js';

export type BackendName = 'wasm' | 'webgpu' | 'cpu';

export interface BackendOptions {
  /** 'wasm' (default), 'webgpu' or 'cpu' (the slow reference). Env: MUSE_BACKEND. */
  backend?: BackendName;
  /** Worker threads for wasm; default: the machine's cores (1 when the native addon serves). Env: MUSE_THREADS. */
  threads?: number;
  /** Use the native BLAS addon if it was built (default true). Env: MUSE_NATIVE=0 turns it off. */
  native?: boolean;
}

export interface BackendInfo {
  backend: BackendName;
  threads: number;
  kernels: KernelPackInfo;
}

let started: BackendInfo | undefined;
let wasmModule: WasmModule | undefined;

function envValue(name: string): string | undefined {
  return isNode ? process.env[name] : undefined;
}

// With the native addon doing the matmuls and convolutions on its own threads, extra wasm worker
// threads only compete for the same cores: measured on the 2-core machine, the tokenizer's
// training step ran at 0.92 step/s with 1 wasm thread against 0.64 with 2.
async function defaultThreads(backend: BackendName, native: boolean): Promise<number> {
  if (backend === 'wasm' && native && (await nativeAvailable())) return 1;
  return cores();
}

function parseThreads(value: number | string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 256) {
    throw new MuseError(`threads must be an integer from 1 to 256, got ${JSON.stringify(value)}`);
  }
  return n;
}

function parseBackend(value: string | undefined): BackendName {
  const name = value ?? 'wasm';
  if (name !== 'wasm' && name !== 'webgpu' && name !== 'cpu') {
    throw new MuseError(`unknown backend "${name}": choose wasm, webgpu or cpu`);
  }
  return name;
}

async function requireWebgpuAdapter(): Promise<void> {
  const gpu = (globalThis.navigator as { gpu?: { requestAdapter(): Promise<unknown> } } | undefined)?.gpu;
  const adapter = gpu ? await gpu.requestAdapter() : null;
  if (!adapter) {
    throw new MuseError(
      'no WebGPU adapter: this machine exposes no GPU to WebGPU (in Node, Dawn needs a Vulkan driver); use the wasm backend',
    );
  }
}

let configured: BackendOptions = {};

/**
 * Defaults for the options initBackend is not given (the CLI's --backend, --threads, --no-native);
 * checked here, so a bad value is refused before any work. `{}` clears them.
 */
export function configureBackend(options: { backend?: string; threads?: number | string; native?: boolean }): void {
  configured = {
    backend: options.backend === undefined ? undefined : parseBackend(options.backend),
    threads: options.threads === undefined ? undefined : parseThreads(options.threads, 1),
    native: options.native,
  };
}

/** Starts the tensor backend once per process; later calls return the same info. */
export async function initBackend(options: BackendOptions = {}): Promise<BackendInfo> {
  if (started) return started;
  const backend = parseBackend(options.backend ?? configured.backend ?? envValue('MUSE_BACKEND'));
  const native = options.native ?? configured.native ?? envValue('MUSE_NATIVE') !== '0';
  const threads = parseThreads(
    options.threads ?? configured.threads ?? envValue('MUSE_THREADS'),
    await defaultThreads(backend, native),
  );
  const handlersBefore = processHandlers();
  try {
    started = await startBackend(backend, threads, native);
  } finally {
    removeHandlersAddedSince(handlersBefore);
  }
  return started;
}

type ProcessEvent = 'uncaughtException' | 'unhandledRejection';
const PROCESS_EVENTS: ProcessEvent[] = ['uncaughtException', 'unhandledRejection'];

function processHandlers(): Map<ProcessEvent, unknown[]> | undefined {
  if (!isNode) return undefined;
  return new Map(PROCESS_EVENTS.map((e) => [e, process.listeners(e as 'uncaughtException')]));
}

// The emscripten module of tfjs-wasm installs process handlers that re-throw every uncaught error and
// unhandled rejection from inside its minified file, so Node printed tens of KB of its source before
// the message of any later error in the user's code. Node's own handling does the same job.
function removeHandlersAddedSince(before: Map<ProcessEvent, unknown[]> | undefined): void {
  if (!before) return;
  for (const event of PROCESS_EVENTS) {
    const old = before.get(event) ?? [];
    for (const listener of process.listeners(event as 'uncaughtException')) {
      if (!old.includes(listener)) process.removeListener(event, listener);
    }
  }
}

async function startBackend(backend: BackendName, threads: number, native: boolean): Promise<BackendInfo> {
  if (backend === 'wasm')
    await registerWasm(threads, (m) => {
      wasmModule = m;
    });
  if (backend === 'webgpu') {
    await registerWebgpu();
    await requireWebgpuAdapter();
    await import('@tensorflow/tfjs-backend-webgpu');
  }
  await registerGradients();
  registerGradientFixes();
  try {
    if (!(await tf.setBackend(backend))) {
      throw new Error(`the ${backend} backend failed to start`);
    }
    await tf.ready();
  } finally {
    if (backend === 'wasm') wasmStarted();
  }
  const kernels =
    backend === 'wasm' ? await registerKernelPack({ native: native && isNode }) : { native: false, kernels: [] };
  const actualThreads = backend === 'wasm' ? activeWasmThreads() : 1;
  return { backend, threads: actualThreads, kernels };
}

function activeWasmThreads(): number {
  const backend = tf.backend() as unknown as { wasm: WasmModule };
  return backend.wasm.tfjs.getThreadsCount();
}

/** The started backend, or an error saying initBackend was not called. */
export function backendInfo(): BackendInfo {
  if (!started) throw new Error('initBackend() has not been called');
  return started;
}

/** The wasm module of the active wasm backend (for kernels that work on its heap). */
export function activeWasmModule(): WasmModule {
  const backend = tf.findBackend('wasm') as unknown as { wasm: WasmModule } | null;
  if (!backend) throw new Error('the wasm backend is not started');
  return backend.wasm;
}

/**
 * Stops worker threads so the process can exit. Call once at the end of a program; the threaded
 * wasm backend otherwise keeps Node alive.
 */
export function shutdownBackend(): void {
  if (!started) return;
  const pthreads = wasmModule?.PThread;
  if (tf.findBackend('wasm')) tf.removeBackend('wasm');
  pthreads?.terminateAllThreads();
  started = undefined;
  wasmModule = undefined;
}
