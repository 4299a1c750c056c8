import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { inspect } from 'node:util';
import {
  requestAuthTicket,
  type ZboxOperator,
  zboxSignature,
  zboxSignatureMessage,
} from '../src/core/blobber/auth-ticket.js';
import { createGuardedFetch, type GuardedFetch } from '../src/core/blobber/url-guard.js';
import { PermanentError, TransientError } from '../src/core/errors.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { initSignatureSchemes, verifySignature } from '../src/core/zus/signature.js';
import { sha3Hex } from '../src/core/zus/transaction.js';
import {
  createSandboxOperator,
  type FakeBlobbers,
  type SandboxOperator,
  startFakeBlobbers,
} from '../src/sandbox/blobbers.js';

const ROUND = 999_999_999;

/** Asserts that neither the message, the causes nor the inspected error show a secret. */
function assertNoSecrets(error: unknown, secrets: readonly string[]): void {
  const texts: string[] = [inspect(error, { depth: 5 })];
  for (let current: unknown = error; current instanceof Error; current = current.cause) {
    texts.push(current.message);
  }
  for (const secret of secrets) {
    for (const text of texts) {
      assert.ok(!text.includes(secret), `a secret appears in: ${text.slice(0, 200)}`);
    }
  }
}

/** Returns the quoted body at the end of a message, decoded. */
function quotedBody(message: string): string {
  const match = /: (".*")$/.exec(message);
  assert.ok(match?.[1] !== undefined, `no quoted body at the end of: ${message}`);
  return JSON.parse(match[1]) as string;
}

describe('requestAuthTicket against unbound blobbers', () => {
  let operator: SandboxOperator;
  let owner: SandboxOperator;
  let fakes: FakeBlobbers;
  let fetch: GuardedFetch;
  let secrets: string[];
  const logger = createMemoryLogger();

  before(async () => {
    await initSignatureSchemes();
    operator = await createSandboxOperator('bls0chain');
    owner = await createSandboxOperator('bls0chain');
    secrets = [zboxSignature(operator), operator.publicKey];
    fakes = await startFakeBlobbers({
      count: 3,
      operatorPublicKey: operator.publicKey,
      scheme: 'bls0chain',
      roundBound: false,
      slowMs: 5_000,
    });
    fetch = createGuardedFetch({ allowPrivateAddresses: true, timeoutMs: 300, logger });
  });
  after(async () => {
    fetch.close();
    await fakes.close();
  });

  const ask = (
    index: number,
    overrides: { operator?: ZboxOperator; clientId?: string; blobberUrl?: string } = {},
  ) => {
    const blobber = fakes.blobbers[index];
    assert.ok(blobber !== undefined);
    return requestAuthTicket({
      fetch,
      blobberUrl: overrides.blobberUrl ?? blobber.url,
      blobberId: blobber.id,
      clientId: overrides.clientId ?? owner.clientId,
      operator: overrides.operator ?? operator,
      logger,
    });
  };

  test('issues tickets that verify', async () => {
    for (const blobber of fakes.blobbers) {
      const ticket = await ask(blobber.index);

      assert.match(ticket, /^[0-9a-f]{64}$/);
      assert.equal(verifySignature('bls0chain', blobber.publicKey, owner.clientId, ticket), true);
      const other = fakes.blobbers[(blobber.index + 1) % fakes.blobbers.length];
      assert.equal(verifySignature('bls0chain', other?.publicKey ?? '', owner.clientId, ticket), false);
    }

    const last = fakes.requests.at(-1);
    assert.equal(last?.method, 'GET');
    assert.equal(last?.path, '/v1/auth/generate');
    assert.equal(last?.clientId, owner.clientId);
    assert.equal(last?.round, null);
    assert.equal(last?.signaturePresent, true);
    assert.equal(last?.status, 200);
  });

  test('keeps a path prefix of the blobber URL', async () => {
    const blobber = fakes.blobbers[0];
    assert.ok(blobber !== undefined);

    // The fake serves only /v1/auth/generate, so a prefix shows up as its 404.
    await assert.rejects(ask(0, { blobberUrl: `${blobber.url}/blobber01/` }), (error: unknown) => {
      assert.ok(error instanceof PermanentError);
      assert.match(error.message, /has no auth ticket endpoint \(404 for \/v1\/auth\/generate\)/);
      return true;
    });
    assert.equal(fakes.requests.at(-1)?.path, '/blobber01/v1/auth/generate');

    const ticket = await ask(0, { blobberUrl: `${blobber.url}/` });
    assert.equal(verifySignature('bls0chain', blobber.publicKey, owner.clientId, ticket), true);
  });

  test('rejects an unknown operator key', async () => {
    const stranger = await createSandboxOperator('bls0chain');
    const blobber = fakes.blobbers[1];
    assert.ok(blobber !== undefined);

    await assert.rejects(ask(1, { operator: stranger }), (error: unknown) => {
      assert.ok(error instanceof PermanentError);
      assert.equal(error.dependency, blobber.id);
      assert.equal(
        error.message,
        `blobber ${blobber.id} rejected the operator signature (403 invalid signature): this platform's 0Box key is not registered on that blobber`,
      );
      assertNoSecrets(error, [...secrets, zboxSignature(stranger)]);
      return true;
    });
    assert.equal(fakes.requests.at(-1)?.status, 403);
  });

  test('rejects a signature over a hash of the key', async () => {
    // The blobber verifies the raw key text. Signing its sha3 hash, as a transaction is signed, fails.
    const hashSigner: ZboxOperator = {
      scheme: operator.scheme,
      publicKey: operator.publicKey,
      signMessage: (message) => operator.signMessage(Buffer.from(sha3Hex(Buffer.from(message)), 'hex')),
    };

    await assert.rejects(
      ask(0, { operator: hashSigner }),
      /rejected the operator signature \(403 invalid signature\)/,
    );
  });

  test('signs the UTF-8 text of the public key', () => {
    assert.deepEqual(Buffer.from(zboxSignatureMessage('ab01')), Buffer.from('ab01', 'utf8'));
    assert.equal(zboxSignatureMessage(operator.publicKey).length, 128);
  });

  test('rejects malformed responses per blobber', async () => {
    const cases = [
      ['html', /returned HTML instead of an auth ticket \(a proxy or maintenance page\?\): "<!DOCTYPE html>/],
      ['empty', /returned an empty body instead of an auth ticket \(HTTP 200\)$/],
      ['non-hex', /returned an auth ticket that is not lowercase hex: "\{\\"auth_ticket\\":\\"zzzz/],
      ['short', /returned an auth ticket of 32 hex characters, but a bls0chain signature has 64: /],
    ] as const;
    const blobber = fakes.blobbers[2];
    assert.ok(blobber !== undefined);

    try {
      for (const [behaviour, expected] of cases) {
        await fakes.setBehaviour(2, behaviour);
        await assert.rejects(
          ask(2),
          (error: unknown) => {
            assert.ok(error instanceof PermanentError);
            assert.equal(error.dependency, blobber.id);
            assert.ok(error.message.startsWith(`blobber ${blobber.id} returned `), error.message);
            assert.match(error.message, expected);
            if (behaviour !== 'empty') {
              assert.ok(quotedBody(error.message).length <= 101, error.message);
            }
            assertNoSecrets(error, secrets);
            return true;
          },
          behaviour,
        );
      }
    } finally {
      await fakes.setBehaviour(2, 'ok');
    }
  });

  test('reports unreachable blobbers as transient', async () => {
    const cases = [
      ['down', /could not be reached \(.*ECONNREFUSED/],
      ['slow', /timed out after 300 ms/],
      ['http500', /returned HTTP 500: "Internal Server Error"/],
    ] as const;
    const blobber = fakes.blobbers[1];
    assert.ok(blobber !== undefined);

    try {
      for (const [behaviour, expected] of cases) {
        await fakes.setBehaviour(1, behaviour);
        await assert.rejects(
          ask(1),
          (error: unknown) => {
            assert.ok(error instanceof TransientError, `${behaviour}: ${String(error)}`);
            assert.equal(error.dependency, blobber.id);
            assert.ok(
              error.message.startsWith(`blobber ${blobber.id}: blobber URL ${blobber.url}/`),
              error.message,
            );
            assert.match(error.message, expected);
            assertNoSecrets(error, secrets);
            return true;
          },
          behaviour,
        );
      }
    } finally {
      await fakes.setBehaviour(1, 'ok');
    }

    const ticket = await ask(1);
    assert.equal(verifySignature('bls0chain', blobber.publicKey, owner.clientId, ticket), true);
  });

  test('rejects an invalid client id unsent', async () => {
    const requestsBefore = fakes.requests.length;

    await assert.rejects(
      ask(0, { clientId: owner.clientId.toUpperCase() }),
      (error: unknown) =>
        error instanceof PermanentError && /is not 64 lowercase hex characters/.test(error.message),
    );
    assert.equal(fakes.requests.length, requestsBefore);
  });

  test('keeps secrets out of the log', () => {
    assert.ok(logger.lines.some((line) => line.msg === 'auth ticket issued'));
    for (const line of logger.lines) {
      const text = JSON.stringify(line);
      for (const secret of secrets) {
        assert.ok(!text.includes(secret), `a secret appears in the log line ${text.slice(0, 200)}`);
      }
    }
  });
});

describe('requestAuthTicket against round-bound blobbers', () => {
  let operator: SandboxOperator;
  let owner: SandboxOperator;
  let fakes: FakeBlobbers;
  let fetch: GuardedFetch;

  before(async () => {
    await initSignatureSchemes();
    operator = await createSandboxOperator('bls0chain');
    owner = await createSandboxOperator('bls0chain');
    fakes = await startFakeBlobbers({ count: 2, operatorPublicKey: operator.publicKey, roundBound: true });
    fetch = createGuardedFetch({ allowPrivateAddresses: true, timeoutMs: 2_000 });
  });
  after(async () => {
    fetch.close();
    await fakes.close();
  });

  test('issues tickets bound to the round', async () => {
    for (const blobber of fakes.blobbers) {
      const ticket = await requestAuthTicket({
        fetch,
        blobberUrl: blobber.url,
        blobberId: blobber.id,
        clientId: owner.clientId,
        round: ROUND,
        operator,
      });

      const payload = sha3Hex(`${owner.clientId}_${ROUND}`);
      assert.equal(verifySignature('bls0chain', blobber.publicKey, payload, ticket), true);
      assert.equal(verifySignature('bls0chain', blobber.publicKey, owner.clientId, ticket), false);
    }
    assert.equal(fakes.requests.at(-1)?.round, String(ROUND));
  });

  test('reports a missing round', async () => {
    const blobber = fakes.blobbers[0];
    assert.ok(blobber !== undefined);

    await assert.rejects(
      requestAuthTicket({
        fetch,
        blobberUrl: blobber.url,
        blobberId: blobber.id,
        clientId: owner.clientId,
        operator,
      }),
      (error: unknown) =>
        error instanceof PermanentError &&
        error.dependency === blobber.id &&
        error.message ===
          `blobber ${blobber.id} requires a round (400 missing_round): request the ticket with the allocation request's auth_round_expiry`,
    );
  });
});

describe('requestAuthTicket on an ed25519 network', () => {
  test('issues 64-byte tickets that verify', async () => {
    const operator = await createSandboxOperator('ed25519');
    const owner = await createSandboxOperator('ed25519');
    const fakes = await startFakeBlobbers({
      count: 1,
      operatorPublicKey: operator.publicKey,
      scheme: 'ed25519',
      roundBound: false,
    });
    const fetch = createGuardedFetch({ allowPrivateAddresses: true, timeoutMs: 2_000 });
    const blobber = fakes.blobbers[0];
    assert.ok(blobber !== undefined);

    try {
      const ticket = await requestAuthTicket({
        fetch,
        blobberUrl: blobber.url,
        blobberId: blobber.id,
        clientId: owner.clientId,
        operator,
      });

      assert.match(ticket, /^[0-9a-f]{128}$/);
      assert.equal(verifySignature('ed25519', blobber.publicKey, owner.clientId, ticket), true);
    } finally {
      fetch.close();
      await fakes.close();
    }
  });
});

describe('requestAuthTicket with a blobber that echoes the header', () => {
  test('redacts the signature from quoted bodies', async () => {
    await initSignatureSchemes();
    const operator = await createSandboxOperator('bls0chain');
    const signature = zboxSignature(operator);
    let status = 400;
    const server = createServer((request, response) => {
      response.writeHead(status, { 'content-type': 'text/plain' });
      response.end(`got ${String(request.headers['zbox-signature'])} for key ${operator.publicKey}`);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const fetch = createGuardedFetch({ allowPrivateAddresses: true, timeoutMs: 2_000 });
    const request = () =>
      requestAuthTicket({ fetch, blobberUrl: url, blobberId: 'echo', clientId: 'a'.repeat(64), operator });

    try {
      for (const [answerStatus, kind] of [
        [400, PermanentError],
        [200, PermanentError],
        [502, TransientError],
      ] as const) {
        status = answerStatus;
        await assert.rejects(
          request(),
          (error: unknown) => {
            assert.ok(error instanceof kind, String(error));
            assert.match(error.message, /got \[redacted\]/);
            assertNoSecrets(error, [signature, operator.publicKey]);
            return true;
          },
          String(answerStatus),
        );
      }
    } finally {
      fetch.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

test('team wallet signs an accepted Zbox-Signature', async () => {
  const { freshWallet } = await import('./support/zus.js');
  const { startFakeBlobbers: start } = await import('../src/sandbox/blobbers.js');
  const { requestAuthTicket: request } = await import('../src/core/blobber/auth-ticket.js');
  const operator = await freshWallet('bls0chain');
  const fake = await start({
    count: 1,
    operatorPublicKey: operator.publicKey,
    scheme: 'bls0chain',
    roundBound: true,
  });
  const guarded = createGuardedFetch({ allowPrivateAddresses: true, timeoutMs: 2_000 });
  try {
    const blobber = fake.blobbers[0];
    assert.ok(blobber !== undefined);
    const clientId = 'c'.repeat(64);
    const ticket = await request({
      fetch: guarded,
      blobberUrl: blobber.url,
      blobberId: blobber.id,
      clientId,
      round: 500,
      operator,
    });
    await initSignatureSchemes();
    assert.equal(verifySignature('bls0chain', blobber.publicKey, sha3Hex(`${clientId}_500`), ticket), true);
  } finally {
    guarded.close();
    await fake.close();
  }
});
