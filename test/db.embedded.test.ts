import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { openEmbeddedDatabase } from '../src/core/db/embedded.js';
import { createMemoryLogger } from '../src/core/output/logger.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const TEST_TIMEOUT_MS = 60_000;

const createdDataDirs: string[] = [];
const userProcesses = new Set<ChildProcessWithoutNullStreams>();

after(async () => {
  for (const child of userProcesses) {
    child.kill('SIGKILL');
  }
  // Every folder is attempted even when one fails, so a failed test leaves nothing behind.
  const failures: string[] = [];
  for (const dataDir of createdDataDirs) {
    try {
      await removeDataDir(dataDir);
    } catch (error) {
      failures.push(`${dataDir}: ${(error as Error).message}`);
    }
  }
  assert.deepEqual(failures, [], 'temporary data folders removed');
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/**
 * Creates a temporary data folder with the given mode. The system temporary folder is searchable
 * by every user, so with 0o755 the server's OS user (postgres, when tests run as root) can reach it.
 */
async function makeDataDir(mode: number): Promise<string> {
  const dataDir = await mkdtemp(join(tmpdir(), 'zbox-embedded-test-'));
  await chmod(dataDir, mode);
  createdDataDirs.push(dataDir);
  return dataDir;
}

interface RecordedIdentity {
  pid: number;
  start: string | null;
}

interface RecordedServer {
  port: number;
  clusterDir: string;
  postmaster: RecordedIdentity;
  owner: RecordedIdentity;
}

interface RecordedCluster {
  runtimeDir: string;
  clusterDir: string;
  password: string;
}

function serverStatePath(dataDir: string): string {
  return join(dataDir, 'postgres', 'server.json');
}

async function readServerState(dataDir: string): Promise<RecordedServer> {
  return JSON.parse(await readFile(serverStatePath(dataDir), 'utf8')) as RecordedServer;
}

async function readClusterRecord(dataDir: string): Promise<RecordedCluster> {
  return JSON.parse(await readFile(join(dataDir, 'postgres', 'cluster.json'), 'utf8')) as RecordedCluster;
}

/** True while the process exists and is not a zombie (exited but not reaped yet). */
function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return existsSync('/proc/self/stat') === false;
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

async function waitUntilExited(pid: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (isProcessAlive(pid)) {
    if (Date.now() > deadline) {
      throw new Error(`process ${pid} still runs after ${timeoutMs} ms`);
    }
    await sleep(50);
  }
}

async function queryRow(url: string, text: string): Promise<Record<string, unknown>> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const result = await client.query(text);
    return result.rows[0] ?? {};
  } finally {
    await client.end();
  }
}

/** Stops a server a test left running (the tests started it) and deletes the folder and any outside cluster folder. */
async function removeDataDir(dataDir: string): Promise<void> {
  if (existsSync(serverStatePath(dataDir))) {
    const state = await readServerState(dataDir);
    if (isProcessAlive(state.postmaster.pid)) {
      process.kill(state.postmaster.pid, 'SIGINT');
      await waitUntilExited(state.postmaster.pid);
    }
  }
  if (existsSync(join(dataDir, 'postgres', 'cluster.json'))) {
    const record = await readClusterRecord(dataDir);
    if (!record.runtimeDir.startsWith(dataDir) && basename(record.runtimeDir).startsWith('zbox-postgres-')) {
      await rm(record.runtimeDir, { recursive: true, force: true });
    }
  }
  await rm(dataDir, { recursive: true, force: true, maxRetries: 3 });
}

/** Runs a process to completion and returns its pid, which then names no live process. */
async function exitedPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await once(child, 'exit');
  assert.ok(child.pid !== undefined);
  return child.pid;
}

/**
 * Script of a second OS process on the same data folder, standing in for another CLI. It opens
 * the embedded database, prints whether it started the server, then reads commands from stdin:
 * `query` runs SELECT 1 and `release` releases the database and exits.
 */
const USER_PROCESS_SCRIPT = `
const { openEmbeddedDatabase } = await import(process.env.ZBOX_TEST_EMBEDDED_MODULE);
const { createMemoryLogger } = await import(process.env.ZBOX_TEST_LOGGER_MODULE);
const { default: pg } = await import('pg');
const { createInterface } = await import('node:readline');
const send = (message) => process.stdout.write(JSON.stringify(message) + '\\n');
const db = await openEmbeddedDatabase({ dataDir: process.env.ZBOX_TEST_DATA_DIR, logger: createMemoryLogger() });
send({ event: 'opened', started: db.started });
for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'query') {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const result = await client.query('SELECT 1 AS one');
    await client.end();
    send({ event: 'queried', one: result.rows[0].one });
  } else if (line === 'release') {
    await db.release();
    send({ event: 'released' });
    process.exit(0);
  }
}
`;

interface UserProcess {
  child: ChildProcessWithoutNullStreams;
  pid: number;
  started: boolean;
  query(): Promise<number>;
  release(): Promise<void>;
}

async function startUserProcess(dataDir: string): Promise<UserProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', USER_PROCESS_SCRIPT],
    {
      cwd: repoRoot,
      env: {
        ...process.env,
        ZBOX_TEST_EMBEDDED_MODULE: pathToFileURL(join(repoRoot, 'src/core/db/embedded.ts')).href,
        ZBOX_TEST_LOGGER_MODULE: pathToFileURL(join(repoRoot, 'src/core/output/logger.ts')).href,
        ZBOX_TEST_DATA_DIR: dataDir,
      },
    },
  );
  userProcesses.add(child);
  child.once('exit', () => userProcesses.delete(child));

  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const messages: Array<Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    messages.push(JSON.parse(line) as Record<string, unknown>);
    for (const wake of waiters.splice(0)) {
      wake();
    }
  });
  const exited = once(child, 'exit');

  const nextMessage = async (event: string): Promise<Record<string, unknown>> => {
    for (;;) {
      const index = messages.findIndex((message) => message.event === event);
      if (index >= 0) {
        return messages.splice(index, 1)[0] ?? {};
      }
      const woken = new Promise<void>((resolve) => waiters.push(resolve));
      const outcome = await Promise.race([woken.then(() => 'message'), exited.then(() => 'exit')]);
      if (outcome === 'exit' && !messages.some((message) => message.event === event)) {
        throw new Error(`user process ${child.pid} exited before sending ${event}: ${stderr}`);
      }
    }
  };

  const opened = await nextMessage('opened');
  assert.ok(child.pid !== undefined);
  return {
    child,
    pid: child.pid,
    started: opened.started === true,
    query: async () => {
      child.stdin.write('query\n');
      return Number((await nextMessage('queried')).one);
    },
    release: async () => {
      child.stdin.write('release\n');
      await nextMessage('released');
      await exited;
    },
  };
}

async function killUserProcess(user: UserProcess): Promise<void> {
  const exited = once(user.child, 'exit');
  user.child.kill('SIGKILL');
  await exited;
}

// ---------------------------------------------------------------------------------------------
// Tests. The first six share one data folder and run in order.
// ---------------------------------------------------------------------------------------------

let sharedDataDir = '';

test('first open initialises and serves queries', { timeout: TEST_TIMEOUT_MS }, async () => {
  sharedDataDir = await makeDataDir(0o755);
  const logger = createMemoryLogger();
  const db = await openEmbeddedDatabase({ dataDir: sharedDataDir, logger });
  const url = new URL(db.url);
  let state: RecordedServer;
  try {
    assert.equal(db.started, true);
    assert.equal(url.hostname, '127.0.0.1');
    assert.equal(url.pathname, '/zbox');
    assert.notEqual(url.port, '5432');

    const row = await queryRow(
      db.url,
      "SELECT 1 AS one, current_database() AS database, current_setting('listen_addresses') AS listen, current_setting('port') AS port",
    );
    assert.equal(row.one, 1);
    assert.equal(row.database, 'zbox');
    assert.equal(row.listen, '127.0.0.1');
    assert.equal(row.port, url.port);

    state = await readServerState(sharedDataDir);
    assert.equal(state.port, Number(url.port), 'port recorded in server.json');
    assert.equal(state.owner.pid, process.pid);
    const record = await readClusterRecord(sharedDataDir);
    assert.equal(
      record.clusterDir,
      join(sharedDataDir, 'postgres', 'cluster'),
      'cluster inside the data folder',
    );

    const initialising = logger.lines.find((line) => line.msg === 'embedded database initialising');
    assert.equal(initialising?.level, 'info');
    assert.equal(initialising?.data_dir, sharedDataDir);
    const started = logger.lines.find((line) => line.msg === 'embedded database started');
    assert.equal(started?.level, 'info');
    assert.equal(started?.data_dir, sharedDataDir);
    assert.equal(started?.port, state.port);
    assert.equal(
      JSON.stringify(logger.lines).includes(decodeURIComponent(url.password)),
      false,
      'password logged',
    );

    await queryRow(db.url, "CREATE TABLE kept AS SELECT 'written before restart' AS note");
  } finally {
    await db.release();
  }

  assert.equal(isProcessAlive(state.postmaster.pid), false, 'server stopped by release');
  assert.equal(existsSync(serverStatePath(sharedDataDir)), false, 'server.json removed');
  await assert.rejects(queryRow(db.url, 'SELECT 1'), /ECONNREFUSED/);
});

test('reopen reuses the cluster without initdb', { timeout: TEST_TIMEOUT_MS }, async () => {
  const logger = createMemoryLogger();
  const db = await openEmbeddedDatabase({ dataDir: sharedDataDir, logger });
  try {
    assert.equal(db.started, true);
    const messages = logger.lines.map((line) => line.msg);
    assert.equal(messages.includes('embedded database initialising'), false);
    assert.ok(messages.includes('embedded database started'));
    const row = await queryRow(db.url, 'SELECT note FROM kept');
    assert.equal(row.note, 'written before restart');
  } finally {
    await db.release();
  }
  await db.release();
});

test('second process shares the server and delays stop', { timeout: TEST_TIMEOUT_MS }, async () => {
  const db = await openEmbeddedDatabase({ dataDir: sharedDataDir, logger: createMemoryLogger() });
  assert.equal(db.started, true);
  const postmasterPid = (await readServerState(sharedDataDir)).postmaster.pid;

  const user = await startUserProcess(sharedDataDir);
  assert.equal(user.started, false, 'second process reuses the running server');
  assert.equal(await user.query(), 1);

  let released = false;
  const releasing = db.release().then(() => {
    released = true;
  });
  await sleep(1_500);
  assert.equal(released, false, 'starter waits while the other process uses the server');
  assert.equal(await user.query(), 1, 'other process still served during the wait');
  assert.equal(isProcessAlive(postmasterPid), true);

  await user.release();
  await releasing;
  assert.equal(isProcessAlive(postmasterPid), false, 'server stopped after the other process released');
});

test('starter killed with SIGKILL is adopted', { timeout: TEST_TIMEOUT_MS }, async () => {
  const starter = await startUserProcess(sharedDataDir);
  assert.equal(starter.started, true);
  const before = await readServerState(sharedDataDir);
  assert.equal(before.owner.pid, starter.pid);
  await killUserProcess(starter);

  const logger = createMemoryLogger();
  const db = await openEmbeddedDatabase({ dataDir: sharedDataDir, logger });
  try {
    assert.equal(db.started, false, 'running server reused, not restarted');
    assert.equal((await queryRow(db.url, 'SELECT 1 AS one')).one, 1);
    const afterAdoption = await readServerState(sharedDataDir);
    assert.equal(afterAdoption.postmaster.pid, before.postmaster.pid);
    assert.equal(afterAdoption.owner.pid, process.pid, 'this process now owns the server');
    const adopted = logger.lines.find(
      (line) => line.msg === 'embedded database adopted from a process that exited',
    );
    assert.equal(adopted?.previous_owner_pid, starter.pid);
  } finally {
    await db.release();
  }
  assert.equal(isProcessAlive(before.postmaster.pid), false, 'adopter stopped the server');
});

test('crash of starter and server leaves a recoverable folder', { timeout: TEST_TIMEOUT_MS }, async () => {
  const starter = await startUserProcess(sharedDataDir);
  assert.equal(starter.started, true);
  const crashed = await readServerState(sharedDataDir);
  await killUserProcess(starter);
  // This test started that server through the killed process, so it may kill it too.
  process.kill(crashed.postmaster.pid, 'SIGKILL');
  await waitUntilExited(crashed.postmaster.pid);
  const lockPath = join(sharedDataDir, 'postgres', 'start.lock');
  await writeFile(lockPath, JSON.stringify({ pid: starter.pid, start: null, token: 'left by a crash' }));

  const db = await openEmbeddedDatabase({ dataDir: sharedDataDir, logger: createMemoryLogger() });
  try {
    assert.equal(db.started, true, 'stale state detected and a new server started');
    assert.equal((await queryRow(db.url, 'SELECT note FROM kept')).note, 'written before restart');
    const restarted = await readServerState(sharedDataDir);
    assert.notEqual(restarted.postmaster.pid, crashed.postmaster.pid);
    assert.equal(existsSync(lockPath), false, 'stale lock removed');
  } finally {
    await db.release();
  }
});

test('stale state naming a foreign port is not trusted', { timeout: TEST_TIMEOUT_MS }, async () => {
  const impostor = createServer((socket) => socket.destroy());
  impostor.listen(0, '127.0.0.1');
  await once(impostor, 'listening');
  const address = impostor.address();
  assert.ok(address !== null && typeof address === 'object', 'impostor listens on a TCP port');
  const deadPid = await exitedPid();
  const record = await readClusterRecord(sharedDataDir);
  await writeFile(
    serverStatePath(sharedDataDir),
    JSON.stringify({
      port: address.port,
      clusterDir: record.clusterDir,
      postmaster: { pid: deadPid, start: null },
      owner: { pid: deadPid, start: null },
      startedAt: new Date().toISOString(),
    }),
  );

  try {
    const db = await openEmbeddedDatabase({ dataDir: sharedDataDir, logger: createMemoryLogger() });
    try {
      assert.equal(db.started, true);
      assert.notEqual(Number(new URL(db.url).port), address.port);
      assert.equal((await queryRow(db.url, 'SELECT 1 AS one')).one, 1);
    } finally {
      await db.release();
    }
  } finally {
    impostor.close();
  }
});

test('concurrent first opens start one server', { timeout: TEST_TIMEOUT_MS }, async () => {
  const dataDir = await makeDataDir(0o755);
  const users = await Promise.all([startUserProcess(dataDir), startUserProcess(dataDir)]);
  const startedCount = users.filter((user) => user.started).length;
  assert.equal(startedCount, 1, 'exactly one process started the server');
  const postmasterPid = (await readServerState(dataDir)).postmaster.pid;

  for (const user of users) {
    assert.equal(await user.query(), 1);
  }
  await Promise.all(users.map((user) => user.release()));
  assert.equal(isProcessAlive(postmasterPid), false, 'server stopped once both released');
});

test('unreachable data folder keeps the cluster outside', {
  timeout: TEST_TIMEOUT_MS,
  skip: process.getuid?.() === 0 ? false : 'only root runs the server as another OS user',
}, async () => {
  // Mode 0700 and owned by root: the postgres OS user cannot search it, as with a clone under /root.
  const dataDir = await makeDataDir(0o700);
  const logger = createMemoryLogger();
  const db = await openEmbeddedDatabase({ dataDir, logger });
  try {
    assert.equal(db.started, true);
    assert.equal((await queryRow(db.url, 'SELECT 1 AS one')).one, 1);
    const record = await readClusterRecord(dataDir);
    assert.equal(record.clusterDir.startsWith(dataDir), false, 'cluster placed outside the data folder');
    assert.ok(basename(record.runtimeDir).startsWith('zbox-postgres-'));
    const moved = logger.lines.find((line) => line.msg.startsWith('embedded database cluster kept outside'));
    assert.equal(moved?.data_dir, dataDir);
  } finally {
    await db.release();
  }

  const reopened = await openEmbeddedDatabase({ dataDir, logger: createMemoryLogger() });
  try {
    assert.equal((await queryRow(reopened.url, 'SELECT 1 AS one')).one, 1, 'recorded outside cluster reused');
  } finally {
    await reopened.release();
  }
});

test('invalid database name is rejected', async () => {
  const dataDir = await makeDataDir(0o755);
  await assert.rejects(
    openEmbeddedDatabase({ dataDir, logger: createMemoryLogger(), database: 'x'.repeat(64) }),
    /Invalid embedded database name/,
  );
});
