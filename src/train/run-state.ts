// What a training run saves besides its weights so that --resume continues exactly: optimizer
// moments (as tensors "<prefix>.m.<param>" / "<prefix>.v.<param>"), the step, the RNG state and
// the metric history (metadata). One safetensors file, written atomically.
import type * as tf from '@tensorflow/tfjs-core';
import type { NamedTensor } from '../tensor/safetensors.js';
import type { AdamW, AdamWState } from './adamw.js';

export function momentsToTensors(
  prefix: string,
  opt: AdamW,
  params: Record<string, tf.Variable>,
): Record<string, NamedTensor> {
  const state = opt.saveState();
  const out: Record<string, NamedTensor> = {};
  for (const name of Object.keys(state.m)) {
    out[`${prefix}.m.${name}`] = { shape: params[name].shape, data: state.m[name] };
    out[`${prefix}.v.${name}`] = { shape: params[name].shape, data: state.v[name] };
  }
  return out;
}

export function momentsFromTensors(prefix: string, tensors: Record<string, NamedTensor>, step: number): AdamWState {
  const m: Record<string, Float32Array> = {};
  const v: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(tensors)) {
    if (k.startsWith(`${prefix}.m.`)) m[k.slice(prefix.length + 3)] = t.data as Float32Array;
    if (k.startsWith(`${prefix}.v.`)) v[k.slice(prefix.length + 3)] = t.data as Float32Array;
  }
  return { step, m, v };
}

/**
 * Ctrl-C (SIGINT) and SIGTERM (kill, job schedulers, container stops) for training loops: the first
 * makes interrupted() true (the loop saves, then ends); a second exits at once. (A job started in the
 * background by a non-interactive shell ignores SIGINT; send it SIGTERM.) interrupted() first lets
 * pending signal handlers run: a training step is synchronous work, so without that a signal would
 * only be seen at the next checkpoint's file write (measured: ~4 minutes late at 250 steps).
 */
export function interruptHandler(): { interrupted: () => Promise<boolean>; dispose: () => void } {
  let stop = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop) process.exit(signal === 'SIGINT' ? 130 : 143);
    stop = true;
    console.error(`\n${signal}: saving a checkpoint after this step (send it again to quit without saving)`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    interrupted: async () => {
      await new Promise((resolve) => setImmediate(resolve));
      return stop;
    },
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** A time budget in minutes from now (undefined: none); the returned function says when it is spent. */
export function deadline(minutes: number | undefined): () => boolean {
  const start = performance.now();
  return () => minutes !== undefined && (performance.now() - start) / 60000 >= minutes;
}

/** After each step: save at checkpoints, at the end, on Ctrl-C and when out of time; stop on the last two. */
export function endOfStep(
  step: number,
  last: boolean,
  checkpointEvery: number,
  interrupted: boolean,
  outOfTime: boolean,
) {
  const stop = interrupted || outOfTime;
  return { save: stop || last || (checkpointEvery > 0 && step % checkpointEvery === 0), stop };
}
