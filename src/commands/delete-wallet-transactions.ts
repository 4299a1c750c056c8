import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { requireVariable } from '../core/config.js';
import type { RunContext } from '../core/engine/context.js';
import type { WorkerSpec } from '../core/engine/runtime.js';
import { ConfigError } from '../core/errors.js';

/**
 * delete-wallet-transactions (singleton): deletes team-wallet spending rows older than the
 * retention period. It deletes in batches, each its own short transaction with `lock_timeout`,
 * so no lock it takes is held for longer than one batch. Rows still `reserved` (a
 * transaction in flight that the guard rails count) are kept whatever their age.
 */

export interface DeleteWalletTransactionsOptions {
  retentionDays?: number | undefined;
  batchSize?: number | undefined;
}

/** Consecutive lock timeouts of one batch after which the run stops and needs attention (exit 4). */
const MAX_LOCK_TIMEOUTS = 5;

export function deleteWalletTransactions(options: DeleteWalletTransactionsOptions): WorkerSpec {
  return { name: 'delete-wallet-transactions', singleton: true, body: (ctx) => run(ctx, options) };
}

async function run(ctx: RunContext, options: DeleteWalletTransactionsOptions): Promise<void> {
  const retentionDays = options.retentionDays ?? requireVariable(ctx.env, 'ZBOX_RETENTION_DAYS');
  const batchSize = options.batchSize ?? requireVariable(ctx.env, 'ZBOX_DELETE_BATCH_SIZE');
  const lockTimeoutMs = requireVariable(ctx.env, 'ZBOX_LOCK_TIMEOUT_MS');
  if (!(retentionDays >= 1)) {
    throw new ConfigError(
      `--retention-days: ${retentionDays} would delete current rows (use whole days of at least 1)`,
    );
  }

  const cutoff = await readCutoff(ctx.pool, retentionDays);
  ctx.details.cutoff = cutoff.toISOString();
  ctx.details.retention_days = retentionDays;

  if (ctx.dryRun) {
    const count = await countExpired(ctx.pool, cutoff);
    ctx.details.would_delete = count;
    ctx.plan.push({
      task: 'spending rows',
      action: `delete ${count} rows created before ${cutoff.toISOString()}`,
    });
    return;
  }

  const deleted = await deleteInBatches(ctx, cutoff, batchSize, lockTimeoutMs);
  ctx.details.deleted = deleted;
  ctx.logger.info('expired spending rows deleted', { deleted, cutoff: cutoff.toISOString() });
}

async function readCutoff(pool: DatabasePool, retentionDays: number): Promise<Date> {
  return pool.oneFirst(
    sql.type(
      z.object({ cutoff: z.date() }),
    )`SELECT now() - make_interval(days => ${retentionDays}) AS cutoff`,
  );
}

async function countExpired(pool: DatabasePool, cutoff: Date): Promise<bigint> {
  return pool.oneFirst(sql.type(z.object({ count: z.bigint() }))`
    SELECT count(*) AS count FROM team_wallet_spending
    WHERE created_at < ${cutoff.toISOString()} AND state <> 'reserved'`);
}

async function deleteInBatches(ctx: RunContext, cutoff: Date, batchSize: number, lockTimeoutMs: number) {
  let deleted = 0;
  let lockTimeouts = 0;
  while (!ctx.stop.stopping) {
    let count: number;
    try {
      count = await deleteBatch(ctx.pool, cutoff, batchSize, lockTimeoutMs);
    } catch (error) {
      if (!isLockTimeout(error)) {
        throw error;
      }
      if (++lockTimeouts > MAX_LOCK_TIMEOUTS) {
        ctx.logger.error('delete stopped: lock_timeout hit repeatedly', { lock_timeout_ms: lockTimeoutMs });
        ctx.attention.push(
          `delete stopped after ${MAX_LOCK_TIMEOUTS} lock timeouts in a row; ${deleted} rows deleted`,
        );
        break;
      }
      ctx.logger.warn('delete batch hit lock_timeout; retrying', {
        lock_timeout_ms: lockTimeoutMs,
        timeouts_in_a_row: lockTimeouts,
      });
      continue;
    }
    lockTimeouts = 0;
    deleted += count;
    if (count < batchSize) {
      break;
    }
  }
  return deleted;
}

/** Deletes one batch in its own transaction; rows another transaction has locked are left for later. */
async function deleteBatch(pool: DatabasePool, cutoff: Date, batchSize: number, lockTimeoutMs: number) {
  return pool.transaction(async (tx) => {
    await tx.query(sql.unsafe`SELECT set_config('lock_timeout', ${`${lockTimeoutMs}ms`}, true)`);
    const result = await tx.query(sql.unsafe`
      DELETE FROM team_wallet_spending
      WHERE id IN (
        SELECT id FROM team_wallet_spending
        WHERE created_at < ${cutoff.toISOString()} AND state <> 'reserved'
        LIMIT ${batchSize}
        FOR UPDATE SKIP LOCKED
      )`);
    return result.rowCount;
  });
}

/** PostgreSQL's lock_not_available (55P03), raised when lock_timeout expires. */
function isLockTimeout(error: unknown): boolean {
  const cause = (error as { cause?: { code?: string } })?.cause;
  return cause?.code === '55P03' || (error as { code?: string })?.code === '55P03';
}
