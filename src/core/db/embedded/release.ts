/** Release of a handle. The owner stops the server once no other process uses it. */
import { rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Session } from './attach.js';
import { databaseUrl } from './connection.js';
import { isAlive, isSameProcess, type ProcessIdentity } from './identity.js';
import { acquireStartLock } from './lock.js';
import { listLiveUsers } from './registrations.js';
import { stopPostmaster } from './server.js';
import { readServerState } from './state.js';
import type { EmbeddedDatabase } from './types.js';

const RELEASE_POLL_MS = 250;

export function createHandle(session: Session, database: string): EmbeddedDatabase {
  let releasing: Promise<void> | undefined;
  return {
    url: databaseUrl(session.port, session.password, database),
    started: session.started,
    release: () => {
      releasing ??= releaseSession(session);
      return releasing;
    },
  };
}

/**
 * Removes this handle's registration and, when this process owns the server (or its owner has
 * exited), stops it once no other process is registered. The owner waits, without a time limit,
 * for the others, so a long second user is never cut off.
 */
async function releaseSession(session: Session): Promise<void> {
  const { paths, self, logger } = session;
  let registered = true;
  let waitLogged = false;

  for (;;) {
    const unlock = await acquireStartLock(paths, self);
    let others: ProcessIdentity[] = [];
    try {
      if (registered) {
        await rm(session.registration, { force: true });
        registered = false;
      }
      const state = await readServerState(paths);
      if (state === undefined) {
        return;
      }
      const users = await listLiveUsers(paths);
      if (users.some((user) => isSameProcess(user, self))) {
        // Another handle of this process still uses the server; its release finishes the job.
        return;
      }
      const ownedHere = isSameProcess(state.owner, self);
      if (!ownedHere && isAlive(state.owner)) {
        return;
      }
      if (users.length > 0 && !ownedHere) {
        // The owner exited; the last registered process stops the server.
        return;
      }
      if (users.length === 0) {
        await stopPostmaster(state.postmaster);
        await rm(paths.serverState, { force: true });
        logger.info('embedded database stopped', { data_dir: paths.dataDir, port: state.port });
        return;
      }
      others = users;
    } finally {
      await unlock();
    }

    if (!waitLogged) {
      logger.info('embedded database still in use by other processes; waiting before stopping it', {
        data_dir: paths.dataDir,
        pids: [...new Set(others.map((user) => user.pid))],
      });
      waitLogged = true;
    }
    await sleep(RELEASE_POLL_MS);
  }
}
