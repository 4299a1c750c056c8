/**
 * One PostgreSQL database per test file: on the server in DATABASE_URL when it is set (CI),
 * otherwise on the embedded server in `.zbox-data/test` under the repository root.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { type EmbeddedDatabase, openEmbeddedDatabase } from '../../src/core/db/embedded.js';
import { createMemoryLogger } from '../../src/core/output/logger.js';

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

const EMBEDDED_DATA_DIR = fileURLToPath(new URL('../../.zbox-data/test', import.meta.url));

/** PostgreSQL truncates identifiers longer than this many bytes. */
const MAX_IDENTIFIER_BYTES = 63;

/**
 * Creates the database `zbox_test_<label>_<pid>_<random>` and returns its URL. `drop()` drops it
 * (closing any connection still open to it) and, on the embedded server, releases the server.
 */
export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const name = testDatabaseName(label);
  const serverUrl = process.env.DATABASE_URL;
  if (serverUrl !== undefined && serverUrl !== '') {
    return createOnServer(serverUrl, name);
  }
  return createOnEmbeddedServer(name);
}

function testDatabaseName(label: string): string {
  const cleanLabel = label.toLowerCase().replace(/[^a-z0-9_]+/g, '_');
  const suffix = `_${process.pid}_${randomBytes(4).toString('hex')}`;
  const prefix = 'zbox_test_';
  return `${prefix}${cleanLabel.slice(0, MAX_IDENTIFIER_BYTES - prefix.length - suffix.length)}${suffix}`;
}

async function createOnServer(serverUrl: string, name: string): Promise<TestDatabase> {
  try {
    await runAdminStatement(serverUrl, (client) => `CREATE DATABASE ${client.escapeIdentifier(name)}`);
  } catch (error) {
    const server = new URL(serverUrl);
    throw new Error(
      `Could not create the test database ${name} on the DATABASE_URL server ${server.hostname}:${server.port || '5432'}: ${(error as Error).message}. Check that server, or unset DATABASE_URL to use the embedded one.`,
      { cause: error },
    );
  }
  return {
    url: withDatabase(serverUrl, name),
    drop: () => dropDatabase(serverUrl, name),
  };
}

async function createOnEmbeddedServer(name: string): Promise<TestDatabase> {
  // The logger keeps the server's progress lines in memory, so a passing test prints nothing.
  const embedded: EmbeddedDatabase = await openEmbeddedDatabase({
    dataDir: EMBEDDED_DATA_DIR,
    logger: createMemoryLogger(),
    database: name,
  });
  let dropping: Promise<void> | undefined;
  return {
    url: embedded.url,
    drop: () => {
      dropping ??= dropDatabase(withDatabase(embedded.url, 'postgres'), name).finally(() =>
        embedded.release(),
      );
      return dropping;
    },
  };
}

async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await runAdminStatement(
    adminUrl,
    (client) => `DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`,
  );
}

/** Runs one statement built from the connected client, which escapes the identifiers in it. */
async function runAdminStatement(url: string, statement: (client: pg.Client) => string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(statement(client));
  } finally {
    await client.end();
  }
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}
