import { type DatabaseConnection, type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { requireVariable } from '../core/config.js';
import type { RunContext } from '../core/engine/context.js';
import type { WorkerSpec } from '../core/engine/runtime.js';
import { ConfigError } from '../core/errors.js';

/**
 * delete-wallet-transactions (singleton): deletes team-wallet spending rows older than the
 * retention period. Rows still `reserved` (a transaction in flight that the guard rails count)
 * are kept whatever their age. It walks the table's heap in block order, one range of blocks at a
 * time, and deletes each range's expired rows in one short autocommit statement with
 * `lock_timeout`, so no lock it takes is held for longer than one range. The walk reads every
 * block that existed when it started, so it neither depends on id or created_at order nor
 * re-scans blocks it already cleaned. Ranges are read with a TID range scan, which needs
 * PostgreSQL 14 or later.
 */

export interface DeleteWalletTransactionsOptions {
  retentionDays?: number | undefined;
  /** Rows of the table (expired or not) per range, converted to blocks with the table's row density. */
  batchSize?: number | undefined;
}

/** Consecutive lock timeouts after which the run stops and needs attention (exit 4). */
const MAX_LOCK_TIMEOUTS = 5;

/** First server_version_num with TID range scans (PostgreSQL 14). */
const MIN_SERVER_VERSION_NUM = 140_000;

/** Share of the heap walked between two `delete progress` log lines. */
const PROGRESS_LOG_SHARE = 0.1;

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
  assertTidRangeScans(await readServerVersion(ctx.pool));

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

  await deleteExpired(ctx, cutoff, batchSize, lockTimeoutMs);
}

/** Walks the heap as it is now on one pooled connection and records the totals in the summary. */
async function deleteExpired(ctx: RunContext, cutoff: Date, batchSize: number, lockTimeoutMs: number) {
  const heap = await readHeapSize(ctx.pool);
  const rangeBlocks = blocksPerRange(batchSize, heap);
  ctx.details.heap_blocks = heap.blocks;
  ctx.details.range_blocks = rangeBlocks;
  const walk = await ctx.pool.connect((connection) =>
    walkHeap(ctx, connection, { cutoff, heapBlocks: heap.blocks, rangeBlocks, lockTimeoutMs }),
  );
  ctx.details.deleted = walk.deleted;
  ctx.details.blocks_walked = walk.blocksWalked;
  ctx.details.ranges = walk.ranges;
  ctx.details.max_range_ms = walk.maxRangeMs;
  ctx.logger.info('expired spending rows deleted', {
    deleted: walk.deleted,
    cutoff: cutoff.toISOString(),
    blocks_walked: walk.blocksWalked,
    heap_blocks: heap.blocks,
  });
}

/** Rejects servers older than PostgreSQL 14, where each range would read the whole table. */
export function assertTidRangeScans(serverVersionNum: number): void {
  if (serverVersionNum < MIN_SERVER_VERSION_NUM) {
    throw new ConfigError(
      `DATABASE_URL: server_version_num ${serverVersionNum} is older than PostgreSQL 14, which delete-wallet-transactions needs for TID range scans (upgrade the server)`,
    );
  }
}

async function readServerVersion(pool: DatabasePool): Promise<number> {
  return pool.oneFirst(
    sql.type(z.object({ version: z.number() }))`SELECT current_setting('server_version_num')::int AS version`,
  );
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

interface HeapSize {
  /** Blocks of the table when the walk starts. Rows inserted after that are new, so not expired. */
  blocks: number;
  blockSizeBytes: number;
  /** Planner estimates from the last VACUUM or ANALYZE; `reltuples` is -1 before the first one. */
  estimatedRows: number;
  estimatedBlocks: number;
}

async function readHeapSize(pool: DatabasePool): Promise<HeapSize> {
  const row = await pool.one(
    sql.type(
      z.object({
        blocks: z.bigint(),
        block_size: z.number(),
        reltuples: z.number(),
        relpages: z.number(),
      }),
    )`
      SELECT pg_relation_size(oid) / current_setting('block_size')::int AS blocks,
             current_setting('block_size')::int AS block_size,
             reltuples::float8 AS reltuples,
             relpages
      FROM pg_class WHERE oid = 'team_wallet_spending'::regclass`,
  );
  return {
    blocks: Number(row.blocks),
    blockSizeBytes: row.block_size,
    estimatedRows: row.reltuples,
    estimatedBlocks: row.relpages,
  };
}

/**
 * Converts the batch size in rows into blocks per range with the planner's rows-per-block
 * estimate. Without an estimate it assumes the maximum tuples a heap block can contain (24-byte
 * page header, 28 bytes per minimal tuple with its line pointer). Ranges then stay within the
 * batch size but are more numerous until autovacuum or ANALYZE has run.
 */
export function blocksPerRange(batchSize: number, heap: HeapSize): number {
  const maxRowsPerBlock = Math.floor((heap.blockSizeBytes - 24) / 28);
  const estimated =
    heap.estimatedRows >= 0 && heap.estimatedBlocks > 0
      ? heap.estimatedRows / heap.estimatedBlocks
      : maxRowsPerBlock;
  const rowsPerBlock = Math.min(Math.max(estimated, 1), maxRowsPerBlock);
  return Math.max(1, Math.floor(batchSize / rowsPerBlock));
}

interface WalkPlan {
  cutoff: Date;
  heapBlocks: number;
  rangeBlocks: number;
  lockTimeoutMs: number;
}

interface WalkResult {
  deleted: number;
  /** Blocks from 0 up to where the walk stopped; equals the heap size unless it stopped early. */
  blocksWalked: number;
  ranges: number;
  /** Maximum duration of one range statement, lock waits and timed-out attempts included. */
  maxRangeMs: number;
}

/**
 * Deletes the expired rows of blocks [0, heapBlocks) range by range, in block order. A range
 * that hits lock_timeout is retried from its start, because its statement rolled back whole.
 * After MAX_LOCK_TIMEOUTS timeouts in a row the walk stops and the run needs attention. A stop
 * request ends the walk between ranges, so every range is either done or untouched.
 * NOTE: an expired row that a concurrent UPDATE moves into a block the walk has passed, or past
 * heapBlocks, stays until the next run.
 */
async function walkHeap(
  ctx: RunContext,
  connection: DatabaseConnection,
  plan: WalkPlan,
): Promise<WalkResult> {
  await applyRangeSettings(connection, plan.lockTimeoutMs);
  let result: WalkResult;
  try {
    result = await walkRanges(ctx, connection, plan);
  } finally {
    await resetRangeSettings(connection);
  }
  if (result.blocksWalked < plan.heapBlocks && ctx.stop.stopping) {
    ctx.logger.warn('delete stopped before the end of the table', {
      reason: ctx.stop.reason,
      deleted: result.deleted,
      blocks_walked: result.blocksWalked,
      heap_blocks: plan.heapBlocks,
    });
  }
  return result;
}

async function walkRanges(
  ctx: RunContext,
  connection: DatabaseConnection,
  plan: WalkPlan,
): Promise<WalkResult> {
  const result: WalkResult = { deleted: 0, blocksWalked: 0, ranges: 0, maxRangeMs: 0 };
  let lockTimeouts = 0;
  while (result.blocksWalked < plan.heapBlocks && !ctx.stop.stopping) {
    const endBlock = Math.min(result.blocksWalked + plan.rangeBlocks, plan.heapBlocks);
    const started = performance.now();
    const count = await deleteRangeUnlessLockTimeout(connection, plan.cutoff, result.blocksWalked, endBlock);
    result.maxRangeMs = Math.max(result.maxRangeMs, Math.round(performance.now() - started));
    if (count === undefined) {
      lockTimeouts += 1;
      if (!handleLockTimeout(ctx, plan, result, lockTimeouts)) {
        break;
      }
      continue;
    }
    lockTimeouts = 0;
    recordRange(ctx, plan, result, count, endBlock);
  }
  return result;
}

/**
 * Logs a lock timeout of the range starting at `result.blocksWalked` and returns whether to retry
 * it. Past MAX_LOCK_TIMEOUTS in a row it flags the run for attention and returns false.
 */
function handleLockTimeout(
  ctx: RunContext,
  plan: WalkPlan,
  result: WalkResult,
  lockTimeouts: number,
): boolean {
  if (lockTimeouts > MAX_LOCK_TIMEOUTS) {
    ctx.logger.error('delete stopped: lock_timeout hit repeatedly', {
      lock_timeout_ms: plan.lockTimeoutMs,
      start_block: result.blocksWalked,
    });
    ctx.attention.push(
      `delete stopped after ${MAX_LOCK_TIMEOUTS} lock timeouts in a row at block ${result.blocksWalked} of ${plan.heapBlocks}; ${result.deleted} rows deleted`,
    );
    return false;
  }
  ctx.logger.warn('delete range hit lock_timeout; retrying', {
    lock_timeout_ms: plan.lockTimeoutMs,
    timeouts_in_a_row: lockTimeouts,
    start_block: result.blocksWalked,
  });
  return true;
}

/** Adds a finished range to the totals and logs progress each time the walk passes another tenth of the heap. */
function recordRange(
  ctx: RunContext,
  plan: WalkPlan,
  result: WalkResult,
  count: number,
  endBlock: number,
): void {
  const progressEveryBlocks = Math.max(1, Math.ceil(plan.heapBlocks * PROGRESS_LOG_SHARE));
  const passedProgressMark =
    Math.floor(endBlock / progressEveryBlocks) > Math.floor(result.blocksWalked / progressEveryBlocks);
  result.deleted += count;
  result.ranges += 1;
  result.blocksWalked = endBlock;
  ctx.logger.debug('delete range done', {
    deleted: count,
    end_block: endBlock,
    heap_blocks: plan.heapBlocks,
  });
  if (passedProgressMark && endBlock < plan.heapBlocks) {
    ctx.logger.info('delete progress', {
      deleted: result.deleted,
      blocks_walked: endBlock,
      heap_blocks: plan.heapBlocks,
    });
  }
}

/**
 * Session settings of the walk's connection, reset before the connection returns to the pool.
 *
 * - lock_timeout bounds every wait, for the table lock and for each row lock. A row another
 *   transaction has locked is waited for, not skipped. The workers update only `reserved` rows,
 *   which the walk neither deletes nor locks, so such a wait is rare, and while it lasts the
 *   range holds locks only on expired rows. Waiting means a range is either fully cleaned or
 *   retried, so a run that exits 0 left no expired row behind. Skipping locked rows would need
 *   a `FOR UPDATE SKIP LOCKED` sub-select joined back by ctid, which made each range slower.
 * - synchronous_commit off: a delete lost in a server crash only leaves rows for the next run,
 *   and not waiting for each range's WAL flush keeps the many small commits cheap.
 * - Sequential, index and bitmap scans off, so each range is read with a TID range scan. With
 *   few expired rows estimated the planner would otherwise pick the created_at index, whose scan
 *   reads every expired index entry of the table for each range when the estimate is wrong.
 */
async function applyRangeSettings(connection: DatabaseConnection, lockTimeoutMs: number): Promise<void> {
  await connection.query(sql.unsafe`
    SELECT set_config('lock_timeout', ${`${lockTimeoutMs}ms`}, false),
           set_config('synchronous_commit', 'off', false),
           set_config('enable_seqscan', 'off', false),
           set_config('enable_indexscan', 'off', false),
           set_config('enable_bitmapscan', 'off', false)`);
}

async function resetRangeSettings(connection: DatabaseConnection): Promise<void> {
  for (const statement of [
    sql.unsafe`RESET lock_timeout`,
    sql.unsafe`RESET synchronous_commit`,
    sql.unsafe`RESET enable_seqscan`,
    sql.unsafe`RESET enable_indexscan`,
    sql.unsafe`RESET enable_bitmapscan`,
  ]) {
    await connection.query(statement);
  }
}

/** Runs deleteRange, returning undefined when the statement hit lock_timeout and rolled back. */
async function deleteRangeUnlessLockTimeout(
  connection: DatabaseConnection,
  cutoff: Date,
  startBlock: number,
  endBlock: number,
): Promise<number | undefined> {
  try {
    return await deleteRange(connection, cutoff, startBlock, endBlock);
  } catch (error) {
    if (isLockTimeout(error)) {
      return undefined;
    }
    throw error;
  }
}

/**
 * Deletes the expired rows stored in blocks [startBlock, endBlock) in one autocommit statement.
 * The filter on created_at and state decides which rows go, whatever their block. A row with a
 * later id stored in an early block (free space reused after a VACUUM) is judged by its own age.
 */
async function deleteRange(
  connection: DatabaseConnection,
  cutoff: Date,
  startBlock: number,
  endBlock: number,
): Promise<number> {
  const result = await connection.query(sql.unsafe`
    DELETE FROM team_wallet_spending
    WHERE ctid >= ${`(${startBlock},0)`}::tid AND ctid < ${`(${endBlock},0)`}::tid
      AND created_at < ${cutoff.toISOString()} AND state <> 'reserved'`);
  return result.rowCount;
}

/** PostgreSQL's lock_not_available (55P03), raised when lock_timeout expires. */
function isLockTimeout(error: unknown): boolean {
  const cause = (error as { cause?: { code?: string } })?.cause;
  return cause?.code === '55P03' || (error as { code?: string })?.code === '55P03';
}
