import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { BIN, runCli } from './support/cli.js';
import { crashUntilDone } from './support/crash.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { type WalletFile, walletFolder } from './support/money.js';

const ZCN = 10_000_000_000n;
const KILLS = Number(process.env.ZBOX_CRASH_KILLS ?? 100);
const SEED = Number(process.env.ZBOX_CRASH_SEED ?? Date.now() % 1_000_000);

let database: TestDatabase;
let pool: DatabasePool;
let network: ZusNetworkFake;
const wallets = walletFolder();
let team: WalletFile;
const recipients: string[] = [];

before(async () => {
  database = await createTestDatabase('crash_funding_zbox');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 2 });
  for (let index = 0; index < 20; index++) {
    recipients.push((await wallets.create(`recipient-${index}`)).wallet.clientId);
  }
  network = await startZusNetwork({ sharders: 3, miners: 3, slowMs: 150 });
});

// A fresh team wallet per test, so the ledger and the nonces of one test are its own.
beforeEach(async () => {
  await pool.query(
    sql.unsafe`TRUNCATE funding_tasks, team_wallet_spending, zus_outbox, zus_wallet_nonces, zbox_runs`,
  );
  team = await wallets.create(`team-${Date.now()}`);
  seeded = 0;
  network.setBalance(team.wallet.clientId, 1_000_000n * ZCN);
});

after(async () => {
  await network.close();
  await pool.end();
  await database.drop();
  wallets.remove();
});

function env(): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    DATABASE_URL: database.url,
    ZUS_SHARDERS: network.sharderUrls.join(','),
    ZUS_MINERS: network.minerUrls.join(','),
    ZUS_CHAIN_ID: network.chainId,
    ZBOX_TEAM_WALLET: team.path,
    // The users have no devices, so firebase-admin is never loaded and this is never read.
    ZBOX_FIREBASE_CREDENTIALS: '{"project_id": "unused"}',
    ZUS_CONFIRMATION_WAIT_SECONDS: '3',
    ZUS_CONFIRMATION_POLL_MS: '100',
    ZBOX_BACKOFF_BASE_SECONDS: '1',
    ZBOX_BACKOFF_MAX_SECONDS: '1',
    ZBOX_MAX_SPEND_PER_RUN_ZCN: '100000',
    ZBOX_MAX_SPEND_PER_DAY_ZCN: '100000',
  };
}

let seeded = 0;

/** Adds funding tasks; the n-th task of a test sends 1 ZCN + n SAS, so each transfer is recognisable. */
async function seed(count: number) {
  await pool.query(sql.unsafe`
    INSERT INTO funding_tasks (user_id, recipient_client_id, amount_sas, reason)
    SELECT 'user-' || n, (${sql.array(recipients, 'text')})[1 + n % ${recipients.length}], ${ZCN}::int8 + n, 'grant'
    FROM generate_series(${seeded + 1}::int4, ${seeded + count}::int4) AS n`);
  seeded += count;
}

async function allDone() {
  return (
    (await pool.oneFirst(sql.unsafe`SELECT count(*) FROM funding_tasks WHERE status <> 'succeeded'`)) === 0n
  );
}

async function expireLeases() {
  await pool.query(sql.unsafe`
    UPDATE funding_tasks SET locked_until = now() - interval '1 second', next_attempt_at = now()
    WHERE status IN ('in_progress', 'pending')`);
}

/** Checks the ledger: one applied transfer per task, of its exact amount, and one settled spending row each. */
async function assertEachTaskPaidOnce(count: number, label: string) {
  const applied = network
    .transactions()
    .filter((record) => record.clientId === team.wallet.clientId && record.applied === 1);
  assert.equal(applied.length, count, `${label}: one transfer per task`);
  const amounts = applied.map((record) => record.value - ZCN).sort((a, b) => (a < b ? -1 : 1));
  assert.deepEqual(
    amounts,
    Array.from({ length: count }, (_, index) => BigInt(index + 1)),
    `${label}: every task's amount exactly once`,
  );
  const spending = await pool.one(
    sql.type(z.object({ rows: z.bigint(), settled: z.bigint() }))`
      SELECT count(*) AS rows, count(*) FILTER (WHERE state = 'settled') AS settled FROM team_wallet_spending`,
  );
  assert.deepEqual(
    spending,
    { rows: BigInt(count), settled: BigInt(count) },
    `${label}: one spending row per transfer`,
  );
  const tasks = await pool.oneFirst(
    sql.unsafe`SELECT count(*) FROM funding_tasks WHERE status = 'succeeded' AND tx_success AND notify_state = 'skipped'`,
  );
  assert.equal(tasks, BigInt(count), `${label}: no task lost or dead`);
  return applied;
}

test('SIGKILL at random moments pays each funding task once', { timeout: 600_000 }, async (t) => {
  t.diagnostic(`seed ${SEED} (set ZBOX_CRASH_SEED to replay), ${KILLS} kills`);
  await seed(120);
  for (let index = 0; index < 3; index++) {
    await network.setMinerBehaviour(index, 'slow');
  }
  try {
    const result = await crashUntilDone({
      command: [process.execPath, BIN, 'funding-zbox', '--json', '--concurrency', '2'],
      env: env(),
      minKills: KILLS,
      maxRuns: KILLS * 4,
      seed: SEED,
      minDelayMs: 150,
      maxDelayMs: 1200,
      expireLeases,
      isDone: allDone,
      addWork: () => seed(30),
    });
    t.diagnostic(`killed ${result.killed} runs, ${result.finishedEarly} finished before their kill`);
  } finally {
    for (let index = 0; index < 3; index++) {
      await network.setMinerBehaviour(index, 'ok');
    }
  }
  await assertEachTaskPaidOnce(seeded, `seed ${SEED}`);
});

test('four concurrent runs over 400 tasks pay each once', { timeout: 600_000 }, async () => {
  await seed(400);
  for (let round = 0; round < 20 && !(await allDone()); round++) {
    const runs = await Promise.all(
      Array.from({ length: 4 }, () =>
        runCli(['funding-zbox', '--json', '--concurrency', '8'], env(), { timeoutMs: 120_000 }),
      ),
    );
    for (const run of runs) {
      assert.ok(run.code === 0 || run.code === 4, `exit ${run.code}: ${run.stderr}`);
    }
    await pool.query(sql.unsafe`UPDATE funding_tasks SET next_attempt_at = now() WHERE status = 'pending'`);
  }
  assert.equal(await allDone(), true, 'every task finished');
  const applied = await assertEachTaskPaidOnce(400, 'four runs');
  assert.deepEqual(
    applied.map((record) => record.nonce).sort((a, b) => a - b),
    Array.from({ length: 400 }, (_, index) => index + 1),
    'nonces are distinct and gap-free',
  );
});
