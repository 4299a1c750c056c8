import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { SAS_PER_ZCN } from '../src/core/zus/amounts.js';
import { ShardersClient } from '../src/core/zus/sharders.js';
import {
  fetchStorageConfig,
  InvalidStorageConfigError,
  parseDurationSeconds,
  parseStorageConfig,
  STORAGE_SC_ADDRESS,
} from '../src/core/zus/storage-config.js';
import { startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';

/** Returns a complete, valid `fields` map in the chain's string format, with values chosen for these tests. */
function validFields(): Record<string, string> {
  return {
    time_unit: '720h0m0s',
    min_alloc_size: '1048576',
    max_blobbers_per_allocation: '40',
    max_read_price: '7',
    max_write_price: '7',
    min_write_price: '0.001',
    cancellation_charge: '0.2',
    'writepool.min_lock': '0.1',
    max_total_free_allocation: '1e+07',
    max_individual_free_allocation: '1',
    'free_allocation_settings.size': '10000000',
    'free_allocation_settings.data_shards': '4',
    'free_allocation_settings.parity_shards': '2',
    'free_allocation_settings.read_price_range.min': '0',
    'free_allocation_settings.read_price_range.max': '0',
    'free_allocation_settings.write_price_range.min': '0',
    'free_allocation_settings.write_price_range.max': '1',
    health_check_period: '1h30m0s',
    challenge_enabled: 'true',
    owner_id: 'ab'.repeat(32),
    'cost.new_allocation_request': '1919',
  };
}

function problemsOf(fields: Record<string, unknown>): Map<string, string> {
  try {
    parseStorageConfig(fields);
  } catch (error) {
    assert.ok(
      error instanceof InvalidStorageConfigError,
      `expected InvalidStorageConfigError, got ${String(error)}`,
    );
    return new Map(error.problems.map((item) => [item.field, item.problem]));
  }
  assert.fail('expected the config to be rejected');
}

describe('parseStorageConfig', () => {
  test('converts a valid config into typed settings', () => {
    const { config, raw } = parseStorageConfig(validFields());

    assert.equal(config.timeUnitSeconds, 720 * 3600);
    assert.equal(config.minAllocSizeBytes, 1_048_576n);
    assert.equal(config.maxBlobbersPerAllocation, 40);
    assert.equal(config.maxWritePriceSas, 7n * SAS_PER_ZCN);
    assert.equal(config.minWritePriceSas, 10_000_000n);
    assert.equal(config.cancellationCharge, '0.2');
    assert.equal(config.writePoolMinLockSas, 1_000_000_000n);
    assert.equal(config.maxTotalFreeAllocationSas, 10_000_000n * SAS_PER_ZCN);
    assert.equal(config.freeAllocationSizeBytes, 10_000_000n);
    assert.equal(config.freeAllocationDataShards, 4);
    assert.equal(config.freeAllocationParityShards, 2);
    assert.equal(config.freeWritePriceRangeMaxSas, SAS_PER_ZCN);
    assert.equal(config.healthCheckPeriodSeconds, 5400);
    assert.equal(config.challengeEnabled, true);
    assert.equal(config.ownerId, 'ab'.repeat(32));
    assert.deepEqual(raw, validFields());
  });

  test('reads exponent forms exactly', () => {
    const { config } = parseStorageConfig({
      ...validFields(),
      max_total_free_allocation: '2e+06',
      max_write_price: '2.5E-2',
    });

    assert.equal(config.maxTotalFreeAllocationSas, 2_000_000n * SAS_PER_ZCN);
    assert.equal(config.maxWritePriceSas, 250_000_000n);
  });

  test('normalises ratios to plain decimal text', () => {
    const { config } = parseStorageConfig({ ...validFields(), cancellation_charge: '5e-01' });

    assert.equal(config.cancellationCharge, '0.5');
  });

  test('keeps unknown fields in raw only', () => {
    const { raw } = parseStorageConfig({ ...validFields(), 'future.setting': 'anything', numeric_extra: 5 });

    assert.equal(raw['future.setting'], 'anything');
    assert.equal(raw.numeric_extra, '5');
  });

  test('rejects each missing required field', () => {
    const required = [
      'time_unit',
      'min_alloc_size',
      'max_blobbers_per_allocation',
      'max_read_price',
      'max_write_price',
      'min_write_price',
      'cancellation_charge',
      'writepool.min_lock',
      'max_total_free_allocation',
      'max_individual_free_allocation',
      'free_allocation_settings.size',
      'free_allocation_settings.data_shards',
      'free_allocation_settings.parity_shards',
      'free_allocation_settings.read_price_range.min',
      'free_allocation_settings.read_price_range.max',
      'free_allocation_settings.write_price_range.min',
      'free_allocation_settings.write_price_range.max',
    ];
    for (const field of required) {
      const fields: Record<string, string> = validFields();
      delete fields[field];

      const problems = problemsOf(fields);

      assert.match(problems.get(field) ?? '', /missing/, `${field} was not required`);
      assert.equal(problems.size, 1);
    }
  });

  test('rejects a non-numeric price', () => {
    const problems = problemsOf({ ...validFields(), max_write_price: 'cheap' });

    assert.match(problems.get('max_write_price') ?? '', /invalid number "cheap"/);
  });

  test('rejects zero shards', () => {
    const problems = problemsOf({ ...validFields(), 'free_allocation_settings.data_shards': '0' });

    assert.match(problems.get('free_allocation_settings.data_shards') ?? '', /greater than 0/);
  });

  test('rejects a ratio above 1', () => {
    const problems = problemsOf({ ...validFields(), cancellation_charge: '1.01' });

    assert.match(problems.get('cancellation_charge') ?? '', /between 0 and 1/);
  });

  test('lists every problem at once', () => {
    const error = (() => {
      try {
        parseStorageConfig({
          ...validFields(),
          max_read_price: '-1',
          min_alloc_size: '0',
          time_unit: '30 days',
          challenge_enabled: 'yes',
          owner_id: 'not-hex',
          'free_allocation_settings.parity_shards': 2,
          min_write_price: '8',
          blobber_slash: '-0.1',
          'cost.update_settings': '1.5',
          max_individual_free_allocation: '0.00000000001',
        });
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();

    assert.ok(error instanceof InvalidStorageConfigError);
    const fields = error.problems.map((item) => item.field).sort();
    assert.deepEqual(fields, [
      'blobber_slash',
      'challenge_enabled',
      'cost.update_settings',
      'free_allocation_settings.parity_shards',
      'max_individual_free_allocation',
      'max_read_price',
      'min_alloc_size',
      'min_write_price',
      'owner_id',
      'time_unit',
    ]);
    assert.match(error.message, /10 problems/);
    assert.match(error.message, /min_write_price: 80000000000 SAS is above max_write_price/);
    assert.match(error.message, /max_individual_free_allocation: .*smallest unit/);
  });
});

describe('parseDurationSeconds', () => {
  const cases: Array<[string, number]> = [
    ['8760h0m0s', 8760 * 3600],
    ['1h30m0s', 5400],
    ['0s', 0],
    ['0', 0],
    ['1.5h', 5400],
    ['90m', 5400],
    ['300ms', 0.3],
    ['2us', 0.000002],
    ['2µs', 0.000002],
    ['1500ns', 0.0000015],
    ['1m0.5s', 60.5],
  ];
  for (const [text, seconds] of cases) {
    test(`parses ${text}`, () => {
      assert.equal(parseDurationSeconds(text), seconds);
    });
  }

  test('rejects invalid durations', () => {
    for (const text of ['', 'h', '10', '1d', '1h 30m', '.h', '-1h']) {
      assert.throws(() => parseDurationSeconds(text), /invalid duration/, `accepted ${JSON.stringify(text)}`);
    }
  });
});

describe('fetchStorageConfig', () => {
  let network: ZusNetworkFake;
  let client: ShardersClient;

  before(async () => {
    network = await startZusNetwork({ sharders: 2, storageConfigFields: validFields() });
    client = new ShardersClient({
      sharders: network.sharderUrls,
      timeoutMs: 1_000,
      consensusShare: 1,
      logger: createMemoryLogger(),
    });
  });
  after(async () => {
    await network.close();
  });

  test('reads the storage SC endpoint from the sharders', async () => {
    const { config } = await fetchStorageConfig(client);

    assert.equal(config.freeAllocationDataShards, 4);
    const paths = new Set(network.requests.map((item) => item.path));
    assert.deepEqual([...paths], [`/v1/screst/${STORAGE_SC_ADDRESS}/storage-config`]);
  });

  test('rejects a response without fields', async () => {
    await network.setSharderBehaviour(0, { body: { config: {} } });
    await network.setSharderBehaviour(1, { body: { config: {} } });

    await assert.rejects(fetchStorageConfig(client), InvalidStorageConfigError);
  });
});

describe('storage-config reference response', () => {
  // `zbox sc-config` output from the 0chain/zboxcli README (2024), wrapped in {"fields": …}.
  test('parses the published mainnet-like config', async (t) => {
    const folder = process.env.ZUS_REFERENCE_DATA;
    if (folder === undefined || folder === '') {
      t.skip('ZUS_REFERENCE_DATA is not set: point it at the folder that holds storage-config.json');
      return;
    }
    const response = JSON.parse(await readFile(path.join(folder, 'storage-config.json'), 'utf8')) as {
      fields: Record<string, string>;
    };

    const { config, raw } = parseStorageConfig(response.fields);

    assert.equal(config.timeUnitSeconds, 8760 * 3600);
    assert.equal(config.maxWritePriceSas, 250_000_000n);
    assert.equal(config.freeAllocationSizeBytes, 2n * 1024n ** 3n);
    assert.equal(config.freeAllocationDataShards, 4);
    assert.equal(config.freeAllocationParityShards, 2);
    assert.equal(config.maxTotalFreeAllocationSas, 10_000_000n * SAS_PER_ZCN);
    assert.equal(config.writePoolMinLockSas, SAS_PER_ZCN / 10n);
    assert.equal(config.cancellationCharge, '0.2');
    assert.equal(raw.max_stake, '2e+06');
    assert.equal(Object.keys(raw).length, Object.keys(response.fields).length);
  });
});
