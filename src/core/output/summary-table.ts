import chalk from 'chalk';
import { sanitizeFields, toJson } from './logger.js';
import type { RunSummary } from './summary.js';

// The terminal table lives apart from summary.ts so that JSON mode, which every CronJob run
// uses, does not load chalk.

/** Formats the summary as a small table for a terminal. */
export function summaryTable(summary: RunSummary): string {
  const rows: Array<[string, string]> = [
    ['worker', summary.worker],
    ['run id', summary.run_id],
  ];
  if (summary.dry_run) {
    rows.push(['mode', chalk.cyan('dry run: nothing was changed')]);
  }
  if (showsTaskCounters(summary)) {
    rows.push(
      ['claimed', String(summary.claimed)],
      ['succeeded', chalk.green(String(summary.succeeded))],
      ['retried', summary.retried > 0 ? chalk.yellow(String(summary.retried)) : '0'],
      ['dead', summary.dead > 0 ? chalk.red(String(summary.dead)) : '0'],
      ['skipped', String(summary.skipped)],
    );
  }
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

/**
 * Returns false when every task counter is 0 and the details report what the run did. That is
 * a singleton worker's run, which counts no task (delete-wallet-transactions reports `deleted`),
 * or a queue worker's run that claimed nothing after its producer step reported its figures. A
 * run with neither counters nor details keeps the counters, so the table shows that nothing was
 * claimed. The JSON summary always carries every counter.
 */
function showsTaskCounters(summary: RunSummary): boolean {
  const counters = [
    summary.claimed,
    summary.succeeded,
    summary.retried,
    summary.dead,
    summary.skipped,
    summary.lost,
  ];
  const hasDetails = Object.values(summary.details).some((value) => value !== undefined);
  return counters.some((count) => count > 0) || !hasDetails;
}
