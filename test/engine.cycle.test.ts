import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type DatabasePool, type DatabaseTransactionConnection, sql } from 'slonik';
import { z } from 'zod';
import { openPool } from '../src/core/db/pool.js';
import { runQueueCycle } from '../src/core/engine/cycle.js';
import { ConfigError, TransientError } from '../src/core/errors.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { createTestQueue, sleep, testContext, testWorker } from './support/engine.js';

let database: TestDatabase;
let pool: DatabasePool;

before(async () => {
  database = await createTestDatabase('engine_cycle');
  pool = await openPool(database.url, { maximumPoolSize: 20 });
  await pool.query(sql.unsafe`CREATE TABLE executions (task_table text, task_id bigint, run_id uuid)`);
});

after(async () => {
  await pool.end();
  await database.drop();
});

const countRow = z.object({ total: z.bigint(), distinct_tasks: z.bigint() });

async function executionCounts(table: string) {
  return pool.one(sql.type(countRow)`
    SELECT count(*) AS total, count(DISTINCT task_id) AS distinct_tasks FROM executions WHERE task_table = ${table}`);
}

for (const runs of [2, 8]) {
  test(`${runs} concurrent runs process 1000 rows exactly once`, async () => {
    const table = `queue_concurrent_${runs}`;
    await createTestQueue(pool, table, 1000);
    const worker = testWorker(table, async (task, ctx) => {
      await pool.query(
        sql.unsafe`INSERT INTO executions (task_table, task_id, run_id) VALUES (${table}, ${task.id}, ${ctx.runId})`,
      );
      return `done by ${ctx.runId}`;
    });
    const contexts = Array.from({ length: runs }, () =>
      testContext(pool, { claimBatch: 25, concurrency: 4 }),
    );
    await Promise.all(contexts.map((ctx) => runQueueCycle(worker, ctx)));

    const counts = await executionCounts(table);
    assert.equal(counts.total, 1000n, 'executions in total');
    assert.equal(counts.distinct_tasks, 1000n, 'distinct tasks executed');
    const succeeded = contexts.reduce((sum, ctx) => sum + ctx.counters.succeeded, 0);
    assert.equal(succeeded, 1000);
    const busyRuns = contexts.filter((ctx) => ctx.counters.claimed > 0).length;
    assert.ok(busyRuns >= 2, `at least two runs claimed work, got ${busyRuns}`);
    const left = await pool.oneFirst(
      sql.unsafe`SELECT count(*) FROM ${sql.identifier([table])} WHERE status <> 'succeeded' OR result IS NULL`,
    );
    assert.equal(left, 0n);
  });
}

test('stale run cannot overwrite the run that took over', async () => {
  const table = 'queue_takeover';
  await createTestQueue(pool, table, 1);
  let releaseStale: () => void = () => undefined;
  const staleMayFinish = new Promise<void>((resolve) => {
    releaseStale = resolve;
  });
  const staleWorker = testWorker(table, async () => {
    await staleMayFinish;
    return 'stale result';
  });
  const stale = testContext(pool, { timing: { deadlineSeconds: 60, graceSeconds: 5, leaseSeconds: 1 } });
  const staleRun = runQueueCycle(staleWorker, stale);

  await sleep(1500);
  const fresh = testContext(pool);
  await runQueueCycle(
    testWorker(table, async () => 'fresh result'),
    fresh,
  );
  assert.equal(fresh.counters.succeeded, 1, 'the second run took the task after the lease expired');
  releaseStale();
  await staleRun;

  assert.equal(stale.counters.lost, 1, 'the stale run saw its outcome discarded');
  assert.equal(stale.counters.succeeded, 0);
  const row = await pool.one(
    sql.type(z.object({ result: z.string(), status: z.string(), attempts: z.number() }))`
      SELECT result, status, attempts FROM ${sql.identifier([table])}`,
  );
  assert.equal(row.result, 'fresh result');
  assert.equal(row.status, 'succeeded');
  assert.equal(row.attempts, 2);
});

test('claim skips rows whose lease is still held', async () => {
  const table = 'queue_lease_held';
  await createTestQueue(pool, table, 5);
  let unblock: () => void = () => undefined;
  const blocked = new Promise<void>((resolve) => {
    unblock = resolve;
  });
  const holder = testContext(pool);
  const holding = runQueueCycle(
    testWorker(table, async () => {
      await blocked;
      return 'held';
    }),
    holder,
  );
  await sleep(300);
  const other = testContext(pool);
  await runQueueCycle(
    testWorker(table, async () => 'other'),
    other,
  );
  assert.equal(other.counters.claimed, 0, 'no row is claimed twice while its lease is held');
  unblock();
  await holding;
  assert.equal(holder.counters.succeeded, 5);
});

test('1000 failing rows spread next attempts over the backoff window', async () => {
  const table = 'queue_backoff_spread';
  await createTestQueue(pool, table, 1000, 1000);
  const ctx = testContext(pool, {
    retry: { backoffBaseSeconds: 600, backoffMaxSeconds: 3600, cooldownFailures: 10_000 },
  });
  await runQueueCycle(
    testWorker(table, async () => {
      throw new TransientError('upstream timed out');
    }),
    ctx,
  );
  assert.equal(ctx.counters.retried, 1000);
  const spread = await pool.one(
    sql.type(
      z.object({
        distinct_seconds: z.bigint(),
        min_delay: z.number(),
        max_delay: z.number(),
        mean_delay: z.number(),
      }),
    )`
      SELECT count(DISTINCT date_trunc('second', next_attempt_at)) AS distinct_seconds,
             extract(epoch FROM min(next_attempt_at - updated_at))::float8 AS min_delay,
             extract(epoch FROM max(next_attempt_at - updated_at))::float8 AS max_delay,
             extract(epoch FROM avg(next_attempt_at - updated_at))::float8 AS mean_delay
      FROM ${sql.identifier([table])} WHERE status = 'pending'`,
  );
  // First attempt: full jitter over [0, 600] s. 1000 uniform draws land in far more than 300
  // distinct seconds, reach both ends of the window and average near 300 s.
  assert.ok(spread.distinct_seconds > 300n, `distinct seconds: ${spread.distinct_seconds}`);
  assert.ok(spread.min_delay < 60, `min delay ${spread.min_delay}`);
  assert.ok(spread.max_delay > 540, `max delay ${spread.max_delay}`);
  assert.ok(spread.max_delay <= 601, `max delay ${spread.max_delay}`);
  assert.ok(spread.mean_delay > 240, `mean delay ${spread.mean_delay}`);
  assert.ok(spread.mean_delay < 360, `mean delay ${spread.mean_delay}`);
});

test('failing dependency stops being called after K failures', async () => {
  const table = 'queue_cooldown';
  await createTestQueue(pool, table, 40, 2);
  const calls = new Map<string, number>();
  const ctx = testContext(pool, {
    concurrency: 1,
    retry: { backoffBaseSeconds: 30, backoffMaxSeconds: 3600, cooldownFailures: 3 },
  });
  await runQueueCycle(
    testWorker(table, async (task) => {
      calls.set(task.dependency, (calls.get(task.dependency) ?? 0) + 1);
      if (task.dependency === 'dep-0') {
        throw new TransientError('blobber refused the connection');
      }
      return 'ok';
    }),
    ctx,
  );
  assert.equal(calls.get('dep-0'), 3, 'the failing dependency was called exactly K times');
  assert.equal(calls.get('dep-1'), 20, 'the healthy dependency kept working');
  assert.equal(ctx.counters.retried, 3);
  assert.equal(ctx.counters.skipped, 17, 'unstarted claims of the cooled dependency were released');
  const released = await pool.one(
    sql.type(z.object({ pending: z.bigint(), unspent: z.bigint() }))`
      SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
             count(*) FILTER (WHERE status = 'pending' AND attempts = 0 AND locked_by IS NULL) AS unspent
      FROM ${sql.identifier([table])} WHERE dependency = 'dep-0'`,
  );
  assert.equal(released.pending, 20n);
  assert.equal(released.unspent, 17n, 'released rows did not spend an attempt');
  assert.ok(
    ctx.attention.some((reason) => reason.includes('dep-0')),
    'unavailable dependency needs attention',
  );
});

test('permanent error and exhausted attempts go dead with a reason', async () => {
  const table = 'queue_dead';
  await createTestQueue(pool, table, 2);
  await pool.query(sql.unsafe`UPDATE ${sql.identifier([table])} SET max_attempts = 1 WHERE id = 2`);
  const { PermanentError } = await import('../src/core/errors.js');
  const ctx = testContext(pool);
  await runQueueCycle(
    testWorker(table, async (task) => {
      if (task.id === 1n) {
        throw new PermanentError('owner public key is not hex');
      }
      throw new TransientError('sharders timed out');
    }),
    ctx,
  );
  const rows = await pool.any(
    sql.type(z.object({ id: z.bigint(), status: z.string(), last_error: z.string() }))`
      SELECT id, status, last_error FROM ${sql.identifier([table])} ORDER BY id`,
  );
  assert.equal(rows[0]?.status, 'dead');
  assert.equal(rows[0]?.last_error, 'owner public key is not hex');
  assert.equal(rows[1]?.status, 'dead');
  assert.match(String(rows[1]?.last_error), /^attempts exhausted \(1 of 1\): sharders timed out$/);
  assert.equal(ctx.counters.dead, 2);
});

test('poison row goes dead without blocking others', async () => {
  const table = 'queue_poison';
  await createTestQueue(pool, table, 3);
  await pool.query(sql.unsafe`UPDATE ${sql.identifier([table])} SET dependency = 'bad' WHERE id = 2`);
  const worker = testWorker(table, async () => 'ok');
  worker.parseTask = (row) => {
    if (row.dependency === 'bad') {
      throw new Error('dependency must not be "bad"');
    }
    return { id: row.id, dependency: String(row.dependency) };
  };
  const ctx = testContext(pool);
  await runQueueCycle(worker, ctx);
  assert.equal(ctx.counters.succeeded, 2);
  assert.equal(ctx.counters.dead, 1);
  const reason = await pool.oneFirst(
    sql.unsafe`SELECT last_error FROM ${sql.identifier([table])} WHERE id = 2`,
  );
  assert.equal(reason, 'invalid task row: dependency must not be "bad"');
});

describe('--id', () => {
  test('claims a not-yet-due task and reports unknown ids', async () => {
    const table = 'queue_ids';
    await createTestQueue(pool, table, 3);
    await pool.query(
      sql.unsafe`UPDATE ${sql.identifier([table])} SET next_attempt_at = now() + interval '1 day' WHERE id = 2`,
    );
    await pool.query(sql.unsafe`UPDATE ${sql.identifier([table])} SET status = 'dead' WHERE id = 3`);
    const ctx = testContext(pool, { ids: [2n, 3n, 99n] });
    await runQueueCycle(
      testWorker(table, async () => 'ok'),
      ctx,
    );
    assert.equal(ctx.counters.succeeded, 1);
    const notTaken = ctx.details.not_taken as Record<string, string>;
    assert.equal(notTaken['99'], 'unknown id: no such task');
    assert.match(String(notTaken['3']), /status is dead/);
    const first = await pool.oneFirst(sql.unsafe`SELECT status FROM ${sql.identifier([table])} WHERE id = 1`);
    assert.equal(first, 'pending', 'a task not named by --id is left alone');
  });
});

test('stop releases unstarted claims and lets in-flight tasks finish', async () => {
  const table = 'queue_stop';
  await createTestQueue(pool, table, 50);
  const ctx = testContext(pool, { concurrency: 2, claimBatch: 50 });
  let started = 0;
  await runQueueCycle(
    testWorker(table, async () => {
      started += 1;
      if (started === 2) {
        ctx.stop.stop('SIGTERM');
      }
      await sleep(200);
      return 'finished';
    }),
    ctx,
  );
  assert.equal(started, 2, 'no task started after the stop');
  assert.equal(ctx.counters.succeeded, 2, 'in-flight tasks finished and were recorded');
  assert.equal(ctx.counters.skipped, 48);
  const states = await pool.one(
    sql.type(z.object({ pending_unspent: z.bigint(), succeeded: z.bigint() }))`
      SELECT count(*) FILTER (WHERE status = 'pending' AND attempts = 0 AND locked_by IS NULL) AS pending_unspent,
             count(*) FILTER (WHERE status = 'succeeded') AS succeeded
      FROM ${sql.identifier([table])}`,
  );
  assert.equal(states.pending_unspent, 48n);
  assert.equal(states.succeeded, 2n);
});

test('halt releases the task and starts no other', async () => {
  const table = 'queue_halt';
  await createTestQueue(pool, table, 10);
  const { HaltError } = await import('../src/core/errors.js');
  const ctx = testContext(pool, { concurrency: 1 });
  let calls = 0;
  await runQueueCycle(
    testWorker(table, async () => {
      calls += 1;
      if (calls === 3) {
        throw new HaltError('daily spend cap of 100 ZCN reached (99.5 spent, 1 more needed)');
      }
      return 'ok';
    }),
    ctx,
  );
  assert.equal(calls, 3, 'no task started after the halt');
  assert.equal(ctx.counters.succeeded, 2);
  assert.equal(ctx.counters.skipped, 8, 'the halted task and the unstarted ones were released');
  assert.deepEqual(ctx.attention, ['daily spend cap of 100 ZCN reached (99.5 spent, 1 more needed)']);
  const unspent = await pool.oneFirst(
    sql.unsafe`SELECT count(*) FROM ${sql.identifier([table])} WHERE status = 'pending' AND attempts = 0`,
  );
  assert.equal(unspent, 8n);
});

test('task with a transaction in flight never dies on attempts', async () => {
  const table = 'queue_in_flight';
  await createTestQueue(pool, table, 1);
  await pool.query(sql.unsafe`UPDATE ${sql.identifier([table])} SET max_attempts = 1`);
  const ctx = testContext(pool);
  await runQueueCycle(
    testWorker(table, async () => {
      throw new TransientError('transaction not confirmed yet', { inFlight: true });
    }),
    ctx,
  );
  const row = await pool.one(
    sql.type(z.object({ status: z.string(), attempts: z.number() }))`
      SELECT status, attempts FROM ${sql.identifier([table])}`,
  );
  assert.equal(row.status, 'pending', 'not dead although its one attempt is used');
  assert.equal(row.attempts, 1);
});

/** Turns the test worker into a batch worker of 10 tasks a batch. */
function batchWorker(
  table: string,
  executeBatch: NonNullable<ReturnType<typeof testWorker>['executeBatch']>,
) {
  return { ...testWorker(table, async () => 'unused'), execute: undefined, executeBatch, batchSize: 10 };
}

describe('recording the successes of one execution', () => {
  const resultRow = z.object({ id: z.bigint(), status: z.string(), result: z.string().nullable() });

  async function rowsOf(table: string) {
    return pool.any(sql.type(resultRow)`
      SELECT id, status, result FROM ${sql.identifier([table])} ORDER BY id`);
  }

  test('batch success recorded once for owned tasks', async () => {
    const table = 'queue_record_many';
    await createTestQueue(pool, table, 10);
    const calls: bigint[][] = [];
    let singleCalls = 0;
    const worker = {
      ...batchWorker(table, async (tasks) => {
        // Another run takes the first task over while this batch runs.
        await pool.query(sql.unsafe`
          UPDATE ${sql.identifier([table])} SET locked_by = gen_random_uuid() WHERE id = ${tasks[0]?.id ?? 0n}`);
        return new Map(
          tasks.map((task) => [task.id, { kind: 'succeeded' as const, result: `done ${task.id}` }]),
        );
      }),
      recordSuccess: async () => {
        singleCalls += 1;
      },
      recordSuccessMany: async (
        tx: DatabaseTransactionConnection,
        succeeded: Array<{ task: { id: bigint }; result: string }>,
      ) => {
        calls.push(succeeded.map((item) => item.task.id));
        await tx.query(sql.unsafe`
          UPDATE ${sql.identifier([table])} AS t SET result = s.result
          FROM unnest(${sql.array(
            succeeded.map((item) => item.task.id),
            'int8',
          )}::int8[], ${sql.array(
            succeeded.map((item) => item.result),
            'text',
          )}::text[]) AS s(id, result)
          WHERE t.id = s.id`);
      },
    };
    const ctx = testContext(pool, { concurrency: 1 });
    await runQueueCycle(worker, ctx);

    assert.equal(singleCalls, 0, 'recordSuccess is not called when recordSuccessMany is present');
    assert.deepEqual(calls, [[2n, 3n, 4n, 5n, 6n, 7n, 8n, 9n, 10n]], 'one call, without the task taken over');
    assert.equal(ctx.counters.succeeded, 9);
    assert.equal(ctx.counters.lost, 1);
    const rows = await rowsOf(table);
    assert.deepEqual(
      rows[0],
      { id: 1n, status: 'in_progress', result: null },
      'the taken-over row is untouched',
    );
    for (const row of rows.slice(1)) {
      assert.deepEqual(row, { id: row.id, status: 'succeeded', result: `done ${row.id}` });
    }
  });

  test('failing recordSuccessMany writes nothing', async () => {
    const table = 'queue_record_many_fails';
    await createTestQueue(pool, table, 4);
    const worker = {
      ...batchWorker(table, async (tasks) => {
        return new Map(tasks.map((task) => [task.id, { kind: 'succeeded' as const, result: 'ok' }]));
      }),
      recordSuccessMany: async (tx: DatabaseTransactionConnection) => {
        await tx.query(sql.unsafe`UPDATE ${sql.identifier([table])} SET result = 'written'`);
        throw new Error('the record step failed');
      },
    };
    await assert.rejects(
      runQueueCycle(worker, testContext(pool, { concurrency: 1 })),
      /the record step failed/,
    );
    const rows = await rowsOf(table);
    assert.equal(rows.length, 4);
    for (const row of rows) {
      assert.equal(row.status, 'in_progress', `row ${row.id} keeps its claim until the lease expires`);
      assert.equal(row.result, null, `row ${row.id} has no partial record`);
    }
  });

  test('mixed batch outcomes recorded', async () => {
    const table = 'queue_batch_mixed';
    await createTestQueue(pool, table, 6);
    const worker = {
      ...batchWorker(table, async (tasks) => {
        return new Map(
          tasks.map((task) => [
            task.id,
            task.id % 2n === 0n
              ? { kind: 'succeeded' as const, result: `even ${task.id}` }
              : { kind: 'dead' as const, reason: `odd ${task.id}` },
          ]),
        );
      }),
    };
    const ctx = testContext(pool, { concurrency: 1 });
    await runQueueCycle(worker, ctx);
    assert.equal(ctx.counters.succeeded, 3);
    assert.equal(ctx.counters.dead, 3);
    const rows = await rowsOf(table);
    assert.deepEqual(
      rows.map((row) => [row.id, row.status, row.result]),
      [
        [1n, 'dead', null],
        [2n, 'succeeded', 'even 2'],
        [3n, 'dead', null],
        [4n, 'succeeded', 'even 4'],
        [5n, 'dead', null],
        [6n, 'succeeded', 'even 6'],
      ],
    );
  });

  test('success marked without own columns', async () => {
    const table = 'queue_no_record';
    await createTestQueue(pool, table, 25);
    const worker = { ...testWorker(table, async () => 'ok'), recordSuccess: undefined };
    const ctx = testContext(pool, { concurrency: 4 });
    await runQueueCycle(worker, ctx);
    assert.equal(ctx.counters.succeeded, 25);
    const statuses = await pool.anyFirst(sql.type(z.object({ status: z.string() }))`
      SELECT DISTINCT status FROM ${sql.identifier([table])}`);
    assert.deepEqual(statuses, ['succeeded']);
  });
});

test('configuration error releases task and ends run', async () => {
  const table = 'queue_config_error';
  await createTestQueue(pool, table, 20);
  const started: bigint[] = [];
  let releaseSlow: () => void = () => undefined;
  const slowMayFinish = new Promise<void>((resolve) => {
    releaseSlow = resolve;
  });
  const ctx = testContext(pool, { concurrency: 2, claimBatch: 20 });
  const run = runQueueCycle(
    testWorker(table, async (task) => {
      started.push(task.id);
      if (task.id === 1n) {
        await slowMayFinish;
        return 'slow done';
      }
      releaseSlow();
      throw new ConfigError('S3 credentials are missing');
    }),
    ctx,
  );
  await assert.rejects(run, (error: unknown) => error instanceof ConfigError);

  assert.deepEqual(started, [1n, 2n], 'no task starts after the configuration error');
  const rows = await pool.any(
    sql.type(
      z.object({ id: z.bigint(), status: z.string(), attempts: z.number(), result: z.string().nullable() }),
    )`
      SELECT id, status, attempts, result FROM ${sql.identifier([table])} WHERE id <= 3 ORDER BY id`,
  );
  assert.deepEqual(rows, [
    { id: 1n, status: 'succeeded', attempts: 1, result: 'slow done' },
    { id: 2n, status: 'pending', attempts: 0, result: null },
    { id: 3n, status: 'pending', attempts: 0, result: null },
  ]);
  const due = await pool.oneFirst(sql.unsafe`
    SELECT count(*) FROM ${sql.identifier([table])} WHERE status = 'pending' AND next_attempt_at <= now()`);
  assert.equal(due, 19n, 'every task but the finished one is due again at once');
});

test('batch larger than claim chunk', async () => {
  const table = 'queue_large_batch';
  await createTestQueue(pool, table, 25);
  const sizes: number[] = [];
  const worker = batchWorker(table, async (tasks) => {
    sizes.push(tasks.length);
    return new Map(tasks.map((task) => [task.id, { kind: 'succeeded' as const, result: 'ok' }]));
  });
  const ctx = testContext(pool, { concurrency: 1, claimBatch: 4 });
  await runQueueCycle(worker, ctx);
  assert.deepEqual(sizes, [10, 10, 5]);
  assert.equal(ctx.counters.succeeded, 25);
});
