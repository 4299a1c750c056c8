import { sql } from 'slonik';
import { z } from 'zod';
import { readVariable } from '../core/config.js';
import { openDatabase, type RuntimeIo } from '../core/engine/runtime.js';
import { ConfigError } from '../core/errors.js';
import { EXIT } from '../core/exit-codes.js';
import { createLogger } from '../core/output/logger.js';
import { findWorker, WORKER_CATALOG } from './catalog.js';

/**
 * requeue: moves dead tasks of a queue worker back to pending, due now, with attempts reset, and
 * says which it moved and the reason each had died. `--dry-run` only lists them.
 */

export interface RequeueOptions {
  worker: string;
  ids?: bigint[] | undefined;
  allDead: boolean;
  dryRun: boolean;
  json: boolean;
  embedded: boolean;
}

const movedRow = z.object({ id: z.bigint(), last_error: z.string().nullable() });
const stateRow = z.object({ id: z.bigint(), status: z.string() });

export async function runRequeue(options: RequeueOptions, io: RuntimeIo): Promise<number> {
  const table = queueTableOf(options);
  const logger = createLogger(
    {
      json: options.json,
      level: readVariable(io.env, 'ZBOX_LOG_LEVEL') ?? 'info',
      write: (line) => io.writeOut(`${line}\n`),
    },
    { worker: 'requeue' },
  );
  const database = await openDatabase(io.env, options.embedded, logger);
  try {
    const filter =
      options.ids === undefined
        ? sql.fragment`TRUE`
        : sql.fragment`id = ANY(${sql.array(options.ids, 'int8')})`;
    const rows = options.dryRun
      ? await database.pool.any(sql.type(movedRow)`
          SELECT id, last_error FROM ${sql.identifier([table])} WHERE status = 'dead' AND ${filter} ORDER BY id`)
      : await database.pool.any(sql.type(movedRow)`
          UPDATE ${sql.identifier([table])} AS t
          SET status = 'pending', attempts = 0, next_attempt_at = now(), locked_by = NULL, locked_until = NULL,
              completed_at = NULL, updated_at = now()
          FROM (SELECT id, last_error FROM ${sql.identifier([table])} WHERE status = 'dead' AND ${filter} FOR UPDATE) AS old
          WHERE t.id = old.id
          RETURNING t.id, old.last_error`);
    for (const row of rows) {
      logger.info(options.dryRun ? 'would requeue dead task' : 'dead task requeued', {
        task_id: String(row.id),
        last_error: row.last_error,
      });
    }
    if (options.ids !== undefined) {
      const moved = new Set(rows.map((row) => row.id));
      const others = await database.pool.any(sql.type(stateRow)`
        SELECT id, status FROM ${sql.identifier([table])} WHERE id = ANY(${sql.array(options.ids, 'int8')})`);
      const known = new Map(others.map((row) => [row.id, row.status]));
      for (const id of options.ids.filter((item) => !moved.has(item))) {
        const status = known.get(id);
        logger.warn('task not requeued', {
          task_id: String(id),
          reason: status === undefined ? 'unknown id: no such task' : `status is ${status}, not dead`,
        });
      }
    }
    logger.info(options.dryRun ? 'requeue dry run: nothing was changed' : 'requeue done', {
      queue_worker: options.worker,
      count: rows.length,
    });
    return EXIT.ok;
  } finally {
    await database.close();
  }
}

function queueTableOf(options: RequeueOptions): string {
  const entry = findWorker(options.worker);
  if (entry === undefined) {
    const names = WORKER_CATALOG.map((item) => item.name).join(', ');
    throw new ConfigError(`requeue: unknown worker "${options.worker}" (one of: ${names})`);
  }
  if (entry.queueTable === undefined) {
    throw new ConfigError(`requeue: ${entry.name} is a singleton worker without a task queue`);
  }
  if ((options.ids === undefined) === !options.allDead) {
    throw new ConfigError('requeue: give either --id <id> (repeatable) or --all-dead');
  }
  return entry.queueTable;
}
