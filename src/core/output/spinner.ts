import ora from 'ora';
import type { RunCounters } from '../engine/context.js';

/** A terminal spinner showing a run's counters while its tasks execute. */
export interface Spinner {
  start(): void;
  update(counters: RunCounters): void;
  stop(): void;
  /** Clears the spinner line around a log line so the two never mix. */
  around: (print: () => void) => void;
}

export function createSpinner(worker: string): Spinner {
  const spinner = ora({ text: `${worker}: starting`, stream: process.stderr, discardStdin: false });
  return {
    start: () => {
      spinner.start();
    },
    update: (counters) => {
      spinner.text = `${worker}: ${counters.claimed} claimed, ${counters.succeeded} succeeded, ${counters.retried} retried, ${counters.dead} dead`;
    },
    stop: () => {
      spinner.stop();
    },
    around: (print) => {
      const spinning = spinner.isSpinning;
      if (spinning) {
        spinner.clear();
      }
      print();
      if (spinning) {
        spinner.render();
      }
    },
  };
}
