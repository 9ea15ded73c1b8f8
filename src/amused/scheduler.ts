// aMUSEd's masked-token scheduler (diffusers' AmusedScheduler) in plain TypeScript over typed arrays.
//
// Every quantity that PyTorch computes in float32 is rounded to float32 here (Math.fround after each
// operation), so the step tables, the temperatures and the number of tokens re-masked after each step
// match the reference bit for bit (e.g. cosine, 12 steps, 256 tokens: step 7 leaves 127 masked, not 128,
// because cos(π/2·8/12) is 0.49999997 in float32).
//
// One step, for each batch row (N token positions, K codebook entries):
//   p = softmax(logits) over K;   s_i ~ Categorical(p_i) for every position (the random source);
//   pred_i = s_i where token_i is the mask id, else token_i;
//   on the last step (timestep 0) every position takes pred; otherwise
//   mask_len = max(1, min(#masked − 1, floor(N·ratio))),  ratio = cos(π/2·(t+1)/T) or 1 − (t+1)/T;
//   confidence_i = log(max(p_i[pred_i], 1e-20)) + τ_t·g_i  (g: Gumbel noise; known tokens use p = f32 max);
//   positions whose confidence is strictly below the mask_len-th smallest (0-based: sorted[mask_len])
//   are masked again.
import { join } from 'node:path';
import { Rng } from '../tensor/random.js';
import { MuseError } from '../util/errors.js';
import { readJsonObject } from './component.js';

export type MaskingSchedule = 'cosine' | 'linear';

/** Where the random draws of `step()` come from (inject recorded draws to replay a reference run). */
export interface SchedulerRandom {
  /**
   * One categorical draw per row: `probs` holds `rows` rows of `k` probabilities (float32, summing to 1);
   * returns `rows` indices in [0, k). Called once per step, for every position of every batch row.
   */
  multinomial(probs: Float32Array, rows: number, k: number): Int32Array;
  /**
   * `n` Gumbel(0, 1) draws, −log(max(−log(max(u, 1e-20)), 1e-20)) for u uniform in [0, 1), as float32.
   * Called once per step except the last (timestep 0), after `multinomial`.
   */
  gumbel(n: number): Float32Array;
}

export interface SchedulerConfig {
  maskTokenId: number;
  maskingSchedule: MaskingSchedule;
}

export interface StepInput {
  /**
   * Logits as float32: [B, N, K] (layout 'BNK', the default) or PyTorch's [B, K, H, W] = [B, K, N]
   * (layout 'BKN', what UVit2DModel returns).
   */
  logits: Float32Array;
  layout?: 'BNK' | 'BKN';
  /** Current tokens [B, N] (row-major; a [B, H, W] grid flattened), mask id where unknown. */
  tokens: Int32Array;
  batch: number;
  /** Codebook size K (logits per position). */
  codebookSize: number;
  /** Index into `timesteps` (0 = first step). */
  stepIndex: number;
  random: SchedulerRandom;
  /** diffusers' `starting_mask_ratio` (default 1). */
  startingMaskRatio?: number;
}

export interface StepOutput {
  /** The next step's tokens [B, N]. */
  prevSample: Int32Array;
  /** The sampled tokens, known tokens kept [B, N]. */
  predOriginalSample: Int32Array;
  /** Per-position confidence [B, N] (absent on the last step). */
  confidence?: Float32Array;
  /** Tokens re-masked per batch row (absent on the last step). */
  maskLen?: Int32Array;
}

const f = Math.fround;
const F32_MAX = 3.4028234663852886e38;
const LOG_F32_MAX = f(Math.log(F32_MAX));
const PI_F32 = f(Math.PI);

/** torch.linspace(start, end, steps) in float32 (the CPU kernel's scalar path). */
export function linspaceF32(start: number, end: number, steps: number): Float32Array {
  if (!Number.isInteger(steps) || steps < 1) throw new MuseError(`linspace: steps must be a positive integer`);
  const out = new Float32Array(steps);
  const s = f(start);
  const e = f(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f(f(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < halfway ? f(s + f(step * i)) : f(e - f(step * (steps - i - 1)));
  return out;
}

/** The fraction of tokens still masked after step `stepIndex` of `steps`, in float32 as PyTorch does it. */
export function maskRatio(schedule: MaskingSchedule, stepIndex: number, steps: number): number {
  const ratio = f((stepIndex + 1) / steps);
  if (schedule === 'cosine') return f(Math.cos(f(f(ratio * PI_F32) / 2)));
  return f(1 - ratio);
}

/**
 * Tokens to re-mask after step `stepIndex` (not the last): floor(N·ratio), at most one fewer than the
 * tokens masked before the step, at least 1.
 */
export function maskLength(
  schedule: MaskingSchedule,
  stepIndex: number,
  steps: number,
  seqLen: number,
  maskedBefore: number,
  startingMaskRatio = 1,
): number {
  const ratio = f(startingMaskRatio * maskRatio(schedule, stepIndex, steps));
  const len = Math.floor(f(seqLen * ratio));
  return Math.max(1, Math.min(maskedBefore - 1, len));
}

/** Masked-token counts after each step, starting fully masked (0 after the last step). */
export function maskCounts(schedule: MaskingSchedule, steps: number, seqLen: number): number[] {
  const out: number[] = [];
  let masked = seqLen;
  for (let i = 0; i < steps; i++) {
    masked = i === steps - 1 ? 0 : maskLength(schedule, i, steps, seqLen, masked);
    out.push(masked);
  }
  return out;
}

/** Gumbel noise from one float32 uniform, as diffusers' gumbel_noise (float32 at every op). */
export function gumbelFromUniform(u: number): number {
  const inner = f(-f(Math.log(Math.max(f(u), 1e-20))));
  return f(-f(Math.log(Math.max(inner, 1e-20))));
}

/** The default random source: seeded inverse-CDF categorical draws and Gumbel noise from `Rng`. */
export class SeededSchedulerRandom implements SchedulerRandom {
  readonly rng: Rng;
  constructor(seed: number | Rng = 0) {
    this.rng = typeof seed === 'number' ? new Rng(seed) : seed;
  }

  multinomial(probs: Float32Array, rows: number, k: number): Int32Array {
    const out = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      const o = r * k;
      let total = 0;
      for (let j = 0; j < k; j++) total += probs[o + j];
      const target = this.rng.uniform() * total;
      let acc = 0;
      let pick = -1;
      let last = 0;
      for (let j = 0; j < k; j++) {
        const p = probs[o + j];
        if (p > 0) last = j;
        acc += p;
        if (acc > target && p > 0) {
          pick = j;
          break;
        }
      }
      out[r] = pick < 0 ? last : pick; // rounding left the target past the sum: the last non-zero entry
    }
    return out;
  }

  gumbel(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = gumbelFromUniform(this.rng.uniform());
    return out;
  }
}

/** Replays recorded draws (e.g. the reference's `sampled_ids` and `gumbel_noise`), one array per call. */
export class RecordedSchedulerRandom implements SchedulerRandom {
  private m = 0;
  private g = 0;
  constructor(
    private readonly sampled: readonly Int32Array[],
    private readonly noise: readonly Float32Array[],
  ) {}

  multinomial(_probs: Float32Array, rows: number): Int32Array {
    const ids = this.sampled[this.m++];
    if (!ids || ids.length !== rows)
      throw new MuseError(`recorded draws: multinomial call ${this.m} needs ${rows} ids, have ${ids?.length ?? 0}`);
    return ids;
  }

  gumbel(n: number): Float32Array {
    const g = this.noise[this.g++];
    if (!g || g.length !== n)
      throw new MuseError(`recorded draws: gumbel call ${this.g} needs ${n} values, have ${g?.length ?? 0}`);
    return g;
  }
}

/** Float32 softmax over rows of k (max-subtracted; exp and sum in double, rounded once). */
function softmaxRows(logits: Float32Array, layout: 'BNK' | 'BKN', batch: number, n: number, k: number): Float32Array {
  const probs = new Float32Array(batch * n * k);
  const row = new Float64Array(k);
  for (let b = 0; b < batch; b++)
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let j = 0; j < k; j++) {
        const v = layout === 'BNK' ? logits[(b * n + i) * k + j] : logits[(b * k + j) * n + i];
        row[j] = v;
        if (v > max) max = v;
      }
      let sum = 0;
      for (let j = 0; j < k; j++) {
        row[j] = Math.exp(row[j] - max);
        sum += row[j];
      }
      const o = (b * n + i) * k;
      for (let j = 0; j < k; j++) probs[o + j] = row[j] / sum;
    }
  return probs;
}

export class AmusedScheduler {
  readonly maskTokenId: number;
  readonly maskingSchedule: MaskingSchedule;
  /** [T−1, …, 0] after setTimesteps. */
  timesteps: Int32Array = new Int32Array(0);
  /** float32 temperature per step after setTimesteps. */
  temperatures: Float32Array = new Float32Array(0);

  constructor(config: SchedulerConfig) {
    if (!Number.isInteger(config.maskTokenId) || config.maskTokenId < 0)
      throw new MuseError(`scheduler: mask_token_id must be a non-negative integer, got ${config.maskTokenId}`);
    if (config.maskingSchedule !== 'cosine' && config.maskingSchedule !== 'linear')
      throw new MuseError(`scheduler: unknown masking_schedule ${JSON.stringify(config.maskingSchedule)}`);
    this.maskTokenId = config.maskTokenId;
    this.maskingSchedule = config.maskingSchedule;
  }

  /** Reads `scheduler_config.json` of a diffusers scheduler folder (AmusedScheduler). */
  static fromFolder(folder: string): AmusedScheduler {
    const file = join(folder, 'scheduler_config.json');
    const config = readJsonObject(file, `${folder}: no scheduler_config.json`);
    if (config._class_name !== 'AmusedScheduler')
      throw new MuseError(`${file}: _class_name ${JSON.stringify(config._class_name)} is not AmusedScheduler`);
    const id = config.mask_token_id;
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0)
      throw new MuseError(`${file}: config "mask_token_id" must be a non-negative integer, got ${JSON.stringify(id)}`);
    const schedule = config.masking_schedule ?? 'cosine';
    if (schedule !== 'cosine' && schedule !== 'linear')
      throw new MuseError(
        `${file}: config "masking_schedule" must be "cosine" or "linear", got ${JSON.stringify(schedule)}`,
      );
    return new AmusedScheduler({ maskTokenId: id, maskingSchedule: schedule });
  }

  /**
   * Timesteps T−1 … 0 and temperatures: a pair [from, to] → linspace(from, to, T); a scalar t →
   * linspace(t, 0.01, T); all float32 as torch.linspace.
   */
  setTimesteps(steps: number, temperature: number | readonly [number, number] = [2, 0]): void {
    if (!Number.isInteger(steps) || steps < 1)
      throw new MuseError(`scheduler: number of steps must be a positive integer, got ${steps}`);
    const [from, to] = typeof temperature === 'number' ? [temperature, 0.01] : temperature;
    if (!Number.isFinite(from) || !Number.isFinite(to))
      throw new MuseError(`scheduler: temperature must be finite, got ${JSON.stringify(temperature)}`);
    this.timesteps = Int32Array.from({ length: steps }, (_, i) => steps - 1 - i);
    this.temperatures = linspaceF32(from, to, steps);
  }

  /** Tokens to re-mask after step `stepIndex` for a row of `seqLen` tokens with `maskedBefore` masked. */
  maskLength(stepIndex: number, seqLen: number, maskedBefore: number, startingMaskRatio = 1): number {
    return maskLength(this.maskingSchedule, stepIndex, this.timesteps.length, seqLen, maskedBefore, startingMaskRatio);
  }

  step(input: StepInput): StepOutput {
    const { logits, tokens, batch, codebookSize: k, stepIndex, random } = input;
    const layout = input.layout ?? 'BNK';
    const steps = this.timesteps.length;
    if (steps === 0) throw new MuseError('scheduler: call setTimesteps before step');
    if (!Number.isInteger(stepIndex) || stepIndex < 0 || stepIndex >= steps)
      throw new MuseError(`scheduler: step index ${stepIndex} is outside 0…${steps - 1}`);
    if (!Number.isInteger(batch) || batch < 1 || tokens.length % batch !== 0)
      throw new MuseError(`scheduler: ${tokens.length} tokens do not split into ${batch} rows`);
    const n = tokens.length / batch;
    if (logits.length !== batch * n * k)
      throw new MuseError(`scheduler: logits have ${logits.length} values, expected ${batch}·${n}·${k}`);
    const mask = this.maskTokenId;

    const probs = softmaxRows(logits, layout, batch, n, k);
    const sampled = random.multinomial(probs, batch * n, k);
    const pred = new Int32Array(batch * n);
    for (let i = 0; i < pred.length; i++) {
      if (tokens[i] !== mask) pred[i] = tokens[i];
      else {
        const s = sampled[i];
        if (!Number.isInteger(s) || s < 0 || s >= k)
          throw new MuseError(`scheduler: sampled id ${s} is outside 0…${k - 1}`);
        pred[i] = s;
      }
    }
    if (this.timesteps[stepIndex] === 0) return { prevSample: pred.slice(), predOriginalSample: pred };

    const temperature = this.temperatures[stepIndex];
    const noise = random.gumbel(batch * n);
    const confidence = new Float32Array(batch * n);
    const prev = pred.slice();
    const maskLen = new Int32Array(batch);
    const sorted = new Float32Array(n);
    for (let b = 0; b < batch; b++) {
      let masked = 0;
      for (let i = 0; i < n; i++) {
        const q = b * n + i;
        let logp: number;
        if (tokens[q] === mask) {
          masked++;
          logp = f(Math.log(Math.max(probs[q * k + pred[q]], 1e-20)));
        } else logp = LOG_F32_MAX;
        confidence[q] = f(logp + f(temperature * noise[q]));
      }
      const len = this.maskLength(stepIndex, n, masked, input.startingMaskRatio ?? 1);
      maskLen[b] = len;
      sorted.set(confidence.subarray(b * n, (b + 1) * n));
      sorted.sort();
      const cutOff = sorted[Math.min(len, n - 1)];
      for (let i = 0; i < n; i++) if (confidence[b * n + i] < cutOff) prev[b * n + i] = mask;
    }
    return { prevSample: prev, predOriginalSample: pred, confidence, maskLen };
  }
}
