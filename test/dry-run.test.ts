import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { type ElasticsearchFake, startElasticsearchFake } from '../src/sandbox/elasticsearch.js';
import { fakeAllocationBody, startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { runCli } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ownStorageConfigFields } from './support/storage-config.js';

let database: TestDatabase;
let pool: DatabasePool;
let network: ZusNetworkFake;
let elasticsearch: ElasticsearchFake;

const allocationId = createHash('sha256').update('dry-run').digest('hex');

before(async () => {
  database = await createTestDatabase('dry_run');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 2 });
  network = await startZusNetwork({ sharders: 2, storageConfigFields: ownStorageConfigFields() });
  elasticsearch = await startElasticsearchFake();
  const expiresAt = new Date(Math.floor(Date.now() / 1000 + 30 * 3600) * 1000);
  network.upsertAllocation(fakeAllocationBody({ id: allocationId, ownerId: 'owner', expiresAt }));
  await pool.query(sql.unsafe`
    INSERT INTO allocations (id, owner_client_id, user_id, size_bytes, data_shards, parity_shards, expires_at)
    VALUES (${allocationId}, 'owner', 'user-1', 1073741824, 2, 1, ${expiresAt.toISOString()})`);
  await pool.query(sql.unsafe`
    INSERT INTO team_wallet_spending (wallet_client_id, purpose, amount_sas, state, created_at)
    SELECT 'team', 'funding', n, 'settled', now() - interval '100 days' FROM generate_series(1, 50) AS n`);
  await pool.query(sql.unsafe`
    INSERT INTO storage_config (free_allocation_size_bytes, free_allocation_data_shards, free_allocation_parity_shards,
      max_write_price_sas, min_write_price_sas, max_read_price_sas, cancellation_charge, min_alloc_size_bytes,
      max_blobbers_per_allocation, time_unit_seconds, raw_fields)
    VALUES (1, 1, 1, 1, 1, 0, 0.1, 1, 1, 1, '{"old": "config"}')`);
  // One notice already queued, so the queue table has a row a dry run must not claim.
  await pool.query(sql.unsafe`
    INSERT INTO allocation_expiry_notices (allocation_id, user_id, expires_at, window_days, document_id)
    VALUES (${allocationId}, 'user-1', ${expiresAt.toISOString()}, 3, 'queued-notice')`);
});

after(async () => {
  await Promise.all([network.close(), elasticsearch.close()]);
  await pool.end();
  await database.drop();
});

/** md5 of every row of every table in the schema, table by table. */
async function snapshot(): Promise<Record<string, string>> {
  const tables = await pool.anyFirst(
    sql.type(z.object({ tablename: z.string() }))`
      SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`,
  );
  const result: Record<string, string> = {};
  for (const table of tables) {
    result[table] = await pool.oneFirst(
      sql.type(z.object({ digest: z.string() }))`
        SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), 'empty') AS digest
        FROM ${sql.identifier([table])} AS t`,
    );
  }
  return result;
}

for (const worker of ['free-storage', 'expiring-allocations', 'delete-wallet-transactions']) {
  test(`${worker} dry run leaves every table unchanged`, async () => {
    const before = await snapshot();
    assert.ok(Object.keys(before).length >= 7, 'the snapshot covers the schema');
    const esRequests = elasticsearch.requestCount;
    const result = await runCli([worker, '--dry-run', '--json'], {
      DATABASE_URL: database.url,
      ZUS_SHARDERS: network.sharderUrls.join(','),
      ELASTICSEARCH_URL: elasticsearch.url,
    });
    assert.equal(result.code, 0, result.stderr + result.stdout);
    assert.ok(
      result.lines.some((line) => String(line.msg).startsWith('would ')),
      'the dry run printed what it would do',
    );
    assert.deepEqual(await snapshot(), before);
    assert.equal(elasticsearch.requestCount, esRequests, 'no request reached Elasticsearch');
  });
}
