/** Connections to the server as the superuser: probing it, creating the database, and its URL. */
import pg from 'pg';
import { SUPERUSER } from './constants.js';
import { errorCode } from './helpers.js';

/**
 * Connects as the superuser and checks that the server's data directory is our cluster, so a
 * stale state file pointing at a port now used by something else is never trusted.
 */
export async function probeServer(
  port: number,
  password: string,
  clusterDir: string,
): Promise<'ours' | 'foreign' | 'unreachable'> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: SUPERUSER,
    password,
    database: 'postgres',
    connectionTimeoutMillis: 2_000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const result = await client.query<{ dir: string }>("SELECT current_setting('data_directory') AS dir");
    return result.rows[0]?.dir === clusterDir ? 'ours' : 'foreign';
  } catch (error) {
    const code = errorCode(error);
    // 28P01 invalid_password, 28000 invalid_authorization_specification, 3D000 no such database.
    if (code === '28P01' || code === '28000' || code === '3D000') {
      return 'foreign';
    }
    return 'unreachable';
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function ensureDatabase(port: number, password: string, database: string): Promise<void> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: SUPERUSER,
    password,
    database: 'postgres',
    connectionTimeoutMillis: 10_000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const existing = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (existing.rowCount !== 0) {
      return;
    }
    try {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
    } catch (error) {
      // Another process created it first: 42P04 duplicate_database, or 23505 unique_violation
      // on pg_database when both CREATE DATABASE statements ran at the same time.
      const code = errorCode(error);
      if (code !== '42P04' && code !== '23505') {
        throw error;
      }
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function databaseUrl(port: number, password: string, database: string): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
}

export function assertDatabaseName(database: string): void {
  if (database.length === 0 || Buffer.byteLength(database) > 63 || database.includes('\0')) {
    throw new Error(
      `Invalid embedded database name ${JSON.stringify(database)}: it must be 1 to 63 bytes long without NUL characters.`,
    );
  }
}
