import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { generateMnemonic } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { requestTicket } from '../src/core/db/queries/blobber-tickets.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { initSignatureSchemes, verifySignature } from '../src/core/zus/signature.js';
import { sha3Hex } from '../src/core/zus/transaction.js';
import { type Wallet, walletFromMnemonic } from '../src/core/zus/wallet.js';
import { type FakeBlobbers, startFakeBlobbers } from '../src/sandbox/blobbers.js';
import { startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { runCli, summaryOf } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

const HORIZON = 1000;
const EPOCH = 500;
const REFRESH = 200;
const CLIENT_A = 'a'.repeat(64);
const CLIENT_B = 'b'.repeat(64);

let database: TestDatabase;
let pool: DatabasePool;
let network: ZusNetworkFake;
let blobbers: FakeBlobbers;
let operator: Wallet;
let folder: string;
let walletFile: string;

before(async () => {
  database = await createTestDatabase('authorized_blobbers');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 2 });
  const mnemonic = generateMnemonic(wordlist, 256);
  operator = await walletFromMnemonic(mnemonic, 'bls0chain');
  folder = mkdtempSync(join(tmpdir(), 'zbox-operator-'));
  walletFile = join(folder, 'operator.json');
  writeFileSync(walletFile, JSON.stringify({ mnemonics: mnemonic }));
  blobbers = await startFakeBlobbers({ count: 4, operatorPublicKey: operator.publicKey, roundBound: true });
  network = await startZusNetwork({ sharders: 2, startRound: 10_000 });
  await initSignatureSchemes();
});

beforeEach(async () => {
  await pool.query(sql.unsafe`TRUNCATE restricted_blobber_tickets, blobber_cooldowns, zbox_runs`);
  for (const blobber of blobbers.blobbers) {
    await blobbers.setBehaviour(blobber.index, 'ok');
    network.upsertBlobber({
      id: blobber.id,
      url: blobber.url,
      isRestricted: true,
      publicKey: blobber.publicKey,
    });
  }
});

after(async () => {
  await Promise.all([network.close(), blobbers.close()]);
  await pool.end();
  await database.drop();
  rmSync(folder, { recursive: true, force: true });
});

function env(extra: Record<string, string> = {}) {
  return {
    DATABASE_URL: database.url,
    ZUS_SHARDERS: network.sharderUrls.join(','),
    ZBOX_OPERATOR_WALLET: walletFile,
    ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES: 'true',
    ZBOX_BLOBBER_TIMEOUT_MS: '2000',
    ZBOX_AUTH_TICKET_HORIZON_ROUNDS: String(HORIZON),
    ZBOX_AUTH_TICKET_EPOCH_ROUNDS: String(EPOCH),
    ZBOX_AUTH_TICKET_REFRESH_ROUNDS: String(REFRESH),
    ...extra,
  };
}

const ticketRow = z.object({
  blobber_id: z.string(),
  client_id: z.string(),
  status: z.string(),
  auth_ticket: z.string().nullable(),
  ticket_round: z.bigint().nullable(),
  skip_reason: z.string().nullable(),
  last_error: z.string().nullable(),
  next_attempt_at: z.date(),
});

async function rows() {
  return pool.any(sql.type(ticketRow)`
    SELECT blobber_id, client_id, status, auth_ticket, ticket_round, skip_reason, last_error, next_attempt_at
    FROM restricted_blobber_tickets ORDER BY blobber_id, client_id`);
}

function blobber(index: number) {
  return blobbers.blobbers[index] as (typeof blobbers.blobbers)[number];
}

test('tickets are issued, verified and stored', async () => {
  for (const index of [0, 1, 2]) {
    for (const client of [CLIENT_A, CLIENT_B]) {
      await requestTicket(pool, blobber(index).id, client);
    }
  }
  const result = await runCli(['authorized-blobbers', '--json'], env());
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.equal(summaryOf(result).succeeded, 6);
  const expectedRound = BigInt(Math.ceil((network.currentRound() + HORIZON) / EPOCH) * EPOCH);
  for (const row of await rows()) {
    assert.equal(row.status, 'succeeded');
    assert.equal(row.ticket_round, expectedRound);
    const signer = blobbers.blobbers.find((item) => item.id === row.blobber_id);
    const message = sha3Hex(`${row.client_id}_${row.ticket_round}`);
    assert.equal(verifySignature('bls0chain', signer?.publicKey ?? '', message, row.auth_ticket ?? ''), true);
  }
});

test('tickets of one owner share their round across runs', async () => {
  await requestTicket(pool, blobber(0).id, CLIENT_A);
  assert.equal((await runCli(['authorized-blobbers', '--json'], env())).code, 0);
  network.advanceRounds(EPOCH + 10);
  await requestTicket(pool, blobber(1).id, CLIENT_A);
  assert.equal((await runCli(['authorized-blobbers', '--json'], env())).code, 0);
  const rounds = (await rows()).map((row) => row.ticket_round);
  assert.equal(rounds.length, 2);
  assert.equal(rounds[0], rounds[1]);
});

test('down blobber cools down all its rows at once', async () => {
  for (const client of [CLIENT_A, CLIENT_B, 'c'.repeat(64)]) {
    await requestTicket(pool, blobber(0).id, client);
  }
  await requestTicket(pool, blobber(1).id, CLIENT_A);
  await blobbers.setBehaviour(0, 'down');
  const result = await runCli(['authorized-blobbers', '--json', '--concurrency', '1'], env());
  assert.equal(result.code, 4, 'a dependency unavailable for the whole cycle needs attention');
  const summary = summaryOf(result);
  assert.equal(summary.succeeded, 1, 'the other blobber proceeded');
  assert.equal(summary.retried, 1, 'the failing blobber was called once');
  const failing = (await rows()).filter((row) => row.blobber_id === blobber(0).id);
  assert.equal(failing.length, 3);
  assert.ok(failing.every((row) => row.status === 'pending'));
  const cooldown = await pool.one(
    sql.type(z.object({ cooldown_until: z.date(), consecutive_failures: z.number() }))`
      SELECT cooldown_until, consecutive_failures FROM blobber_cooldowns WHERE blobber_id = ${blobber(0).id}`,
  );
  assert.equal(cooldown.consecutive_failures, 1);
  for (const row of failing) {
    assert.ok(
      row.next_attempt_at.getTime() >= cooldown.cooldown_until.getTime() - 1000,
      'rows wait for the cooldown',
    );
  }
  const again = await runCli(['authorized-blobbers', '--json'], env());
  assert.equal(summaryOf(again).claimed, 0, 'a cooling blobber is not called by the next run');
});

test('403 makes the rows dead with the reason', async () => {
  const stranger = await startFakeBlobbers({
    count: 1,
    operatorPublicKey: 'f'.repeat(128),
    roundBound: true,
  });
  try {
    const other = stranger.blobbers[0] as (typeof stranger.blobbers)[number];
    network.upsertBlobber({ id: other.id, url: other.url, isRestricted: true, publicKey: other.publicKey });
    await requestTicket(pool, other.id, CLIENT_A);
    const result = await runCli(['authorized-blobbers', '--json'], env());
    assert.equal(result.code, 4);
    const row = (await rows()).find((item) => item.blobber_id === other.id);
    assert.equal(row?.status, 'dead');
    assert.match(String(row?.last_error), /rejected the operator signature.*not registered on that blobber/);
    assert.doesNotMatch(result.stdout + result.stderr, new RegExp(operator.publicKey));
  } finally {
    await stranger.close();
  }
});

test('bad ticket answers get per-row reasons', async () => {
  const behaviours = ['html', 'empty', 'non-hex', 'short'] as const;
  for (const [index, behaviour] of behaviours.entries()) {
    await blobbers.setBehaviour(index, behaviour);
    await requestTicket(pool, blobber(index).id, CLIENT_A);
  }
  const result = await runCli(['authorized-blobbers', '--json'], env());
  assert.equal(result.code, 4);
  const reasons = new Map((await rows()).map((row) => [row.blobber_id, row]));
  for (const index of behaviours.keys()) {
    const row = reasons.get(blobber(index).id);
    assert.equal(row?.status, 'dead', behaviours[index]);
    assert.ok(
      String(row?.last_error).includes(blobber(index).id),
      `${behaviours[index]}: the reason names the blobber`,
    );
  }
});

test('blobber no longer restricted leaves the queue', async () => {
  await requestTicket(pool, blobber(0).id, CLIENT_A);
  network.upsertBlobber({
    id: blobber(0).id,
    url: blobber(0).url,
    isRestricted: false,
    publicKey: blobber(0).publicKey,
  });
  const requestsBefore = blobbers.requests.length;
  const result = await runCli(['authorized-blobbers', '--json'], env());
  assert.equal(result.code, 0);
  const [row] = await rows();
  assert.equal(row?.status, 'succeeded');
  assert.equal(row?.auth_ticket, null);
  assert.equal(row?.skip_reason, 'blobber is no longer restricted: no ticket needed');
  assert.equal(blobbers.requests.length, requestsBefore, 'no ticket was requested');
});

test('killed blobber rows wait with the reason', async () => {
  await requestTicket(pool, blobber(1).id, CLIENT_B);
  network.upsertBlobber({
    id: blobber(1).id,
    url: blobber(1).url,
    isRestricted: true,
    isKilled: true,
    publicKey: blobber(1).publicKey,
  });
  const before = blobbers.requests.length;
  const result = await runCli(['authorized-blobbers', '--json'], env());
  assert.equal(result.code, 0);
  const [row] = await rows();
  assert.equal(row?.status, 'pending');
  assert.equal(row?.skip_reason, 'blobber is killed');
  assert.equal(blobbers.requests.length, before, 'a killed blobber is not called');
});

test('ticket near its round is fetched again', async () => {
  await requestTicket(pool, blobber(2).id, CLIENT_A);
  assert.equal((await runCli(['authorized-blobbers', '--json'], env())).code, 0);
  const [first] = await rows();
  const firstRound = Number(first?.ticket_round);
  network.advanceRounds(firstRound - network.currentRound() - REFRESH + 1);
  const result = await runCli(['authorized-blobbers', '--json'], env());
  assert.equal(summaryOf(result).succeeded, 1);
  const [second] = await rows();
  assert.ok(Number(second?.ticket_round) > firstRound, `${second?.ticket_round} > ${firstRound}`);
  assert.notEqual(second?.auth_ticket, first?.auth_ticket);
});

test('dry run lists requests and skips and writes nothing', async () => {
  await requestTicket(pool, blobber(0).id, CLIENT_A);
  await requestTicket(pool, blobber(3).id, CLIENT_A);
  await pool.query(
    sql.unsafe`UPDATE restricted_blobber_tickets SET blobber_url = ${blobber(0).url} WHERE blobber_id = ${blobber(0).id}`,
  );
  network.upsertBlobber({
    id: blobber(3).id,
    url: blobber(3).url,
    isRestricted: true,
    notAvailable: true,
    publicKey: blobber(3).publicKey,
  });
  const before = JSON.stringify(await rows(), (_key, value) =>
    typeof value === 'bigint' ? String(value) : value,
  );
  const requests = blobbers.requests.length;
  const result = await runCli(['authorized-blobbers', '--dry-run', '--json'], env());
  assert.equal(result.code, 0, result.stderr);
  const plan = result.lines.filter((line) => String(line.msg).startsWith('would '));
  assert.ok(
    plan.some((line) =>
      String(line.msg).startsWith(
        `would refresh blobber ${blobber(0).id} from the chain, then request a ticket`,
      ),
    ),
  );
  assert.ok(plan.some((line) => String(line.msg).includes('blobber is not available')));
  assert.equal(
    JSON.stringify(await rows(), (_key, value) => (typeof value === 'bigint' ? String(value) : value)),
    before,
  );
  assert.equal(blobbers.requests.length, requests, 'no blobber was called');
});

test('dry run follows blobber refresh', async () => {
  const fresh = blobber(0);
  const killed = blobber(1);
  const cooling = blobber(2);
  await requestTicket(pool, fresh.id, CLIENT_A);
  await requestTicket(pool, killed.id, CLIENT_A);
  await requestTicket(pool, cooling.id, CLIENT_A);
  network.upsertBlobber({
    id: killed.id,
    url: killed.url,
    isRestricted: true,
    isKilled: true,
    publicKey: killed.publicKey,
  });
  await pool.query(sql.unsafe`
    INSERT INTO blobber_cooldowns (blobber_id, consecutive_failures, cooldown_until, last_error)
    VALUES (${cooling.id}, 1, now() + interval '1 hour', 'connection refused')`);
  const ids = new Map(
    (
      await pool.any(
        sql.type(z.object({ id: z.bigint(), blobber_id: z.string() }))`
          SELECT id, blobber_id FROM restricted_blobber_tickets`,
      )
    ).map((row) => [row.blobber_id, String(row.id)]),
  );
  const planOf = (result: Awaited<ReturnType<typeof runCli>>, blobberId: string) =>
    String(result.lines.find((line) => line.task_id === ids.get(blobberId))?.msg);

  const requests = blobbers.requests.length;
  const dryRun = await runCli(['authorized-blobbers', '--dry-run', '--json'], env());

  assert.equal(dryRun.code, 0, dryRun.stdout + dryRun.stderr);
  assert.match(
    planOf(dryRun, fresh.id),
    new RegExp(
      `^would refresh blobber ${fresh.id} from the chain, then request a ticket for client ${CLIENT_A}`,
    ),
  );
  assert.ok(planOf(dryRun, fresh.id).endsWith(`at ${fresh.url}`), planOf(dryRun, fresh.id));
  assert.match(planOf(dryRun, killed.id), /^would wait: blobber is killed/);
  assert.match(
    planOf(dryRun, cooling.id),
    new RegExp(`^would wait until .*: blobber ${cooling.id} is cooling down`),
  );
  assert.doesNotMatch(dryRun.stdout, /be marked dead/);
  assert.ok(
    (await rows()).every((row) => row.skip_reason === null && row.last_error === null),
    'nothing written',
  );
  assert.equal(blobbers.requests.length, requests, 'no blobber was called');

  const run = await runCli(['authorized-blobbers', '--json'], env());

  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.equal(summaryOf(run).claimed, 1, 'only the row the dry run said would get a ticket');
  assert.equal(summaryOf(run).succeeded, 1);
  assert.equal((await rows()).find((row) => row.blobber_id === fresh.id)?.status, 'succeeded');
});
