import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { openPool } from '../src/core/db/pool.js';
import { runQueueCycle } from '../src/core/engine/cycle.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { createTestQueue, sleep, testContext, testWorker } from './support/engine.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/slow-cycle.ts', import.meta.url));

let database: TestDatabase;
let pool: DatabasePool;

before(async () => {
  database = await createTestDatabase('engine_signals');
  pool = await openPool(database.url, { maximumPoolSize: 4 });
  await pool.query(sql.unsafe`CREATE TABLE executions (task_id bigint, run_id uuid)`);
});

after(async () => {
  await pool.end();
  await database.drop();
});

/** Starts the fixture and resolves once `tasks` tasks have started. */
function startSlowCycle(table: string, taskMs: number, leaseSeconds: number, tasks: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    env: {
      ...process.env,
      DATABASE_URL: database.url,
      QUEUE_TABLE: table,
      TASK_MS: String(taskMs),
      LEASE_SECONDS: String(leaseSeconds),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const started = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if ((stdout.match(/^started /gm) ?? []).length >= tasks) {
        resolve();
      }
    });
    child.on('close', () => reject(new Error(`fixture ended before ${tasks} tasks started: ${stderr}`)));
  });
  const closed = new Promise<{ code: number | null; signal: string | null; stdout: string }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout }));
  });
  return { child, started, closed };
}

const stateRow = z.object({ status: z.string(), attempts: z.number(), count: z.bigint() });

async function states(table: string) {
  return pool.any(sql.type(stateRow)`
    SELECT status, attempts, count(*) AS count FROM ${sql.identifier([table])}
    GROUP BY status, attempts ORDER BY status, attempts`);
}

test('SIGTERM drains in-flight tasks, releases the rest, exits 143', async () => {
  const table = 'queue_sigterm';
  await createTestQueue(pool, table, 20);
  const run = startSlowCycle(table, 800, 600, 2);
  await run.started;
  run.child.kill('SIGTERM');
  const result = await run.closed;
  assert.equal(result.code, 143, result.stdout);
  const counters = JSON.parse(result.stdout.trim().split('\n').at(-1) as string) as Record<string, number>;
  assert.equal(counters.succeeded, 2, 'the two in-flight tasks finished');
  assert.equal(counters.skipped, 18, 'the unstarted claims were released');
  assert.deepEqual(
    (await states(table)).map((row) => [row.status, row.attempts, row.count]),
    [
      ['pending', 0, 18n],
      ['succeeded', 1, 2n],
    ],
  );
  assert.equal(await pool.oneFirst(sql.unsafe`SELECT count(*) FROM executions`), 2n);
});

test('SIGKILLed run keeps its claims until the lease expires', async () => {
  const table = 'queue_sigkill';
  await createTestQueue(pool, table, 6);
  const leaseSeconds = 4;
  const run = startSlowCycle(table, 60_000, leaseSeconds, 2);
  await run.started;
  run.child.kill('SIGKILL');
  await run.closed;

  const held = await states(table);
  assert.deepEqual(
    held.map((row) => [row.status, row.count]),
    [['in_progress', 6n]],
    'the killed run left its rows claimed',
  );
  const early = testContext(pool);
  await runQueueCycle(
    testWorker(table, async () => 'taken early'),
    early,
  );
  assert.equal(early.counters.claimed, 0, 'no row is taken while the lease holds');

  const leaseEnd = await pool.oneFirst(
    sql.type(z.object({ wait_ms: z.number() }))`
      SELECT (extract(epoch FROM max(locked_until) - now()) * 1000)::float8 AS wait_ms FROM ${sql.identifier([table])}`,
  );
  await sleep(Math.max(0, leaseEnd) + 200);
  const late = testContext(pool);
  await runQueueCycle(
    testWorker(table, async () => 'taken after the lease'),
    late,
  );
  assert.equal(late.counters.succeeded, 6, 'every row is done after the lease expired');
  assert.deepEqual(
    (await states(table)).map((row) => [row.status, row.attempts, row.count]),
    [['succeeded', 2, 6n]],
  );
});
