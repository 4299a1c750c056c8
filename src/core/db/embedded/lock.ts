/** The start lock, `start.lock`, held while a process starts, adopts or stops the server. */
import { randomBytes } from 'node:crypto';
import { link, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { POLL_MS } from './constants.js';
import { errorCode, errorText } from './helpers.js';
import { isAlive, type ProcessIdentity, parseIdentity } from './identity.js';
import type { StatePaths } from './state.js';

const START_LOCK_TIMEOUT_MS = 120_000;
/** Age after which a lock file without a readable holder (its writer crashed mid-write) is stale. */
const UNREADABLE_LOCK_STALE_MS = 10_000;

/**
 * Takes `start.lock` (created with O_EXCL) and returns the function that gives it back. A lock
 * whose holder has exited is removed; a live holder is waited for, up to START_LOCK_TIMEOUT_MS.
 */
export async function acquireStartLock(
  paths: StatePaths,
  self: ProcessIdentity,
): Promise<() => Promise<void>> {
  const content = JSON.stringify({ pid: self.pid, start: self.start, token: randomBytes(8).toString('hex') });
  const deadline = Date.now() + START_LOCK_TIMEOUT_MS;

  for (;;) {
    try {
      await writeFile(paths.lock, content, { flag: 'wx', mode: 0o644 });
      return async () => {
        const current = await readFile(paths.lock, 'utf8').catch(() => undefined);
        if (current === content) {
          await rm(paths.lock, { force: true });
        }
      };
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') {
        throw new Error(
          `Could not create the lock file ${paths.lock}: ${errorText(error)}. Check that the data folder is writable.`,
          {
            cause: error,
          },
        );
      }
    }

    const holder = await readLockHolder(paths.lock);
    if (holder === undefined) {
      continue;
    }
    const stale =
      holder.identity === undefined
        ? Date.now() - holder.modifiedAt > UNREADABLE_LOCK_STALE_MS
        : !isAlive(holder.identity);
    if (stale) {
      await removeStaleLock(paths.lock, holder.text);
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `Timed out after ${START_LOCK_TIMEOUT_MS / 1000} s waiting for process ${holder.identity?.pid ?? '(unknown)'} to finish starting or stopping the embedded database in ${paths.dataDir}. If that process hangs, stop it and retry. A lock left by a process that exited is removed automatically.`,
      );
    }
    await sleep(POLL_MS);
  }
}

async function readLockHolder(
  lockPath: string,
): Promise<{ text: string; identity: ProcessIdentity | undefined; modifiedAt: number } | undefined> {
  try {
    const [text, info] = await Promise.all([readFile(lockPath, 'utf8'), stat(lockPath)]);
    let identity: ProcessIdentity | undefined;
    try {
      identity = parseIdentity(JSON.parse(text));
    } catch {
      identity = undefined;
    }
    return { text, identity, modifiedAt: info.mtimeMs };
  } catch (error) {
    if (errorCode(error) === 'ENOENT') {
      return undefined;
    }
    throw error;
  }
}

/**
 * Removes a stale lock. The file is first renamed aside and compared, so a fresh lock that
 * another process created after we read the stale one is put back instead of being deleted.
 */
async function removeStaleLock(lockPath: string, staleText: string): Promise<void> {
  const aside = `${lockPath}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(lockPath, aside);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') {
      return;
    }
    throw error;
  }
  const movedText = await readFile(aside, 'utf8').catch(() => '');
  if (movedText !== staleText) {
    // NOTE: if a third process created a lock in the instant between the rename and this link,
    // two processes believe they hold the lock. PostgreSQL's own postmaster.pid lock still stops a
    // second server on the same cluster, and that start then fails with the server's message.
    await link(aside, lockPath).catch(() => undefined);
  }
  await rm(aside, { force: true });
}
