/** Registrations of the processes using the server: one file per open handle under `users/`. */
import { randomBytes } from 'node:crypto';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorCode } from './helpers.js';
import { isAlive, type ProcessIdentity, parseIdentity } from './identity.js';
import { readJsonFile, type StatePaths } from './state.js';

export async function registerUser(paths: StatePaths, self: ProcessIdentity): Promise<string> {
  const file = join(paths.usersDir, `${self.pid}-${randomBytes(4).toString('hex')}.json`);
  await writeFile(file, JSON.stringify(self), { flag: 'wx', mode: 0o644 });
  return file;
}

/** Identities of the registered processes that are still alive; files of dead ones are deleted. */
export async function listLiveUsers(paths: StatePaths): Promise<ProcessIdentity[]> {
  const names = await readdir(paths.usersDir).catch((error: unknown) => {
    if (errorCode(error) === 'ENOENT') {
      return [] as string[];
    }
    throw error;
  });
  const live: ProcessIdentity[] = [];
  for (const name of names) {
    if (!name.endsWith('.json')) {
      continue;
    }
    const file = join(paths.usersDir, name);
    const identity = parseIdentity(await readJsonFile(file));
    if (identity !== undefined && isAlive(identity)) {
      live.push(identity);
    } else {
      await rm(file, { force: true });
    }
  }
  return live;
}
