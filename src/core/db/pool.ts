import { createPool, createTypeParserPreset, type DatabasePool, type DriverTypeParser, sql } from 'slonik';
import { StartupError } from '../errors.js';

export type { DatabasePool } from 'slonik';

/**
 * Type parsers of every pool: `int8` becomes `bigint` (amounts in SAS and counts never pass
 * through a float), timestamps become `Date`, and `numeric` stays exact decimal text.
 */
const TYPE_PARSERS: DriverTypeParser[] = [
  ...createTypeParserPreset().filter(
    (parser) => !['int8', 'timestamp', 'timestamptz', 'numeric'].includes(parser.name),
  ),
  { name: 'int8', parse: (value: string) => BigInt(value) },
  { name: 'timestamptz', parse: (value: string) => new Date(value) },
  { name: 'timestamp', parse: (value: string) => new Date(`${value}Z`) },
  { name: 'numeric', parse: (value: string) => value },
];

const sqlPing = sql.unsafe`SELECT 1`;

export interface PoolOptions {
  maximumPoolSize?: number;
  /** Seconds a connection attempt may take before the run gives up (exit 3). */
  connectionTimeoutSeconds?: number;
}

/**
 * Opens a slonik pool and checks that the server responds. An unreachable server or one out of
 * connections is a StartupError (exit 3), and its message names the host, never the password.
 */
export async function openPool(url: string, options: PoolOptions = {}): Promise<DatabasePool> {
  let pool: DatabasePool | undefined;
  try {
    pool = await createPool(url, {
      typeParsers: TYPE_PARSERS,
      maximumPoolSize: options.maximumPoolSize ?? 10,
      connectionTimeout: (options.connectionTimeoutSeconds ?? 10) * 1000,
      idleTimeout: 5_000,
      captureStackTrace: false,
      // slonik's default sends DISCARD ALL each time a connection goes back to the pool: one more
      // round trip per statement outside a transaction. Nothing here leaves session state behind:
      // settings are transaction-local (set_config(..., true)), the nonce locks are transaction
      // locks, the singleton lock is released in a finally block, and a process runs one cycle.
      resetConnection: async () => undefined,
    });
    await pool.query(sqlPing);
  } catch (error) {
    await pool?.end().catch(() => undefined);
    throw new StartupError(
      `database unreachable at ${describeDatabaseUrl(url)}: ${(error as Error).message} (check DATABASE_URL, the server and its connection limit)`,
      { cause: error },
    );
  }
  return pool;
}

/** `host:port/database` of a connection URL, without user or password, for messages. */
export function describeDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || '5432'}${parsed.pathname}`;
  } catch {
    return '(unparseable URL)';
  }
}
