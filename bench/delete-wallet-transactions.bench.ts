/**
 * delete-wallet-transactions removing 2M of 4M team_wallet_spending rows while another connection
 * inserts a row every 10 ms, against one plain `DELETE` of the same rows under the same inserts.
 * Every run starts from a fresh copy of one template database (migrated schema, 4M rows,
 * vacuumed and analyzed), so each side deletes from the same table in the same state.
 */
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { migrate } from '../src/core/db/migrate.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { type BenchDatabase, createBenchDatabase } from './support/database.js';
import {
  benchDatabaseUrl,
  loadAverage,
  printHeader,
  readMachineInfo,
  waitForQuietMachine,
} from './support/environment.js';
import { measurePairs, percentile, round, summaryOf, timeProcess } from './support/measure.js';
import { writeResultRows } from './support/results.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const BIN = fileURLToPath(new URL('../bin/zbox-workers', import.meta.url));

const TOTAL_ROWS = 4_000_000;
/** Rows older than the 90-day retention; the rest are younger and stay. */
const EXPIRED_ROWS = 2_000_000;
const PAIRS = 3;
const INSERT_INTERVAL_MS = 10;
const GOAL_RATIO = 0.8;
const GOAL_MAX_INSERT_MS = 500;
const EXPIRED_CONDITION = "created_at < now() - interval '90 days' AND state <> 'reserved'";
/** Rows per range passed to the CLI when set; unset, the CLI's default (5000) applies. */
const BATCH_SIZE = process.env.ZBOX_DELETE_BATCH_SIZE;

interface SideResult {
  seconds: number;
  /** Whole-process wall time (the CLI only). */
  wallSeconds?: number;
  /** Maximum duration of one range statement, which is one transaction (the CLI only). */
  maxRangeMs?: number;
  ranges?: number;
  deleted: number;
  insertLatenciesMs: number[];
}

async function main(): Promise<void> {
  const serverUrl = benchDatabaseUrl();
  const quiet = await waitForQuietMachine();
  const machine = await readMachineInfo(serverUrl);
  printHeader('delete-wallet-transactions: 2M of 4M rows under concurrent inserts', machine, quiet, [
    `template: migrated schema, ${TOTAL_ROWS} settled rows, ${EXPIRED_ROWS} of them older than 90 days, ids in created_at order, VACUUM ANALYZE`,
    'each run: CREATE DATABASE ... TEMPLATE (file copy), CHECKPOINT, then one side deletes while an inserter runs',
    `inserter: its own connection, one INSERT of a new row, then ${INSERT_INTERVAL_MS} ms pause, from before the delete starts until it ends`,
    `ours: node bin/zbox-workers delete-wallet-transactions --json, ranges of about ${BATCH_SIZE ?? 'the default 5000'} rows, lock_timeout 2000 ms;`,
    '  its time is the run summary duration_ms (connect, schema check, lock, every range); process start is in the startup row;',
    '  its max transaction time is the summary max_range_ms (the slowest single range statement, timed by the CLI)',
    `plain: one autocommit DELETE ... WHERE ${EXPIRED_CONDITION}, timed around the statement`,
    `${PAIRS} pairs, order alternating; throughput ratio = plain time / our time per pair, median reported`,
  ]);

  const template = await createBenchDatabase(serverUrl, 'delete_template');
  try {
    const loadStarted = performance.now();
    await fillTemplate(template.url);
    console.log(`template filled in ${round((performance.now() - loadStarted) / 1000, 1)} s`);

    const ourRuns: SideResult[] = [];
    const plainRuns: SideResult[] = [];
    let copy = 0;
    const ours = async () => {
      copy += 1;
      const result = await onFreshCopy(serverUrl, template, `delete_run_${copy}`, runProduct);
      ourRuns.push(result);
      return result.deleted / result.seconds;
    };
    const plain = async () => {
      copy += 1;
      const result = await onFreshCopy(serverUrl, template, `delete_run_${copy}`, runPlainDelete);
      plainRuns.push(result);
      return result.deleted / result.seconds;
    };
    const throughput = await measurePairs(PAIRS, ours, plain, (index) => {
      const our = ourRuns[index] as SideResult;
      const base = plainRuns[index] as SideResult;
      console.log(
        `pair ${index + 1}: ours ${round(our.seconds)} s (wall ${round(our.wallSeconds ?? 0)} s, ${our.ranges} ranges, max ${our.maxRangeMs} ms each), ` +
          `max insert ${round(Math.max(...our.insertLatenciesMs), 1)} ms; ` +
          `plain ${round(base.seconds)} s, max insert ${round(Math.max(...base.insertLatenciesMs), 1)} ms`,
      );
    });

    const ourInserts = ourRuns.flatMap((run) => run.insertLatenciesMs);
    const plainInserts = plainRuns.flatMap((run) => run.insertLatenciesMs);
    const ourMaxInsertMs = Math.max(...ourInserts);
    const ourMaxRangeMs = Math.max(...ourRuns.map((run) => run.maxRangeMs ?? 0));
    const wallRatios = ourRuns.map(
      (run, index) => (plainRuns[index] as SideResult).seconds / (run.wallSeconds ?? 0),
    );
    const wallRatio = [...wallRatios].sort((a, b) => a - b)[Math.floor(wallRatios.length / 2)] as number;
    console.log(
      `ours ${Math.round(throughput.subject)} rows/s, plain DELETE ${Math.round(throughput.baseline)} rows/s, ratio ${round(throughput.ratio)} ` +
        `(${round(wallRatio)} on whole-process wall time)`,
    );
    console.log(
      `inserts during ours: ${ourInserts.length}, p99 ${round(percentile(ourInserts, 99), 1)} ms, max ${round(ourMaxInsertMs, 1)} ms; ` +
        `during the plain DELETE: ${plainInserts.length}, p99 ${round(percentile(plainInserts, 99), 1)} ms, max ${round(Math.max(...plainInserts), 1)} ms`,
    );
    console.log(`max range transaction of ours: ${ourMaxRangeMs} ms`);

    const ratioMet = throughput.ratio >= GOAL_RATIO;
    const insertsMet = ourMaxInsertMs <= GOAL_MAX_INSERT_MS;
    writeResultRows(
      [
        {
          benchmark: 'delete: 2M of 4M rows',
          figures:
            `ours ${Math.round(throughput.subject)} rows/s (${round(EXPIRED_ROWS / throughput.subject, 2)} s), ` +
            `plain DELETE ${Math.round(throughput.baseline)} rows/s (${round(EXPIRED_ROWS / throughput.baseline, 2)} s), ` +
            `ratio ${round(throughput.ratio)} (${round(wallRatio)} with process start; median of ${PAIRS} pairs); ` +
            `max transaction of ours ${ourMaxRangeMs} ms${BATCH_SIZE === undefined ? '' : ` (ZBOX_DELETE_BATCH_SIZE=${BATCH_SIZE})`}; ` +
            `inserts during ours: max ${round(ourMaxInsertMs, 1)} ms, p99 ${round(percentile(ourInserts, 99), 1)} ms of ${ourInserts.length}; ` +
            `during the plain DELETE: max ${round(Math.max(...plainInserts), 1)} ms`,
          goal: `throughput ≥ ${GOAL_RATIO}× plain DELETE; no insert over ${GOAL_MAX_INSERT_MS} ms`,
          met:
            `${ratioMet ? 'yes' : 'no'}: ratio ${round(throughput.ratio)} ${ratioMet ? '≥' : '<'} ${GOAL_RATIO}; ` +
            `${insertsMet ? 'yes' : 'no'}: max insert ${round(ourMaxInsertMs, 1)} ms ${insertsMet ? '≤' : '>'} ${GOAL_MAX_INSERT_MS} ms`,
        },
      ],
      machine,
      quiet,
      loadAverage(),
    );
  } finally {
    await template.drop();
  }
}

/**
 * Migrates the template and fills it. The secondary indexes are dropped during the bulk insert
 * and rebuilt from their own definitions afterwards, which is faster and gives the same indexes.
 */
async function fillTemplate(url: string): Promise<void> {
  await migrate(url, createMemoryLogger());
  await withClient(url, async (client) => {
    const indexes = await client.query<{ indexname: string; indexdef: string }>(
      `SELECT indexname, indexdef FROM pg_indexes
       WHERE tablename = 'team_wallet_spending' AND indexname <> 'team_wallet_spending_pkey'`,
    );
    for (const index of indexes.rows) {
      await client.query(`DROP INDEX ${client.escapeIdentifier(index.indexname)}`);
    }
    // Expired rows span 200 to 107 days ago, 4 s apart; recent rows span 89 to about 1 day ago.
    await client.query(
      `INSERT INTO team_wallet_spending
         (wallet_client_id, purpose, task_ref, amount_sas, fee_sas, tx_hash, state, created_at, settled_at)
       SELECT 'c0ffee' || repeat('a', 58), CASE WHEN n % 3 = 0 THEN 'allocation' ELSE 'funding' END,
              'task-' || n, 10000000000, 1000, md5(n::text) || md5((-n)::text), 'settled', t.created_at, t.created_at
       FROM generate_series(1, $1::int) AS n,
            LATERAL (SELECT CASE WHEN n <= $2::int
                                 THEN now() - interval '200 days' + n * interval '4 seconds'
                                 ELSE now() - interval '89 days' + (n - $2::int) * interval '3.8 seconds' END
                     AS created_at) AS t`,
      [TOTAL_ROWS, EXPIRED_ROWS],
    );
    for (const index of indexes.rows) {
      await client.query(index.indexdef);
    }
    await client.query('VACUUM ANALYZE team_wallet_spending');
    const expired = await client.query<{ count: string }>(
      `SELECT count(*) FROM team_wallet_spending WHERE ${EXPIRED_CONDITION}`,
    );
    if (Number(expired.rows[0]?.count) !== EXPIRED_ROWS) {
      throw new Error(`template has ${expired.rows[0]?.count} expired rows; expected ${EXPIRED_ROWS}`);
    }
  });
}

async function onFreshCopy(
  serverUrl: string,
  template: BenchDatabase,
  label: string,
  side: (url: string) => Promise<Omit<SideResult, 'insertLatenciesMs'>>,
): Promise<SideResult> {
  const copy = await createBenchDatabase(serverUrl, label, { template: template.name });
  try {
    await withClient(copy.url, (client) => client.query('CHECKPOINT'));
    const inserter = await startInserter(copy.url);
    let result: Omit<SideResult, 'insertLatenciesMs'>;
    try {
      result = await side(copy.url);
    } finally {
      await inserter.stop();
    }
    if (result.deleted !== EXPIRED_ROWS) {
      throw new Error(`${label}: deleted ${result.deleted} rows; expected ${EXPIRED_ROWS}`);
    }
    return { ...result, insertLatenciesMs: inserter.latenciesMs };
  } finally {
    await copy.drop();
  }
}

async function runProduct(url: string) {
  const run = await timeProcess(process.execPath, [BIN, 'delete-wallet-transactions', '--json'], {
    cwd: REPO_ROOT,
    env: { DATABASE_URL: url, ...(BATCH_SIZE === undefined ? {} : { ZBOX_DELETE_BATCH_SIZE: BATCH_SIZE }) },
  });
  const summary = summaryOf(run);
  if (run.code !== 0) {
    throw new Error(`delete-wallet-transactions exited ${run.code}: ${run.stderr.slice(0, 500)}`);
  }
  const details = summary.details as { deleted: number; max_range_ms: number; ranges: number };
  return {
    seconds: Number(summary.duration_ms) / 1000,
    wallSeconds: run.wallMs / 1000,
    deleted: details.deleted,
    maxRangeMs: details.max_range_ms,
    ranges: details.ranges,
  };
}

async function runPlainDelete(url: string) {
  return withClient(url, async (client) => {
    const started = performance.now();
    const result = await client.query(`DELETE FROM team_wallet_spending WHERE ${EXPIRED_CONDITION}`);
    return { seconds: (performance.now() - started) / 1000, deleted: result.rowCount ?? 0 };
  });
}

/** Inserts one new row every INSERT_INTERVAL_MS on its own connection and records each insert's latency. */
async function startInserter(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const latenciesMs: number[] = [];
  let stopping = false;
  const loop = (async () => {
    let n = 0;
    while (!stopping) {
      n += 1;
      const started = performance.now();
      await client.query(
        `INSERT INTO team_wallet_spending (wallet_client_id, purpose, task_ref, amount_sas, tx_hash, state)
         VALUES ('c0ffee' || repeat('a', 58), 'funding', $1, 10000000000, md5($1), 'reserved')`,
        [`bench-insert-${n}`],
      );
      latenciesMs.push(performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, INSERT_INTERVAL_MS));
    }
  })();
  // Let a few inserts run before the delete starts, so the first one is not the connection's first query.
  await new Promise((resolve) => setTimeout(resolve, 200));
  return {
    latenciesMs,
    stop: async () => {
      stopping = true;
      await loop;
      await client.end();
    },
  };
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

await main();
