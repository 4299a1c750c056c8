/** Files in the data folder: their paths, the cluster record and the running server's state. */
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorCode, isObject, isUsablePort } from './helpers.js';
import { type ProcessIdentity, parseIdentity } from './identity.js';

export interface StatePaths {
  dataDir: string;
  stateDir: string;
  clusterRecord: string;
  serverState: string;
  usersDir: string;
  lock: string;
  serverLog: string;
}

export function statePaths(dataDir: string): StatePaths {
  const stateDir = join(dataDir, 'postgres');
  return {
    dataDir,
    stateDir,
    clusterRecord: join(stateDir, 'cluster.json'),
    serverState: join(stateDir, 'server.json'),
    usersDir: join(stateDir, 'users'),
    lock: join(stateDir, 'start.lock'),
    serverLog: join(stateDir, 'server.log'),
  };
}

/** Location of the cluster and the superuser's password. */
export interface ClusterRecord {
  /** Folder holding the cluster and, when needed, a copy of the binaries. */
  runtimeDir: string;
  clusterDir: string;
  password: string;
}

/** A running server, as recorded by the process that started or adopted it. */
export interface ServerState {
  port: number;
  clusterDir: string;
  postmaster: ProcessIdentity;
  /** Process that stops the server once no other process uses it. */
  owner: ProcessIdentity;
  startedAt: string;
}

export async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') {
      return undefined;
    }
    throw error;
  }
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Writes a JSON file through a temporary name, so a reader never sees half of it. */
export async function writeJsonFile(file: string, value: unknown, mode: number): Promise<void> {
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temporary, `${JSON.stringify(value, null, 2)}\n`, { mode, flag: 'wx' });
  await rename(temporary, file);
}

export async function readClusterRecord(paths: StatePaths): Promise<ClusterRecord | undefined> {
  const value = await readJsonFile(paths.clusterRecord);
  if (value === undefined) {
    return undefined;
  }
  if (
    !isObject(value) ||
    typeof value.runtimeDir !== 'string' ||
    typeof value.clusterDir !== 'string' ||
    typeof value.password !== 'string'
  ) {
    throw new Error(
      `The embedded database record ${paths.clusterRecord} is invalid. Delete the folder ${paths.stateDir} to initialise a new cluster (this deletes the data in it).`,
    );
  }
  return { runtimeDir: value.runtimeDir, clusterDir: value.clusterDir, password: value.password };
}

/** Reads server.json. Returns undefined when it is missing or unreadable, because such a file is a stale leftover. */
export async function readServerState(paths: StatePaths): Promise<ServerState | undefined> {
  const value = await readJsonFile(paths.serverState);
  if (!isObject(value)) {
    return undefined;
  }
  const postmaster = parseIdentity(value.postmaster);
  const owner = parseIdentity(value.owner);
  if (
    !isUsablePort(value.port) ||
    typeof value.clusterDir !== 'string' ||
    typeof value.startedAt !== 'string' ||
    postmaster === undefined ||
    owner === undefined
  ) {
    return undefined;
  }
  return { port: value.port, clusterDir: value.clusterDir, postmaster, owner, startedAt: value.startedAt };
}
