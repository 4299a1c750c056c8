import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { DatabasePool } from 'slonik';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { fetchAllocation, fetchAllocationsByOwner } from '../src/core/zus/allocations.js';
import {
  fetchBlobber,
  fetchBlobbers,
  fetchCurrentRound,
  fetchUpdateMinLock,
  selectAllocationBlobbers,
} from '../src/core/zus/blobbers.js';
import { allocationLockEstimateSas, allocationLockSas } from '../src/core/zus/costs.js';
import { NotFoundOnChainError } from '../src/core/zus/sharders.js';
import { STORAGE_SC_ADDRESS } from '../src/core/zus/storage-config.js';
import { smartContractData, TXN_TYPE_SMART_CONTRACT } from '../src/core/zus/transaction.js';
import { startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ownStorageConfigFields } from './support/storage-config.js';
import { freshWallet, outboxFor } from './support/zus.js';

const ZCN = 10_000_000_000n;
const GIB = 1n << 30n;

let database: TestDatabase;
let pool: DatabasePool;
let network: ZusNetworkFake;

function blobberId(label: string): string {
  return createHash('sha256').update(label).digest('hex');
}

// Six blobbers with different prices; the fifth is restricted, the sixth killed.
const PRICES = [100_000_000n, 200_000_000n, 300_000_000n, 400_000_000n, 150_000_000n, 100_000_000n];

before(async () => {
  database = await createTestDatabase('zus_reads');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 4 });
  network = await startZusNetwork({
    sharders: 3,
    miners: 3,
    storageConfigFields: ownStorageConfigFields(),
    blobbers: PRICES.map((price, index) => ({
      id: blobberId(`blobber-${index}`),
      url: `http://127.0.0.1:${5100 + index}`,
      writePrice: price,
      isRestricted: index === 4,
      isKilled: index === 5,
    })),
  });
});

after(async () => {
  await network.close();
  await pool.end();
  await database.drop();
});

function clients() {
  return outboxFor(network, pool, {
    clientId: 'a'.repeat(64),
    publicKey: '',
    scheme: 'bls0chain',
    sign: () => '',
  } as never);
}

test('blobbers are read with their flags and prices', async () => {
  const { sharders } = clients();
  const ids = PRICES.map((_, index) => blobberId(`blobber-${index}`));
  const blobbers = await fetchBlobbers(sharders, [...ids, blobberId('unknown')]);
  assert.equal(blobbers.size, 6, 'unknown ids are absent');
  assert.equal(blobbers.get(ids[2] as string)?.writePriceSas, 300_000_000n);
  assert.equal(blobbers.get(ids[4] as string)?.isRestricted, true);
  assert.equal(blobbers.get(ids[5] as string)?.isKilled, true);
  const one = await fetchBlobber(sharders, ids[0] as string);
  assert.equal(one.url, 'http://127.0.0.1:5100');
  await assert.rejects(fetchBlobber(sharders, blobberId('unknown')), NotFoundOnChainError);
  await assert.rejects(fetchBlobber(sharders, 'not-an-id'), /invalid blobber id "not-an-id"/);
});

test('current round is read from the sharders', async () => {
  const { sharders } = clients();
  network.advanceRounds(5);
  const round = await fetchCurrentRound(sharders);
  assert.equal(round, network.currentRound());
});

test('exact lock creates the allocation and one SAS less fails', async () => {
  const wallet = await freshWallet();
  network.setBalance(wallet.clientId, 1000n * ZCN);
  const { outbox, sharders } = outboxFor(network, pool, wallet);
  const sizeBytes = 3n * GIB;
  const dataShards = 2;
  const parityShards = 2;
  const selected = await selectAllocationBlobbers(sharders, {
    dataShards,
    parityShards,
    sizeBytes,
    readPriceRangeSas: { min: 0n, max: 10n * ZCN },
    writePriceRangeSas: { min: 0n, max: 500_000_000n },
  });
  assert.ok(selected.length >= 4, `selected ${selected.length}`);
  assert.ok(!selected.includes(blobberId('blobber-4')), 'restricted blobbers are not selected');
  assert.ok(!selected.includes(blobberId('blobber-5')), 'killed blobbers are not selected');
  const chosen = selected.slice(0, 4);
  const prices = [...(await fetchBlobbers(sharders, chosen)).values()].map(
    (blobber) => blobber.writePriceSas,
  );
  const maxWritePriceSas = 500_000_000n; // max_write_price 0.05 ZCN in the test config
  const lock = allocationLockSas(sizeBytes, dataShards, prices, maxWritePriceSas);
  assert.ok(lock <= allocationLockEstimateSas(sizeBytes, dataShards, parityShards, maxWritePriceSas));

  const request = (holder: string, valueSas: bigint) => ({
    holder,
    toClientId: STORAGE_SC_ADDRESS,
    valueSas,
    type: TXN_TYPE_SMART_CONTRACT,
    functionName: 'new_allocation_request',
    data: smartContractData('new_allocation_request', {
      data_shards: dataShards,
      parity_shards: parityShards,
      size: sizeBytes,
      owner_id: wallet.clientId,
      owner_public_key: wallet.publicKey,
      blobbers: chosen,
      blobber_auth_tickets: chosen.map(() => ''),
      read_price_range: { min: 0n, max: 10n * ZCN },
      write_price_range: { min: 0n, max: 500_000_000n },
      third_party_extendable: true,
      storage_version: 1,
    }),
  });

  await outbox.prepare(request('alloc:short', lock - 1n));
  await outbox.settle('alloc:short');
  const short = await outbox.settle('alloc:short');
  assert.equal(short.kind, 'failed');
  assert.match(short.kind === 'failed' ? short.reason : '', /not enough tokens to honor the allocation cost/);

  const created = await outbox.prepare(request('alloc:exact', lock));
  await outbox.settle('alloc:exact');
  assert.equal((await outbox.settle('alloc:exact')).kind, 'confirmed');
  const allocation = await fetchAllocation(sharders, created.hash);
  assert.equal(allocation.ownerId, wallet.clientId);
  assert.equal(allocation.sizeBytes, sizeBytes);
  assert.equal(network.writePool(created.hash), lock);

  const owned = await fetchAllocationsByOwner(sharders, wallet.clientId);
  assert.deepEqual(
    owned.map((item) => item.id),
    [created.hash],
  );
  const extraLock = await fetchUpdateMinLock(sharders, {
    ownerId: wallet.clientId,
    allocationId: created.hash,
    sizeBytes: GIB,
    extend: true,
  });
  assert.ok(extraLock > 0n, `update min lock ${extraLock}`);
});

test('every miner refusing is reported with each miner', async () => {
  const { miners } = clients();
  const wallet = await freshWallet();
  const { signTransaction } = await import('../src/core/zus/transaction.js');
  const signed = signTransaction(wallet, {
    toClientId: 'b'.repeat(64),
    chainId: network.chainId,
    data: '{}',
    valueSas: 1n,
    feeSas: 1n,
    nonce: 1,
    type: 0,
    creationDate: network.now(),
  });
  for (let index = 0; index < 3; index++) {
    await network.setMinerBehaviour(index, { error: 'server busy, try later', code: 'busy' });
  }
  const refused = await miners.submit(signed);
  assert.equal(refused.kind, 'rejected');
  for (const url of network.minerUrls) {
    assert.ok(refused.kind === 'rejected' && refused.message.includes(url), `${url} is named`);
  }
  for (let index = 0; index < 3; index++) {
    await network.setMinerBehaviour(index, 'down');
  }
  await assert.rejects(miners.submit(signed), (error: Error) => {
    assert.match(error.message, /no miner accepted transaction/);
    for (const url of network.minerUrls) {
      assert.ok(error.message.includes(url), `${url} is named`);
    }
    return true;
  });
  for (let index = 0; index < 3; index++) {
    await network.setMinerBehaviour(index, 'ok');
  }
});
