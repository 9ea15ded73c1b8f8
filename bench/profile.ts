// Per-kernel profile of one reference training step (docs/ARCHITECTURE.md): where the time goes.
// Usage: node --import tsx bench/profile.ts [forward]   (MUSE_NATIVE=0 for the pure-wasm path;
// `forward` profiles the reference forward pass alone instead of the whole step)
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, shutdownBackend } from '../src/tensor/backend.js';
import { buildReferenceStep } from './reference-step.js';

export async function profileStep(
  part: 'step' | 'forward' = 'step',
): Promise<Array<{ kernel: string; calls: number; ms: number }>> {
  const step = buildReferenceStep();
  step[part]();
  const profile = await tf.profile(() => {
    step[part]();
  });
  const byKernel = new Map<string, { calls: number; ms: number }>();
  for (const k of profile.kernels) {
    const e = byKernel.get(k.name) ?? { calls: 0, ms: 0 };
    e.calls++;
    e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    byKernel.set(k.name, e);
  }
  step.dispose();
  return [...byKernel.entries()].map(([kernel, e]) => ({ kernel, ...e })).sort((a, b) => b.ms - a.ms);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const info = await initBackend();
  const rows = await profileStep(process.argv[2] === 'forward' ? 'forward' : 'step');
  const total = rows.reduce((a, r) => a + r.ms, 0);
  console.log(
    `backend ${info.backend}, ${info.threads} threads, native ${info.kernels.native}; kernel time ${total.toFixed(0)} ms`,
  );
  for (const r of rows)
    console.log(
      `${r.kernel.padEnd(24)} ${String(r.calls).padStart(5)} calls ${r.ms.toFixed(1).padStart(8)} ms ${((100 * r.ms) / total).toFixed(1).padStart(5)}%`,
    );
  shutdownBackend();
}
