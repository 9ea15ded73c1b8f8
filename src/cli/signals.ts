// The process's stop signals, for the verbs that run until stopped (serve, worker). Only the CLI
// installs signal handlers; the library takes an AbortSignal.

/** Resolves at the first SIGINT or SIGTERM, with the signal; the handlers are removed then. */
export function untilStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve(signal);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
