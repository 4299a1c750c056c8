import chalk from 'chalk';
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

/** Formats the summary as a small table for a terminal. */
export function summaryTable(summary: RunSummary): string {
  const rows: Array<[string, string]> = [
    ['worker', summary.worker],
    ['run id', summary.run_id],
  ];
  if (summary.dry_run) {
    rows.push(['mode', chalk.cyan('dry run: nothing was changed')]);
  }
  rows.push(
    ['claimed', String(summary.claimed)],
    ['succeeded', chalk.green(String(summary.succeeded))],
    ['retried', summary.retried > 0 ? chalk.yellow(String(summary.retried)) : '0'],
    ['dead', summary.dead > 0 ? chalk.red(String(summary.dead)) : '0'],
    ['skipped', String(summary.skipped)],
  );
  if (summary.lost > 0) {
    rows.push(['lost lease', chalk.yellow(String(summary.lost))]);
  }
  for (const [key, value] of Object.entries(sanitizeFields(summary.details))) {
    rows.push([key.replaceAll('_', ' '), typeof value === 'string' ? value : toJson(value)]);
  }
  rows.push(['duration', `${(summary.duration_ms / 1000).toFixed(2)} s`]);
  const exit = summary.exit_code === 0 ? chalk.green('0') : chalk.red(String(summary.exit_code));
  rows.push(['exit code', exit]);
  for (const reason of summary.attention) {
    rows.push(['attention', chalk.red(reason)]);
  }
  const width = Math.max(...rows.map(([key]) => key.length));
  return rows.map(([key, value]) => `  ${chalk.dim(key.padEnd(width))}  ${value}`).join('\n');
}
