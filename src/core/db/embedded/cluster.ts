/** Cluster initialisation: initdb, run once per cluster under the start lock. */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../output/logger.js';
import { type Binaries, serverEnvironment, usableBinaries } from './binaries.js';
import { READY_TIMEOUT_MS, SUPERUSER } from './constants.js';
import { errorText, execFileAsync } from './helpers.js';
import { assertOwnedDirectory, chooseRuntimeDir, type ServerUser } from './placement.js';
import { type ClusterRecord, type StatePaths, writeJsonFile } from './state.js';

/**
 * Returns the cluster to start, running initdb only when no cluster exists yet. It runs under
 * the start lock, so two processes never initialise one folder at once.
 */
export async function prepareCluster(
  paths: StatePaths,
  record: ClusterRecord | undefined,
  runAs: ServerUser | undefined,
  logger: Logger,
): Promise<{ record: ClusterRecord; binaries: Binaries }> {
  if (record !== undefined && existsSync(join(record.clusterDir, 'PG_VERSION'))) {
    await assertOwnedDirectory(record.runtimeDir, paths.clusterRecord);
    return { record, binaries: await usableBinaries(record.runtimeDir, runAs, logger) };
  }

  if (record !== undefined) {
    logger.warn('embedded database cluster not found; initialising a new, empty one', {
      data_dir: paths.dataDir,
      cluster_dir: record.clusterDir,
    });
  } else if (existsSync(join(paths.stateDir, 'cluster', 'PG_VERSION'))) {
    throw new Error(
      `Found a PostgreSQL cluster in ${join(paths.stateDir, 'cluster')} but not its record ${paths.clusterRecord}, which contains the password. Restore that file, or delete ${paths.stateDir} to initialise a new cluster (this deletes the data in it).`,
    );
  }

  const runtimeDir = await chooseRuntimeDir(paths, runAs, logger);
  const binaries = await usableBinaries(runtimeDir, runAs, logger);
  const clusterDir = join(runtimeDir, 'cluster');
  // The server listens only on 127.0.0.1, but every local user can reach that address. So the
  // superuser gets a random password, stored in cluster.json (mode 0600) where only this OS user
  // can read it. With trust or a fixed password, any local user could log in as superuser.
  const password = randomBytes(24).toString('hex');

  logger.info('embedded database initialising', { data_dir: paths.dataDir, cluster_dir: clusterDir });
  await initialiseCluster(runtimeDir, clusterDir, password, binaries, runAs);

  const created: ClusterRecord = { runtimeDir, clusterDir, password };
  await writeJsonFile(paths.clusterRecord, created, 0o600);
  return { record: created, binaries };
}

/**
 * Runs initdb into a staging folder and renames it into place, so a crash during initdb never
 * leaves a half-made cluster where a later start would take it for a real one.
 */
async function initialiseCluster(
  runtimeDir: string,
  clusterDir: string,
  password: string,
  binaries: Binaries,
  runAs: ServerUser | undefined,
): Promise<void> {
  const staging = `${clusterDir}.initdb`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { mode: 0o700 });
  // initdb reads the password from a file, which the server's OS user must be able to read.
  const passwordFile = join(runtimeDir, `initdb-password-${process.pid}-${randomBytes(4).toString('hex')}`);
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600, flag: 'wx' });
  if (runAs !== undefined) {
    await chown(staging, runAs.uid, runAs.gid);
    await chown(passwordFile, runAs.uid, runAs.gid);
  }

  try {
    await execFileAsync(
      binaries.initdb,
      [
        `--pgdata=${staging}`,
        `--username=${SUPERUSER}`,
        `--pwfile=${passwordFile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--no-locale',
        '--no-instructions',
      ],
      {
        ...(runAs ?? {}),
        cwd: runtimeDir,
        env: serverEnvironment(),
        timeout: READY_TIMEOUT_MS,
        maxBuffer: 4 << 20,
      },
    );
  } catch (error) {
    const output = error as { stdout?: string; stderr?: string };
    throw new Error(
      `initdb failed for ${staging}: ${errorText(error)}\n${output.stderr ?? ''}${output.stdout ?? ''}Check that the folder is writable by the server's OS user and has free space.`,
      { cause: error },
    );
  } finally {
    await rm(passwordFile, { force: true });
  }

  // A cluster folder without PG_VERSION is a leftover of an interrupted attempt.
  await rm(clusterDir, { recursive: true, force: true });
  await rename(staging, clusterDir);
}
