import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { readVariable } from '../core/config.js';
import { openDatabase, type RuntimeIo } from '../core/engine/runtime.js';
import { EXIT } from '../core/exit-codes.js';
import { createLogger, toJson } from '../core/output/logger.js';
import { WORKER_CATALOG, type WorkerEntry } from './catalog.js';

/**
 * status: per worker, the queue's due, in-progress, retrying and dead counts, the age of the
 * oldest due task, and the last real run's summary and exit code. It reads only.
 */

export interface WorkerStatus {
  worker: string;
  schedule: string;
  queue?: {
    due: bigint;
    in_progress: bigint;
    retrying: bigint;
    dead: bigint;
    oldest_due_seconds: number | null;
  };
  last_run: {
    run_id: string;
    started_at: string;
    finished_at: string | null;
    exit_code: number | null;
    summary: Record<string, unknown> | null;
  } | null;
}

const queueRow = z.object({
  due: z.bigint(),
  in_progress: z.bigint(),
  retrying: z.bigint(),
  dead: z.bigint(),
  oldest_due_seconds: z.number().nullable(),
});

async function readQueue(pool: DatabasePool, table: string) {
  return pool.one(sql.type(queueRow)`
    SELECT
      count(*) FILTER (WHERE (status = 'pending' AND next_attempt_at <= now())
                          OR (status = 'in_progress' AND locked_until < now())) AS due,
      count(*) FILTER (WHERE status = 'in_progress' AND locked_until >= now()) AS in_progress,
      count(*) FILTER (WHERE status = 'pending' AND attempts > 0 AND next_attempt_at > now()) AS retrying,
      count(*) FILTER (WHERE status = 'dead') AS dead,
      extract(epoch FROM now() - min(next_attempt_at) FILTER (WHERE status = 'pending' AND next_attempt_at <= now()))::float8
        AS oldest_due_seconds
    FROM ${sql.identifier([table])}`);
}

const runRow = z.object({
  run_id: z.string(),
  started_at: z.date(),
  finished_at: z.date().nullable(),
  exit_code: z.number().nullable(),
  summary: z.record(z.string(), z.unknown()).nullable(),
});

async function readLastRun(pool: DatabasePool, worker: string): Promise<WorkerStatus['last_run']> {
  const row = await pool.maybeOne(sql.type(runRow)`
    SELECT run_id::text, started_at, finished_at, exit_code, summary FROM zbox_runs
    WHERE worker = ${worker} ORDER BY started_at DESC LIMIT 1`);
  if (row === null) {
    return null;
  }
  return {
    run_id: row.run_id,
    started_at: row.started_at.toISOString(),
    finished_at: row.finished_at?.toISOString() ?? null,
    exit_code: row.exit_code,
    summary: row.summary,
  };
}

export async function readStatus(pool: DatabasePool, workers: readonly WorkerEntry[] = WORKER_CATALOG) {
  const statuses: WorkerStatus[] = [];
  for (const entry of workers) {
    const status: WorkerStatus = {
      worker: entry.name,
      schedule: entry.schedule,
      last_run: await readLastRun(pool, entry.name),
    };
    if (entry.queueTable !== undefined) {
      status.queue = await readQueue(pool, entry.queueTable);
    }
    statuses.push(status);
  }
  return statuses;
}

export async function runStatus(
  options: { json: boolean; embedded: boolean },
  io: RuntimeIo,
): Promise<number> {
  const logger = createLogger(
    {
      json: options.json,
      level: readVariable(io.env, 'ZBOX_LOG_LEVEL') ?? 'info',
      write: (line) => io.writeOut(`${line}\n`),
    },
    { worker: 'status' },
  );
  const database = await openDatabase(io.env, options.embedded, logger);
  try {
    const statuses = await readStatus(database.pool);
    io.writeOut(
      options.json ? `${toJson({ msg: 'status', workers: statuses })}\n` : `${formatStatus(statuses)}\n`,
    );
    return EXIT.ok;
  } finally {
    await database.close();
  }
}

/** Renders one line per worker: queue counts, then the last run. */
export function formatStatus(statuses: WorkerStatus[]): string {
  const header = ['worker', 'due', 'in progress', 'retrying', 'dead', 'oldest due', 'last run', 'exit'];
  const rows = statuses.map((status) => [
    status.worker,
    status.queue === undefined ? '-' : String(status.queue.due),
    status.queue === undefined ? '-' : String(status.queue.in_progress),
    status.queue === undefined ? '-' : String(status.queue.retrying),
    status.queue === undefined ? '-' : String(status.queue.dead),
    status.queue?.oldest_due_seconds == null ? '-' : `${Math.round(status.queue.oldest_due_seconds)} s`,
    status.last_run?.started_at ?? 'never',
    status.last_run?.exit_code == null ? '-' : String(status.last_run.exit_code),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  return [header, ...rows]
    .map((row) => row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  '))
    .join('\n');
}
