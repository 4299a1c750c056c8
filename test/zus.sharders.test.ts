import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ConfigError, TransientError } from '../src/core/errors.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { resolveNetwork } from '../src/core/zus/network.js';
import { NotFoundOnChainError, ShardersClient } from '../src/core/zus/sharders.js';
import { STORAGE_SC_ADDRESS } from '../src/core/zus/storage-config.js';
import { generateSelfSignedCertificate } from '../src/sandbox/tls.js';
import { startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const CONFIG_PATH = `/v1/screst/${STORAGE_SC_ADDRESS}/storage-config`;
const FIELDS = { time_unit: '720h0m0s', max_write_price: '0.025' };
const TIMEOUT_MS = 400;

/** Returns a URL on 127.0.0.1 with nothing listening, by starting a server and closing it again. */
async function closedLoopbackUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

function makeClient(network: ZusNetworkFake, consensusShare: number) {
  const logger = createMemoryLogger();
  const client = new ShardersClient({
    sharders: network.sharderUrls,
    timeoutMs: TIMEOUT_MS,
    consensusShare,
    logger,
  });
  return { client, logger };
}

async function expectTransient(promise: Promise<unknown>): Promise<TransientError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof TransientError, `expected TransientError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the read to fail');
}

describe('ShardersClient consensus', () => {
  let network: ZusNetworkFake;

  before(async () => {
    network = await startZusNetwork({ sharders: 3, storageConfigFields: FIELDS, slowMs: 5_000 });
  });
  afterEach(async () => {
    for (let index = 0; index < 3; index += 1) {
      await network.setSharderBehaviour(index, 'ok');
    }
  });
  after(async () => {
    await network.close();
  });

  test('returns the response all sharders agree on', async () => {
    const { client } = makeClient(network, 1);
    const before = network.requests.length;

    const body = await client.getJson(CONFIG_PATH);

    assert.deepEqual(body, { fields: FIELDS });
    const asked = network.requests.slice(before);
    assert.deepEqual(asked.map((item) => item.sharder).sort(), [0, 1, 2]);
    assert.ok(asked.every((item) => item.method === 'GET' && item.path === CONFIG_PATH));
  });

  test('tolerates one sharder down', async () => {
    const { client, logger } = makeClient(network, 2 / 3);
    await network.setSharderBehaviour(1, 'down');

    const body = await client.getJson(CONFIG_PATH);

    assert.deepEqual(body, { fields: FIELDS });
    const warning = logger.lines.find((line) => line.level === 'warn');
    assert.equal(warning?.sharder, network.sharderUrls[1]);
    // A keep-alive socket from the previous test may be reused and then reset instead of refused.
    assert.match(String(warning?.reason), /^connection (refused|reset)$/);
  });

  test('outvotes one disagreeing sharder', async () => {
    const { client, logger } = makeClient(network, 2 / 3);
    // The first read of a client asks sharders 0 and 1 first, so the disagreeing one is among them.
    await network.setSharderBehaviour(0, { body: { fields: { ...FIELDS, max_write_price: '7' } } });

    const body = await client.getJson(CONFIG_PATH);

    assert.deepEqual(body, { fields: FIELDS });
    const warning = logger.lines.find((line) => line.level === 'warn');
    assert.equal(warning?.sharder, network.sharderUrls[0]);
  });

  test('does not wait for a slow sharder once the share agrees', async () => {
    const { client } = makeClient(network, 2 / 3);
    await network.setSharderBehaviour(0, 'slow');
    const started = Date.now();

    const body = await client.getJson(CONFIG_PATH);

    assert.deepEqual(body, { fields: FIELDS });
    assert.ok(Date.now() - started < TIMEOUT_MS, `took ${Date.now() - started} ms`);
  });

  test('times out a slow sharder that the share needs', async () => {
    const { client } = makeClient(network, 1);
    await network.setSharderBehaviour(0, 'slow');

    const error = await expectTransient(client.getJson(CONFIG_PATH));

    assert.match(error.message, new RegExp(`${network.sharderUrls[0]} timed out after ${TIMEOUT_MS} ms`));
  });

  test('compares responses whatever their key order', async () => {
    const { client } = makeClient(network, 1);
    await network.setSharderBehaviour(0, { body: { b: 2, a: { y: [1, { q: 1, p: 2 }], x: 1 } } });
    await network.setSharderBehaviour(1, { body: { a: { x: 1, y: [1, { p: 2, q: 1 }] }, b: 2 } });
    await network.setSharderBehaviour(2, { body: { a: { x: 1, y: [1, { p: 2, q: 1 }] }, b: 2 } });

    const body = await client.getJson(CONFIG_PATH);

    assert.deepEqual(body, { a: { x: 1, y: [1, { p: 2, q: 1 }] }, b: 2 });
  });

  test('compares only the projection given by compareBy', async () => {
    const { client } = makeClient(network, 1);
    for (const [index, round] of [10, 11, 12].entries()) {
      await network.setSharderBehaviour(index, { body: { id: 'a', round } });
    }

    const body = await client.getJson(CONFIG_PATH, {}, { compareBy: (body) => (body as { id: string }).id });

    assert.equal((body as { id: string }).id, 'a');
  });

  test('rounds the required share up', async () => {
    const { client } = makeClient(network, 0.5);
    await network.setSharderBehaviour(0, { body: { fields: { version: 'a' } } });
    await network.setSharderBehaviour(1, { body: { fields: { version: 'b' } } });
    await network.setSharderBehaviour(2, 'http503');

    const error = await expectTransient(client.getJson(CONFIG_PATH));

    assert.equal(client.required, 2);
    assert.match(error.message, /no response from 2 of 3 sharders agrees/);
  });

  test('names every node when no response reaches the share', async () => {
    const { client } = makeClient(network, 1);
    await network.setSharderBehaviour(0, 'http503');
    await network.setSharderBehaviour(1, 'down');
    await network.setSharderBehaviour(2, { body: { fields: { other: 'x'.repeat(5_000) } } });

    const error = await expectTransient(client.getJson(CONFIG_PATH, { round: '5' }));

    assert.equal(error.dependency, 'sharders');
    assert.match(error.message, /3 of 3 sharders/);
    assert.match(error.message, new RegExp(`${CONFIG_PATH}\\?round=5`));
    assert.match(error.message, new RegExp(`${network.sharderUrls[0]} HTTP 503: <html>`));
    // A keep-alive socket from an earlier test may be reused and then reset instead of refused.
    assert.match(error.message, new RegExp(`${network.sharderUrls[1]} connection (refused|reset)`));
    assert.match(
      error.message,
      new RegExp(`${network.sharderUrls[2]} response 1 \\(returned by 1 sharder\\)`),
    );
    assert.ok(!error.message.includes('x'.repeat(201)), 'the message quotes a long body');
  });

  test('quotes at most 200 characters of an error body', async () => {
    const { client } = makeClient(network, 1);
    await network.setSharderBehaviour(0, { status: 502, body: { error: 'y'.repeat(5_000) } });

    const error = await expectTransient(client.getJson(CONFIG_PATH));

    assert.match(error.message, /HTTP 502: \{"error":"y+…/);
    assert.ok(!error.message.includes('y'.repeat(200)), 'the message quotes a long body');
  });

  test('reports an unknown path as a failure, not as not found', async () => {
    const { client } = makeClient(network, 1);

    const error = await expectTransient(client.getJson('/v1/screst/unknown/path'));

    assert.match(error.message, /HTTP 404: 404 page not found/);
  });

  test('raises NotFoundOnChainError when the share agrees on not found', async () => {
    const { client } = makeClient(network, 2 / 3);
    await network.setSharderBehaviour(0, { status: 400, body: { error: 'value not present' } });
    await network.setSharderBehaviour(1, { status: 400, body: { error: 'value not present' } });
    const notFound = (status: number, body: unknown) =>
      status === 400 && (body as { error?: string }).error === 'value not present';

    await assert.rejects(
      client.getJson('/v1/client/get/balance', { client_id: 'abc' }, { notFound }),
      (error: unknown) => {
        assert.ok(error instanceof NotFoundOnChainError);
        assert.equal(error.resource, '/v1/client/get/balance?client_id=abc');
        assert.deepEqual(error.body, { error: 'value not present' });
        return true;
      },
    );
  });
});

// The reads below use a hedge delay of 60 s unless a test sets one, so a read that waits for the
// hedge instead of asking the next sharder at once runs into this timeout and fails.
describe('ShardersClient requests per read', { timeout: 20_000 }, () => {
  let network: ZusNetworkFake;

  before(async () => {
    network = await startZusNetwork({ sharders: 3, storageConfigFields: FIELDS, slowMs: 5_000 });
  });
  afterEach(async () => {
    for (let index = 0; index < 3; index += 1) {
      await network.setSharderBehaviour(index, 'ok');
    }
  });
  after(async () => {
    await network.close();
  });

  /** Reads the storage config with a fresh 2-of-3 client and returns the indexes of the sharders asked. */
  async function readWithTwoOfThree(hedgeDelayMs = 60_000) {
    const client = new ShardersClient({
      sharders: network.sharderUrls,
      timeoutMs: 2_000,
      consensusShare: 2 / 3,
      hedgeDelayMs,
      logger: createMemoryLogger(),
    });
    const before = network.requests.length;
    const body = await client.getJson(CONFIG_PATH);
    return { body, client, asked: network.requests.slice(before).map((item) => item.sharder) };
  }

  test('asks only the required sharders when they agree', async () => {
    const { body, asked } = await readWithTwoOfThree(20);
    // Longer than the hedge delay: a hedge timer left running would ask sharder 2 by now.
    await new Promise((resolve) => setTimeout(resolve, 100));

    assert.deepEqual(body, { fields: FIELDS });
    assert.deepEqual(asked.sort(), [0, 1]);
    assert.equal(network.requests.filter((item) => item.sharder === 2).length, 0);
  });

  test('asks another sharder after a disagreement', async () => {
    await network.setSharderBehaviour(1, { body: { fields: { ...FIELDS, max_write_price: '7' } } });

    const { body, asked } = await readWithTwoOfThree();

    assert.deepEqual(body, { fields: FIELDS });
    assert.deepEqual(asked.sort(), [0, 1, 2]);
  });

  test('asks another sharder after a failure', async () => {
    await network.setSharderBehaviour(0, 'http503');

    const { body, asked } = await readWithTwoOfThree();

    assert.deepEqual(body, { fields: FIELDS });
    assert.deepEqual(asked.sort(), [0, 1, 2]);
  });

  test('asks another sharder after the hedge delay', async () => {
    await network.setSharderBehaviour(0, 'slow');

    const { body, asked } = await readWithTwoOfThree(50);

    assert.deepEqual(body, { fields: FIELDS });
    assert.deepEqual(asked.sort(), [0, 1, 2]);
  });

  test('reports disagreement after asking every sharder', async () => {
    await network.setSharderBehaviour(0, { body: { fields: { version: 'a' } } });
    await network.setSharderBehaviour(1, { body: { fields: { version: 'b' } } });
    await network.setSharderBehaviour(2, { body: { fields: { version: 'c' } } });

    const error = await expectTransient(readWithTwoOfThree());

    assert.equal(error.dependency, 'sharders');
    assert.match(error.message, /no response from 2 of 3 sharders agrees/);
    for (const sharder of network.sharderUrls) {
      assert.ok(error.message.includes(`${sharder} response `), error.message);
    }
  });

  test('spreads successive reads over all sharders', async () => {
    const client = new ShardersClient({
      sharders: network.sharderUrls,
      timeoutMs: 2_000,
      consensusShare: 2 / 3,
      logger: createMemoryLogger(),
    });
    const before = network.requests.length;

    for (let read = 0; read < 3; read += 1) {
      await client.getJson(CONFIG_PATH);
    }

    const asked = network.requests.slice(before).map((item) => item.sharder);
    assert.equal(asked.length, 6);
    for (const sharder of [0, 1, 2]) {
      assert.equal(asked.filter((item) => item === sharder).length, 2, `requests to sharder ${sharder}`);
    }
  });

  test('asks a sharder that failed after the others', async () => {
    const client = new ShardersClient({
      sharders: network.sharderUrls,
      timeoutMs: 2_000,
      consensusShare: 2 / 3,
      logger: createMemoryLogger(),
    });
    await network.setSharderBehaviour(0, 'http503');
    await client.getJson(CONFIG_PATH);
    await network.setSharderBehaviour(0, 'ok');
    const before = network.requests.length;

    // The next reads start at sharders 1 and 2. Without the demotion, the second read requests 2 and 0.
    await client.getJson(CONFIG_PATH);
    await client.getJson(CONFIG_PATH);

    const asked = network.requests.slice(before).map((item) => item.sharder);
    assert.deepEqual(asked.sort(), [1, 1, 2, 2]);
  });

  test('raises NotFoundOnChainError from the first sharders', async () => {
    const notFoundBody = { status: 400, body: { error: 'value not present' } };
    await network.setSharderBehaviour(0, notFoundBody);
    await network.setSharderBehaviour(1, notFoundBody);
    const client = new ShardersClient({
      sharders: network.sharderUrls,
      timeoutMs: 2_000,
      consensusShare: 2 / 3,
      logger: createMemoryLogger(),
    });
    const before = network.requests.length;

    await assert.rejects(
      client.getJson(CONFIG_PATH, {}, { notFound: (status) => status === 400 }),
      NotFoundOnChainError,
    );

    assert.deepEqual(
      network.requests
        .slice(before)
        .map((item) => item.sharder)
        .sort(),
      [0, 1],
    );
  });
});

describe('ShardersClient all sharders down', () => {
  test('names each node in the error', async () => {
    const sharders = [await closedLoopbackUrl(), await closedLoopbackUrl()];
    const client = new ShardersClient({
      sharders,
      timeoutMs: TIMEOUT_MS,
      consensusShare: 0.5,
      logger: createMemoryLogger(),
    });

    const error = await expectTransient(client.getJson(CONFIG_PATH));

    assert.match(error.message, /no response from 1 of 2 sharders agrees/);
    for (const sharder of sharders) {
      assert.ok(error.message.includes(`${sharder} connection refused`), error.message);
    }
  });

  test('rejects an empty list and an invalid share', () => {
    const logger = createMemoryLogger();
    const base = { timeoutMs: 100, logger };
    assert.throws(() => new ShardersClient({ ...base, sharders: [], consensusShare: 1 }), ConfigError);
    assert.throws(
      () => new ShardersClient({ ...base, sharders: ['http://127.0.0.1:1'], consensusShare: 0 }),
      ConfigError,
    );
    assert.throws(
      () => new ShardersClient({ ...base, sharders: ['http://127.0.0.1:1'], consensusShare: 1.5 }),
      ConfigError,
    );
  });
});

describe('resolveNetwork', () => {
  let network: ZusNetworkFake;
  const minerUrls = ['http://127.0.0.1:7071', 'http://127.0.0.1:7072/'];

  before(async () => {
    network = await startZusNetwork({ sharders: 2, minerUrls });
  });
  after(async () => {
    await network.close();
  });

  test('discovers nodes from the block worker', async () => {
    const nodes = await resolveNetwork({ blockWorker: `${network.blockWorkerUrl}/`, timeoutMs: TIMEOUT_MS });

    assert.deepEqual(nodes.sharders, network.sharderUrls);
    assert.deepEqual(nodes.miners, ['http://127.0.0.1:7071', 'http://127.0.0.1:7072']);
    const request = network.requests.at(-1);
    assert.equal(request?.node, 'block-worker');
    assert.equal(request?.path, '/dns/network');
  });

  test('prefers explicit lists over the block worker', async () => {
    const before = network.requests.length;

    const nodes = await resolveNetwork({
      sharders: ['http://127.0.0.1:9001/'],
      miners: ['https://127.0.0.1:9002'],
      blockWorker: network.blockWorkerUrl,
      timeoutMs: TIMEOUT_MS,
    });

    assert.deepEqual(nodes, { sharders: ['http://127.0.0.1:9001'], miners: ['https://127.0.0.1:9002'] });
    assert.equal(network.requests.length, before, 'the block worker was asked');
  });

  test('fills only the missing list from the block worker', async () => {
    const nodes = await resolveNetwork({
      sharders: ['http://127.0.0.1:9001'],
      blockWorker: network.blockWorkerUrl,
      timeoutMs: TIMEOUT_MS,
    });

    assert.deepEqual(nodes.sharders, ['http://127.0.0.1:9001']);
    assert.equal(nodes.miners.length, 2);
  });

  test('skips discovery for an empty miner list', async () => {
    const before = network.requests.length;

    const nodes = await resolveNetwork({
      sharders: ['http://127.0.0.1:9001'],
      miners: [],
      blockWorker: network.blockWorkerUrl,
      timeoutMs: TIMEOUT_MS,
    });

    assert.deepEqual(nodes, { sharders: ['http://127.0.0.1:9001'], miners: [] });
    assert.equal(network.requests.length, before, 'the block worker was asked');
  });

  test('discovers sharders when the list is empty', async () => {
    const nodes = await resolveNetwork({
      sharders: [],
      miners: [],
      blockWorker: network.blockWorkerUrl,
      timeoutMs: TIMEOUT_MS,
    });

    assert.deepEqual(nodes.sharders, network.sharderUrls);
    assert.deepEqual(nodes.miners, []);
  });

  test('rejects invalid explicit URLs', async () => {
    await assert.rejects(
      resolveNetwork({ sharders: ['ftp://127.0.0.1:1'], timeoutMs: TIMEOUT_MS }),
      ConfigError,
    );
    await assert.rejects(resolveNetwork({ sharders: ['not a url'], timeoutMs: TIMEOUT_MS }), ConfigError);
  });

  test('requires sharders or a block worker', async () => {
    await assert.rejects(resolveNetwork({ timeoutMs: TIMEOUT_MS }), ConfigError);
    assert.deepEqual(await resolveNetwork({ sharders: ['http://127.0.0.1:9001'], timeoutMs: TIMEOUT_MS }), {
      sharders: ['http://127.0.0.1:9001'],
      miners: [],
    });
  });

  test('reports an unreachable block worker as transient', async () => {
    const blockWorker = await closedLoopbackUrl();

    const error = await expectTransient(resolveNetwork({ blockWorker, timeoutMs: TIMEOUT_MS }));

    assert.equal(error.dependency, 'block_worker');
    assert.match(error.message, /connection refused/);
  });

  test('reports a block worker response of the wrong shape', async () => {
    const error = await expectTransient(
      resolveNetwork({ blockWorker: network.sharderUrls[0], timeoutMs: TIMEOUT_MS }),
    );

    assert.match(error.message, /returned HTTP 404/);
  });
});

test('sharders answering HTML or an empty body are named', async () => {
  const bodies = ['<html><body>502 Bad Gateway</body></html>', ''];
  const servers = await Promise.all(
    bodies.map(
      (body) =>
        new Promise<ReturnType<typeof createServer>>((resolve) => {
          const server = createServer((_request, response) => {
            response.writeHead(200, { 'content-type': 'text/html' });
            response.end(body);
          });
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  try {
    const urls = servers.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const client = new ShardersClient({
      sharders: urls,
      timeoutMs: 2_000,
      consensusShare: 1,
      logger: createMemoryLogger(),
    });
    await assert.rejects(client.getJson('/v1/current-round'), (error: Error) => {
      assert.ok(error instanceof TransientError);
      assert.match(error.message, new RegExp(`${urls[0]} .*invalid JSON: <html>`));
      assert.match(error.message, new RegExp(`${urls[1]} .*invalid JSON`));
      return true;
    });
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
});

test('sharder URL with a path keeps the path', async () => {
  const paths: string[] = [];
  const server = await new Promise<ReturnType<typeof createServer>>((resolve) => {
    const created = createServer((request, response) => {
      paths.push(String(request.url));
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{"round":7}');
    });
    created.listen(0, '127.0.0.1', () => resolve(created));
  });
  try {
    const port = (server.address() as AddressInfo).port;
    const client = new ShardersClient({
      sharders: [`http://127.0.0.1:${port}/sharder01/`],
      timeoutMs: 2_000,
      consensusShare: 1,
      logger: createMemoryLogger(),
    });

    const body = await client.getJson('/v1/current-round', { a: 'b c' });

    assert.deepEqual(body, { round: 7 });
    assert.deepEqual(paths, ['/sharder01/v1/current-round?a=b+c']);
    client.close();
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

describe('sharders over https', () => {
  // Node reads NODE_EXTRA_CA_CERTS at start, so the client runs in a child process that trusts
  // only the throw-away certificate of the servers this test starts, with verification on.
  const childScript = `
    import { createMemoryLogger } from './src/core/output/logger.js';
    import { ShardersClient } from './src/core/zus/sharders.js';
    const client = new ShardersClient({
      sharders: JSON.parse(process.env.SHARDERS), timeoutMs: 5000, consensusShare: 0.51,
      logger: createMemoryLogger(),
    });
    try {
      const first = await client.getJson('/v1/screst/example/config', { key: 'a b' });
      const second = await client.getJson('/v1/screst/example/config', { key: 'a b' });
      console.log(JSON.stringify({ first, second }));
    } catch (error) {
      console.log(JSON.stringify({ error: String(error) }));
    } finally {
      client.close();
    }`;
  let folder: string;
  let certificatePath: string;
  const servers: HttpsServer[] = [];
  const urls: string[] = [];
  const requests: Array<{ sharder: number; url: string | undefined; socket: number }> = [];

  before(async () => {
    const { key, certificate } = await generateSelfSignedCertificate();
    folder = mkdtempSync(join(tmpdir(), 'zbox-sharders-tls-'));
    certificatePath = join(folder, 'certificate.pem');
    writeFileSync(certificatePath, certificate);
    for (let index = 0; index < 3; index += 1) {
      let sockets = 0;
      const server = createHttpsServer({ key, cert: certificate }, (request, response) => {
        const socket = request.socket as { sharderSocketId?: number };
        socket.sharderSocketId ??= ++sockets;
        requests.push({ sharder: index, url: request.url, socket: socket.sharderSocketId });
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify(FIELDS));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      servers.push(server);
      urls.push(`https://127.0.0.1:${(server.address() as AddressInfo).port}/base/`);
    }
  });

  after(async () => {
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    rmSync(folder, { recursive: true, force: true });
  });

  // The servers run in this process, so waiting for the child must not block its event loop.
  async function runChild(trust: boolean): Promise<{ first?: unknown; second?: unknown; error?: string }> {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', childScript],
      {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          SHARDERS: JSON.stringify(urls),
          ...(trust ? { NODE_EXTRA_CA_CERTS: certificatePath } : { NODE_EXTRA_CA_CERTS: '' }),
        },
        encoding: 'utf8',
      },
    );
    return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}');
  }

  test('reads agree over trusted TLS', async () => {
    requests.length = 0;
    const result = await runChild(true);
    assert.deepEqual(result, { first: FIELDS, second: FIELDS });
    assert.equal(requests.length, 4, 'two requests per read at a share of 0.51 of 3 sharders');
    for (const request of requests) {
      assert.equal(request.url, '/base/v1/screst/example/config?key=a+b', 'the base path and query are kept');
    }
    const ofSecondSharder = requests.filter((request) => request.sharder === 1);
    assert.equal(ofSecondSharder.length, 2, 'both reads ask the sharder between the two starts');
    assert.deepEqual(
      ofSecondSharder.map((request) => request.socket),
      [1, 1],
      'the second read reuses the kept-alive TLS connection',
    );
  });

  test('untrusted certificate fails the read', async () => {
    requests.length = 0;
    const result = await runChild(false);
    assert.match(String(result.error), /self-signed certificate/);
    assert.equal(requests.length, 0, 'no request passed the TLS handshake');
  });
});
