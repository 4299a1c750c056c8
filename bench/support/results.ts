import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describeMachine, describeVersions, type MachineInfo, type QuietCheck } from './environment.js';

/**
 * bench/RESULTS.md keeps one table row per benchmark figure. Each benchmark replaces its own rows
 * (matched by the first cell) and leaves the others as they are.
 */

const RESULTS_PATH = fileURLToPath(new URL('../RESULTS.md', import.meta.url));

const PREAMBLE = `# Benchmark results

Each row is written by the npm script named by the first word of its first cell (\`startup\`
is \`npm run bench:startup\`), which replaces only its own rows. The scripts use the PostgreSQL
server in \`DATABASE_URL\`, or \`postgres://postgres@127.0.0.1:5432/test\` when it is unset, and
create and drop their own databases. Each waits up to \`BENCH_QUIET_WAIT_MINUTES\` (default 20)
for a one-minute load average below 1, then prints the machine, the versions and how it measured.
Ratios are medians of per-pair ratios, where each pair runs both sides back to back in
alternating order. The load column is the one-minute load average when measuring started and
when it ended. The benchmarks are not part of \`npm test\`.

| benchmark | date | machine | versions | load (start, end) | figures | goal | met |
| --- | --- | --- | --- | --- | --- | --- | --- |
`;

export interface ResultRow {
  /** First cell, unique per row, starting with the script name after `bench:` (`startup: --help`). */
  benchmark: string;
  figures: string;
  goal: string;
  /** Whether the goal was met, with the measured bound. */
  met: string;
}

export function writeResultRows(
  rows: ResultRow[],
  machine: MachineInfo,
  quiet: QuietCheck,
  loadAtEnd: number,
): void {
  const text = existsSync(RESULTS_PATH) ? readFileSync(RESULTS_PATH, 'utf8') : PREAMBLE;
  const lines = text.trimEnd().split('\n');
  const date = new Date().toISOString().slice(0, 10);
  const load = `${quiet.loadAtStart}, ${loadAtEnd}${quiet.quiet ? '' : ' (waited, not quiet)'}`;
  for (const row of rows) {
    const cells = [
      row.benchmark,
      date,
      describeMachine(machine),
      describeVersions(machine),
      load,
      row.figures,
      row.goal,
      row.met,
    ];
    const line = `| ${cells.map(escapeCell).join(' | ')} |`;
    const existing = lines.findIndex((candidate) => candidate.startsWith(`| ${escapeCell(row.benchmark)} |`));
    if (existing >= 0) {
      lines[existing] = line;
    } else {
      lines.splice(lastTableLine(lines) + 1, 0, line);
    }
  }
  writeFileSync(RESULTS_PATH, `${lines.join('\n')}\n`);
  console.log(`rows written to ${RESULTS_PATH}`);
}

function lastTableLine(lines: string[]): number {
  let last = -1;
  lines.forEach((line, index) => {
    if (line.startsWith('|')) {
      last = index;
    }
  });
  return last;
}

function escapeCell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}
