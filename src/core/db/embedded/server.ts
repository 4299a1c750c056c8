/** Starting the postmaster, waiting until it is ready, and stopping it. */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { open, readFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../output/logger.js';
import { type Binaries, serverEnvironment } from './binaries.js';
import { probeServer } from './connection.js';
import { POLL_MS, READY_TIMEOUT_MS, RESERVED_PORT } from './constants.js';
import { errorCode, errorText } from './helpers.js';
import { identifyProcess, isAlive, type ProcessIdentity } from './identity.js';
import type { ServerUser } from './placement.js';
import { type ClusterRecord, type ServerState, type StatePaths, writeJsonFile } from './state.js';

const STOP_TIMEOUT_MS = 60_000;
const START_ATTEMPTS = 5;

/**
 * Starts the postmaster on a free loopback port and waits until it accepts connections. The
 * server runs in its own session (detached) and logs to `server.log`. So a Ctrl-C in the
 * starter's terminal, or the starter's crash, does not stop it while other processes use it.
 */
export async function startServer(
  paths: StatePaths,
  record: ClusterRecord,
  binaries: Binaries,
  runAs: ServerUser | undefined,
  self: ProcessIdentity,
  logger: Logger,
): Promise<ServerState> {
  let lastFailure = '';
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt += 1) {
    const port = await pickFreePort();
    const logOffset = await fileSize(paths.serverLog);
    const child = await spawnPostmaster(paths, record, binaries, runAs, port);
    if (child.pid === undefined) {
      throw new Error(`Could not start ${binaries.postgres}: no process id was assigned.`);
    }

    const state: ServerState = {
      port,
      clusterDir: record.clusterDir,
      postmaster: identifyProcess(child.pid),
      owner: self,
      startedAt: new Date().toISOString(),
    };
    // Recorded before the server is ready, so a process that crashes now leaves a pointer to it.
    await writeJsonFile(paths.serverState, state, 0o644);

    const outcome = await waitUntilReady(child, port, record);
    if (outcome === 'ready') {
      logger.info('embedded database started', { data_dir: paths.dataDir, port });
      return state;
    }

    await rm(paths.serverState, { force: true });
    const logTail = await readLogTail(paths.serverLog, logOffset);
    if (outcome === 'timeout') {
      await stopPostmaster(state.postmaster);
      throw new Error(
        `The embedded PostgreSQL server did not accept connections on 127.0.0.1:${port} within ${READY_TIMEOUT_MS / 1000} s (cluster ${record.clusterDir}). Server log ${paths.serverLog}:\n${logTail}`,
      );
    }

    lastFailure = logTail;
    if (/could not bind|address already in use/i.test(logTail)) {
      logger.debug('embedded database port was taken; trying another', { port });
      continue;
    }
    if (/pre-existing shared memory block/i.test(logTail)) {
      // Processes of a server that was killed still hold its shared memory; they exit shortly.
      logger.debug('embedded database waiting for processes of a previous server to exit', { port });
      await sleep(1_000);
      continue;
    }
    break;
  }
  throw new Error(
    `The embedded PostgreSQL server exited during start (cluster ${record.clusterDir}). Server log ${paths.serverLog}:\n${lastFailure}`,
  );
}

async function spawnPostmaster(
  paths: StatePaths,
  record: ClusterRecord,
  binaries: Binaries,
  runAs: ServerUser | undefined,
  port: number,
): Promise<ChildProcess> {
  const log = await open(paths.serverLog, 'a', 0o600);
  try {
    const child = spawn(
      binaries.postgres,
      [
        '-D',
        record.clusterDir,
        '-c',
        `port=${port}`,
        '-c',
        'listen_addresses=127.0.0.1',
        // No Unix socket: TCP on loopback is the only way in, and no shared socket folder is needed.
        '-c',
        'unix_socket_directories=',
      ],
      {
        ...(runAs ?? {}),
        cwd: record.runtimeDir,
        detached: true,
        env: serverEnvironment(),
        stdio: ['ignore', log.fd, log.fd],
      },
    );
    await once(child, 'spawn');
    child.unref();
    return child;
  } catch (error) {
    throw new Error(`Could not start ${binaries.postgres}: ${errorText(error)}.`, { cause: error });
  } finally {
    await log.close();
  }
}

async function waitUntilReady(
  child: ChildProcess,
  port: number,
  record: ClusterRecord,
): Promise<'ready' | 'exited' | 'timeout'> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      return 'exited';
    }
    if ((await probeServer(port, record.password, record.clusterDir)) === 'ours') {
      return 'ready';
    }
    await sleep(POLL_MS);
  }
  return 'timeout';
}

/**
 * Sends SIGINT (PostgreSQL's fast shutdown) and waits for the postmaster to exit. After
 * STOP_TIMEOUT_MS it sends SIGQUIT (immediate shutdown) and waits 10 s more.
 */
export async function stopPostmaster(postmaster: ProcessIdentity): Promise<void> {
  const steps: Array<{ signal: NodeJS.Signals; waitMs: number }> = [
    { signal: 'SIGINT', waitMs: STOP_TIMEOUT_MS },
    { signal: 'SIGQUIT', waitMs: 10_000 },
  ];
  for (const step of steps) {
    if (!isAlive(postmaster)) {
      return;
    }
    try {
      process.kill(postmaster.pid, step.signal);
    } catch (error) {
      if (errorCode(error) === 'ESRCH') {
        return;
      }
      throw error;
    }
    const deadline = Date.now() + step.waitMs;
    while (isAlive(postmaster) && Date.now() < deadline) {
      await sleep(POLL_MS);
    }
  }
  if (isAlive(postmaster)) {
    throw new Error(
      `The embedded PostgreSQL server (pid ${postmaster.pid}) did not stop after SIGINT and SIGQUIT.`,
    );
  }
}

async function pickFreePort(): Promise<number> {
  for (let attempt = 0; attempt < 5; attempt += 1) {
    const port = await new Promise<number>((resolvePort, reject) => {
      const server = createServer();
      server.unref();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        const chosen = typeof address === 'object' && address !== null ? address.port : 0;
        server.close(() => resolvePort(chosen));
      });
    });
    if (port > 0 && port !== RESERVED_PORT) {
      return port;
    }
  }
  throw new Error('Could not find a free TCP port on 127.0.0.1 for the embedded PostgreSQL server.');
}

async function fileSize(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

/** Reads the server log written after byte `offset`, at most its last 4,000 characters. */
async function readLogTail(file: string, offset: number): Promise<string> {
  const bytes = await readFile(file).catch(() => Buffer.alloc(0));
  const added = bytes.subarray(offset).toString('utf8').trim();
  return added.length > 4_000 ? added.slice(-4_000) : added;
}
