// What every `muse ... train` verb shares: the options of the training harness (src/train/harness.ts)
// and running a job from the terminal: Ctrl-C/SIGTERM become the run's AbortSignal (the first saves
// a checkpoint after the step in progress and stops; a second quits at once), and the run's events
// become the progress line, the validation lines and the closing report.
import type { ParseArgsConfig } from 'node:util';
import type { Scalars, TrainEvent, TrainOptions, TrainResult } from '../train/harness.js';
import { MuseError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { numberOption } from './options.js';

/** parseArgs options of every training verb. */
export const TRAINING_OPTIONS = {
  out: { type: 'string' },
  steps: { type: 'string' },
  batch: { type: 'string' },
  lr: { type: 'string' },
  warmup: { type: 'string' },
  'weight-decay': { type: 'string' },
  seed: { type: 'string' },
  'eval-every': { type: 'string' },
  'checkpoint-every': { type: 'string' },
  'max-minutes': { type: 'string' },
  minutes: { type: 'string' },
  resume: { type: 'boolean' },
  overwrite: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

/** The help lines of those options (after the verb's own), each line indented by `indent`. */
export const trainingUsage = (d: Record<'lr' | 'weightDecay' | 'evalEvery', string | number>, indent: string) =>
  `${indent}[--steps 20000] [--batch 32] [--lr ${d.lr}] [--warmup 500] [--weight-decay ${d.weightDecay}] [--seed 0]
${indent}[--eval-every ${d.evalEvery}] [--checkpoint-every 500] [--max-minutes M] [--resume | --overwrite]`;

/** What the help of every training verb says about stopping, the time budget and the run folder. */
export const trainingHelp = (indent: string) =>
  [
    'Ctrl-C (or SIGTERM) saves a checkpoint and exits. --max-minutes M (or --minutes M) stops and',
    "saves after M minutes, before a machine's or a job's time ends. A RUN folder that is not empty",
    'is refused unless --resume continues it or --overwrite starts it over.',
  ]
    .map((line) => indent + line)
    .join('\n');

type Values = {
  [K in keyof typeof TRAINING_OPTIONS]?: (typeof TRAINING_OPTIONS)[K]['type'] extends 'boolean' ? boolean : string;
};

export type CommonTrainOptions = Omit<TrainOptions, 'onEvent' | 'signal' | 'onStep' | 'quiet'> & {
  batch: number;
  weightDecay: number;
};

/** The harness's options from the command line, with the verb's defaults. */
export function trainingValues(
  values: Values,
  defaults: { lr: number; weightDecay: number; evalEvery: number; steps?: number; batch?: number; warmup?: number },
): CommonTrainOptions {
  if (!values.out) throw new MuseError('--out RUN_FOLDER is required');
  const budget = values['max-minutes'] ?? values.minutes;
  const budgetName = values['max-minutes'] !== undefined ? 'max-minutes' : 'minutes';
  return {
    out: values.out,
    steps: numberOption(values.steps, 'steps', defaults.steps ?? 20000, { min: 1, integer: true }),
    batch: numberOption(values.batch, 'batch', defaults.batch ?? 32, { min: 1, integer: true }),
    lr: numberOption(values.lr, 'lr', defaults.lr),
    warmup: numberOption(values.warmup, 'warmup', defaults.warmup ?? 500, { integer: true }),
    weightDecay: numberOption(values['weight-decay'], 'weight-decay', defaults.weightDecay),
    seed: numberOption(values.seed, 'seed', 0, { integer: true }),
    evalEvery: numberOption(values['eval-every'], 'eval-every', defaults.evalEvery, { integer: true }),
    checkpointEvery: numberOption(values['checkpoint-every'], 'checkpoint-every', 500, { integer: true }),
    minutes: budget === undefined ? undefined : numberOption(budget, budgetName, 0),
    resume: !!values.resume,
    overwrite: !!values.overwrite,
  };
}

/** How a verb shows its run: the progress line's fields and a sentence for a validation. */
export interface TrainingView {
  /** The file the run's weights are published to (for the closing report). */
  weights: string;
  fields: (stats: Scalars) => Record<string, number>;
  validation: (stats: Scalars) => string;
}

/**
 * Runs a training job from the terminal: the process's SIGINT/SIGTERM abort it (handlers removed
 * when it ends), its events are printed on stderr, and the result is reported on stdout.
 */
export async function runTraining<S extends Scalars, E extends Scalars>(
  view: TrainingView,
  job: (control: { signal: AbortSignal; onEvent: (e: TrainEvent) => void }) => Promise<TrainResult<S, E>>,
): Promise<TrainResult<S, E>> {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(signal === 'SIGINT' ? 130 : 143);
    controller.abort(signal);
    console.error(`\n${signal}: saving a checkpoint after this step (send it again to quit without saving)`);
  };
  let progress: Progress | undefined;
  const onEvent = (e: TrainEvent) => {
    if (e.type === 'message') console.error(e.text);
    else if (e.type === 'start') {
      if (e.resumed) console.error(`resuming ${e.out} at step ${e.step}`);
      progress = new Progress({ total: e.steps, label: e.label, unit: 'step', startAt: e.step });
    } else if (e.type === 'step') progress?.tick(1, view.fields(e.stats));
    else if (e.type === 'validation') console.error(`\nstep ${e.step}: ${view.validation(e.stats)}`);
    else if (e.type === 'end') progress?.finish();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let r: TrainResult<S, E>;
  try {
    r = await job({ signal: controller.signal, onEvent });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  console.log(`${r.stoppedEarly ? 'stopped' : 'finished'} at step ${r.step}; weights in ${view.weights}`);
  const e = r.history.eval.at(-1);
  if (e) console.log(view.validation(e));
  return r;
}
