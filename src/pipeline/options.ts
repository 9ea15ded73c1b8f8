// The options every pipeline call takes, whatever the model family (MusePipeline, AmusedPipeline): a
// caller (the CLI, the server) builds one object and hands it to either. Each family documents its
// own defaults and adds its own options by extending this.
import type { GuidanceSchedule } from '../decoding/guidance.js';
import type { RgbImage } from '../image/image.js';
import type { MaskSchedule } from '../transformer/masking.js';

/**
 * After each decoding step (or edit iteration): steps done and in all across every stage of the call,
 * the images so far (still-masked tokens painted grey; decoded only when asked, and asynchronously for
 * MusePipeline — `await images()` works for both) and the token grids so far (masked = mask id).
 */
export type StepCallback = (
  step: number,
  steps: number,
  images: () => RgbImage[] | Promise<RgbImage[]>,
  tokens: Int32Array,
) => void | Promise<void>;

export interface GenerationOptions {
  /** Images per prompt. Default 1. */
  n?: number;
  /** Output side in pixels: one of the model's sizes. */
  size?: number;
  /** Replaces the empty prompt of classifier-free guidance (negative prompting). */
  negative?: string;
  /** Seed of the first image (0 to 2^32 − 1); image i of a call uses seed + i. Default 0. */
  seed?: number;
  /** Decoding steps (of the first stage). */
  steps?: number;
  /** Guidance t in (1 + t)·cond − t·uncond; 0 turns guidance (and its second pass) off. */
  guidance?: number;
  guidanceSchedule?: GuidanceSchedule;
  /** Sampling temperature of the logits (0: the most likely code). */
  temperature?: number;
  /** Sample among the K most likely codes (0: all). */
  topK?: number;
  /** Scale of the noise on the confidences that choose which tokens to keep, annealed to 0. */
  choiceTemperature?: number;
  /** How many tokens stay masked after each step. */
  schedule?: MaskSchedule;
  onStep?: StepCallback;
}
