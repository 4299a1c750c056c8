import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { createServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { inspect, promisify } from 'node:util';
import { getApps } from 'firebase-admin/app';
import { ConfigError } from '../src/core/errors.js';
import { createPushSender, type PushMessage, type PushSender } from '../src/core/notify/fcm.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import {
  createFcmFake,
  FAKE_ACCESS_TOKEN,
  type FakeCredential,
  type FakeFcmAgent,
  FCM_HOST,
  type FcmFake,
  fakeCredential,
  fakeHttpAgent,
} from '../src/sandbox/fcm.js';

const CONCURRENCY = 16;
const MESSAGE: PushMessage = {
  title: 'Tokens received',
  body: '1.5 ZCN arrived in your wallet',
  data: { kind: 'funding', task_id: '42' },
};

/** Every registration token a test created, to check that none reaches a log line in full. */
const issuedTokens: string[] = [];

/** Creates a token shaped like an FCM registration token (instance id, colon, APA91b...). */
function makeToken(label: string): string {
  const token = `${label}:APA91b${randomBytes(105).toString('base64url')}`;
  issuedTokens.push(token);
  return token;
}

/**
 * Records every socket connection attempt and HTTP request of this process. It also replaces the
 * HTTPS global agent with one that rejects every connection, so a request that bypassed the fake's
 * agent fails before DNS or any socket instead of reaching a real host.
 */
function installNetworkGuard() {
  const attempts: string[] = [];
  const requestHosts: string[] = [];
  const globalRejections: string[] = [];

  const onSocket = (message: unknown) => {
    const socket = (message as { socket: Socket }).socket;
    socket.on('connectionAttempt', (ip: string, port: number) => attempts.push(`${ip}:${port}`));
  };
  const onRequest = (message: unknown) => {
    requestHosts.push((message as { request: ClientRequest }).request.host);
  };
  // fetch() (undici) does not use node:https, so its requests are recorded by origin.
  const onFetch = (message: unknown) => {
    requestHosts.push(new URL((message as { request: { origin: string } }).request.origin).hostname);
  };
  subscribe('net.client.socket', onSocket);
  subscribe('http.client.request.start', onRequest);
  subscribe('undici:request:create', onFetch);

  class RejectingAgent extends https.Agent {
    override createConnection(
      options: https.RequestOptions,
      callback?: (error: Error | null, stream: Duplex) => void,
    ): Duplex | null | undefined {
      globalRejections.push(`${options.hostname ?? options.host}:${options.port}`);
      const error = new Error('the test network guard rejected a request that bypassed the fake FCM agent');
      process.nextTick(() => callback?.(error, undefined as unknown as Duplex));
      return undefined;
    }
  }
  const originalAgent = https.globalAgent;
  Reflect.set(https, 'globalAgent', new RejectingAgent());
  // node:https reads `globalAgent` from its exports on every request, so the swap takes effect.
  assert.ok(https.globalAgent instanceof RejectingAgent, 'the HTTPS global agent could not be replaced');

  return {
    attempts,
    requestHosts,
    globalRejections,
    remove() {
      Reflect.set(https, 'globalAgent', originalAgent);
      unsubscribe('net.client.socket', onSocket);
      unsubscribe('http.client.request.start', onRequest);
      unsubscribe('undici:request:create', onFetch);
    },
  };
}

/** Sends one HTTPS request and returns the error it fails with. */
function requestError(options: https.RequestOptions): Promise<Error> {
  return new Promise((resolve) => {
    const request = https.request(options, (response) => {
      response.resume();
      resolve(new Error(`the request was answered with ${response.statusCode}`));
    });
    request.on('error', resolve);
    request.end();
  });
}

/** Statuses of the requests the fake received for one token, in order. */
function statusesFor(fake: FcmFake, token: string): number[] {
  return fake.requests.filter((request) => request.token === token).map((request) => request.status);
}

/** Builds a service-account key file around a key generated now. It is never sent anywhere. */
function serviceAccountJson(projectId: string): string {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return JSON.stringify({
    type: 'service_account',
    project_id: projectId,
    private_key_id: randomBytes(20).toString('hex'),
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: `workers@${projectId}.iam.gserviceaccount.com`,
    client_id: '100000000000000000000',
  });
}

describe('FCM push sender with firebase-admin', () => {
  const logger = createMemoryLogger();
  let guard: ReturnType<typeof installNetworkGuard>;
  let fake: FcmFake;
  let agent: FakeFcmAgent;
  let credential: FakeCredential;
  let sender: PushSender;
  /** Targets the guard test aimed at its own loopback server on purpose. */
  const probeTargets: string[] = [];

  before(async () => {
    guard = installNetworkGuard();
    fake = await createFcmFake();
    agent = fakeHttpAgent(fake);
    credential = fakeCredential();
    sender = await createPushSender({
      credential,
      projectId: fake.projectId,
      httpAgent: agent,
      concurrency: CONCURRENCY,
      logger,
    });
  });

  after(async () => {
    await sender?.close();
    agent?.destroy();
    await fake?.close();
    guard?.remove();
  });

  test('delivers 1,201 tokens with bounded concurrency', async () => {
    fake.resetStats();
    fake.setResponseDelay(3);
    const tokens = Array.from({ length: 1201 }, (_, index) => makeToken(`bulk${index}`));

    const results = await sender.send(tokens, MESSAGE);
    fake.setResponseDelay(0);

    assert.equal(results.length, 1201);
    assert.deepEqual(
      results.filter((result) => result.outcome !== 'sent'),
      [],
    );
    assert.deepEqual(
      results.map((result) => result.token),
      tokens,
    );
    assert.equal(fake.requestCount, 1201);
    assert.equal(fake.delivered.length, 1201);
    assert.deepEqual(new Set(fake.delivered.map((message) => message.token)), new Set(tokens));
    const first = fake.delivered[0];
    assert.equal(first?.title, MESSAGE.title);
    assert.equal(first?.body, MESSAGE.body);
    assert.deepEqual(first?.data, MESSAGE.data);
    assert.ok(fake.maxInFlight <= CONCURRENCY, `the fake saw ${fake.maxInFlight} requests in flight`);
    assert.ok(fake.maxInFlight >= CONCURRENCY / 2, `only ${fake.maxInFlight} requests overlapped`);
    assert.ok(credential.calls >= 1);
  });

  test('zero tokens make no request', async () => {
    fake.resetStats();
    const idleCredential = fakeCredential();
    const idle = await createPushSender({
      credential: idleCredential,
      projectId: fake.projectId,
      httpAgent: agent,
      concurrency: CONCURRENCY,
      logger,
    });

    const results = await idle.send([], MESSAGE);
    await idle.close();

    assert.deepEqual(results, []);
    assert.equal(fake.requestCount, 0);
    assert.equal(idleCredential.calls, 0);
  });

  test('duplicate tokens are sent once', async () => {
    fake.resetStats();
    const token = makeToken('twice');

    const results = await sender.send([token, token], MESSAGE);

    assert.deepEqual(results, [{ token, outcome: 'sent' }]);
    assert.equal(fake.requestCount, 1);
  });

  test('unregistered token is pruned', async () => {
    fake.resetStats();
    const [alive, stale, other] = [makeToken('alive'), makeToken('stale'), makeToken('other')];
    fake.markUnregistered(stale);

    const results = await sender.send([alive, stale, other], MESSAGE);

    assert.deepEqual(
      results.map((result) => [result.token, result.outcome]),
      [
        [alive, 'sent'],
        [stale, 'prune'],
        [other, 'sent'],
      ],
    );
    assert.equal(results[1]?.code, 'messaging/registration-token-not-registered');
    assert.deepEqual(statusesFor(fake, stale), [404]);
  });

  test('payload error fails and prunes nothing', async () => {
    fake.resetStats();
    const tokens = [makeToken('payload1'), makeToken('payload2')];
    const oversized: PushMessage = { ...MESSAGE, data: { blob: 'x'.repeat(5000) } };

    const results = await sender.send(tokens, oversized);

    for (const result of results) {
      assert.equal(result.outcome, 'failed');
      assert.equal(result.code, 'messaging/invalid-argument');
    }
    assert.equal(fake.delivered.length, 0);
    assert.deepEqual(
      fake.requests.map((request) => request.status),
      [400, 400],
    );
  });

  test('client-side payload error sends nothing', async () => {
    fake.resetStats();
    const token = makeToken('numeric');
    const invalid = { ...MESSAGE, data: { amount: 15 } } as unknown as PushMessage;

    const results = await sender.send([token], invalid);

    assert.equal(results[0]?.outcome, 'failed');
    assert.equal(results[0]?.code, 'messaging/invalid-payload');
    assert.equal(fake.requestCount, 0);
  });

  test('invalid token message prunes the token', async () => {
    fake.resetStats();
    const marked = makeToken('invalid');
    fake.markInvalid(marked);
    const malformed = 'not a token';

    const results = await sender.send([marked, malformed], MESSAGE);

    for (const result of results) {
      assert.equal(result.outcome, 'prune');
      assert.equal(result.code, 'messaging/invalid-argument');
      assert.match(result.reason ?? '', /not a valid FCM registration token/);
    }
    assert.deepEqual(statusesFor(fake, marked), [400]);
  });

  test('sender mismatch prunes the token', async () => {
    fake.resetStats();
    const foreign = makeToken('foreign');
    fake.markSenderMismatch(foreign);

    const results = await sender.send([foreign], MESSAGE);

    assert.equal(results[0]?.outcome, 'prune');
    assert.equal(results[0]?.code, 'messaging/mismatched-credential');
  });

  test('permission denied prunes nothing', async () => {
    fake.resetStats();
    const token = makeToken('denied');
    const wrongProject = await createPushSender({
      credential,
      projectId: 'another-project',
      httpAgent: agent,
      concurrency: CONCURRENCY,
      logger,
    });

    const results = await wrongProject.send([token], MESSAGE);
    await wrongProject.close();

    assert.equal(results[0]?.outcome, 'failed');
    assert.equal(results[0]?.code, 'messaging/mismatched-credential');
    assert.deepEqual(statusesFor(fake, token), [403]);
  });

  test('wrong access token fails', async () => {
    fake.resetStats();
    const token = makeToken('unauthenticated');
    const impostor = await createPushSender({
      credential: fakeCredential('not-the-fake-access-token'),
      projectId: fake.projectId,
      httpAgent: agent,
      concurrency: 1,
      logger,
    });

    const [result] = await impostor.send([token], MESSAGE);
    await impostor.close();

    // firebase-admin maps FCM's 401 UNAUTHENTICATED to third-party-auth-error.
    assert.equal(result?.outcome, 'failed');
    assert.equal(result?.code, 'messaging/third-party-auth-error');
    assert.deepEqual(statusesFor(fake, token), [401]);
    assert.equal(fake.delivered.length, 0);
  });

  test('429 and 500 are retry without SDK retries', async () => {
    const cases = [
      { status: 429, code: 'messaging/message-rate-exceeded' },
      { status: 500, code: 'messaging/internal-error' },
    ];
    for (const { status, code } of cases) {
      fake.resetStats();
      const token = makeToken(`status${status}`);
      fake.failToken(token, status);

      const [result] = await sender.send([token], MESSAGE);

      assert.equal(result?.outcome, 'retry', `outcome for ${status}`);
      assert.equal(result?.code, code);
      assert.deepEqual(statusesFor(fake, token), [status], `requests for ${status}`);

      const [again] = await sender.send([token], MESSAGE);
      assert.equal(again?.outcome, 'sent', `the token still works after ${status}`);
    }
  });

  test('503 is retried by the SDK', async () => {
    fake.resetStats();
    const recovering = makeToken('recovering');
    fake.failNextRequests(2, 503);
    let started = Date.now();

    const [recovered] = await sender.send([recovering], MESSAGE);

    // firebase-admin 14.5 waits 0 s, then 1 s, before its first two retries.
    assert.equal(recovered?.outcome, 'sent');
    assert.deepEqual(statusesFor(fake, recovering), [503, 503, 200]);
    assert.ok(Date.now() - started >= 900, `the retries took ${Date.now() - started} ms`);

    const down = makeToken('down');
    fake.failToken(down, 503, Number.POSITIVE_INFINITY);
    started = Date.now();

    const [gaveUp] = await sender.send([down], MESSAGE);

    // Four retries after 0, 1, 2 and 4 s, then the SDK reports the last 503.
    assert.equal(gaveUp?.outcome, 'retry');
    assert.equal(gaveUp?.code, 'messaging/server-unavailable');
    assert.deepEqual(statusesFor(fake, down), [503, 503, 503, 503, 503]);
    assert.ok(Date.now() - started >= 6500, `the retries took ${Date.now() - started} ms`);
  });

  test('refused connection is retry', async () => {
    const closed = await createFcmFake();
    const closedAgent = fakeHttpAgent(closed);
    await closed.close();
    const unreachable = await createPushSender({
      credential,
      projectId: closed.projectId,
      httpAgent: closedAgent,
      concurrency: CONCURRENCY,
      logger,
    });

    const [result] = await unreachable.send([makeToken('unreachable')], MESSAGE);
    await unreachable.close();
    closedAgent.destroy();

    assert.equal(result?.outcome, 'retry');
    assert.equal(result?.code, 'app/network-error');
  });

  test('two senders coexist', async () => {
    fake.resetStats();
    const second = await createPushSender({
      credential: fakeCredential(),
      projectId: fake.projectId,
      httpAgent: agent,
      concurrency: 2,
      logger,
    });
    const [one, two] = [makeToken('first'), makeToken('second')];

    const results = await Promise.all([sender.send([one], MESSAGE), second.send([two], MESSAGE)]);
    await second.close();

    assert.notEqual(second.appName, sender.appName);
    assert.equal(results[0][0]?.outcome, 'sent');
    assert.equal(results[1][0]?.outcome, 'sent');
  });

  test('close deletes the firebase app', async () => {
    const closing = await createPushSender({
      credential: fakeCredential(),
      projectId: fake.projectId,
      httpAgent: agent,
      concurrency: 1,
      logger,
    });
    assert.ok(getApps().some((app) => app.name === closing.appName));

    await closing.close();
    await closing.close();

    assert.ok(!getApps().some((app) => app.name === closing.appName));
    await assert.rejects(closing.send([makeToken('late')], MESSAGE), /is closed/);
  });

  test('bad credential JSON raises ConfigError', async () => {
    const marker = 'SECRET-MARKER-7f3a';
    const cases = [
      `{"type": "service_account", "private_key": "${marker}"`,
      `["${marker}"]`,
      JSON.stringify({ type: 'authorized_user', client_secret: marker, refresh_token: marker }),
      JSON.stringify({
        type: 'service_account',
        project_id: 'p',
        client_email: 'a@p.test',
        private_key_id: marker,
      }),
      JSON.stringify({
        type: 'service_account',
        project_id: 'p',
        client_email: 'a@p.test',
        private_key: `-----BEGIN PRIVATE KEY-----\n${marker}\n-----END PRIVATE KEY-----\n`,
      }),
      '',
    ];
    for (const credentialJson of cases) {
      const created = createPushSender({ credentialJson, projectId: 'p', concurrency: 1, logger });

      const error = await created.then(
        () => assert.fail(`accepted ${credentialJson.slice(0, 20)}`),
        (rejection: unknown) => rejection,
      );

      assert.ok(error instanceof ConfigError, `not a ConfigError: ${inspect(error)}`);
      assert.match(error.message, /ZBOX_FIREBASE_CREDENTIALS/);
      assert.ok(
        !inspect(error, { depth: 5 }).includes(marker),
        `the error shows the content: ${error.message}`,
      );
    }
    assert.ok(!JSON.stringify(logger.lines).includes(marker));
  });

  test('valid credential JSON creates a sender', async () => {
    fake.resetStats();
    const json = serviceAccountJson(fake.projectId);
    const privateKey = (JSON.parse(json) as { private_key: string }).private_key;

    // Only an empty send, because a real send would request an access token from oauth2.googleapis.com.
    const fromJson = await createPushSender({
      credentialJson: json,
      projectId: fake.projectId,
      httpAgent: agent,
      concurrency: 1,
      logger,
    });
    const results = await fromJson.send([], MESSAGE);
    await fromJson.close();

    assert.deepEqual(results, []);
    assert.equal(fake.requestCount, 0);
    assert.ok(!JSON.stringify(logger.lines).includes(privateKey.split('\n')[1] ?? privateKey));
  });

  test('agents reject hosts other than FCM', async () => {
    let connections = 0;
    const bystander = createServer(() => {
      connections += 1;
    });
    await new Promise<void>((resolve) => bystander.listen(0, '127.0.0.1', resolve));
    const port = (bystander.address() as AddressInfo).port;
    const probeAgent = fakeHttpAgent(fake);

    // One request through the fake's agent, one through the guarded global agent.
    const viaFakeAgent = await requestError({ host: '127.0.0.1', port, path: '/', agent: probeAgent });
    const viaGlobalAgent = await requestError({ host: '127.0.0.1', port, path: '/' });
    probeAgent.destroy();
    await new Promise<void>((resolve) => bystander.close(() => resolve()));

    assert.match(viaFakeAgent.message, /rejected a connection to 127\.0\.0\.1/);
    assert.deepEqual(probeAgent.rejectedConnections, [`127.0.0.1:${port}`]);
    assert.match(viaGlobalAgent.message, /network guard rejected/);
    assert.equal(connections, 0);
    probeTargets.push(`127.0.0.1:${port}`);
  });

  test('logs show no token or credential', () => {
    const text = JSON.stringify(logger.lines);

    assert.ok(logger.lines.length > 0);
    assert.ok(
      logger.lines.some((line) => Array.isArray(line.devices)),
      'no log line lists token prefixes',
    );
    for (const token of issuedTokens) {
      assert.ok(!text.includes(token), `a log line shows the token ${token.slice(0, 12)}…`);
    }
    assert.ok(!text.includes(FAKE_ACCESS_TOKEN), 'a log line shows the access token');
  });

  test('firebase-admin loads only when used', async () => {
    // A fresh process, because this file imports firebase-admin itself. The child sends nothing.
    const script = `
      import { createRequire } from 'node:module';
      const cache = createRequire(import.meta.url).cache;
      const loaded = () => Object.keys(cache).some((path) => path.includes('/node_modules/firebase-admin/'));
      const { createPushSender } = await import(${JSON.stringify(new URL('../src/core/notify/fcm.ts', import.meta.url).href)});
      const afterImport = loaded();
      const credential = { getAccessToken: async () => ({ access_token: 'unused', expires_in: 60 }) };
      const logger = { debug() {}, info() {}, warn() {}, error() {}, child() { return logger; } };
      const sender = await createPushSender({ credential, projectId: 'p', concurrency: 1, logger });
      const afterCreate = loaded();
      await sender.close();
      console.log(JSON.stringify({ afterImport, afterCreate }));
    `;

    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '--eval', script],
      { cwd: new URL('..', import.meta.url) },
    );
    const loaded = JSON.parse(stdout) as { afterImport: boolean; afterCreate: boolean };

    assert.equal(loaded.afterImport, false, 'importing the adapter loaded firebase-admin');
    assert.equal(loaded.afterCreate, true, 'createPushSender did not load firebase-admin');
  });

  test('no connection leaves loopback', () => {
    assert.ok(guard.attempts.length > 0);
    for (const attempt of guard.attempts) {
      assert.match(attempt, /^127\.0\.0\.1:\d+$/);
    }
    for (const host of guard.requestHosts) {
      assert.ok(host === FCM_HOST || host === '127.0.0.1', `a request went to ${host}`);
    }
    assert.deepEqual(guard.globalRejections, probeTargets);
    assert.deepEqual(agent.rejectedConnections, []);
  });
});
