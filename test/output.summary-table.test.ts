import assert from 'node:assert/strict';
import { test } from 'node:test';
import { stripVTControlCharacters } from 'node:util';
import { emptyCounters } from '../src/core/engine/context.js';
import type { Fields } from '../src/core/output/logger.js';
import type { RunSummary } from '../src/core/output/summary.js';
import { summaryJsonLine } from '../src/core/output/summary.js';
import { summaryTable } from '../src/core/output/summary-table.js';

function summary(fields: Partial<RunSummary> & { details?: Fields } = {}): RunSummary {
  return {
    worker: 'delete-wallet-transactions',
    run_id: '00000000-0000-4000-8000-000000000000',
    dry_run: false,
    ...emptyCounters(),
    duration_ms: 1200,
    exit_code: 0,
    attention: [],
    details: {},
    ...fields,
  };
}

/** Labels of the table's rows, in order. */
function labels(text: string): string[] {
  return stripVTControlCharacters(text)
    .split('\n')
    .map((line) => line.trim().split(/\s{2,}/)[0] ?? '');
}

const COUNTERS = ['claimed', 'succeeded', 'retried', 'dead', 'skipped'];

test('singleton run shows its details without counters', () => {
  const run = summary({ details: { deleted: 40, ranges: 2 } });
  const labelsShown = labels(summaryTable(run));

  for (const counter of COUNTERS) {
    assert.ok(!labelsShown.includes(counter), `${counter} is left out`);
  }
  assert.ok(labelsShown.includes('deleted'));
  assert.ok(labelsShown.includes('exit code'));
  assert.match(summaryJsonLine(run), /"claimed":0,"succeeded":0,"retried":0,"dead":0,"skipped":0/);
});

test('run with tasks shows every counter', () => {
  const labelsShown = labels(
    summaryTable(summary({ claimed: 3, succeeded: 3, details: { current_round: 10 } })),
  );

  for (const counter of COUNTERS) {
    assert.ok(labelsShown.includes(counter), `${counter} is shown`);
  }
});

test('run without tasks or details shows counters', () => {
  const labelsShown = labels(summaryTable(summary({ details: { current_round: undefined } })));

  for (const counter of COUNTERS) {
    assert.ok(labelsShown.includes(counter), `${counter} is shown`);
  }
});

test('singleton stored result keeps counter', () => {
  const labelsShown = labels(
    summaryTable(summary({ worker: 'free-storage', succeeded: 1, details: { changed_fields: 2 } })),
  );

  assert.ok(labelsShown.includes('succeeded'));
});
