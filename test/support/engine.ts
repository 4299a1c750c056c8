import { randomUUID } from 'node:crypto';
import { type DatabasePool, sql } from 'slonik';
import type { RetryPolicy, RunTiming } from '../../src/core/config.js';
import { emptyCounters, type RunContext } from '../../src/core/engine/context.js';
import type { QueueWorker } from '../../src/core/engine/cycle.js';
import { StopController } from '../../src/core/engine/stop.js';
import { createMemoryLogger } from '../../src/core/output/logger.js';

/** Creates a queue table with the engine's columns and one domain column, and fills it with `rows` due rows. */
export async function createTestQueue(pool: DatabasePool, table: string, rows: number, dependencies = 1) {
  await pool.query(sql.unsafe`
    CREATE TABLE ${sql.identifier([table])} (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      dependency text NOT NULL,
      result text,
      status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_progress', 'succeeded', 'dead')),
      attempts integer NOT NULL DEFAULT 0,
      max_attempts integer NOT NULL DEFAULT 5,
      next_attempt_at timestamptz NOT NULL DEFAULT now(),
      locked_by uuid,
      locked_until timestamptz,
      last_error text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      completed_at timestamptz
    )`);
  await pool.query(sql.unsafe`
    INSERT INTO ${sql.identifier([table])} (dependency)
    SELECT 'dep-' || (n % ${dependencies}) FROM generate_series(1, ${rows}) AS n`);
}

export interface TestTask {
  id: bigint;
  dependency: string;
}

/** Builds a worker over a test queue whose `execute` is supplied by the test. */
export function testWorker(
  table: string,
  execute: (task: TestTask, ctx: RunContext) => Promise<string>,
): QueueWorker<TestTask, string> {
  return {
    name: 'test-worker',
    table,
    parseTask: (row) => ({ id: row.id, dependency: String(row.dependency) }),
    dependencyOf: (task) => task.dependency,
    execute,
    recordSuccess: async (tx, task, result) => {
      await tx.query(
        sql.unsafe`UPDATE ${sql.identifier([table])} SET result = ${result} WHERE id = ${task.id}`,
      );
    },
    describe: async (task) => ({ action: `process ${task.id}` }),
  };
}

export const TEST_RETRY: RetryPolicy = {
  backoffBaseSeconds: 30,
  backoffMaxSeconds: 3600,
  cooldownFailures: 3,
};

/** Builds a run context over `pool`, outside the CLI. Timing is not checked here, so tests may use short leases. */
export function testContext(
  pool: DatabasePool,
  overrides: Partial<RunContext> = {},
): RunContext & {
  logger: ReturnType<typeof createMemoryLogger>;
} {
  const timing: RunTiming = { deadlineSeconds: 60, graceSeconds: 5, leaseSeconds: 120 };
  const logger = createMemoryLogger();
  return {
    runId: randomUUID(),
    worker: 'test-worker',
    pool,
    logger,
    env: {},
    dryRun: false,
    limit: 100_000,
    ids: undefined,
    concurrency: 8,
    claimBatch: 100,
    timing,
    retry: TEST_RETRY,
    stop: new StopController(),
    counters: emptyCounters(),
    attention: [],
    details: {},
    plan: [],
    onProgress: () => undefined,
    ...overrides,
  } as RunContext & { logger: ReturnType<typeof createMemoryLogger> };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
