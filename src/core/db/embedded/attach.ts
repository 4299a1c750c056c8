/** Attaching to a running server, adopting one whose starter exited, or starting one. */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../output/logger.js';
import { prepareCluster } from './cluster.js';
import { probeServer } from './connection.js';
import { POLL_MS, READY_TIMEOUT_MS } from './constants.js';
import { isUsablePort } from './helpers.js';
import {
  HAS_PROC,
  identifyProcess,
  isAlive,
  isValidPid,
  type ProcessIdentity,
  readProcessStat,
} from './identity.js';
import type { ServerUser } from './placement.js';
import { registerUser } from './registrations.js';
import { startServer } from './server.js';
import {
  type ClusterRecord,
  readClusterRecord,
  readServerState,
  type ServerState,
  type StatePaths,
  writeJsonFile,
} from './state.js';

export interface Session {
  paths: StatePaths;
  self: ProcessIdentity;
  logger: Logger;
  port: number;
  password: string;
  started: boolean;
  registration: string;
}

/** Runs under the start lock: reuses or adopts a live server, or starts one, then registers this process. */
export async function attachOrStart(
  paths: StatePaths,
  self: ProcessIdentity,
  runAs: ServerUser | undefined,
  logger: Logger,
): Promise<Session> {
  const existingRecord = await readClusterRecord(paths);
  const recorded = await readServerState(paths);
  let record: ClusterRecord;
  let state: ServerState;
  let started = false;

  const running =
    existingRecord === undefined
      ? undefined
      : await findRunningServer(paths, existingRecord, recorded, logger);
  if (existingRecord !== undefined && running !== undefined) {
    record = existingRecord;
    state = running.state;
    if (running.ownerAlive) {
      logger.debug('embedded database already running', { data_dir: paths.dataDir, port: state.port });
    } else {
      logger.info('embedded database adopted from a process that exited', {
        data_dir: paths.dataDir,
        port: state.port,
        previous_owner_pid: running.previousOwnerPid,
      });
      state = { ...state, owner: self };
      await writeJsonFile(paths.serverState, state, 0o644);
    }
  } else {
    if (recorded !== undefined) {
      if (isAlive(recorded.postmaster)) {
        throw new Error(
          `The embedded PostgreSQL server (pid ${recorded.postmaster.pid}) of ${paths.dataDir} is running but its record ${paths.clusterRecord} is missing, so it cannot be used. Stop that process, then delete ${paths.stateDir} to start over (this deletes the data in it).`,
        );
      }
      logger.debug('embedded database state is stale; starting a new server', {
        data_dir: paths.dataDir,
        port: recorded.port,
      });
      await rm(paths.serverState, { force: true });
    }
    const prepared = await prepareCluster(paths, existingRecord, runAs, logger);
    record = prepared.record;
    state = await startServer(paths, record, prepared.binaries, runAs, self, logger);
    started = true;
  }

  const registration = await registerUser(paths, self);
  return { paths, self, logger, port: state.port, password: record.password, started, registration };
}

/**
 * Finds the server already running on the cluster: the one in server.json, or else a live
 * postmaster named in the cluster's own lock file, postmaster.pid. The second case happens when
 * the starter crashed before writing server.json, or the file was deleted. Returns undefined
 * when no server runs, and the caller starts one.
 */
async function findRunningServer(
  paths: StatePaths,
  record: ClusterRecord,
  recorded: ServerState | undefined,
  logger: Logger,
): Promise<{ state: ServerState; ownerAlive: boolean; previousOwnerPid?: number } | undefined> {
  if (recorded !== undefined && (await waitForRecordedServer(paths, recorded, record))) {
    const ownerAlive = isAlive(recorded.owner);
    return { state: recorded, ownerAlive, previousOwnerPid: ownerAlive ? undefined : recorded.owner.pid };
  }

  const postmaster = await inspectPostmasterPidFile(record.clusterDir, logger);
  if (postmaster === undefined) {
    return undefined;
  }
  const unrecorded: ServerState = {
    port: postmaster.port,
    clusterDir: record.clusterDir,
    postmaster: postmaster.identity,
    owner: postmaster.identity,
    startedAt: new Date().toISOString(),
  };
  if (!(await waitForRecordedServer(paths, unrecorded, record))) {
    return undefined;
  }
  return { state: unrecorded, ownerAlive: false };
}

/**
 * Reads `postmaster.pid` (line 1 the pid, line 4 the port) and returns the postmaster it names
 * when that process is alive. A file naming a zombie or a process that is not postgres is
 * deleted, because PostgreSQL only checks that the pid exists and would not start.
 */
async function inspectPostmasterPidFile(
  clusterDir: string,
  logger: Logger,
): Promise<{ identity: ProcessIdentity; port: number } | undefined> {
  const pidFile = join(clusterDir, 'postmaster.pid');
  const text = await readFile(pidFile, 'utf8').catch(() => undefined);
  if (text === undefined) {
    return undefined;
  }
  const lines = text.split('\n');
  const pid = Number.parseInt(lines[0] ?? '', 10);
  const port = Number.parseInt(lines[3] ?? '', 10);
  if (!isValidPid(pid)) {
    return undefined;
  }

  const identity = identifyProcess(pid);
  const processStat = HAS_PROC ? readProcessStat(pid) : undefined;
  const notPostmaster =
    processStat !== undefined &&
    (processStat.state === 'Z' || processStat.state === 'X' || processStat.command !== 'postgres');
  if (notPostmaster) {
    logger.debug('removing postmaster.pid that names an exited server', { cluster_dir: clusterDir, pid });
    await rm(pidFile, { force: true });
    return undefined;
  }
  if (!isAlive(identity) || !isUsablePort(port)) {
    return undefined;
  }
  return { identity, port };
}

/**
 * Returns true when the server in `state` accepts our login and runs our cluster. A postmaster
 * that is alive but does not accept connections yet (starting, or in recovery) is waited for.
 * Returns false when the postmaster has exited, because the state is then stale.
 */
async function waitForRecordedServer(
  paths: StatePaths,
  state: ServerState,
  record: ClusterRecord,
): Promise<boolean> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const probe = await probeServer(state.port, record.password, record.clusterDir);
    if (probe === 'ours') {
      return true;
    }
    if (!isAlive(state.postmaster)) {
      return false;
    }
    if (probe === 'foreign') {
      throw new Error(
        `The embedded PostgreSQL server (pid ${state.postmaster.pid}) of ${paths.dataDir} is running, but the server on 127.0.0.1:${state.port} runs a different cluster or rejects the recorded password. Stop process ${state.postmaster.pid} and retry; see ${paths.serverLog}.`,
      );
    }
    if (Date.now() > deadline) {
      throw new Error(
        `The embedded PostgreSQL server (pid ${state.postmaster.pid}) of ${paths.dataDir} did not accept connections on 127.0.0.1:${state.port} within ${READY_TIMEOUT_MS / 1000} s. See ${paths.serverLog}; stop that process to start over.`,
      );
    }
    await sleep(POLL_MS * 2);
  }
}
