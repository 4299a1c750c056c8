import type { DatabasePool } from 'slonik';
import type { Environment, RetryPolicy, RunTiming } from '../config.js';
import type { Fields, Logger } from '../output/logger.js';
import type { StopController } from './stop.js';

/** Counts of one run, as printed in its summary. */
export interface RunCounters {
  claimed: number;
  succeeded: number;
  retried: number;
  dead: number;
  /** Claimed but not started (cooldown, stop, deadline) and given back without spending an attempt. */
  skipped: number;
  /** Outcomes not written because another run took the task over after the lease expired. */
  lost: number;
}

/** Everything a command's steps get from the engine for one run. */
export interface RunContext {
  runId: string;
  worker: string;
  pool: DatabasePool;
  logger: Logger;
  env: Environment;
  dryRun: boolean;
  limit: number;
  ids: bigint[] | undefined;
  concurrency: number;
  claimBatch: number;
  timing: RunTiming;
  retry: RetryPolicy;
  stop: StopController;
  counters: RunCounters;
  /** Reasons this run needs a person (exit 4): a guard rail, an invalid chain response, a dead task. */
  attention: string[];
  /** Worker-specific figures added to the summary (rows deleted, cutoff, notices written). */
  details: Fields;
  /** Lines a dry run prints: what each task would do. */
  plan: Array<{ task: string; action: string; fields?: Fields }>;
  /** Called whenever counters change, for the spinner. */
  onProgress: () => void;
}

export function emptyCounters(): RunCounters {
  return { claimed: 0, succeeded: 0, retried: 0, dead: 0, skipped: 0, lost: 0 };
}
