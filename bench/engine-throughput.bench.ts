/**
 * Engine throughput: claim -> execute (no-op) -> record of 20,000 due rows on the local
 * PostgreSQL, against graphile-worker running 20,000 no-op jobs once (`runOnce`) on the same
 * server with the same concurrency and pool size. Both run in this process, after their tables
 * are filled and vacuumed, so the timed part is the queue work alone. The per-process start cost
 * is measured separately, with both CLIs run once with nothing to do.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Logger, makeWorkerUtils, runMigrations, runOnce } from 'graphile-worker';
import pg from 'pg';
import { type DatabasePool, sql } from 'slonik';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { runQueueCycle } from '../src/core/engine/cycle.js';
import { createLogger, createMemoryLogger } from '../src/core/output/logger.js';
import { startElasticsearchFake } from '../src/sandbox/elasticsearch.js';
import { startZusNetwork } from '../src/sandbox/zus-network.js';
import { createTestQueue, testContext, testWorker } from '../test/support/engine.js';
import { createBenchDatabase } from './support/database.js';
import {
  benchDatabaseUrl,
  loadAverage,
  printHeader,
  readMachineInfo,
  waitForQuietMachine,
} from './support/environment.js';
import { measurePairs, round, summaryOf, timeProcess } from './support/measure.js';
import { writeResultRows } from './support/results.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const BIN = fileURLToPath(new URL('../bin/zbox-workers', import.meta.url));
const GRAPHILE_BIN = fileURLToPath(new URL('../node_modules/.bin/graphile-worker', import.meta.url));
const WORK_DIR = fileURLToPath(new URL('./.work/engine-throughput/', import.meta.url));

const JOBS = 20_000;
const CONCURRENCY = 8;
/** Both sides use pools of this many connections (slonik's in openPool, graphile-worker's maxPoolSize default). */
const POOL_SIZE = 10;
const PAIRS = 5;
const START_PAIRS = 9;
const GOAL_RATIO = 1.2;

async function main(): Promise<void> {
  const serverUrl = benchDatabaseUrl();
  const quiet = await waitForQuietMachine();
  const machine = await readMachineInfo(serverUrl);
  printHeader('engine throughput: claim -> no-op -> record, against graphile-worker', machine, quiet, [
    `${JOBS} due rows per run; concurrency ${CONCURRENCY} and pools of ${POOL_SIZE} connections on both sides`,
    'ours: runQueueCycle in this process over a queue table with the engine columns and the due index the product tables have',
    '  (claim chunks of ZBOX_CLAIM_BATCH=100, one autocommit UPDATE per success as the worker records no columns of its own, JSON logging at info level to a discarding writer)',
    'graphile-worker: runOnce in this process with a no-op task and a discarding logger, jobs added by addJobs beforehand',
    'each side starts from a freshly filled and vacuumed table; the timed part is from the call to its resolution',
    `${PAIRS} pairs, order alternating; throughput ratio = ours / graphile-worker per pair, median reported`,
    `per-process start: ${START_PAIRS} pairs of whole-process wall times of both CLIs with nothing to do`,
  ]);

  const database = await createBenchDatabase(serverUrl, 'engine');
  const pool = await openPool(database.url, { maximumPoolSize: POOL_SIZE });
  // graphile-worker gets a pool this script owns, so every connection is closed before the database is dropped.
  // The handlers ignore errors of idle clients, as graphile-worker's own handlers do while it runs.
  const graphilePool = new pg.Pool({ connectionString: database.url, max: POOL_SIZE });
  graphilePool.on('error', () => undefined);
  graphilePool.on('connect', (client) => client.on('error', () => undefined));
  const silent = new Logger(() => () => undefined);
  const graphileOptions = {
    pgPool: graphilePool,
    concurrency: CONCURRENCY,
    noHandleSignals: true,
    logger: silent,
  };
  try {
    await runMigrations(graphileOptions);
    let run = 0;
    const ours = async () => {
      run += 1;
      const seconds = await runOurs(pool, `bench_queue_${run}`);
      return JOBS / seconds;
    };
    const theirs = async () => JOBS / (await runGraphile(graphileOptions));

    // One small warm-up of each side, so neither pays its first-use costs (JIT, prepared statements) in a timed run.
    await ours();
    await theirs();

    const throughput = await measurePairs(PAIRS, ours, theirs, (index, oursPerSecond, theirsPerSecond) => {
      console.log(
        `pair ${index + 1}: ours ${Math.round(oursPerSecond)} tasks/s, graphile-worker ${Math.round(theirsPerSecond)} jobs/s`,
      );
    });
    console.log(
      `ours ${Math.round(throughput.subject)} tasks/s, graphile-worker ${Math.round(throughput.baseline)} jobs/s, ratio ${round(throughput.ratio)}`,
    );

    const start = await measureStartCost(serverUrl);
    console.log(
      `per-process start with nothing to do: ours ${round(start.subject, 1)} ms, graphile-worker --once ${round(start.baseline, 1)} ms, ratio ${round(start.ratio)}`,
    );

    const met = throughput.ratio >= GOAL_RATIO;
    writeResultRows(
      [
        {
          benchmark: 'engine: 20,000 no-op tasks',
          figures:
            `ours ${Math.round(throughput.subject)} tasks/s, graphile-worker 0.18.0 ${Math.round(throughput.baseline)} jobs/s, ` +
            `ratio ${round(throughput.ratio)} (median of ${PAIRS} pairs, concurrency ${CONCURRENCY}, in-process); ` +
            `start cost per process with nothing to do: ours ${Math.round(start.subject)} ms, graphile-worker --once ${Math.round(start.baseline)} ms`,
          goal: `throughput ≥ ${GOAL_RATIO}× graphile-worker`,
          met: met
            ? `yes: ${round(throughput.ratio)}× ≥ ${GOAL_RATIO}×`
            : `no: ${round(throughput.ratio)}× < ${GOAL_RATIO}×`,
        },
      ],
      machine,
      quiet,
      loadAverage(),
    );
  } finally {
    await pool.end();
    await graphilePool.end();
    await database.drop();
    rmSync(WORK_DIR, { recursive: true, force: true });
  }
}

/** Runs one cycle over a fresh table of JOBS due rows and returns its duration in seconds. */
async function runOurs(pool: DatabasePool, table: string): Promise<number> {
  await createTestQueue(pool, table, JOBS);
  await pool.query(sql.unsafe`
    CREATE INDEX ON ${sql.identifier([table])} (next_attempt_at, id) WHERE status IN ('pending', 'in_progress')`);
  await pool.query(sql.unsafe`VACUUM ANALYZE ${sql.identifier([table])}`);
  const noop = { ...testWorker(table, async () => 'ok'), recordSuccess: undefined };
  const logger = createLogger({ json: true, level: 'info', write: () => undefined }, { worker: 'bench' });
  const ctx = testContext(pool, { concurrency: CONCURRENCY, limit: JOBS, logger });

  const started = performance.now();
  await runQueueCycle(noop, ctx);
  const seconds = (performance.now() - started) / 1000;

  if (ctx.counters.succeeded !== JOBS) {
    throw new Error(`ours: ${ctx.counters.succeeded} of ${JOBS} tasks succeeded`);
  }
  await pool.query(sql.unsafe`DROP TABLE ${sql.identifier([table])}`);
  return seconds;
}

/** Adds JOBS jobs, runs graphile-worker once over them and returns the run's duration in seconds. */
async function runGraphile(options: Parameters<typeof runOnce>[0] & { pgPool: pg.Pool }): Promise<number> {
  const utils = await makeWorkerUtils({ pgPool: options.pgPool, logger: options.logger });
  try {
    await utils.addJobs(Array.from({ length: JOBS }, () => ({ identifier: 'noop', payload: {} })));
  } finally {
    await utils.release();
  }
  await options.pgPool.query('VACUUM ANALYZE');
  let completed = 0;
  const started = performance.now();
  await runOnce({
    ...options,
    taskList: {
      noop: async () => {
        completed += 1;
      },
    },
  });
  const seconds = (performance.now() - started) / 1000;
  if (completed !== JOBS) {
    throw new Error(`graphile-worker: ${completed} of ${JOBS} jobs ran`);
  }
  return seconds;
}

/**
 * Whole-process wall time of each CLI with nothing to do: our expiring-allocations cycle (its
 * sharders and Elasticsearch are loopback fakes that it does not call when nothing is due) and
 * `graphile-worker --once` with one no-op task file and an empty queue.
 */
async function measureStartCost(serverUrl: string) {
  const ourDatabase = await createBenchDatabase(serverUrl, 'engine_start');
  const network = await startZusNetwork({ sharders: 3 });
  const elasticsearch = await startElasticsearchFake();
  try {
    await migrate(ourDatabase.url, createMemoryLogger());
    mkdirSync(`${WORK_DIR}tasks`, { recursive: true });
    writeFileSync(`${WORK_DIR}tasks/noop.cjs`, 'module.exports = async () => {};\n');
    const ours = async () => {
      const result = await timeProcess(process.execPath, [BIN, 'expiring-allocations', '--json'], {
        cwd: REPO_ROOT,
        env: {
          DATABASE_URL: ourDatabase.url,
          ZUS_SHARDERS: network.sharderUrls.join(','),
          ELASTICSEARCH_URL: elasticsearch.url,
        },
      });
      if (result.code !== 0 || summaryOf(result).claimed !== 0) {
        throw new Error(`our empty cycle exited ${result.code}: ${result.stderr.slice(0, 500)}`);
      }
      return result.wallMs;
    };
    const graphileUrl = new URL(ourDatabase.url);
    const theirs = async () => {
      const result = await timeProcess(
        process.execPath,
        [GRAPHILE_BIN, '--connection', graphileUrl.toString(), '--once', '--jobs', String(CONCURRENCY)],
        { cwd: WORK_DIR },
      );
      if (result.code !== 0) {
        throw new Error(`graphile-worker --once exited ${result.code}: ${result.stderr.slice(0, 500)}`);
      }
      return result.wallMs;
    };
    // The first graphile-worker run installs its schema; both get one untimed run.
    await ours();
    await theirs();
    return await measurePairs(START_PAIRS, ours, theirs);
  } finally {
    await Promise.all([network.close(), elasticsearch.close()]);
    await ourDatabase.drop();
  }
}

await main();
