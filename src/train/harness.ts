// One training loop for every model. The harness owns the run folder and its checkpoint (opened,
// resumed and saved as one atomic unit through RunFolder), the RNG, the learning-rate schedule,
// the optimizer moments, the metric history, the validation and checkpoint cadence, cancellation
// (an AbortSignal) and the time budget. A model supplies what only it knows: how to build itself
// (fresh or from a checkpoint), a batch, one step on a batch returning named scalars, evaluate(),
// and the files of its weights.
//
// The library prints nothing and installs no process signal handlers: it reports what happens as
// events (onEvent), and a caller stops a run by aborting its signal: the run then saves a checkpoint
// after the step in progress and returns. The CLI turns Ctrl-C/SIGTERM into that abort and prints.
//
//   RUN/checkpoint.json + checkpoint-NNNNNN-*/   weights parts + state.safetensors (see below)
//   RUN/<weights>                                 published from the checkpoint
//   RUN/history.json                              the metric history, after each save
//
// state.safetensors: the optimizer moments ("<name>.m.<param>", "<name>.v.<param>") and the model's
// own state tensors; metadata step, "<name>Step" per optimizer, rng, history and the model's own.
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import { Rng, type RngState } from '../tensor/random.js';
import { type DecodedSafetensors, loadSafetensors, type NamedTensor, saveSafetensors } from '../tensor/safetensors.js';
import { MuseError } from '../util/errors.js';
import type { AdamW } from './adamw.js';
import { type Checkpoint, RunFolder, writeRunFile } from './checkpoint-folder.js';
import { momentsFromTensors, momentsToTensors } from './run-state.js';
import { learningRate } from './schedule.js';

export type Scalars = Record<string, number>;

/** Every 10th step (and the first) of the training scalars, and every evaluation. */
export interface History<S extends Scalars = Scalars, E extends Scalars = Scalars> {
  train: Array<{ step: number } & S & { lr: number }>;
  eval: Array<{ step: number } & E>;
}

/** What one step is given: the steps done before it, its learning rate and the run's RNG. */
export interface StepContext {
  step: number;
  lr: number;
  rng: Rng;
}

export type StopReason = 'aborted' | 'time';

export type TrainEvent =
  | { type: 'start'; label: string; step: number; steps: number; resumed: boolean; out: string }
  /** Something worth telling a person (e.g. "overwriting the run in RUN"). */
  | { type: 'message'; text: string }
  | { type: 'step'; step: number; steps: number; stats: Scalars }
  | { type: 'validation'; step: number; stats: Scalars }
  | { type: 'checkpoint'; step: number }
  | { type: 'stop'; step: number; reason: StopReason }
  | { type: 'end'; step: number; stoppedEarly: boolean };

/** A model being trained, as the harness drives it. */
export interface TrainingModel<B, S extends Scalars, E extends Scalars = Scalars> {
  /** The optimizers and the parameters each updates (their moments are saved and resumed by name). */
  optimizers: Record<string, { opt: AdamW; params: Record<string, tf.Variable> }>;
  /** The next batch (drawn with the run's RNG). */
  batch(rng: Rng): B;
  /** One optimisation step on a batch: named scalars, `loss` among them. Does not dispose the batch. */
  step(batch: B, ctx: StepContext): S & { loss: number };
  disposeBatch(batch: B): void;
  /** Held-out metrics (absent: no validation). */
  evaluate?(): E;
  /** The weights files of a checkpoint at `step`: each writes its part to the path given. */
  weights(step: number): Record<string, (path: string) => Promise<void>>;
  /** Model state beyond the weights and optimizer moments, saved in state.safetensors. */
  stateTensors?(): Record<string, NamedTensor>;
  stateMetadata?(): Record<string, string>;
  /** After each step's validation, before its checkpoint (e.g. sample images). */
  afterStep?(step: number, last: boolean, history: History<S, E>): Promise<void>;
  /** After each checkpoint and history.json (e.g. curves). */
  afterSave?(history: History<S, E>): Promise<void>;
}

/** How a run starts: the verified checkpoint and its state file when resuming; the run's RNG. */
export interface Start {
  checkpoint?: Checkpoint;
  state?: DecodedSafetensors;
  rng: Rng;
  emit: (e: TrainEvent) => void;
}

/** The options every trainer takes; S: the scalars of a step as onStep sees them. */
export interface TrainOptions<S = Scalars> {
  out: string;
  steps: number;
  lr: number;
  warmup: number;
  seed: number;
  evalEvery: number;
  checkpointEvery: number;
  /** Time budget: stop (saving first) after this many minutes of this run. */
  minutes?: number;
  resume: boolean;
  /** Start over in a run folder that holds files (without resume or overwrite such a folder is refused). */
  overwrite?: boolean;
  /** Aborting it ends the run after the step in progress, saving a checkpoint first. */
  signal?: AbortSignal;
  onEvent?: (e: TrainEvent) => void;
  /** Called after every step (before its checkpoint), e.g. by tests. */
  onStep?: (step: number, stats: S) => void;
  /** @deprecated The library prints nothing; accepted for older callers. */
  quiet?: boolean;
}

export interface TrainerSpec<B, S extends Scalars, E extends Scalars> {
  /** Recorded in the checkpoint manifest and checked on resume (e.g. "muse-base"). */
  kind: string;
  /** The progress label (e.g. "tokenizer"). */
  label: string;
  /** The weights files, published at the run folder's top level. */
  publish: string[];
  /** Other files the model writes into the run folder (removed by overwrite). */
  runFiles?: string[];
  create(start: Start): Promise<TrainingModel<B, S, E>>;
}

export interface TrainResult<S extends Scalars, E extends Scalars> {
  step: number;
  history: History<S, E>;
  stoppedEarly: boolean;
}

export const STATE = 'state.safetensors';

/** Lets pending callbacks (a signal handler that aborts) run: a step is synchronous work. */
const yieldToEvents = () => new Promise((resolve) => setImmediate(resolve));

/** Writes state.safetensors: the optimizer moments, the RNG, the step, the history and the model's state. */
function saveState<B, S extends Scalars, E extends Scalars>(
  path: string,
  model: TrainingModel<B, S, E>,
  step: number,
  rng: Rng,
  history: History<S, E>,
): Promise<void> {
  const tensors: Record<string, NamedTensor> = {};
  const metadata: Record<string, string> = { step: String(step) };
  for (const [name, { opt, params }] of Object.entries(model.optimizers)) {
    Object.assign(tensors, momentsToTensors(name, opt, params));
    metadata[`${name}Step`] = String(opt.step);
  }
  Object.assign(tensors, model.stateTensors?.());
  Object.assign(metadata, { rng: JSON.stringify(rng.state()), history: JSON.stringify(history) });
  Object.assign(metadata, model.stateMetadata?.());
  return saveSafetensors(path, tensors, { metadata });
}

/** Runs (or resumes) a training run to o.steps, an abort or the end of the time budget. */
export async function train<B, S extends Scalars, E extends Scalars>(
  o: TrainOptions<S & { lr: number }>,
  spec: TrainerSpec<B, S, E>,
): Promise<TrainResult<S, E>> {
  const emit = (e: TrainEvent) => o.onEvent?.(e);
  const run = await RunFolder.open(o.out, {
    resume: o.resume,
    overwrite: o.overwrite,
    kind: spec.kind,
    publish: spec.publish,
    runFiles: ['history.json', ...(spec.runFiles ?? [])],
    legacy: {
      marker: STATE,
      parts: [...spec.publish, STATE],
      stepOf: async (path) => Number((await loadSafetensors(path)).metadata.step),
    },
  });
  if (run.overwritten) emit({ type: 'message', text: `overwriting the run in ${o.out}` });
  const { checkpoint } = run;
  const state = checkpoint ? await loadSafetensors(checkpoint.path(STATE)) : undefined;
  let step = checkpoint?.step ?? 0;
  const rng = state ? new Rng(JSON.parse(state.metadata.rng) as RngState) : new Rng(o.seed);
  const history: History<S, E> = state ? JSON.parse(state.metadata.history) : { train: [], eval: [] };
  const model = await spec.create({ checkpoint, state, rng, emit });
  if (state) {
    for (const [name, { opt }] of Object.entries(model.optimizers))
      opt.loadState(momentsFromTensors(name, state.tensors, Number(state.metadata[`${name}Step`])));
  }
  emit({ type: 'start', label: spec.label, step, steps: o.steps, resumed: !!checkpoint, out: o.out });

  const save = async () => {
    await run.save(step, { ...model.weights(step), [STATE]: (path) => saveState(path, model, step, rng, history) });
    await writeRunFile(join(o.out, 'history.json'), `${JSON.stringify(history)}\n`);
    await model.afterSave?.(history);
    emit({ type: 'checkpoint', step });
  };
  const started = performance.now();
  const outOfTime = () => o.minutes !== undefined && (performance.now() - started) / 60000 >= o.minutes;
  let stopped: StopReason | undefined;
  while (step < o.steps && !o.signal?.aborted) {
    const lr = learningRate({ peak: o.lr, warmup: o.warmup, total: o.steps }, step);
    const batch = model.batch(rng);
    let scalars: S & { loss: number };
    try {
      scalars = model.step(batch, { step, lr, rng });
    } finally {
      model.disposeBatch(batch);
    }
    if (!Number.isFinite(scalars.loss))
      throw new MuseError(`loss became ${scalars.loss} at step ${step}: lower \`lr\``);
    step++;
    const stats = { ...scalars, lr };
    if (step % 10 === 0 || step === 1) history.train.push({ step, ...stats });
    o.onStep?.(step, stats);
    emit({ type: 'step', step, steps: o.steps, stats });

    const last = step === o.steps;
    if (model.evaluate && o.evalEvery > 0 && (step % o.evalEvery === 0 || last)) {
      const e = { step, ...model.evaluate() };
      history.eval.push(e);
      emit({ type: 'validation', step, stats: e });
    }
    await model.afterStep?.(step, last, history);
    await yieldToEvents();
    stopped = o.signal?.aborted ? 'aborted' : outOfTime() ? 'time' : undefined;
    if (stopped || last || (o.checkpointEvery > 0 && step % o.checkpointEvery === 0)) await save();
    if (stopped) {
      emit({ type: 'stop', step, reason: stopped });
      break;
    }
  }
  const stoppedEarly = step < o.steps;
  emit({ type: 'end', step, stoppedEarly });
  return { step, history, stoppedEarly };
}
