import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { pushText } from '../src/commands/funding-zbox.js';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { createFcmFake, type FcmFake } from '../src/sandbox/fcm.js';
import { startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { parseJsonLines } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { type WalletFile, walletFolder } from './support/money.js';

const ZCN = 10_000_000_000n;
const FIXTURE = fileURLToPath(new URL('./fixtures/funding-run.ts', import.meta.url));

let database: TestDatabase;
let pool: DatabasePool;
let network: ZusNetworkFake;
let fcm: FcmFake;
const wallets = walletFolder();
let team: WalletFile;
let certFolder: string;
let certFile: string;
const recipients: string[] = [];

before(async () => {
  database = await createTestDatabase('funding_zbox');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 2 });
  team = await wallets.create('team');
  for (let index = 0; index < 3; index++) {
    recipients.push((await wallets.create(`recipient-${index}`)).wallet.clientId);
  }
  network = await startZusNetwork({ sharders: 3, miners: 3 });
  fcm = await createFcmFake();
  certFolder = mkdtempSync(join(tmpdir(), 'zbox-fcm-'));
  certFile = join(certFolder, 'fake.pem');
  writeFileSync(certFile, fcm.certificate);
});

beforeEach(async () => {
  await pool.query(
    sql.unsafe`TRUNCATE funding_tasks, user_devices, team_wallet_spending, zus_outbox, zus_wallet_nonces, zbox_runs`,
  );
  network.setBalance(team.wallet.clientId, 1000n * ZCN);
  fcm.resetStats();
});

after(async () => {
  await Promise.all([network.close(), fcm.close()]);
  await pool.end();
  await database.drop();
  wallets.remove();
  rmSync(certFolder, { recursive: true, force: true });
});

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    DATABASE_URL: database.url,
    ZUS_SHARDERS: network.sharderUrls.join(','),
    ZUS_MINERS: network.minerUrls.join(','),
    ZUS_CHAIN_ID: network.chainId,
    ZBOX_TEAM_WALLET: team.path,
    ZUS_CONFIRMATION_WAIT_SECONDS: '5',
    ZUS_CONFIRMATION_POLL_MS: '100',
    FCM_PORT: String(fcm.port),
    FCM_CERT_FILE: certFile,
    ...extra,
  };
}

function startRun(extra: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    env: env(extra),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const done = new Promise<{
    code: number | null;
    stdout: string;
    stderr: string;
    summary: Record<string, unknown>;
  }>((resolve) => {
    child.on('close', (code) =>
      resolve({ code, stdout, stderr, summary: parseJsonLines(stdout).at(-1) ?? {} }),
    );
  });
  return { child, done };
}

async function addFunding(recipient: string, amountSas: bigint, userId = 'user-1'): Promise<bigint> {
  return pool.oneFirst(sql.type(z.object({ id: z.bigint() }))`
    INSERT INTO funding_tasks (user_id, recipient_client_id, amount_sas, reason)
    VALUES (${userId}, ${recipient}, ${amountSas}, 'welcome grant') RETURNING id`);
}

async function addDevice(userId: string, token: string) {
  await pool.query(sql.unsafe`INSERT INTO user_devices (user_id, fcm_token) VALUES (${userId}, ${token})`);
}

const taskRow = z.object({
  status: z.string(),
  tx_success: z.boolean(),
  notify_state: z.string(),
  notify_attempts: z.number(),
  last_error: z.string().nullable(),
});

async function task(id: bigint) {
  return pool.one(sql.type(taskRow)`
    SELECT status, tx_success, notify_state, notify_attempts, last_error FROM funding_tasks WHERE id = ${id}`);
}

function transfersTo(recipient: string) {
  return network.transactions().filter((record) => record.toClientId === recipient && record.applied === 1);
}

test('transfer then push, each once', async () => {
  const recipient = recipients[0] as string;
  const before = network.getBalance(recipient);
  const withDevices = await addFunding(recipient, 15_000_000_000n, 'user-1');
  const withoutDevices = await addFunding(recipients[1] as string, ZCN, 'user-2');
  await addDevice('user-1', 'token-phone-1');
  await addDevice('user-1', 'token-tablet-1');
  const run = await startRun().done;
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.equal(network.getBalance(recipient) - before, 15_000_000_000n);
  assert.deepEqual(
    { ...(await task(withDevices)), last_error: null },
    { status: 'succeeded', tx_success: true, notify_state: 'sent', notify_attempts: 1, last_error: null },
  );
  assert.equal((await task(withoutDevices)).notify_state, 'skipped');
  const bodies = fcm.delivered.map((message) => message.body);
  assert.deepEqual(bodies, [pushText(15_000_000_000n), pushText(15_000_000_000n)]);
  assert.equal(bodies[0], 'You have received 1.5 free tokens');
  const settled = await pool.oneFirst(
    sql.unsafe`SELECT count(*) FROM team_wallet_spending WHERE state = 'settled'`,
  );
  assert.equal(settled, 2n);
});

test('invalid funding tasks are dead with the exact reason', async () => {
  const cases: Array<[string, bigint, string]> = [
    [
      'not-a-client',
      ZCN,
      'recipient_client_id "not-a-client" is not a client id (64 lowercase hexadecimal characters)',
    ],
    [
      team.wallet.clientId,
      ZCN,
      'recipient_client_id is the team wallet itself: the chain rejects a send to oneself',
    ],
    [recipients[0] as string, 0n, 'amount_sas 0 must be greater than 0'],
    [
      recipients[0] as string,
      500n * ZCN,
      'amount 500 ZCN is above the per-task cap of 100 ZCN (ZBOX_MAX_LOCK_PER_TASK_ZCN)',
    ],
  ];
  const ids = [];
  for (const [recipient, amount] of cases) {
    ids.push(await addFunding(recipient, amount));
  }
  const sentBefore = network.transactions().length;
  const run = await startRun().done;
  assert.equal(run.code, 4);
  for (const [index, [, , reason]] of cases.entries()) {
    const row = await task(ids[index] as bigint);
    assert.equal(row.status, 'dead', reason);
    assert.equal(row.last_error, reason);
  }
  assert.equal(network.transactions().length, sentBefore, 'nothing was sent');
});

test('stale token is pruned and payload errors prune nothing', async () => {
  await addDevice('user-1', 'token-gone');
  await addDevice('user-1', 'token-alive');
  fcm.markUnregistered('token-gone');
  const id = await addFunding(recipients[0] as string, ZCN);
  const run = await startRun().done;
  assert.equal(run.code, 0, run.stdout);
  assert.equal((await task(id)).notify_state, 'sent');
  const tokens = await pool.anyFirst(
    sql.type(z.object({ fcm_token: z.string() }))`SELECT fcm_token FROM user_devices`,
  );
  assert.deepEqual([...tokens], ['token-alive']);

  // A payload error (400 without the invalid-token message) fails the push and prunes nothing.
  fcm.failToken('token-alive', 400, 10);
  const second = await addFunding(recipients[0] as string, ZCN);
  const rerun = await startRun().done;
  assert.equal(rerun.code, 0, rerun.stdout);
  const row = await task(second);
  assert.equal(row.status, 'succeeded');
  assert.equal(row.notify_state, 'failed');
  const kept = await pool.anyFirst(
    sql.type(z.object({ fcm_token: z.string() }))`SELECT fcm_token FROM user_devices`,
  );
  assert.deepEqual([...kept], ['token-alive']);
});

test('429 is retried on a later run without a second transfer', async () => {
  const recipient = recipients[2] as string;
  await addDevice('user-3', 'token-busy');
  const id = await addFunding(recipient, 2n * ZCN, 'user-3');
  fcm.failToken('token-busy', 429, 1);
  const first = await startRun({ ZBOX_BACKOFF_BASE_SECONDS: '1', ZBOX_BACKOFF_MAX_SECONDS: '1' }).done;
  assert.equal(first.code, 0, 'a retry within budget needs no person');
  let row = await task(id);
  assert.equal(row.tx_success, true);
  assert.equal(row.status, 'pending');
  assert.equal(row.notify_attempts, 1);
  const transfers = transfersTo(recipient).length;
  await pool.query(sql.unsafe`UPDATE funding_tasks SET next_attempt_at = now() WHERE id = ${id}`);
  const second = await startRun().done;
  assert.equal(second.code, 0);
  row = await task(id);
  assert.equal(row.status, 'succeeded');
  assert.equal(row.notify_state, 'sent');
  assert.equal(transfersTo(recipient).length, transfers, 'the transfer was not repeated');
  assert.deepEqual(
    (await pool.anyFirst(sql.type(z.object({ fcm_token: z.string() }))`SELECT fcm_token FROM user_devices`))
      .length,
    1,
    'a 429 prunes nothing',
  );
});

test('crash between transfer and push still pushes once', async () => {
  const recipient = recipients[1] as string;
  await addDevice('user-crash', 'token-crash');
  const id = await addFunding(recipient, 3n * ZCN, 'user-crash');
  const transfersBefore = transfersTo(recipient).length;
  fcm.setResponseDelay(5_000);
  const run = startRun();
  for (let waited = 0; waited < 20_000 && !(await task(id)).tx_success; waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal((await task(id)).tx_success, true, 'the transfer was recorded before the kill');
  run.child.kill('SIGKILL');
  await run.done;
  fcm.setResponseDelay(0);
  fcm.resetStats();
  await pool.query(
    sql.unsafe`UPDATE funding_tasks SET locked_until = now(), next_attempt_at = now() WHERE id = ${id}`,
  );
  const rerun = await startRun().done;
  assert.equal(rerun.code, 0, rerun.stdout);
  assert.equal((await task(id)).notify_state, 'sent');
  assert.equal(fcm.delivered.filter((message) => message.token === 'token-crash').length, 1);
  assert.equal(transfersTo(recipient).length, transfersBefore + 1, 'one transfer in all');
});
