import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import {
  assertTidRangeScans,
  blocksPerRange,
  deleteWalletTransactions,
} from '../src/commands/delete-wallet-transactions.js';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { ConfigError } from '../src/core/errors.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { runCli, summaryOf } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { sleep, testContext } from './support/engine.js';

let database: TestDatabase;
let pool: DatabasePool;

before(async () => {
  database = await createTestDatabase('delete_wallet_transactions');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 2 });
});

after(async () => {
  await pool.end();
  await database.drop();
});

/** Rows per range passed to the worker: a few blocks of the test rows, so a run walks many ranges. */
const SMALL_BATCH = 200;

/**
 * Refills the table with 12,000 rows interleaved in every block: per 24 rows, 14 settled and 1
 * released rows past 90 days (7,500 expired), 1 reserved row past 90 days and 8 settled rows
 * of 89 days (4,500 kept). ANALYZE gives the planner's rows-per-block estimate the worker reads.
 */
async function fillSpending(): Promise<void> {
  await pool.query(sql.unsafe`TRUNCATE team_wallet_spending RESTART IDENTITY`);
  await pool.query(sql.unsafe`
    INSERT INTO team_wallet_spending (wallet_client_id, purpose, amount_sas, fee_sas, state, created_at)
    SELECT 'team', 'funding',
           CASE WHEN n % 24 = 14 THEN 5 WHEN n % 24 >= 16 THEN 7 ELSE 10000000000 END,
           1000,
           CASE WHEN n % 24 = 14 THEN 'reserved' WHEN n % 24 = 15 THEN 'released' ELSE 'settled' END,
           CASE WHEN n % 24 >= 16 THEN now() - interval '89 days'
                ELSE now() - interval '91 days' - n * interval '1 minute' END
    FROM generate_series(1, 12000) AS n`);
  await pool.query(sql.unsafe`ANALYZE team_wallet_spending`);
}

const EXPIRED_ROWS = 7500n;
const KEPT_SUM_SAS = 500n * 5n + 4000n * 7n;

async function counts() {
  return pool.one(
    sql.type(
      z.object({ total: z.bigint(), expired: z.bigint(), old_reserved: z.bigint(), sum_sas: z.bigint() }),
    )`
      SELECT count(*) AS total,
             count(*) FILTER (WHERE created_at < now() - interval '90 days' AND state <> 'reserved') AS expired,
             count(*) FILTER (WHERE state = 'reserved') AS old_reserved,
             coalesce(sum(amount_sas), 0)::bigint AS sum_sas
      FROM team_wallet_spending`,
  );
}

/** Expired rows stored below `block` and at or after it, by the block number in each row's ctid. */
async function expiredAroundBlock(block: number) {
  return pool.one(
    sql.type(z.object({ below: z.bigint(), rest: z.bigint() }))`
      SELECT count(*) FILTER (WHERE (ctid::text::point)[0] < ${block}) AS below,
             count(*) FILTER (WHERE (ctid::text::point)[0] >= ${block}) AS rest
      FROM team_wallet_spending
      WHERE created_at < now() - interval '90 days' AND state <> 'reserved'`,
  );
}

/** Locks one expired row in the given block from a separate connection and keeps the transaction open. */
async function lockExpiredRow(block: number) {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  await client.query('BEGIN');
  const locked = await client.query<{ id: string }>(
    `SELECT id FROM team_wallet_spending
     WHERE (ctid::text::point)[0] = $1 AND created_at < now() - interval '90 days' AND state = 'settled'
     LIMIT 1 FOR UPDATE`,
    [block],
  );
  assert.equal(locked.rowCount, 1, `no expired row to lock in block ${block}`);
  return {
    id: BigInt(locked.rows[0]?.id ?? '0'),
    release: async () => {
      await client.query('COMMIT');
      await client.end();
    },
  };
}

/** Reads the session settings the walk changes, through a pool of one connection. */
async function readRangeSettings(singleConnection: DatabasePool) {
  return singleConnection.one(
    sql.type(z.object({ settings: z.string() }))`
      SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) AS settings FROM pg_settings
      WHERE name IN ('lock_timeout', 'synchronous_commit', 'enable_seqscan', 'enable_indexscan', 'enable_bitmapscan')`,
  );
}

async function heapBlocks(): Promise<number> {
  const blocks = await pool.oneFirst(
    sql.type(z.object({ blocks: z.bigint() }))`
      SELECT pg_relation_size('team_wallet_spending') / current_setting('block_size')::int AS blocks`,
  );
  return Number(blocks);
}

test('retention of zero days exits 2', async () => {
  const result = await runCli(['delete-wallet-transactions', '--retention-days', '0', '--json'], {
    DATABASE_URL: database.url,
  });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--retention-days.*at least 1/);
});

test('dry run counts and deletes nothing', async () => {
  await fillSpending();
  const before = await counts();
  const result = await runCli(['delete-wallet-transactions', '--dry-run', '--json'], {
    DATABASE_URL: database.url,
  });
  assert.equal(result.code, 0, result.stderr);
  const summary = summaryOf(result);
  const details = summary.details as Record<string, unknown>;
  assert.equal(details.would_delete, String(EXPIRED_ROWS));
  assert.match(String(details.cutoff), /^\d{4}-\d\d-\d\dT/);
  assert.deepEqual(await counts(), before);
});

test('deletes expired rows across many ranges', async () => {
  await fillSpending();
  const blocks = await heapBlocks();
  const result = await runCli(['delete-wallet-transactions', '--batch-size', String(SMALL_BATCH), '--json'], {
    DATABASE_URL: database.url,
  });
  assert.equal(result.code, 0, result.stderr);
  const details = summaryOf(result).details as Record<string, unknown>;
  assert.equal(details.deleted, Number(EXPIRED_ROWS));
  assert.equal(details.retention_days, 90);
  assert.equal(details.heap_blocks, blocks);
  assert.equal(details.blocks_walked, blocks, 'the walk reaches the last block');
  assert.ok(Number(details.ranges) >= 20, `only ${details.ranges} ranges over ${blocks} blocks`);
  assert.equal(typeof details.max_range_ms, 'number');
  const progress = result.lines.filter((line) => line.msg === 'delete progress');
  assert.ok(progress.length >= 5, `${progress.length} progress lines`);
  assert.ok(Number(progress.at(-1)?.deleted) > 0, 'progress lines carry the rows deleted so far');
  const after = await counts();
  assert.equal(after.expired, 0n);
  assert.equal(after.total, 4500n);
  assert.equal(after.old_reserved, 500n, 'reserved rows stay whatever their age');
  assert.equal(after.sum_sas, KEPT_SUM_SAS, 'sums arrive as exact bigint');
  const rerun = await runCli(['delete-wallet-transactions', '--json'], { DATABASE_URL: database.url });
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.equal((summaryOf(rerun).details as Record<string, unknown>).deleted, 0);
});

test('reused free space judged by age', async () => {
  await pool.query(sql.unsafe`TRUNCATE team_wallet_spending RESTART IDENTITY`);
  await pool.query(sql.unsafe`
    INSERT INTO team_wallet_spending (wallet_client_id, purpose, amount_sas, state, created_at)
    SELECT 'team', 'funding', 7, 'settled', now() - interval '10 days' FROM generate_series(1, 6000)`);
  const lastOldId = await pool.oneFirst(
    sql.type(z.object({ id: z.bigint() }))`SELECT max(id) AS id FROM team_wallet_spending`,
  );
  const blocksBefore = await heapBlocks();
  // Free half of every block, then let VACUUM record the space so new rows go there.
  await pool.query(sql.unsafe`DELETE FROM team_wallet_spending WHERE id % 2 = 0`);
  await pool.query(sql.unsafe`VACUUM team_wallet_spending`);
  // New rows with later ids: 1,000 expired settled, 300 expired reserved, 700 recent.
  await pool.query(sql.unsafe`
    INSERT INTO team_wallet_spending (wallet_client_id, purpose, amount_sas, state, created_at)
    SELECT 'team', 'funding',
           CASE WHEN n <= 1000 THEN 10000000000 WHEN n <= 1300 THEN 5 ELSE 3 END,
           CASE WHEN n > 1000 AND n <= 1300 THEN 'reserved' ELSE 'settled' END,
           CASE WHEN n <= 1300 THEN now() - interval '120 days' ELSE now() END
    FROM generate_series(1, 2000) AS n`);
  await pool.query(sql.unsafe`ANALYZE team_wallet_spending`);
  const placement = await pool.one(
    sql.type(z.object({ in_early_blocks: z.bigint(), expired_in_early_blocks: z.bigint() }))`
      SELECT count(*) AS in_early_blocks,
             count(*) FILTER (WHERE created_at < now() - interval '90 days' AND state = 'settled')
               AS expired_in_early_blocks
      FROM team_wallet_spending
      WHERE id > ${lastOldId} AND (ctid::text::point)[0] < ${blocksBefore - 1}`,
  );
  assert.ok(placement.in_early_blocks > 0n, 'new rows were expected in the freed space of early blocks');
  assert.ok(placement.expired_in_early_blocks > 0n, 'expired new rows were expected in early blocks');

  const result = await runCli(['delete-wallet-transactions', '--batch-size', String(SMALL_BATCH), '--json'], {
    DATABASE_URL: database.url,
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal((summaryOf(result).details as Record<string, unknown>).deleted, 1000);
  const after = await pool.one(
    sql.type(z.object({ old: z.bigint(), reserved: z.bigint(), recent: z.bigint(), expired: z.bigint() }))`
      SELECT count(*) FILTER (WHERE id <= ${lastOldId}) AS old,
             count(*) FILTER (WHERE id > ${lastOldId} AND state = 'reserved') AS reserved,
             count(*) FILTER (WHERE id > ${lastOldId} AND created_at > now() - interval '1 day') AS recent,
             count(*) FILTER (WHERE created_at < now() - interval '90 days' AND state <> 'reserved') AS expired
      FROM team_wallet_spending`,
  );
  assert.equal(after.old, 3000n, 'rows inside the retention stay');
  assert.equal(after.reserved, 300n, 'old reserved rows with later ids stay');
  assert.equal(after.recent, 700n, 'new rows in reused space stay');
  assert.equal(after.expired, 0n, 'expired rows with later ids in early blocks are deleted');
});

test('locked row is waited for, not skipped', async () => {
  await fillSpending();
  const blocks = await heapBlocks();
  const locker = await lockExpiredRow(Math.floor(blocks / 2));
  const ctx = testContext(pool, { env: { ZBOX_LOCK_TIMEOUT_MS: '600000' } });

  let finished = false;
  const running = deleteWalletTransactions({ batchSize: SMALL_BATCH })
    .body(ctx)
    .finally(() => {
      finished = true;
    });
  try {
    // Poll until the worker waits for the row lock, then end the locking transaction. A worker
    // that skipped the locked row would finish first and fail the checks below.
    while (!finished) {
      const waiting = await pool.oneFirst(
        sql.type(z.object({ waiting: z.bigint() }))`
          SELECT count(*) AS waiting FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)
          WHERE NOT l.granted AND a.datname = current_database()`,
      );
      if (waiting > 0n) {
        break;
      }
      await sleep(20);
    }
  } finally {
    await locker.release();
  }
  await running;

  assert.equal(ctx.details.deleted, Number(EXPIRED_ROWS));
  assert.deepEqual(ctx.attention, []);
  assert.equal(
    await pool.exists(sql.unsafe`SELECT 1 FROM team_wallet_spending WHERE id = ${locker.id}`),
    false,
    'the row that was locked is deleted after the lock is released',
  );
  assert.equal((await counts()).expired, 0n);
});

test('lock timeouts count and stop the walk', async () => {
  await fillSpending();
  const blocks = await heapBlocks();
  const lockedBlock = Math.floor(blocks / 2);
  const locker = await lockExpiredRow(lockedBlock);
  let result: Awaited<ReturnType<typeof runCli>>;
  try {
    result = await runCli(['delete-wallet-transactions', '--batch-size', String(SMALL_BATCH), '--json'], {
      DATABASE_URL: database.url,
      ZBOX_LOCK_TIMEOUT_MS: '20',
    });
  } finally {
    await locker.release();
  }
  assert.equal(result.code, 4, result.stderr);
  const summary = summaryOf(result);
  const details = summary.details as Record<string, unknown>;
  const rangeBlocks = Number(details.range_blocks);
  const lockedRangeStart = Math.floor(lockedBlock / rangeBlocks) * rangeBlocks;
  assert.ok(lockedRangeStart > 0, 'the locked row was expected past the first range');
  assert.equal(details.blocks_walked, lockedRangeStart, 'the walk stops at the start of the locked range');
  assert.match(String((summary.attention as string[])[0]), /5 lock timeouts in a row/);
  const retries = result.lines.filter((line) => line.msg === 'delete range hit lock_timeout; retrying');
  assert.equal(retries.length, 5);
  assert.ok(result.lines.some((line) => line.msg === 'delete stopped: lock_timeout hit repeatedly'));
  const left = await expiredAroundBlock(lockedRangeStart);
  assert.equal(left.below, 0n, 'ranges before the locked one are cleaned');
  assert.equal(BigInt(Number(details.deleted)) + left.rest, EXPIRED_ROWS, 'the rest is untouched');
  assert.ok(left.rest > 0n);
});

test('stop between ranges leaves whole ranges', async () => {
  await fillSpending();
  const singleConnection = await openPool(database.url, { maximumPoolSize: 1 });
  try {
    const settingsBefore = await readRangeSettings(singleConnection);
    let rangesDone = 0;
    const ctx = testContext(singleConnection);
    const logDebug = ctx.logger.debug;
    ctx.logger.debug = (msg, fields) => {
      logDebug(msg, fields);
      if (msg === 'delete range done') {
        rangesDone += 1;
      }
      if (rangesDone === 3) {
        ctx.stop.stop('SIGTERM');
      }
    };
    await deleteWalletTransactions({ batchSize: SMALL_BATCH }).body(ctx);
    const rangeBlocks = Number(ctx.details.range_blocks);
    assert.equal(ctx.details.ranges, 3);
    assert.equal(ctx.details.blocks_walked, 3 * rangeBlocks);
    assert.ok(ctx.logger.lines.some((line) => line.msg === 'delete stopped before the end of the table'));
    const left = await expiredAroundBlock(3 * rangeBlocks);
    assert.equal(left.below, 0n, 'the three walked ranges are cleaned');
    assert.ok(left.rest > 0n);
    assert.equal(BigInt(Number(ctx.details.deleted)) + left.rest, EXPIRED_ROWS, 'later ranges are untouched');
    assert.deepEqual(
      await readRangeSettings(singleConnection),
      settingsBefore,
      'the pooled connection gets its session settings back',
    );

    const rerun = testContext(singleConnection);
    await deleteWalletTransactions({ batchSize: SMALL_BATCH }).body(rerun);
    assert.equal(rerun.details.deleted, Number(left.rest), 'the next run deletes the rest');
    const after = await counts();
    assert.equal(after.expired, 0n);
    assert.equal(after.total, 4500n);
    assert.equal(after.sum_sas, KEPT_SUM_SAS);
  } finally {
    await singleConnection.end();
  }
});

test('servers before PostgreSQL 14 are rejected', () => {
  assert.throws(() => assertTidRangeScans(130_012), ConfigError);
  assert.throws(() => assertTidRangeScans(130_012), /PostgreSQL 14/);
  assert.doesNotThrow(() => assertTidRangeScans(140_000));
});

test('range size follows the row density', () => {
  const heap = { blocks: 1000, blockSizeBytes: 8192, estimatedRows: 34_000, estimatedBlocks: 1000 };
  assert.equal(blocksPerRange(5000, heap), 147);
  assert.equal(blocksPerRange(10, heap), 1, 'at least one block per range');
  const neverAnalyzed = { ...heap, estimatedRows: -1, estimatedBlocks: 0 };
  assert.equal(blocksPerRange(5000, neverAnalyzed), 17, 'unknown density assumes full blocks');
});
