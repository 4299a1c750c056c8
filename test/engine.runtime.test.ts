import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { runWorker, type WorkerOptions } from '../src/core/engine/runtime.js';
import { StopController } from '../src/core/engine/stop.js';
import { ConfigError } from '../src/core/errors.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { parseJsonLines } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

let database: TestDatabase;
let pool: DatabasePool;

before(async () => {
  database = await createTestDatabase('engine_runtime');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 2 });
});

after(async () => {
  await pool.end();
  await database.drop();
});

const OPTIONS: WorkerOptions = { dryRun: false, json: true, verbose: false, quiet: false, embedded: false };

function io(env: Record<string, string>) {
  let output = '';
  return {
    io: {
      env: { DATABASE_URL: database.url, ...env },
      stop: new StopController(),
      isTty: false,
      writeOut: (text: string) => {
        output += text;
      },
    },
    output: () => output,
  };
}

test('deadline stops the run and it exits 0', async () => {
  const run = io({ ZBOX_RUN_DEADLINE_SECONDS: '1', ZBOX_GRACE_SECONDS: '0' });
  let stoppedBy: string | undefined;
  const summary = await runWorker(
    {
      name: 'deadline-test',
      singleton: false,
      body: async (ctx) => {
        await new Promise<void>((resolve) => ctx.stop.onStop(() => resolve()));
        stoppedBy = ctx.stop.reason;
      },
    },
    OPTIONS,
    run.io,
  );
  assert.equal(stoppedBy, 'deadline');
  assert.equal(summary.exit_code, 0);
  assert.equal(summary.details.stopped_at_deadline, true);
  assert.ok(summary.duration_ms >= 950, `duration ${summary.duration_ms} ms`);
  const lines = parseJsonLines(run.output());
  assert.equal(lines.at(-1)?.msg, 'run summary', 'the summary is the last line');
  assert.ok(lines.some((line) => line.msg === 'run deadline reached: stopped starting work'));
});

test('real run is recorded and dry run is not', async () => {
  const spec = {
    name: 'record-test',
    singleton: false,
    body: async (ctx: { attention: string[] }) => {
      ctx.attention.push('a guard rail stopped spending');
    },
  };
  const real = await runWorker(spec, OPTIONS, io({}).io);
  assert.equal(real.exit_code, 4, 'attention makes exit 4');
  await runWorker(spec, { ...OPTIONS, dryRun: true }, io({}).io);
  const rows = await pool.any(
    sql.type(
      z.object({ run_id: z.string(), exit_code: z.number(), summary: z.record(z.string(), z.unknown()) }),
    )`
      SELECT run_id::text, exit_code, summary FROM zbox_runs WHERE worker = 'record-test'`,
  );
  assert.equal(rows.length, 1, 'only the real run is recorded');
  assert.equal(rows[0]?.run_id, real.run_id);
  assert.equal(rows[0]?.exit_code, 4);
  assert.deepEqual(rows[0]?.summary.attention, ['a guard rail stopped spending']);
});

test('no secret field reaches the output', async () => {
  const run = io({});
  await runWorker(
    {
      name: 'secret-test',
      singleton: false,
      body: async (ctx) => {
        ctx.logger.info('wallet loaded', {
          private_key: 'abc123secret',
          api_key: 'sk-abc123secret',
          client_id: 'c1',
        });
      },
    },
    OPTIONS,
    run.io,
  );
  assert.doesNotMatch(run.output(), /abc123secret/);
  assert.match(run.output(), /"client_id":"c1"/);
});

test('failed run closes its run record', async () => {
  const run = io({});
  const runIds: string[] = [];
  await assert.rejects(
    runWorker(
      {
        name: 'failing-test',
        singleton: false,
        body: async (ctx) => {
          runIds.push(ctx.runId);
          throw new ConfigError('ZBOX_TEAM_WALLET: file not found');
        },
      },
      OPTIONS,
      run.io,
    ),
    ConfigError,
  );
  const record = await pool.one(sql.type(
    z.object({ finished: z.boolean(), exit_code: z.number().nullable(), summary: z.unknown() }),
  )`
    SELECT finished_at IS NOT NULL AS finished, exit_code, summary FROM zbox_runs WHERE run_id = ${runIds[0] ?? ''}`);
  assert.equal(record.finished, true);
  assert.equal(record.exit_code, 2);
  assert.deepEqual(record.summary, { error: 'ZBOX_TEAM_WALLET: file not found' });
});

test('missing requirement stops before database', async () => {
  const run = io({ DATABASE_URL: 'postgres://postgres@127.0.0.1:9/unreachable' });
  let started = false;
  await assert.rejects(
    runWorker(
      {
        name: 'needs-elasticsearch',
        singleton: false,
        requires: [['ELASTICSEARCH_URL'], ['ZUS_SHARDERS', 'ZUS_BLOCK_WORKER']],
        body: async () => {
          started = true;
        },
      },
      OPTIONS,
      run.io,
    ),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.message.startsWith(
        'needs-elasticsearch: missing ELASTICSEARCH_URL; ZUS_SHARDERS or ZUS_BLOCK_WORKER.',
      ),
  );
  assert.equal(started, false);
});
