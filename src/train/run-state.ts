// Optimizer moments as the tensors of a run's state file ("<prefix>.m.<param>" / "<prefix>.v.<param>"),
// and back: what an exact --resume needs besides the weights (src/train/harness.ts writes the file).
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
