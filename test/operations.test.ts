import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { runCli } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

let database: TestDatabase;
let pool: DatabasePool;

const ALLOCATION = 'f'.repeat(64);

before(async () => {
  database = await createTestDatabase('operations');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 2 });
  await pool.query(sql.unsafe`
    INSERT INTO allocations (id, owner_client_id, user_id, size_bytes, data_shards, parity_shards, expires_at)
    VALUES (${ALLOCATION}, 'owner', 'user', 1, 1, 1, now() + interval '2 days')`);
  // Ids 1-2 due, 3 retrying, 4 in progress, 5-7 dead.
  await pool.query(sql.unsafe`
    INSERT INTO allocation_expiry_notices (allocation_id, user_id, expires_at, window_days, document_id,
                                           status, attempts, next_attempt_at, locked_by, locked_until, last_error)
    SELECT ${ALLOCATION}, 'user', now() + n * interval '1 second', 3, 'doc-' || n,
           CASE WHEN n <= 3 THEN 'pending' WHEN n = 4 THEN 'in_progress' ELSE 'dead' END,
           CASE WHEN n = 3 OR n >= 5 THEN 2 ELSE 0 END,
           CASE WHEN n = 3 THEN now() + interval '1 hour' ELSE now() - interval '90 seconds' END,
           CASE WHEN n = 4 THEN gen_random_uuid() END,
           CASE WHEN n = 4 THEN now() + interval '5 minutes' END,
           CASE WHEN n >= 5 THEN 'Elasticsearch rejected the notice: mapping error ' || n END
    FROM generate_series(1, 7) AS n`);
  await pool.query(sql.unsafe`
    INSERT INTO zbox_runs (run_id, worker, finished_at, exit_code, summary)
    VALUES (gen_random_uuid(), 'free-storage', now(), 4, '{"attention": ["storage config not updated"]}')`);
});

after(async () => {
  await pool.end();
  await database.drop();
});

async function statuses(): Promise<Map<string, Record<string, unknown>>> {
  const result = await runCli(['status', '--json'], { DATABASE_URL: database.url });
  assert.equal(result.code, 0, result.stderr);
  const body = result.lines.find((line) => line.msg === 'status') as {
    workers: Array<Record<string, unknown>>;
  };
  return new Map(body.workers.map((worker) => [String(worker.worker), worker]));
}

test('status counts each queue state', async () => {
  const byWorker = await statuses();
  const queue = byWorker.get('expiring-allocations')?.queue as Record<string, unknown>;
  assert.equal(queue.due, '2');
  assert.equal(queue.retrying, '1');
  assert.equal(queue.in_progress, '1');
  assert.equal(queue.dead, '3');
  assert.ok(Number(queue.oldest_due_seconds) >= 89, `oldest due ${queue.oldest_due_seconds}`);
  const freeStorage = byWorker.get('free-storage');
  assert.equal(freeStorage?.queue, undefined, 'a singleton has no queue');
  assert.equal((freeStorage?.last_run as Record<string, unknown> | undefined)?.exit_code, 4);
  assert.equal(byWorker.get('delete-wallet-transactions')?.last_run, null);
});

test('status prints a table on request', async () => {
  const result = await runCli(['status'], { DATABASE_URL: database.url, ZBOX_LOG_LEVEL: 'warn' });
  assert.equal(result.code, 0);
  assert.ok(result.stdout.length > 0);
});

test('requeue dry run lists and moves nothing', async () => {
  const result = await runCli(['requeue', 'expiring-allocations', '--all-dead', '--dry-run', '--json'], {
    DATABASE_URL: database.url,
  });
  assert.equal(result.code, 0, result.stderr);
  const listed = result.lines.filter((line) => line.msg === 'would requeue dead task');
  assert.deepEqual(
    listed.map((line) => line.task_id),
    ['5', '6', '7'],
  );
  assert.match(String(listed[0]?.last_error), /mapping error 5/);
  const dead = await pool.oneFirst(
    sql.unsafe`SELECT count(*) FROM allocation_expiry_notices WHERE status = 'dead'`,
  );
  assert.equal(dead, 3n);
});

test('requeue by id moves one and reports the rest', async () => {
  const result = await runCli(
    ['requeue', 'expiring-allocations', '--id', '5', '--id', '1', '--id', '99', '--json'],
    {
      DATABASE_URL: database.url,
    },
  );
  assert.equal(result.code, 0, result.stderr);
  const row = await pool.one(
    sql.type(z.object({ status: z.string(), attempts: z.number(), due: z.boolean() }))`
      SELECT status, attempts, next_attempt_at <= now() AS due FROM allocation_expiry_notices WHERE id = 5`,
  );
  assert.deepEqual(row, { status: 'pending', attempts: 0, due: true });
  const reasons = new Map(
    result.lines
      .filter((line) => line.msg === 'task not requeued')
      .map((line) => [line.task_id, line.reason]),
  );
  assert.equal(reasons.get('1'), 'status is pending, not dead');
  assert.equal(reasons.get('99'), 'unknown id: no such task');
});

test('requeue all dead moves the rest', async () => {
  const result = await runCli(['requeue', 'expiring-allocations', '--all-dead', '--json'], {
    DATABASE_URL: database.url,
  });
  assert.equal(result.code, 0);
  assert.equal(result.lines.filter((line) => line.msg === 'dead task requeued').length, 2);
  const dead = await pool.oneFirst(
    sql.unsafe`SELECT count(*) FROM allocation_expiry_notices WHERE status = 'dead'`,
  );
  assert.equal(dead, 0n);
});

test('requeue rejects bad requests with exit 2', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['requeue', 'no-such-worker', '--all-dead'], /unknown worker "no-such-worker"/],
    [['requeue', 'free-storage', '--all-dead'], /free-storage is a singleton worker without a task queue/],
    [['requeue', 'expiring-allocations'], /give either --id <id> \(repeatable\) or --all-dead/],
    [['requeue', 'expiring-allocations', '--id', '1', '--all-dead'], /give either/],
  ];
  for (const [args, message] of cases) {
    const result = await runCli([...args, '--json'], { DATABASE_URL: database.url });
    assert.equal(result.code, 2, args.join(' '));
    assert.match(result.stderr, message);
  }
});
