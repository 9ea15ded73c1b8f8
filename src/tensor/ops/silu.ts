// SiLU / swish (Elfwing et al. 2017; Ramachandran et al. 2017): x·σ(x), one kernel forward and one
// backward instead of three tfjs kernels (and their temporaries) each way.
//   d/dx = σ(x)·(1 + x·(1 − σ(x)))
// σ(z) = 1/(1 + e^{−z}) is safe at both ends: e^{−z} → ∞ gives σ → 0 (never ∞/∞), e^{−z} → 0 gives 1.
import * as tf from '@tensorflow/tfjs-core';
import { activeNative } from '../kernels/active-native.js';
import { hasKernel, registerJsKernel, runKernel } from './js-kernel.js';

function forwardJs([x]: Float32Array[], [y]: Float32Array[]): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    y[i] = v / (1 + Math.exp(-v));
  }
}

function backwardJs([dy, x]: Float32Array[], [dx]: Float32Array[]): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const s = 1 / (1 + Math.exp(-v));
    dx[i] = dy[i] * s * (1 + v * (1 - s));
  }
}

// An addon built before these kernels existed lacks them: fall back to the TypeScript loops.
registerJsKernel({
  name: 'MuseSilu',
  outputs: (s) => [s[0]],
  compute: forwardJs,
  computeNative: (addon, ins, outs) =>
    addon.siluForward ? addon.siluForward(ins[0], outs[0], ins[0].length) : forwardJs(ins, outs),
});

registerJsKernel({
  name: 'MuseSiluGrad',
  outputs: (s) => [s[1]],
  compute: backwardJs,
  computeNative: (addon, ins, outs) =>
    addon.siluBackward ? addon.siluBackward(ins[0], ins[1], outs[0], ins[1].length) : backwardJs(ins, outs),
});

/** x·σ(x) from tfjs ops (gradient by tfjs autodiff). */
export function siluComposite(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

const siluFused = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x]);
  return {
    value: runKernel('MuseSilu', { x })[0],
    gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => runKernel('MuseSiluGrad', { dy, x: saved })[0],
  };
}) as never);

/**
 * SiLU (swish), x·σ(x). Fused kernels where they win: with the native addon on wasm, and on cpu.
 * On wasm without the addon the composite is faster (tfjs-wasm's sigmoid is vectorised; a TS loop
 * pays ~11 ns per Math.exp, measured 4–6× slower).
 */
export function silu<T extends tf.Tensor>(x: T): T {
  const backend = tf.getBackend();
  const fused = hasKernel('MuseSilu') && (backend !== 'wasm' || activeNative() !== undefined);
  return (fused ? (siluFused as unknown as (t: tf.Tensor) => tf.Tensor)(x) : siluComposite(x)) as T;
}
