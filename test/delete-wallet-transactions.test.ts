import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { runCli, summaryOf } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

let database: TestDatabase;
let pool: DatabasePool;

before(async () => {
  database = await createTestDatabase('delete_wallet_transactions');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 2 });
  // 7,000 settled rows past 90 days, 500 reserved rows past 90 days, 4,500 recent rows.
  await pool.query(sql.unsafe`
    INSERT INTO team_wallet_spending (wallet_client_id, purpose, amount_sas, fee_sas, state, created_at)
    SELECT 'team', 'funding', 10000000000, 1000, 'settled', now() - interval '91 days' - n * interval '1 minute'
    FROM generate_series(1, 7000) AS n`);
  await pool.query(sql.unsafe`
    INSERT INTO team_wallet_spending (wallet_client_id, purpose, amount_sas, state, created_at)
    SELECT 'team', 'allocation', 5, 'reserved', now() - interval '200 days' FROM generate_series(1, 500)`);
  await pool.query(sql.unsafe`
    INSERT INTO team_wallet_spending (wallet_client_id, purpose, amount_sas, state, created_at)
    SELECT 'team', 'funding', 7, 'settled', now() - interval '89 days' FROM generate_series(1, 4500)`);
});

after(async () => {
  await pool.end();
  await database.drop();
});

async function counts() {
  return pool.one(
    sql.type(z.object({ total: z.bigint(), old_reserved: z.bigint(), sum_sas: z.bigint() }))`
      SELECT count(*) AS total,
             count(*) FILTER (WHERE state = 'reserved') AS old_reserved,
             coalesce(sum(amount_sas), 0)::bigint AS sum_sas
      FROM team_wallet_spending`,
  );
}

test('retention of zero days exits 2', async () => {
  const result = await runCli(['delete-wallet-transactions', '--retention-days', '0', '--json'], {
    DATABASE_URL: database.url,
  });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--retention-days.*at least 1/);
});

test('dry run counts and deletes nothing', async () => {
  const before = await counts();
  const result = await runCli(['delete-wallet-transactions', '--dry-run', '--json'], {
    DATABASE_URL: database.url,
  });
  assert.equal(result.code, 0, result.stderr);
  const summary = summaryOf(result);
  const details = summary.details as Record<string, unknown>;
  assert.equal(details.would_delete, '7000');
  assert.match(String(details.cutoff), /^\d{4}-\d\d-\d\dT/);
  assert.deepEqual(await counts(), before);
});

test('deletes old settled rows in batches and keeps reserved ones', async () => {
  const result = await runCli(['delete-wallet-transactions', '--batch-size', '1000', '--json'], {
    DATABASE_URL: database.url,
  });
  assert.equal(result.code, 0, result.stderr);
  const details = summaryOf(result).details as Record<string, unknown>;
  assert.equal(details.deleted, 7000);
  assert.equal(details.retention_days, 90);
  const after = await counts();
  assert.equal(after.total, 5000n);
  assert.equal(after.old_reserved, 500n, 'reserved rows stay whatever their age');
  assert.equal(after.sum_sas, 500n * 5n + 4500n * 7n, 'sums arrive as exact bigint');
  const rerun = await runCli(['delete-wallet-transactions', '--json'], { DATABASE_URL: database.url });
  assert.equal((summaryOf(rerun).details as Record<string, unknown>).deleted, 0);
});
