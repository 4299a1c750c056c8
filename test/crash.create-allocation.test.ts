import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { BIN } from './support/cli.js';
import { crashUntilDone } from './support/crash.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { type WalletFile, walletFolder } from './support/money.js';
import { ownStorageConfigFields } from './support/storage-config.js';

const ZCN = 10_000_000_000n;
const TASKS = 100;
const KILLS = Number(process.env.ZBOX_CRASH_KILLS ?? 100);
if (!(KILLS >= 1)) {
  throw new Error(`ZBOX_CRASH_KILLS must be a positive number, got ${process.env.ZBOX_CRASH_KILLS}`);
}
const SEED = Number(process.env.ZBOX_CRASH_SEED ?? Date.now() % 1_000_000);

let database: TestDatabase;
let pool: DatabasePool;
let network: ZusNetworkFake;
const wallets = walletFolder();
let team: WalletFile;
let operator: WalletFile;

before(async () => {
  database = await createTestDatabase('crash_create_allocation');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 2 });
  team = await wallets.create('team');
  operator = await wallets.create('operator');
  network = await startZusNetwork({
    sharders: 3,
    miners: 3,
    storageConfigFields: ownStorageConfigFields(),
    slowMs: 150,
  });
  for (let index = 0; index < 6; index++) {
    network.upsertBlobber({
      id: `${index + 1}`.repeat(64),
      url: `http://127.0.0.1:${6200 + index}`,
      writePrice: 100_000_000n,
    });
  }
  network.setBalance(team.wallet.clientId, 100_000n * ZCN);
  // A slow miner keeps each run busy long enough for kills to land mid-task.
  for (let index = 0; index < 3; index++) {
    await network.setMinerBehaviour(index, 'slow');
  }
  await addTasks(TASKS);
});

let tasksAdded = 0;

async function addTasks(count: number) {
  for (let index = tasksAdded; index < tasksAdded + count; index++) {
    const owner = await wallets.create(`owner-${index}`);
    await pool.query(sql.unsafe`
      INSERT INTO stripe_allocation_tasks (stripe_payment_id, user_id, owner_client_id, owner_public_key, size_bytes,
                                           data_shards, parity_shards, amount_paid_cents)
      VALUES (${`pi_crash_${index}`}, ${`user-${index}`}, ${owner.wallet.clientId}, ${owner.wallet.publicKey},
              ${1n << 30n}, 2, 2, 999)`);
  }
  tasksAdded += count;
}

after(async () => {
  await network.close();
  await pool.end();
  await database.drop();
  wallets.remove();
});

test('SIGKILL at random moments creates each allocation once', { timeout: 600_000 }, async (t) => {
  t.diagnostic(`seed ${SEED} (set ZBOX_CRASH_SEED to replay), ${KILLS} kills`);
  const result = await crashUntilDone({
    command: [process.execPath, BIN, 'create-allocation', '--json', '--concurrency', '2'],
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      DATABASE_URL: database.url,
      ZUS_SHARDERS: network.sharderUrls.join(','),
      ZUS_MINERS: network.minerUrls.join(','),
      ZUS_CHAIN_ID: network.chainId,
      ZBOX_TEAM_WALLET: team.path,
      ZBOX_OPERATOR_WALLET: operator.path,
      ZUS_CONFIRMATION_WAIT_SECONDS: '3',
      ZBOX_BACKOFF_BASE_SECONDS: '1',
      ZBOX_BACKOFF_MAX_SECONDS: '1',
    },
    minKills: KILLS,
    maxRuns: KILLS * 4,
    seed: SEED,
    minDelayMs: 150,
    maxDelayMs: 1200,
    // A killed run's claims come back when its lease ends; here that moment is brought forward.
    expireLeases: async () => {
      await pool.query(sql.unsafe`
        UPDATE stripe_allocation_tasks SET locked_until = now() - interval '1 second', next_attempt_at = now()
        WHERE status IN ('in_progress', 'pending')`);
    },
    addWork: () => addTasks(20),
    isDone: async () =>
      (await pool.oneFirst(
        sql.unsafe`SELECT count(*) FROM stripe_allocation_tasks WHERE status <> 'succeeded'`,
      )) === 0n,
  });
  t.diagnostic(`killed ${result.killed} runs, ${result.finishedEarly} finished before their kill`);

  const tasks = await pool.any(
    sql.type(
      z.object({ status: z.string(), tx_success: z.boolean(), result_allocation_id: z.string().nullable() }),
    )`
      SELECT status, tx_success, result_allocation_id FROM stripe_allocation_tasks`,
  );
  assert.ok(
    tasks.every((row) => row.status === 'succeeded' && row.tx_success),
    `no task lost or dead (seed ${SEED})`,
  );
  const applied = network
    .transactions()
    .filter((record) => record.clientId === team.wallet.clientId && record.applied === 1);
  assert.equal(applied.length, tasksAdded, `one allocation per Stripe task on chain (seed ${SEED})`);
  assert.deepEqual(
    new Set(tasks.map((row) => row.result_allocation_id)),
    new Set(applied.map((record) => record.hash)),
    'each task records the allocation that was created',
  );
  const spending = await pool.any(
    sql.type(z.object({ task_ref: z.string(), state: z.string(), amount_sas: z.bigint() }))`
      SELECT task_ref, state, amount_sas FROM team_wallet_spending ORDER BY task_ref`,
  );
  assert.equal(spending.length, tasksAdded, `one spending row per effect (seed ${SEED})`);
  assert.ok(spending.every((row) => row.state === 'settled'));
  const fundings = await pool.oneFirst(sql.unsafe`SELECT count(*) FROM allocation_fundings`);
  assert.equal(fundings, BigInt(tasksAdded));
});
