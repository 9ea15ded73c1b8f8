// AdamW (Loshchilov & Hutter 2019: Adam with decoupled weight decay), updating parameters in place.
// tfjs's own Adam costs ~15 small kernels per parameter tensor per step (docs/ARCHITECTURE.md profile:
// Multiply/Add/Sqrt/Identity); here one loop per tensor over the backend's memory does the update.
//   m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  p ← p − lr·(m̂/(√v̂ + ε) + λ·p)
import * as tf from '@tensorflow/tfjs-core';
import { afterInPlaceWrite, memoryOf, writableMemoryOf } from '../tensor/in-place.js';
import { activeNative } from '../tensor/kernels/active-native.js';
import { assignValues } from '../tensor/params.js';
import { MuseError } from '../util/errors.js';

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** Decoupled weight decay λ. */
  weightDecay?: number;
  /** Which parameters get weight decay (default: tensors of rank ≥ 2, not biases or norm gains). */
  decays?: (name: string, p: tf.Variable) => boolean;
}

export interface AdamWState {
  step: number;
  m: Record<string, Float32Array>;
  v: Record<string, Float32Array>;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly weightDecay: number;
  private readonly decays: (name: string, p: tf.Variable) => boolean;
  private state: AdamWState = { step: 0, m: {}, v: {} };

  constructor(options: AdamWOptions = {}) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0;
    this.decays = options.decays ?? ((_, p) => p.rank >= 2);
    for (const [k, v] of Object.entries({ beta1: this.beta1, beta2: this.beta2 })) {
      if (!(v >= 0 && v < 1)) throw new MuseError(`AdamW: ${k} must be in [0, 1), got ${v}`);
    }
    if (!(this.epsilon > 0)) throw new MuseError(`AdamW: epsilon must be > 0, got ${this.epsilon}`);
    if (!(this.weightDecay >= 0)) throw new MuseError(`AdamW: weightDecay must be ≥ 0, got ${this.weightDecay}`);
  }

  get step(): number {
    return this.state.step;
  }

  /** Applies one update with learning rate lr. grads[name] must match params[name] in shape. */
  apply(params: Record<string, tf.Variable>, grads: Record<string, tf.Tensor>, lr: number): void {
    if (!(lr >= 0) || !Number.isFinite(lr))
      throw new MuseError(`AdamW: learning rate must be a finite number ≥ 0, got ${lr}`);
    const t = ++this.state.step;
    const c1 = 1 / (1 - this.beta1 ** t);
    const c2 = 1 / (1 - this.beta2 ** t);
    for (const [name, p] of Object.entries(params)) {
      const g = grads[name];
      if (!g) continue;
      if (g.shape.join() !== p.shape.join()) {
        throw new MuseError(`AdamW: gradient of ${name} has shape [${g.shape}], parameter [${p.shape}]`);
      }
      const m = this.moment(this.state.m, name, p.size);
      const v = this.moment(this.state.v, name, p.size);
      const decay = this.decays(name, p) ? this.weightDecay : 0;
      const gv = memoryOf(g) ?? (g.dataSync() as Float32Array);
      const inPlace = writableMemoryOf(p);
      const pv = inPlace ?? Float32Array.from(p.dataSync() as Float32Array);
      const { beta1: b1, beta2: b2, epsilon: eps } = this;
      const addon = tf.getBackend() === 'wasm' ? activeNative() : undefined;
      if (addon) addon.adamwUpdate(pv, gv, m, v, pv.length, lr, b1, b2, eps, c1, c2, decay);
      else {
        for (let i = 0; i < pv.length; i++) {
          const gi = gv[i];
          m[i] = b1 * m[i] + (1 - b1) * gi;
          v[i] = b2 * v[i] + (1 - b2) * gi * gi;
          pv[i] -= lr * ((m[i] * c1) / (Math.sqrt(v[i] * c2) + eps) + decay * pv[i]);
        }
      }
      if (inPlace) afterInPlaceWrite(p);
      else assignValues(p, pv);
    }
  }

  private moment(store: Record<string, Float32Array>, name: string, size: number): Float32Array {
    let a = store[name];
    if (!a) {
      a = new Float32Array(size);
      store[name] = a;
    }
    return a;
  }

  /** State for a checkpoint (copies). */
  saveState(): AdamWState {
    const copy = (r: Record<string, Float32Array>) =>
      Object.fromEntries(Object.entries(r).map(([k, a]) => [k, a.slice()]));
    return { step: this.state.step, m: copy(this.state.m), v: copy(this.state.v) };
  }

  loadState(state: AdamWState): void {
    this.state = { step: state.step, m: { ...state.m }, v: { ...state.v } };
  }
}

/** Scales grads so their global L2 norm is at most maxNorm; returns the norm before clipping. */
export function clipByGlobalNorm(
  grads: Record<string, tf.Tensor>,
  maxNorm: number,
): { norm: number; grads: Record<string, tf.Tensor> } {
  let sq = 0;
  for (const g of Object.values(grads)) {
    const a = memoryOf(g) ?? (g.dataSync() as Float32Array);
    for (let i = 0; i < a.length; i++) sq += a[i] * a[i];
  }
  const norm = Math.sqrt(sq);
  if (!(norm > maxNorm)) return { norm, grads };
  const scale = maxNorm / norm;
  return { norm, grads: Object.fromEntries(Object.entries(grads).map(([k, g]) => [k, tf.mul(g, scale)])) };
}
