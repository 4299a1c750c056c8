import type { RunCounters } from '../engine/context.js';
import { type Fields, sanitizeFields, toJson } from './logger.js';

/** The last line of a run: what it did, how long it took and the exit code it leaves with. */
export interface RunSummary extends RunCounters {
  worker: string;
  run_id: string;
  dry_run: boolean;
  duration_ms: number;
  exit_code: number;
  attention: string[];
  details: Fields;
}

/** Formats the summary as one JSON object on a line, the last line of a JSON-mode run. */
export function summaryJsonLine(summary: RunSummary): string {
  return toJson({
    level: summary.exit_code === 0 ? 'info' : 'warn',
    time: new Date().toISOString(),
    worker: summary.worker,
    run_id: summary.run_id,
    msg: 'run summary',
    ...sanitizeFields({ ...summary }),
  });
}
