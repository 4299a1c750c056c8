import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { loadMigrations } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { runCli } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

let database: TestDatabase;
let pool: DatabasePool;

before(async () => {
  database = await createTestDatabase('migrate');
  pool = await openPool(database.url, { maximumPoolSize: 2 });
});

after(async () => {
  await pool.end();
  await database.drop();
});

test('worker on an unmigrated database exits 3', async () => {
  const result = await runCli(['delete-wallet-transactions', '--json'], { DATABASE_URL: database.url });
  assert.equal(result.code, 3);
  assert.match(result.stderr, /schema is behind this binary: migrations 1.* \(run `zbox-workers migrate`\)/);
});

test('five concurrent migrate processes apply each migration once', async () => {
  const results = await Promise.all(
    Array.from({ length: 5 }, () => runCli(['migrate', '--json'], { DATABASE_URL: database.url })),
  );
  for (const result of results) {
    assert.equal(result.code, 0, result.stderr);
  }
  const applied = await pool.any(
    sql.type(z.object({ version: z.number(), times: z.bigint() }))`
      SELECT version, count(*) AS times FROM zbox_schema_migrations GROUP BY version ORDER BY version`,
  );
  assert.deepEqual(
    applied.map((row) => row.version),
    loadMigrations().map((migration) => migration.version),
  );
  assert.ok(applied.every((row) => row.times === 1n));
  const appliedLines = results.flatMap((result) =>
    result.lines.filter((line) => line.msg === 'migration applied'),
  );
  assert.equal(
    appliedLines.length,
    loadMigrations().length,
    'each migration was applied by exactly one process',
  );
});

test('newer compatible schema still runs', async () => {
  await pool.query(sql.unsafe`
    INSERT INTO zbox_schema_migrations (version, name, compatible, checksum) VALUES (9001, 'add_column', true, 'x')`);
  const result = await runCli(['delete-wallet-transactions', '--json'], { DATABASE_URL: database.url });
  assert.equal(result.code, 0, result.stderr);
  assert.ok(result.lines.some((line) => String(line.msg).includes('schema is newer than this binary')));
});

test('newer incompatible schema exits 3', async () => {
  await pool.query(sql.unsafe`
    INSERT INTO zbox_schema_migrations (version, name, compatible, checksum) VALUES (9002, 'drop_column', false, 'x')`);
  const result = await runCli(['delete-wallet-transactions', '--json'], { DATABASE_URL: database.url });
  assert.equal(result.code, 3);
  assert.match(
    result.stderr,
    /schema is newer than this binary: migrations 9001, 9002 .*\(deploy the newer image\)/,
  );
});
