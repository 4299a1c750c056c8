import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type DatabasePool, sql } from 'slonik';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { sendData, TXN_TYPE_SEND } from '../src/core/zus/transaction.js';
import { startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { freshWallet, outboxFor } from './support/zus.js';

const ZCN = 10_000_000_000n;

let database: TestDatabase;
let pool: DatabasePool;
let network: ZusNetworkFake;

before(async () => {
  database = await createTestDatabase('zus_outbox');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 4 });
  network = await startZusNetwork({ sharders: 3, miners: 3 });
});

after(async () => {
  await network.close();
  await pool.end();
  await database.drop();
});

function send(holder: string, to: string, valueSas: bigint) {
  return { holder, toClientId: to, valueSas, type: TXN_TYPE_SEND, data: sendData(holder) };
}

async function fundedWallet(zcn: bigint) {
  const wallet = await freshWallet();
  network.setBalance(wallet.clientId, zcn * ZCN);
  return wallet;
}

test('signed transaction submitted twice moves tokens once', async () => {
  const wallet = await fundedWallet(100n);
  const recipient = (await freshWallet()).clientId;
  const { outbox, miners } = outboxFor(network, pool, wallet);

  const prepared = await outbox.prepare(send('twice:1', recipient, 3n * ZCN));
  assert.equal(prepared.nonce, 1);
  assert.deepEqual(await outbox.settle('twice:1'), { kind: 'pending', hash: prepared.hash });
  const again = await miners.submit(prepared.signed);
  assert.notEqual(again.kind, 'rejected', 'a resend of the same transaction is not an error');
  assert.equal((await outbox.settle('twice:1')).kind, 'confirmed');

  assert.equal(network.getBalance(recipient), 3n * ZCN);
  const records = network.transactions().filter((record) => record.hash === prepared.hash);
  assert.equal(records.length, 1);
  assert.equal(records[0]?.applied, 1);
  assert.equal(network.getNonce(wallet.clientId), 1);
});

test('lost response then settle confirms without a second transfer', async () => {
  const wallet = await fundedWallet(100n);
  const recipient = (await freshWallet()).clientId;
  const { outbox } = outboxFor(network, pool, wallet);
  const prepared = await outbox.prepare(send('lost:1', recipient, 2n * ZCN));

  network.dropNextPutResponse(3);
  await assert.rejects(outbox.settle('lost:1'), /no miner accepted transaction/);
  const settled = await outbox.settle('lost:1');
  assert.deepEqual(settled, {
    kind: 'confirmed',
    hash: prepared.hash,
    output: settled.kind === 'confirmed' ? settled.output : '',
  });

  assert.equal(network.getBalance(recipient), 2n * ZCN, 'one transfer');
  assert.equal(network.transactions().filter((record) => record.clientId === wallet.clientId).length, 1);
  const again = await outbox.prepare(send('lost:1', recipient, 2n * ZCN));
  assert.equal(again.hash, prepared.hash, 'a settled holder is not prepared again');
});

test('aged-out transaction is replaced with its nonce and applies once', async () => {
  const wallet = await fundedWallet(100n);
  const recipient = (await freshWallet()).clientId;
  const { outbox } = outboxFor(network, pool, wallet);

  // Nonce 1 is prepared but never sent (a crash before the send); nonce 2 waits behind the gap.
  const first = await outbox.prepare(send('gap:a', recipient, 1n * ZCN));
  const second = await outbox.prepare(send('gap:b', recipient, 1n * ZCN));
  assert.deepEqual([first.nonce, second.nonce], [1, 2]);
  assert.equal((await outbox.settle('gap:b')).kind, 'pending');
  assert.equal(network.getBalance(recipient), 0n, 'nonce 2 waits for nonce 1');

  network.advanceClock(700);
  const expiredA = await outbox.settle('gap:a');
  assert.deepEqual(expiredA, { kind: 'expired', hash: first.hash, nonceReusable: true });
  const expiredB = await outbox.settle('gap:b');
  assert.equal(expiredB.kind, 'expired');

  const replacementA = await outbox.prepare(send('gap:a', recipient, 1n * ZCN));
  const replacementB = await outbox.prepare(send('gap:b', recipient, 1n * ZCN));
  assert.equal(replacementA.nonce, 1, 'the replacement reuses its nonce');
  assert.equal(replacementB.nonce, 2);
  assert.notEqual(replacementA.hash, first.hash);
  await outbox.settle('gap:a');
  await outbox.settle('gap:b');
  assert.equal((await outbox.settle('gap:a')).kind, 'confirmed');
  assert.equal((await outbox.settle('gap:b')).kind, 'confirmed');

  assert.equal(network.getBalance(recipient), 2n * ZCN, 'each holder paid once');
  const applied = network
    .transactions()
    .filter((record) => record.clientId === wallet.clientId && record.applied === 1);
  assert.deepEqual(applied.map((record) => record.nonce).sort(), [1, 2]);
  const originals = network
    .transactions()
    .filter((record) => record.hash === first.hash || record.hash === second.hash);
  assert.ok(
    originals.every((record) => record.applied === 0),
    'the expired originals never apply',
  );
});

test('nonce window full is a transient error', async () => {
  const wallet = await fundedWallet(100n);
  const recipient = (await freshWallet()).clientId;
  const { outbox } = outboxFor(network, pool, wallet);
  for (let index = 0; index < 10; index++) {
    await outbox.prepare(send(`window:${index}`, recipient, 1n));
  }
  await assert.rejects(outbox.prepare(send('window:10', recipient, 1n)), /nonce window full/);
  const rows = await pool.oneFirst(
    sql.unsafe`SELECT count(*) FROM zus_outbox WHERE wallet_client_id = ${wallet.clientId}`,
  );
  assert.equal(rows, 10n);
});

test('transaction failing on chain is reported with its output', async () => {
  const wallet = await fundedWallet(1n);
  const { outbox } = outboxFor(network, pool, wallet);
  const { STORAGE_SC_ADDRESS } = await import('../src/core/zus/storage-config.js');
  const { smartContractData, TXN_TYPE_SMART_CONTRACT } = await import('../src/core/zus/transaction.js');
  await outbox.prepare({
    holder: 'failing:1',
    toClientId: STORAGE_SC_ADDRESS,
    valueSas: 0n,
    type: TXN_TYPE_SMART_CONTRACT,
    data: smartContractData('update_allocation_request', { id: 'a'.repeat(64), size: 1 }),
    functionName: 'update_allocation_request',
  });
  await outbox.settle('failing:1');
  const result = await outbox.settle('failing:1');
  assert.equal(result.kind, 'failed');
  assert.ok(result.kind === 'failed');
  assert.ok(result.reason.length > 0, 'the chain output is the reason');
});

test('four processes send 200 with gap-free nonces', async () => {
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const { generateMnemonic } = await import('@scure/bip39');
  const { wordlist } = await import('@scure/bip39/wordlists/english.js');
  const { walletFromMnemonic } = await import('../src/core/zus/wallet.js');
  const mnemonic = generateMnemonic(wordlist, 256);
  const wallet = await walletFromMnemonic(mnemonic, 'bls0chain');
  network.setBalance(wallet.clientId, 1000n * ZCN);
  const recipient = (await freshWallet()).clientId;
  const fixture = fileURLToPath(new URL('./fixtures/send-many.ts', import.meta.url));

  const runs = Array.from({ length: 4 }, (_, index) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
      env: {
        ...process.env,
        DATABASE_URL: database.url,
        SHARDERS: network.sharderUrls.join(','),
        MINERS: network.minerUrls.join(','),
        CHAIN_ID: network.chainId,
        WALLET_JSON: JSON.stringify({ mnemonics: mnemonic }),
        PREFIX: `pod${index}`,
        COUNT: '50',
        RECIPIENT: recipient,
        CLOCK_OFFSET: String(network.now() - Math.floor(Date.now() / 1000)),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    return new Promise<{ code: number | null; output: string }>((resolve) => {
      child.on('close', (code) => resolve({ code, output }));
    });
  });
  for (const run of await Promise.all(runs)) {
    assert.equal(run.code, 0, run.output);
  }

  const applied = network
    .transactions()
    .filter((record) => record.clientId === wallet.clientId && record.applied === 1);
  assert.equal(applied.length, 200, 'every send applied');
  assert.deepEqual(
    applied.map((record) => record.nonce).sort((a, b) => a - b),
    Array.from({ length: 200 }, (_, index) => index + 1),
    'nonces are distinct and gap-free',
  );
  assert.equal(network.getBalance(recipient), 200n, 'each holder paid exactly once');
  const confirmed = await pool.oneFirst(
    sql.unsafe`SELECT count(*) FROM zus_outbox WHERE wallet_client_id = ${wallet.clientId} AND state = 'confirmed'`,
  );
  assert.equal(confirmed, 200n);
});

test('lagging sharders delay settlement but never a second send', async () => {
  const wallet = await fundedWallet(100n);
  const recipient = (await freshWallet()).clientId;
  const { outbox } = outboxFor(network, pool, wallet, { timeoutMs: 500 });
  const prepared = await outbox.prepare(send('lagging:1', recipient, 4n * ZCN));
  await outbox.settle('lagging:1');
  await network.setSharderBehaviour(0, 'down');
  await network.setSharderBehaviour(1, 'down');
  await assert.rejects(outbox.settle('lagging:1'), /sharders/);
  await network.setSharderBehaviour(0, 'ok');
  await network.setSharderBehaviour(1, 'ok');
  const settled = await outbox.settle('lagging:1');
  assert.equal(settled.kind, 'confirmed');
  assert.equal(settled.hash, prepared.hash, 'the same transaction settled');
  assert.equal(network.transactions().filter((record) => record.clientId === wallet.clientId).length, 1);
  assert.equal(network.getBalance(recipient), 4n * ZCN);
});
