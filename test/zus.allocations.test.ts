import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { PermanentError, TransientError } from '../src/core/errors.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { fetchAllocation, isAllocationNotFound } from '../src/core/zus/allocations.js';
import { NotFoundOnChainError, ShardersClient } from '../src/core/zus/sharders.js';
import { STORAGE_SC_ADDRESS } from '../src/core/zus/storage-config.js';
import { fakeAllocationBody, startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';

const OWNER = 'c'.repeat(64);
const ALLOCATION_ID = 'a'.repeat(64);
const EXPIRES_AT = new Date('2026-03-01T12:00:00Z');

function clientFor(network: ZusNetworkFake, consensusShare: number): ShardersClient {
  return new ShardersClient({
    sharders: network.sharderUrls,
    timeoutMs: 1_000,
    consensusShare,
    logger: createMemoryLogger(),
  });
}

describe('fetchAllocation', () => {
  let network: ZusNetworkFake;
  const body = fakeAllocationBody({
    id: ALLOCATION_ID,
    ownerId: OWNER,
    dataShards: 4,
    parityShards: 2,
    sizeBytes: 3 * 1024 ** 3,
    expiresAt: EXPIRES_AT,
    thirdPartyExtendable: true,
  });

  before(async () => {
    network = await startZusNetwork({ sharders: 3, allocations: [body] });
  });
  afterEach(async () => {
    network.upsertAllocation(body);
    for (let index = 0; index < 3; index += 1) {
      await network.setSharderBehaviour(index, 'ok');
    }
  });
  after(async () => {
    await network.close();
  });

  test('maps an allocation response', async () => {
    const before = network.requests.length;

    const allocation = await fetchAllocation(clientFor(network, 1), ALLOCATION_ID);

    assert.deepEqual(allocation, {
      id: ALLOCATION_ID,
      ownerId: OWNER,
      dataShards: 4,
      parityShards: 2,
      sizeBytes: 3n * 1024n ** 3n,
      expiresAt: EXPIRES_AT,
      finalized: false,
      canceled: false,
      thirdPartyExtendable: true,
    });
    const request = network.requests.at(before);
    assert.equal(request?.path, `/v1/screst/${STORAGE_SC_ADDRESS}/allocation`);
    assert.deepEqual(request?.query, { allocation: ALLOCATION_ID });
  });

  test('defaults flags missing from old responses to false', async () => {
    const { finalized, canceled, third_party_extendable, ...oldShape } = fakeAllocationBody({
      id: ALLOCATION_ID,
      ownerId: OWNER,
    });
    assert.equal(finalized, false);
    assert.equal(canceled, false);
    assert.equal(third_party_extendable, false);
    network.upsertAllocation({ ...oldShape, id: ALLOCATION_ID });

    const allocation = await fetchAllocation(clientFor(network, 1), ALLOCATION_ID);

    assert.equal(allocation.finalized, false);
    assert.equal(allocation.canceled, false);
    assert.equal(allocation.thirdPartyExtendable, false);
  });

  test('ignores statistics that differ between sharders', async () => {
    await network.setSharderBehaviour(1, {
      body: { ...body, stats: { used_size: 123, num_of_writes: 9 }, write_pool: 42 },
    });

    const allocation = await fetchAllocation(clientFor(network, 1), ALLOCATION_ID);

    assert.equal(allocation.id, ALLOCATION_ID);
  });

  test('fails when sharders disagree on the expiry', async () => {
    await network.setSharderBehaviour(2, { body: { ...body, expiration_date: 1 } });

    await assert.rejects(fetchAllocation(clientFor(network, 1), ALLOCATION_ID), TransientError);
  });

  test('reads through a sharder that has not seen the allocation yet', async () => {
    await network.setSharderBehaviour(0, {
      status: 500,
      body: {
        code: 'internal_error',
        error: `internal_error: can't get allocation: error retrieving allocation: ${ALLOCATION_ID}, error: record not found`,
      },
    });

    const allocation = await fetchAllocation(clientFor(network, 2 / 3), ALLOCATION_ID);

    assert.equal(allocation.dataShards, 4);
  });

  test('raises NotFoundOnChainError for an unknown allocation', async () => {
    network.removeAllocation(ALLOCATION_ID);

    await assert.rejects(fetchAllocation(clientFor(network, 1), ALLOCATION_ID), (error: unknown) => {
      assert.ok(error instanceof NotFoundOnChainError);
      assert.match(error.message, /record not found/);
      return true;
    });
  });

  test('rejects an invalid id without asking the sharders', async () => {
    const before = network.requests.length;

    await assert.rejects(fetchAllocation(clientFor(network, 1), 'ab12mn34as90'), PermanentError);

    assert.equal(network.requests.length, before);
  });

  test('rejects a response of the wrong shape', async () => {
    network.upsertAllocation({ ...body, size: '3GB' });

    await assert.rejects(fetchAllocation(clientFor(network, 1), ALLOCATION_ID), /invalid allocation/);
  });

  test('rejects a response for another allocation', async () => {
    for (let index = 0; index < 3; index += 1) {
      await network.setSharderBehaviour(index, { body: { ...body, id: 'b'.repeat(64) } });
    }

    await assert.rejects(
      fetchAllocation(clientFor(network, 1), ALLOCATION_ID),
      /returned allocation b+ when asked for a+/,
    );
  });
});

describe('isAllocationNotFound', () => {
  test('recognises the sharder not-found responses', () => {
    const recordNotFound = {
      code: 'internal_error',
      error: "internal_error: can't get allocation: error retrieving allocation: x, error: record not found",
    };
    assert.equal(isAllocationNotFound(500, recordNotFound), true);
    assert.equal(isAllocationNotFound(400, { error: 'value not present' }), true);
    assert.equal(
      isAllocationNotFound(404, {
        code: 'resource_not_found',
        error: "resource_not_found: can't get allocation",
      }),
      true,
    );
  });

  test('does not mistake other errors for not found', () => {
    assert.equal(
      isAllocationNotFound(500, { code: 'internal_error', error: 'internal_error: no db connection' }),
      false,
    );
    assert.equal(isAllocationNotFound(404, '404 page not found\n'), false);
    assert.equal(isAllocationNotFound(200, { error: 'record not found' }), false);
  });
});

describe('allocation reference response', () => {
  // A 2021 allocation response from the 0chain/gosdk test fixtures: the old schema without the
  // finalized, canceled and third_party_extendable flags.
  test('parses the published old-schema response', async (t) => {
    const folder = process.env.ZUS_REFERENCE_DATA;
    if (folder === undefined || folder === '') {
      t.skip('ZUS_REFERENCE_DATA is not set: point it at the folder that holds allocation.json');
      return;
    }
    const body = JSON.parse(await readFile(path.join(folder, 'allocation.json'), 'utf8')) as {
      id: string;
      expiration_date: number;
    };
    const network = await startZusNetwork({ sharders: 2, allocations: [body] });
    t.after(() => network.close());

    const allocation = await fetchAllocation(clientFor(network, 1), body.id);

    assert.equal(allocation.id, body.id);
    assert.equal(allocation.expiresAt.getTime(), body.expiration_date * 1000);
    assert.equal(allocation.finalized, false);
    assert.equal(allocation.thirdPartyExtendable, false);
  });
});
