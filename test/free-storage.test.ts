import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { runCli, summaryOf } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ownStorageConfigFields, referenceStorageConfig } from './support/storage-config.js';

let database: TestDatabase;
let pool: DatabasePool;
let network: ZusNetworkFake;

before(async () => {
  database = await createTestDatabase('free_storage');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 2 });
  network = await startZusNetwork({ sharders: 3, storageConfigFields: ownStorageConfigFields() });
});

beforeEach(async () => {
  await pool.query(sql.unsafe`TRUNCATE storage_config, storage_config_history, zbox_runs`);
  network.setStorageConfigFields(ownStorageConfigFields());
  for (let index = 0; index < 3; index++) {
    await network.setSharderBehaviour(index, 'ok');
  }
});

after(async () => {
  await network.close();
  await pool.end();
  await database.drop();
});

const storedRow = z.object({
  free_allocation_size_bytes: z.bigint(),
  free_allocation_data_shards: z.number(),
  free_allocation_parity_shards: z.number(),
  max_write_price_sas: z.bigint(),
  min_write_price_sas: z.bigint(),
  cancellation_charge: z.string(),
  time_unit_seconds: z.bigint(),
  raw_fields: z.record(z.string(), z.string()),
});

async function stored() {
  return pool.maybeOne(sql.type(storedRow)`
    SELECT free_allocation_size_bytes, free_allocation_data_shards, free_allocation_parity_shards,
           max_write_price_sas, min_write_price_sas, cancellation_charge::text AS cancellation_charge,
           time_unit_seconds, raw_fields
    FROM storage_config`);
}

async function historyCount() {
  return pool.oneFirst(
    sql.type(z.object({ count: z.bigint() }))`SELECT count(*) AS count FROM storage_config_history`,
  );
}

function env(extra: Record<string, string> = {}) {
  return { DATABASE_URL: database.url, ZUS_SHARDERS: network.sharderUrls.join(','), ...extra };
}

test('stores the real storage-config answer exactly', async (t) => {
  const reference = referenceStorageConfig();
  if ('skip' in reference) {
    t.skip(reference.skip);
    return;
  }
  network.setStorageConfigFields(reference.fields);
  const result = await runCli(['free-storage', '--json'], env());
  assert.equal(result.code, 0, result.stderr + result.stdout);
  const row = await stored();
  assert.ok(row !== null);
  // Source of the file: zboxcli README, "Storage SC configurations" (see SOURCES.md beside it).
  assert.equal(
    row.free_allocation_size_bytes,
    BigInt(reference.fields['free_allocation_settings.size'] as string),
  );
  assert.equal(row.free_allocation_size_bytes, 2_147_483_648n);
  assert.equal(row.free_allocation_data_shards, 4);
  assert.equal(row.free_allocation_parity_shards, 2);
  assert.equal(row.max_write_price_sas, 250_000_000n, '0.025 ZCN in SAS');
  assert.equal(row.min_write_price_sas, 10_000_000n, '0.001 ZCN in SAS');
  assert.equal(row.cancellation_charge, '0.2');
  assert.equal(row.time_unit_seconds, 8760n * 3600n);
  assert.deepEqual(row.raw_fields, reference.fields);
});

test('stores typed fields and a history of changes', async () => {
  const first = await runCli(['free-storage', '--json'], env());
  assert.equal(first.code, 0, first.stderr);
  const row = await stored();
  assert.equal(row?.free_allocation_size_bytes, 1_073_741_824n);
  assert.equal(row?.free_allocation_data_shards, 3);
  assert.equal(row?.free_allocation_parity_shards, 1);
  assert.equal(row?.max_write_price_sas, 500_000_000n);
  assert.equal(row?.cancellation_charge, '0.25');
  assert.equal(await historyCount(), 1n);

  const unchanged = await runCli(['free-storage', '--json'], env());
  assert.equal(unchanged.code, 0);
  assert.equal(await historyCount(), 1n, 'an unchanged config adds no history');

  network.setStorageConfigFields({ ...ownStorageConfigFields(), max_write_price: '0.07' });
  const changed = await runCli(['free-storage', '--json'], env());
  assert.equal(changed.code, 0);
  assert.equal((await stored())?.max_write_price_sas, 700_000_000n);
  const changes = await pool.oneFirst(
    sql.type(
      z.object({ changes: z.unknown() }),
    )`SELECT changes FROM storage_config_history ORDER BY id DESC LIMIT 1`,
  );
  assert.deepEqual(changes, { max_write_price: { from: '0.05', to: '0.07' } });
});

test('discovers sharders through the block worker', async () => {
  const result = await runCli(['free-storage', '--json'], {
    DATABASE_URL: database.url,
    ZUS_BLOCK_WORKER: network.blockWorkerUrl,
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal((await stored())?.free_allocation_data_shards, 3);
});

const badAnswers: Array<[string, (fields: Record<string, string>) => void, RegExp]> = [
  [
    'missing field',
    (fields) => delete fields['free_allocation_settings.size'],
    /free_allocation_settings\.size/,
  ],
  ['non-numeric price', (fields) => (fields.max_write_price = 'cheap'), /max_write_price/],
  [
    'zero shards',
    (fields) => (fields['free_allocation_settings.data_shards'] = '0'),
    /free_allocation_settings\.data_shards/,
  ],
  ['ratio above one', (fields) => (fields.cancellation_charge = '1.5'), /cancellation_charge/],
];

for (const [name, spoil, field] of badAnswers) {
  test(`${name} keeps the stored config and exits 4`, async () => {
    const good = await runCli(['free-storage', '--json'], env());
    assert.equal(good.code, 0);
    const before = await stored();
    const fields = ownStorageConfigFields();
    spoil(fields);
    network.setStorageConfigFields(fields);
    const result = await runCli(['free-storage', '--json'], env());
    assert.equal(result.code, 4, result.stdout);
    const summary = summaryOf(result);
    assert.match(JSON.stringify(summary.attention), field);
    assert.deepEqual(await stored(), before, 'the stored config is unchanged');
    assert.equal(await historyCount(), 1n);
  });
}

test('disagreeing sharders keep the stored config', async () => {
  await network.setSharderBehaviour(1, {
    body: { fields: { ...ownStorageConfigFields(), max_write_price: '9' } },
  });
  await network.setSharderBehaviour(2, 'http503');
  const result = await runCli(['free-storage', '--json'], env());
  assert.equal(result.code, 4);
  assert.match(JSON.stringify(summaryOf(result).attention), /storage config not updated/);
  assert.equal(await stored(), null);
});

test('dry run prints the figures and writes nothing', async () => {
  const result = await runCli(['free-storage', '--dry-run', '--json'], env());
  assert.equal(result.code, 0, result.stderr);
  const plan = result.lines.find((line) => String(line.msg).startsWith('would '));
  assert.ok(plan !== undefined, 'the plan is printed');
  assert.equal(plan.max_write_price_sas, '500000000');
  assert.equal(await stored(), null);
  assert.equal(
    await pool.oneFirst(sql.unsafe`SELECT count(*) FROM zbox_runs`),
    0n,
    'a dry run is not recorded',
  );
});

test('second concurrent run exits 0 when the lock is held', async () => {
  await pool.connect(async (connection) => {
    await connection.query(
      sql.unsafe`SELECT pg_advisory_lock(hashtextextended('zbox-workers:free-storage', 0))`,
    );
    try {
      const result = await runCli(['free-storage', '--json'], env());
      assert.equal(result.code, 0);
      assert.ok(result.lines.some((line) => String(line.msg).includes('singleton lock held by another run')));
      assert.equal(await stored(), null, 'no work was done');
    } finally {
      await connection.query(sql.unsafe`SELECT pg_advisory_unlock_all()`);
    }
  });
});
