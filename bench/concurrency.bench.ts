/**
 * Latency-bound cycle: 2,000 tasks, each one HTTP request to a loopback dependency that responds
 * after 100 ms, at concurrency 32. The ideal is 2,000 × 100 ms / 32 = 6.25 s; the gap to it is
 * what the engine adds (claims, outcome transactions, scheduling). The dependency runs in its
 * own process, so its work does not share this process's event loop.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { sql } from 'slonik';
import { openPool } from '../src/core/db/pool.js';
import { runQueueCycle } from '../src/core/engine/cycle.js';
import { createLogger } from '../src/core/output/logger.js';
import { createTestQueue, testContext, testWorker } from '../test/support/engine.js';
import { createBenchDatabase } from './support/database.js';
import {
  benchDatabaseUrl,
  loadAverage,
  printHeader,
  readMachineInfo,
  waitForQuietMachine,
} from './support/environment.js';
import { median, round } from './support/measure.js';
import { writeResultRows } from './support/results.js';

const SERVER_SCRIPT = fileURLToPath(new URL('./support/slow-dependency.ts', import.meta.url));
const TASKS = 2_000;
const DELAY_MS = 100;
const CONCURRENCY = 32;
const RUNS = 5;
const IDEAL_MS = (TASKS * DELAY_MS) / CONCURRENCY;
const GOAL_RATIO = 1.15;

async function main(): Promise<void> {
  const serverUrl = benchDatabaseUrl();
  const quiet = await waitForQuietMachine();
  const machine = await readMachineInfo(serverUrl);
  printHeader('concurrency: 2,000 tasks against a 100 ms loopback dependency', machine, quiet, [
    `${TASKS} due rows; each task sends one GET with fetch to a server process that responds after ${DELAY_MS} ms`,
    `runQueueCycle in this process at concurrency ${CONCURRENCY}, pool of 10 connections (the CLI's), claim chunks of 100`,
    `ideal = ${TASKS} × ${DELAY_MS} ms / ${CONCURRENCY} = ${IDEAL_MS} ms; time from the call to its resolution`,
    `${RUNS} runs on fresh tables after one warm-up run; the median run is reported`,
  ]);

  const database = await createBenchDatabase(serverUrl, 'concurrency');
  const pool = await openPool(database.url);
  const dependency = await startDependency();
  try {
    const durations: number[] = [];
    for (let run = 0; run <= RUNS; run += 1) {
      const table = `bench_latency_${run}`;
      await createTestQueue(pool, table, TASKS);
      await pool.query(sql.unsafe`
        CREATE INDEX ON ${sql.identifier([table])} (next_attempt_at) WHERE status IN ('pending', 'in_progress')`);
      await pool.query(sql.unsafe`VACUUM ANALYZE ${sql.identifier([table])}`);
      const worker = {
        ...testWorker(table, async () => {
          const response = await fetch(`${dependency.url}/task`);
          await response.text();
          return 'ok';
        }),
        recordSuccess: undefined,
      };
      const logger = createLogger({ json: true, level: 'info', write: () => undefined }, { worker: 'bench' });
      const ctx = testContext(pool, { concurrency: CONCURRENCY, limit: TASKS, logger });

      const started = performance.now();
      await runQueueCycle(worker, ctx);
      const elapsedMs = performance.now() - started;

      if (ctx.counters.succeeded !== TASKS) {
        throw new Error(`run ${run}: ${ctx.counters.succeeded} of ${TASKS} tasks succeeded`);
      }
      await pool.query(sql.unsafe`DROP TABLE ${sql.identifier([table])}`);
      if (run === 0) {
        console.log(`warm-up: ${Math.round(elapsedMs)} ms`);
        continue;
      }
      durations.push(elapsedMs);
      console.log(`run ${run}: ${Math.round(elapsedMs)} ms, ${round(elapsedMs / IDEAL_MS, 3)}× ideal`);
    }
    const stats = await dependency.stats();
    const medianMs = median(durations);
    const ratio = medianMs / IDEAL_MS;
    console.log(
      `median ${Math.round(medianMs)} ms = ${round(ratio, 3)}× ideal; dependency served ${stats.served} requests, at most ${stats.maxInFlight} at once`,
    );

    writeResultRows(
      [
        {
          benchmark: 'concurrency: 2,000 × 100 ms at 32',
          figures:
            `${Math.round(medianMs)} ms for ${TASKS} tasks (median of ${RUNS} runs; fastest ${Math.round(Math.min(...durations))} ms, ` +
            `slowest ${Math.round(Math.max(...durations))} ms), ideal ${IDEAL_MS} ms, ratio ${round(ratio, 3)}; ` +
            `at most ${stats.maxInFlight} requests in flight`,
          goal: `≤ ${GOAL_RATIO}× ideal`,
          met:
            ratio <= GOAL_RATIO
              ? `yes: ${round(ratio, 3)}× ≤ ${GOAL_RATIO}×`
              : `no: ${round(ratio, 3)}× > ${GOAL_RATIO}×`,
        },
      ],
      machine,
      quiet,
      loadAverage(),
    );
  } finally {
    await dependency.stop();
    await pool.end();
    await database.drop();
  }
}

interface Dependency {
  url: string;
  stats(): Promise<{ served: number; maxInFlight: number }>;
  stop(): Promise<void>;
}

async function startDependency(): Promise<Dependency> {
  const child: ChildProcess = spawn(process.execPath, [SERVER_SCRIPT, String(DELAY_MS)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const [firstLine] = (await once(lines, 'line')) as [string];
  const { port } = JSON.parse(firstLine) as { port: number };
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    stats: async () =>
      (await (await fetch(`${url}/stats`)).json()) as { served: number; maxInFlight: number },
    stop: async () => {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    },
  };
}

await main();
