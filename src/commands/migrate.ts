import { readVariable } from '../core/config.js';
import { migrate } from '../core/db/migrate.js';
import type { RuntimeIo } from '../core/engine/runtime.js';
import { ConfigError } from '../core/errors.js';
import { EXIT } from '../core/exit-codes.js';
import { createLogger } from '../core/output/logger.js';

/**
 * migrate: applies pending migrations to DATABASE_URL (or the embedded database) under an
 * advisory lock. Several started at once all exit 0 and each migration is applied once.
 */
export async function runMigrate(
  options: { embedded: boolean; json: boolean },
  io: RuntimeIo,
): Promise<number> {
  const logger = createLogger(
    {
      json: options.json,
      level: readVariable(io.env, 'ZBOX_LOG_LEVEL') ?? 'info',
      write: (line) => io.writeOut(`${line}\n`),
    },
    { worker: 'migrate' },
  );
  if (options.embedded) {
    const { openDatabase } = await import('../core/engine/runtime.js');
    const database = await openDatabase(io.env, true, logger);
    await database.close();
    logger.info('embedded database is up to date');
    return EXIT.ok;
  }
  const url = readVariable(io.env, 'DATABASE_URL');
  if (url === undefined) {
    throw new ConfigError('DATABASE_URL: missing (set it to the database to migrate, or pass --embedded)');
  }
  const applied = await migrate(url, logger);
  logger.info(applied.length === 0 ? 'schema already up to date' : 'migrations applied', {
    versions: applied,
  });
  return EXIT.ok;
}
