import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { errorMessage, StartupError } from '../errors.js';
import type { Logger } from '../output/logger.js';
import { describeDatabaseUrl } from './pool.js';

/**
 * Versioned plain-SQL migrations in `migrations/NNNN_name.sql`, applied in order, each in its own
 * transaction, under one session advisory lock so that concurrent `migrate` runs apply each file once.
 *
 * A migration whose first lines contain `-- zbox:compatible` is additive: a binary that predates
 * it may still run against the database. The flag is stored with the applied version, because an
 * older binary does not have the newer file to read it from.
 */

export interface Migration {
  version: number;
  name: string;
  compatible: boolean;
  checksum: string;
  text: string;
}

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;

/** Arbitrary constant key of the advisory lock that serialises migrations. */
const MIGRATION_LOCK_KEY = 7_326_001n;

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const migrations = readdirSync(dir)
    .filter((file) => FILE_PATTERN.test(file))
    .sort()
    .map((file) => {
      const [, version, name] = FILE_PATTERN.exec(file) as RegExpExecArray;
      const text = readFileSync(`${dir}/${file}`, 'utf8');
      const header = text.split('\n').slice(0, 5).join('\n');
      return {
        version: Number(version),
        name: name as string,
        compatible: header.includes('-- zbox:compatible'),
        checksum: createHash('sha256').update(text).digest('hex'),
        text,
      };
    });
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new Error(`migrations: expected version ${index + 1} but found ${migration.version} in ${dir}`);
    }
  });
  return migrations;
}

const appliedRow = z.object({
  version: z.number(),
  name: z.string(),
  compatible: z.boolean(),
  checksum: z.string(),
});
type AppliedMigration = z.infer<typeof appliedRow>;

const ENSURE_MIGRATIONS_TABLE = `
  CREATE TABLE IF NOT EXISTS zbox_schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    compatible boolean NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`;

async function readApplied(pool: DatabasePool): Promise<AppliedMigration[] | undefined> {
  const exists = await pool.oneFirst(
    sql.type(
      z.object({ exists: z.boolean() }),
    )`SELECT to_regclass('zbox_schema_migrations') IS NOT NULL AS exists`,
  );
  if (!exists) {
    return undefined;
  }
  const rows = await pool.any(
    sql.type(
      appliedRow,
    )`SELECT version, name, compatible, checksum FROM zbox_schema_migrations ORDER BY version`,
  );
  return [...rows];
}

/**
 * Applies every pending migration to the database at `url`. It uses a plain pg client because a
 * migration file contains several statements, which slonik's extended-protocol queries reject.
 * Returns the versions this call applied (empty when the schema was up to date).
 */
export async function migrate(url: string, logger: Logger, migrations = loadMigrations()): Promise<number[]> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
  } catch (error) {
    throw new StartupError(
      `database unreachable at ${describeDatabaseUrl(url)}: ${errorMessage(error)} (check DATABASE_URL and the server)`,
      { cause: error },
    );
  }
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
    await client.query(ENSURE_MIGRATIONS_TABLE);
    const applied = await client.query<{ version: number }>('SELECT version FROM zbox_schema_migrations');
    const appliedVersions = new Set(applied.rows.map((row) => row.version));
    const newlyApplied: number[] = [];
    for (const migration of migrations.filter((m) => !appliedVersions.has(m.version))) {
      await applyOne(client, migration);
      logger.info('migration applied', { version: migration.version, name: migration.name });
      newlyApplied.push(migration.version);
    }
    return newlyApplied;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function applyOne(client: pg.Client, migration: Migration): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(migration.text);
    await client.query(
      'INSERT INTO zbox_schema_migrations (version, name, compatible, checksum) VALUES ($1, $2, $3, $4)',
      [migration.version, migration.name, migration.compatible, migration.checksum],
    );
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw new Error(`migration ${migration.version} (${migration.name}) failed: ${errorMessage(error)}`, {
      cause: error,
    });
  }
}

export type SchemaState =
  | { kind: 'current' }
  | { kind: 'behind'; missing: number[] }
  | { kind: 'newer-compatible'; newer: number[] }
  | { kind: 'newer-incompatible'; newer: number[] };

export async function readSchemaState(
  pool: DatabasePool,
  migrations = loadMigrations(),
): Promise<SchemaState> {
  const applied = (await readApplied(pool)) ?? [];
  const appliedVersions = new Set(applied.map((row) => row.version));
  const missing = migrations.map((m) => m.version).filter((version) => !appliedVersions.has(version));
  if (missing.length > 0) {
    return { kind: 'behind', missing };
  }
  const known = migrations.length;
  const newer = applied.filter((row) => row.version > known);
  if (newer.length === 0) {
    return { kind: 'current' };
  }
  const versions = newer.map((row) => row.version);
  return newer.every((row) => row.compatible)
    ? { kind: 'newer-compatible', newer: versions }
    : { kind: 'newer-incompatible', newer: versions };
}

/** Raises StartupError (exit 3) unless this binary may run against the database's schema. */
export async function assertSchemaUsable(pool: DatabasePool, logger: Logger): Promise<void> {
  const state = await readSchemaState(pool);
  switch (state.kind) {
    case 'current':
      return;
    case 'behind':
      throw new StartupError(
        `database schema is behind this binary: migrations ${state.missing.join(', ')} are not applied (run \`zbox-workers migrate\`)`,
      );
    case 'newer-compatible':
      logger.warn('database schema is newer than this binary; the newer migrations are compatible', {
        versions: state.newer,
      });
      return;
    case 'newer-incompatible':
      throw new StartupError(
        `database schema is newer than this binary: migrations ${state.newer.join(', ')} are not compatible with it (deploy the newer image)`,
      );
  }
}
