/**
 * Start-up cost of the CLI as a whole process, as a CronJob pays it on every run:
 * - `zbox-workers --help` against `node -e 0`;
 * - one `expiring-allocations` cycle with nothing due against a `node` process that connects with
 *   `pg`, runs `SELECT 1` and disconnects.
 * expiring-allocations is a real queue worker: it connects, checks the schema, records the run,
 * runs its producer query and one claim. Its sharders and Elasticsearch point at loopback fakes,
 * and the benchmark checks that no request reached them, so the cycle touched no dependency.
 */
import { fileURLToPath } from 'node:url';
import { migrate } from '../src/core/db/migrate.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { startElasticsearchFake } from '../src/sandbox/elasticsearch.js';
import { startZusNetwork } from '../src/sandbox/zus-network.js';
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
const HELP_PAIRS = 21;
const CYCLE_PAIRS = 15;
const WARM_UP_RUNS = 2;
const GOAL_RATIO = 1.5;

const BARE_CONNECT_SCRIPT = [
  "import pg from 'pg';",
  'const client = new pg.Client({ connectionString: process.env.DATABASE_URL });',
  'await client.connect();',
  "await client.query('SELECT 1');",
  'await client.end();',
].join(' ');

async function main(): Promise<void> {
  const serverUrl = benchDatabaseUrl();
  const quiet = await waitForQuietMachine();
  const machine = await readMachineInfo(serverUrl);
  printHeader('startup: whole-process wall time', machine, quiet, [
    'wall time from spawn to exit of each process, measured by this script',
    `--help: ${HELP_PAIRS} pairs of (node bin/zbox-workers --help, node -e 0)`,
    `empty cycle: ${CYCLE_PAIRS} pairs of (node bin/zbox-workers expiring-allocations --json with nothing due,` +
      ' node -e <connect with pg, SELECT 1, disconnect>)',
    `each pair runs back to back, the order alternating; ${WARM_UP_RUNS} warm-up runs of each process first`,
    'figures are medians; ratios are medians of the per-pair ratios',
  ]);

  const database = await createBenchDatabase(serverUrl, 'startup');
  const network = await startZusNetwork({ sharders: 3 });
  const elasticsearch = await startElasticsearchFake();
  try {
    await migrate(database.url, createMemoryLogger());
    const cycleEnv = {
      DATABASE_URL: database.url,
      ZUS_SHARDERS: network.sharderUrls.join(','),
      ELASTICSEARCH_URL: elasticsearch.url,
    };
    const help = () => timed(process.execPath, [BIN, '--help'], {});
    const nodeNothing = () => timed(process.execPath, ['-e', '0'], {});
    const emptyCycle = async () => {
      const run = await timeProcess(process.execPath, [BIN, 'expiring-allocations', '--json'], {
        cwd: REPO_ROOT,
        env: cycleEnv,
      });
      const summary = summaryOf(run);
      if (run.code !== 0 || summary.claimed !== 0) {
        throw new Error(
          `empty cycle: exit ${run.code}, claimed ${String(summary.claimed)}; expected 0 and 0`,
        );
      }
      return run.wallMs;
    };
    const bareConnect = () =>
      timed(process.execPath, ['--input-type=module', '-e', BARE_CONNECT_SCRIPT], {
        DATABASE_URL: database.url,
      });

    for (let run = 0; run < WARM_UP_RUNS; run += 1) {
      await help();
      await nodeNothing();
      await emptyCycle();
      await bareConnect();
    }

    const helpResult = await measurePairs(HELP_PAIRS, help, nodeNothing);
    console.log(
      `--help: ${round(helpResult.subject, 1)} ms; node -e 0: ${round(helpResult.baseline, 1)} ms; ratio ${round(helpResult.ratio)}`,
    );
    const cycleResult = await measurePairs(CYCLE_PAIRS, emptyCycle, bareConnect);
    console.log(
      `empty cycle: ${round(cycleResult.subject, 1)} ms; bare connect-query: ${round(cycleResult.baseline, 1)} ms; ratio ${round(cycleResult.ratio)}`,
    );
    const dependencyRequests = network.requests.length + elasticsearch.requestCount;
    console.log(`requests that reached the sharder and Elasticsearch fakes: ${dependencyRequests}`);
    if (dependencyRequests !== 0) {
      throw new Error('the empty cycle called a dependency; the comparison would not be a start-up cost');
    }

    writeResultRows(
      [
        {
          benchmark: 'startup: --help',
          figures: `--help ${round(helpResult.subject, 1)} ms, node -e 0 ${round(helpResult.baseline, 1)} ms, ratio ${round(helpResult.ratio)} (median of ${HELP_PAIRS} pairs)`,
          goal: `≤ ${GOAL_RATIO}× node -e 0`,
          met: verdict(helpResult.ratio),
        },
        {
          benchmark: 'startup: empty cycle',
          figures:
            `expiring-allocations with nothing due ${round(cycleResult.subject, 1)} ms, ` +
            `bare pg connect + SELECT 1 ${round(cycleResult.baseline, 1)} ms, ratio ${round(cycleResult.ratio)} ` +
            `(median of ${CYCLE_PAIRS} pairs; fakes for sharders and Elasticsearch received 0 requests)`,
          goal: `≤ ${GOAL_RATIO}× the bare connect-query process`,
          met: verdict(cycleResult.ratio),
        },
      ],
      machine,
      quiet,
      loadAverage(),
    );
  } finally {
    await Promise.all([network.close(), elasticsearch.close()]);
    await database.drop();
  }
}

async function timed(command: string, args: string[], env: Record<string, string>): Promise<number> {
  const run = await timeProcess(command, args, { cwd: REPO_ROOT, env });
  if (run.code !== 0) {
    throw new Error(`${args.join(' ')} exited ${run.code}: ${run.stderr.slice(0, 500)}`);
  }
  return run.wallMs;
}

function verdict(ratio: number): string {
  return ratio <= GOAL_RATIO
    ? `yes: ${round(ratio)}× ≤ ${GOAL_RATIO}×`
    : `no: ${round(ratio)}× > ${GOAL_RATIO}×`;
}

await main();
