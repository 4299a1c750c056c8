import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { type FakeBlobbers, startFakeBlobbers } from '../src/sandbox/blobbers.js';
import { startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { runCli, summaryOf } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { type WalletFile, walletFolder } from './support/money.js';
import { ownStorageConfigFields } from './support/storage-config.js';

const ZCN = 10_000_000_000n;
const GIB = 1n << 30n;

let database: TestDatabase;
let pool: DatabasePool;
let network: ZusNetworkFake;
let restricted: FakeBlobbers;
const wallets = walletFolder();
let team: WalletFile;
let operator: WalletFile;
let owner: WalletFile;
const openBlobbers: string[] = [];

before(async () => {
  database = await createTestDatabase('create_allocation');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 2 });
  team = await wallets.create('team');
  operator = await wallets.create('operator');
  owner = await wallets.create('owner');
  restricted = await startFakeBlobbers({
    count: 2,
    operatorPublicKey: operator.wallet.publicKey,
    roundBound: true,
  });
  network = await startZusNetwork({
    sharders: 3,
    miners: 3,
    storageConfigFields: ownStorageConfigFields(),
    startRound: 5_000,
  });
  for (let index = 0; index < 6; index++) {
    const id = `${index}`.repeat(64).slice(0, 64).replace(/^./, 'e');
    openBlobbers.push(id);
    network.upsertBlobber({
      id,
      url: `http://127.0.0.1:${6100 + index}`,
      writePrice: 100_000_000n * BigInt(index + 1),
    });
  }
  for (const blobber of restricted.blobbers) {
    network.upsertBlobber({
      id: blobber.id,
      url: blobber.url,
      isRestricted: true,
      publicKey: blobber.publicKey,
      writePrice: 50_000_000n,
    });
  }
});

beforeEach(async () => {
  await pool.query(sql.unsafe`TRUNCATE stripe_allocation_tasks, allocation_fundings, team_wallet_spending, allocations,
    restricted_blobber_tickets, blobber_cooldowns, zus_outbox, zus_wallet_nonces, zbox_runs CASCADE`);
  network.setBalance(team.wallet.clientId, 10_000n * ZCN);
});

after(async () => {
  await Promise.all([network.close(), restricted.close()]);
  await pool.end();
  await database.drop();
  wallets.remove();
});

function env(extra: Record<string, string> = {}) {
  return {
    DATABASE_URL: database.url,
    ZUS_SHARDERS: network.sharderUrls.join(','),
    ZUS_MINERS: network.minerUrls.join(','),
    ZUS_CHAIN_ID: network.chainId,
    ZBOX_TEAM_WALLET: team.path,
    ZBOX_OPERATOR_WALLET: operator.path,
    ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES: 'true',
    ZUS_CONFIRMATION_WAIT_SECONDS: '5',
    ...extra,
  };
}

interface TaskInput {
  payment: string;
  ownerId?: string;
  ownerPublicKey?: string | null;
  allocationId?: string;
  sizeBytes?: bigint;
  sizeIncrease?: bigint;
  data?: number;
  parity?: number;
  preferred?: string[];
  addBlobber?: string;
}

async function addTask(input: TaskInput): Promise<bigint> {
  return pool.oneFirst(sql.type(z.object({ id: z.bigint() }))`
    INSERT INTO stripe_allocation_tasks (stripe_payment_id, user_id, owner_client_id, owner_public_key, allocation_id,
      size_bytes, size_increase_bytes, data_shards, parity_shards, preferred_blobbers, add_blobber_id, amount_paid_cents)
    VALUES (${input.payment}, 'user-1', ${input.ownerId ?? owner.wallet.clientId},
      ${input.ownerPublicKey === undefined ? owner.wallet.publicKey : input.ownerPublicKey},
      ${input.allocationId ?? null}, ${input.sizeBytes ?? (input.allocationId === undefined ? 2n * GIB : null)},
      ${input.sizeIncrease ?? null}, ${input.data ?? (input.allocationId === undefined ? 2 : null)},
      ${input.parity ?? (input.allocationId === undefined ? 2 : null)},
      ${sql.array(input.preferred ?? [], 'text')}, ${input.addBlobber ?? null}, 1999)
    RETURNING id`);
}

const taskRow = z.object({
  status: z.string(),
  tx_success: z.boolean(),
  tx_hash: z.string().nullable(),
  result_allocation_id: z.string().nullable(),
  last_error: z.string().nullable(),
});

async function task(id: bigint) {
  return pool.one(sql.type(taskRow)`
    SELECT status, tx_success, tx_hash, result_allocation_id, last_error FROM stripe_allocation_tasks WHERE id = ${id}`);
}

function teamTransactions() {
  return network.transactions().filter((record) => record.clientId === team.wallet.clientId);
}

test('new allocation is created once and recorded', async () => {
  const id = await addTask({ payment: 'pi_new' });
  const result = await runCli(['create-allocation', '--json'], env());
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const row = await task(id);
  assert.equal(row.status, 'succeeded');
  assert.equal(row.tx_success, true);
  assert.equal(row.result_allocation_id, row.tx_hash, 'the allocation id is the creating transaction hash');
  const applied = teamTransactions().filter((record) => record.applied === 1);
  assert.equal(applied.length, 1);
  assert.equal(applied[0]?.functionName, 'new_allocation_request');
  const funding = await pool.one(
    sql.type(z.object({ lock_sas: z.bigint(), allocation_id: z.string() }))`
      SELECT lock_sas, allocation_id FROM allocation_fundings WHERE stripe_task_id = ${id}`,
  );
  assert.equal(funding.lock_sas, applied[0]?.value);
  assert.equal(network.writePool(funding.allocation_id), funding.lock_sas);
  const spending = await pool.one(
    sql.type(z.object({ state: z.string(), amount_sas: z.bigint() }))`
      SELECT state, amount_sas FROM team_wallet_spending WHERE task_ref = ${`allocation:${id}`}`,
  );
  assert.deepEqual(spending, { state: 'settled', amount_sas: funding.lock_sas });
  const owned = await pool.oneFirst(
    sql.unsafe`SELECT owner_client_id FROM allocations WHERE id = ${funding.allocation_id}`,
  );
  assert.equal(owned, owner.wallet.clientId);

  const rerun = await runCli(['create-allocation', '--json'], env());
  assert.equal(summaryOf(rerun).claimed, 0);
  assert.equal(
    teamTransactions().filter((record) => record.applied === 1).length,
    1,
    'nothing is sent twice',
  );
});

test('restricted blobbers get tickets at one round', async () => {
  const preferred = [...restricted.blobbers.map((blobber) => blobber.id), ...openBlobbers.slice(0, 2)];
  const id = await addTask({ payment: 'pi_restricted', preferred });
  const result = await runCli(['create-allocation', '--json'], env());
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.equal((await task(id)).status, 'succeeded');
  const rounds = await pool.anyFirst(
    sql.type(z.object({ ticket_round: z.bigint() }))`
      SELECT ticket_round FROM restricted_blobber_tickets WHERE client_id = ${owner.wallet.clientId}`,
  );
  assert.equal(rounds.length, 2, 'both fetched tickets are stored for authorized-blobbers');
  assert.equal(rounds[0], rounds[1]);
});

test('upgrade extends a third-party-extendable allocation', async () => {
  const created = await addTask({ payment: 'pi_base' });
  assert.equal((await runCli(['create-allocation', '--json'], env())).code, 0);
  const allocationId = (await task(created)).result_allocation_id as string;
  const upgrade = await addTask({ payment: 'pi_upgrade', allocationId, sizeIncrease: GIB });
  const result = await runCli(['create-allocation', '--json'], env());
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.equal((await task(upgrade)).status, 'succeeded');
  const updates = teamTransactions().filter((record) => record.functionName === 'update_allocation_request');
  assert.equal(updates.length, 1);
  assert.equal(updates[0]?.applied, 1);
  const size = await pool.oneFirst(sql.unsafe`SELECT size_bytes FROM allocations WHERE id = ${allocationId}`);
  assert.equal(size, 3n * GIB);
});

test('invalid tasks are dead with the exact reason', async () => {
  const otherOwner = await wallets.create('other');
  const cases: Array<[TaskInput, string]> = [
    [
      { payment: 'pi_key', ownerPublicKey: otherOwner.wallet.publicKey },
      `owner_public_key is missing or does not match owner_client_id ${owner.wallet.clientId} (its sha3-256 must equal the client id)`,
    ],
    [
      { payment: 'pi_nokey', ownerPublicKey: null },
      `owner_public_key is missing or does not match owner_client_id ${owner.wallet.clientId} (its sha3-256 must equal the client id)`,
    ],
    [{ payment: 'pi_shards', data: 0 }, 'data_shards 0 and parity_shards 2 must both be at least 1'],
    [
      { payment: 'pi_many', data: 15, parity: 10 },
      'data_shards + parity_shards = 25 is more than the chain allows per allocation (20)',
    ],
    [
      { payment: 'pi_small', sizeBytes: 1000n },
      "size_bytes 1000 is below the chain's minimum allocation size of 1048576 bytes",
    ],
    [
      { payment: 'pi_missing', allocationId: 'f'.repeat(64), sizeIncrease: GIB },
      `allocation ${'f'.repeat(64)} does not exist on chain`,
    ],
  ];
  const sentBefore = teamTransactions().length;
  const ids = [];
  for (const [input] of cases) {
    ids.push(await addTask(input));
  }
  const result = await runCli(['create-allocation', '--json'], env());
  assert.equal(result.code, 4);
  for (const [index, [, reason]] of cases.entries()) {
    const row = await task(ids[index] as bigint);
    assert.equal(row.status, 'dead', reason);
    assert.equal(row.last_error, reason);
  }
  assert.equal(teamTransactions().length, sentBefore, 'nothing was sent');
});

test('lock above the per-task cap is dead', async () => {
  const id = await addTask({ payment: 'pi_cap', sizeBytes: 50n * GIB });
  const result = await runCli(['create-allocation', '--json'], env({ ZBOX_MAX_LOCK_PER_TASK_ZCN: '0.5' }));
  assert.equal(result.code, 4);
  assert.match(
    String((await task(id)).last_error),
    /^lock \d+(\.\d+)? ZCN is above the per-task cap of 0\.5 ZCN \(ZBOX_MAX_LOCK_PER_TASK_ZCN\)$/,
  );
});

test('low balance leaves tasks pending and exits 4', async () => {
  network.setBalance(team.wallet.clientId, 1n);
  const sentBefore = teamTransactions().length;
  const id = await addTask({ payment: 'pi_poor' });
  const result = await runCli(['create-allocation', '--json'], env());
  assert.equal(result.code, 4, result.stdout);
  assert.match(JSON.stringify(summaryOf(result).attention), /team wallet balance too low/);
  const row = await task(id);
  assert.equal(row.status, 'pending');
  const attempts = await pool.oneFirst(
    sql.unsafe`SELECT attempts FROM stripe_allocation_tasks WHERE id = ${id}`,
  );
  assert.equal(attempts, 0, 'the halted task spent no attempt');
  assert.equal(teamTransactions().length, sentBefore, 'nothing was sent');
});

test('daily cap is shared by pods', async () => {
  await pool.query(sql.unsafe`
    INSERT INTO team_wallet_spending (wallet_client_id, purpose, amount_sas, fee_sas, state, tx_hash)
    VALUES (${team.wallet.clientId}, 'allocation', ${9n * ZCN}, 0, 'reserved', 'other-pod')`);
  const id = await addTask({ payment: 'pi_daily' });
  const result = await runCli(['create-allocation', '--json'], env({ ZBOX_MAX_SPEND_PER_DAY_ZCN: '9.5' }));
  assert.equal(result.code, 4);
  assert.match(
    JSON.stringify(summaryOf(result).attention),
    /daily spend cap of 9\.5 ZCN reached: 9 ZCN spent or in flight/,
  );
  assert.equal((await task(id)).status, 'pending');
});

test('dry run prints the plan and sends nothing', async () => {
  const sentBefore = teamTransactions().length;
  const id = await addTask({ payment: 'pi_dry' });
  const result = await runCli(['create-allocation', '--dry-run', '--json'], env());
  assert.equal(result.code, 0, result.stderr);
  const plan = result.lines.find((line) => String(line.msg).startsWith('would create'));
  assert.ok(plan !== undefined, result.stdout);
  assert.equal(plan.kind, 'new');
  assert.ok(Array.isArray(plan.blobbers));
  assert.equal(plan.blobbers.length, 4);
  assert.match(String(plan.lock_zcn), /^\d+(\.\d+)?$/);
  assert.equal((await task(id)).status, 'pending');
  assert.equal(teamTransactions().length, sentBefore, 'nothing was sent');
  assert.equal(await pool.oneFirst(sql.unsafe`SELECT count(*) FROM zus_outbox`), 0n);
});

test('blobber change without the owner ticket is dead', async () => {
  const created = await addTask({ payment: 'pi_base_change' });
  assert.equal((await runCli(['create-allocation', '--json'], env())).code, 0);
  const allocationId = (await task(created)).result_allocation_id as string;
  const change = await addTask({
    payment: 'pi_change',
    allocationId,
    sizeIncrease: GIB,
    addBlobber: openBlobbers[5] as string,
  });
  const result = await runCli(['create-allocation', '--json'], env());
  assert.equal(result.code, 4);
  const row = await task(change);
  assert.equal(row.status, 'dead');
  assert.equal(
    row.last_error,
    "adding or removing a blobber needs the owner's signed update ticket (owner_update_ticket), which the task does not have",
  );
});

test('too few blobbers waits as a transient failure', async () => {
  const id = await addTask({ payment: 'pi_few', data: 8, parity: 4 });
  const result = await runCli(['create-allocation', '--json'], env());
  assert.equal(result.code, 0, 'a retry within budget needs no person');
  const row = await task(id);
  assert.equal(row.status, 'pending');
  assert.match(String(row.last_error), /^too few blobbers available right now/);
});

test('stored tickets from authorized-blobbers are used as they are', async () => {
  for (const blobber of restricted.blobbers) {
    await pool.query(sql.unsafe`
      INSERT INTO restricted_blobber_tickets (blobber_id, client_id) VALUES (${blobber.id}, ${owner.wallet.clientId})`);
  }
  const tickets = await runCli(['authorized-blobbers', '--json'], env());
  assert.equal(tickets.code, 0, tickets.stdout);
  const requestsBefore = restricted.requests.length;
  const preferred = [...restricted.blobbers.map((blobber) => blobber.id), ...openBlobbers.slice(0, 2)];
  const id = await addTask({ payment: 'pi_stored', preferred });
  const result = await runCli(['create-allocation', '--json'], env());
  assert.equal(result.code, 0, result.stdout);
  assert.equal((await task(id)).status, 'succeeded');
  assert.equal(restricted.requests.length, requestsBefore, 'no ticket was fetched again');
});
