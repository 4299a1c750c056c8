import assert from 'node:assert/strict';
import { createHash, createPrivateKey, randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { inspect } from 'node:util';
import {
  clientIdOf,
  InvalidKeyError,
  initSignatureSchemes,
  keyPairFromPrivateKey,
  keyPairFromSeed,
  type SignatureScheme,
  verifySignature,
} from '../src/core/zus/signature.js';

/**
 * Reference vectors: JSON files in the folder named by ZUS_REFERENCE_DATA (.ci/run sets it).
 * Each vector carries a `source` field, printed as a test diagnostic. The external ones are:
 *
 * - bls0chain key pairs from 0chain/gosdk core/zcncrypto tests and the 2021 zboxcore test wallet,
 *   0chain/system_test wallet files, and 0chain/0chain and 0chain/blobber node key files.
 * - bls0chain `gosdk-2021-fixture-move-txn`: the Go-made signature of a real transaction in a 2021
 *   gosdk zboxcore test fixture. herumi in WebAssembly must reproduce it byte for byte.
 * - ed25519 key pairs from the gosdk and 0chain ed25519 tests and node key files, and a 2019
 *   testnet wallet and transaction from 0chain/gosdk docs/README.md.
 *
 * The other signatures (over sha3-256("TEST") and two example sends) were computed locally with
 * bls-wasm 0.4.8 and @noble/curves, as each vector's `signature_origin` field states.
 */
interface Vector {
  name: string;
  source: string;
  private_key?: string;
  public_key: string;
  client_id: string;
  message_hash: string;
  signature: string;
  transaction_fields?: {
    creation_date: number;
    client_id: string;
    to_client_id: string;
    value: number;
    transaction_data: string;
    format: string;
  };
  transaction?: {
    hash: string;
    client_id: string;
    to_client_id: string;
    transaction_data: string;
    transaction_value: number;
    creation_date: number;
    transaction_nonce: number;
  };
}

const REFERENCE_SKIP =
  'ZUS_REFERENCE_DATA is not set: it names the folder of Züs reference vectors (.ci/run sets it)';

function readVectors(file: string): Vector[] | undefined {
  const folder = process.env.ZUS_REFERENCE_DATA;
  if (folder === undefined || folder === '') {
    return undefined;
  }
  const parsed = JSON.parse(readFileSync(join(folder, file), 'utf8')) as { vectors: Vector[] };
  return parsed.vectors;
}

const sha3 = (data: string | Buffer): string => createHash('sha3-256').update(data).digest('hex');

/** Returns `hex` with one bit flipped in the byte at `byteIndex`. */
function flipBit(hex: string, byteIndex = 0): string {
  const bytes = Buffer.from(hex, 'hex');
  bytes[byteIndex] = (bytes[byteIndex] ?? 0) ^ 0x01;
  return bytes.toString('hex');
}

/** Transaction hash before nonces existed (2019–2021): creation_date:client_id:to_client_id:value:sha3(data). */
function preNonceHash(fields: NonNullable<Vector['transaction_fields']>): string {
  const data = sha3(fields.transaction_data);
  return sha3(`${fields.creation_date}:${fields.client_id}:${fields.to_client_id}:${fields.value}:${data}`);
}

/** Transaction hash with the nonce: creation_date:nonce:client_id:to_client_id:value:sha3(data). */
function nonceHash(transaction: NonNullable<Vector['transaction']>): string {
  const data = sha3(transaction.transaction_data);
  return sha3(
    `${transaction.creation_date}:${transaction.transaction_nonce}:${transaction.client_id}:` +
      `${transaction.to_client_id}:${transaction.transaction_value}:${data}`,
  );
}

before(async () => {
  await initSignatureSchemes();
});

for (const [scheme, file] of [
  ['bls0chain', 'vectors-bls.json'],
  ['ed25519', 'vectors-ed25519.json'],
] as const) {
  describe(`${scheme} reference vectors`, () => {
    const vectors = readVectors(file);
    if (vectors === undefined) {
      test(`${scheme} vectors`, (t) => {
        t.skip(REFERENCE_SKIP);
      });
      return;
    }

    for (const vector of vectors) {
      test(`${vector.name}: keys and signature`, async (t) => {
        t.diagnostic(`source: ${vector.source}`);

        assert.equal(clientIdOf(vector.public_key), vector.client_id, 'client id of the public key');
        assert.equal(
          verifySignature(scheme, vector.public_key, vector.message_hash, vector.signature),
          true,
          'vector signature verifies',
        );
        assert.equal(
          verifySignature(scheme, vector.public_key, vector.message_hash, flipBit(vector.signature, 5)),
          false,
          'signature with a flipped bit fails',
        );
        assert.equal(
          verifySignature(scheme, vector.public_key, flipBit(vector.message_hash, 31), vector.signature),
          false,
          'hash with a flipped bit fails',
        );

        if (vector.private_key === undefined) {
          return;
        }
        const keyPair = await keyPairFromPrivateKey(scheme, vector.private_key);
        assert.equal(keyPair.publicKey, vector.public_key, 'public key of the private key');
        assert.equal(keyPair.clientId, vector.client_id, 'client id of the private key');

        // BLS (herumi hashes the message to G1) and Ed25519 are both deterministic.
        const signature = keyPair.sign(vector.message_hash);
        assert.equal(signature, vector.signature, 'recomputed signature equals the vector byte for byte');
        assert.equal(verifySignature(scheme, keyPair.publicKey, vector.message_hash, signature), true);
      });

      if (vector.transaction_fields !== undefined) {
        const fields = vector.transaction_fields;
        test(`${vector.name}: transaction hash`, (t) => {
          t.diagnostic(`source: ${vector.source}`);
          assert.equal(fields.format, 'pre-nonce');
          assert.equal(preNonceHash(fields), vector.message_hash);
          assert.equal(clientIdOf(vector.public_key), fields.client_id);
        });
      }
      if (vector.transaction !== undefined) {
        const transaction = vector.transaction;
        test(`${vector.name}: transaction hash`, (t) => {
          t.diagnostic(`source: ${vector.source}`);
          assert.equal(nonceHash(transaction), transaction.hash);
          assert.equal(transaction.hash, vector.message_hash);
        });
      }
    }
  });
}

/** Makes a fresh random private key in gosdk's hex form, with the key pair made from it. */
async function freshKey(scheme: SignatureScheme) {
  if (scheme === 'bls0chain') {
    const secret = randomBytes(32);
    // Little-endian: clearing the top three bits keeps the value below the BN254 order.
    secret[31] = (secret[31] ?? 0) & 0x1f;
    const privateKey = secret.toString('hex');
    return { privateKey, keyPair: await keyPairFromPrivateKey(scheme, privateKey) };
  }
  const seed = randomBytes(32);
  const keyPair = await keyPairFromSeed(scheme, seed);
  const privateKey = seed.toString('hex') + keyPair.publicKey;
  return { privateKey, keyPair };
}

describe('key pairs', () => {
  for (const scheme of ['bls0chain', 'ed25519'] as const) {
    test(`${scheme} fresh key signs and verifies`, async () => {
      const { privateKey, keyPair } = await freshKey(scheme);
      const again = await keyPairFromPrivateKey(scheme, privateKey.toUpperCase());
      assert.equal(again.publicKey, keyPair.publicKey, 'upper-case hex gives the same key');
      assert.equal(keyPair.publicKey.length, scheme === 'bls0chain' ? 128 : 64);
      assert.equal(keyPair.clientId, sha3(Buffer.from(keyPair.publicKey, 'hex')));

      const hash = sha3('zbox-workers');
      const signature = keyPair.sign(hash);
      assert.equal(signature.length, scheme === 'bls0chain' ? 64 : 128);
      assert.match(signature, /^[0-9a-f]+$/);
      assert.equal(verifySignature(scheme, keyPair.publicKey, hash, signature), true);
      assert.equal(verifySignature(scheme, keyPair.publicKey, hash.toUpperCase(), signature), true);
      assert.equal(verifySignature(scheme, keyPair.publicKey, flipBit(hash), signature), false);
      assert.equal(verifySignature(scheme, keyPair.publicKey, hash, flipBit(signature, 3)), false);

      const other = await freshKey(scheme);
      assert.equal(verifySignature(scheme, other.keyPair.publicKey, hash, signature), false);
    });

    test(`${scheme} key pair hides the private key`, async () => {
      const { privateKey, keyPair } = await freshKey(scheme);
      const secretHex = privateKey.slice(0, 64);
      for (const text of [
        inspect(keyPair),
        inspect(keyPair, { showHidden: true, depth: Number.POSITIVE_INFINITY }),
        JSON.stringify(keyPair),
        Object.keys(keyPair).join(','),
      ]) {
        assert.ok(!text.toLowerCase().includes(secretHex), `private key shown in: ${text.slice(0, 80)}`);
      }
      assert.deepEqual(JSON.parse(JSON.stringify(keyPair)), {
        scheme,
        publicKey: keyPair.publicKey,
        clientId: keyPair.clientId,
      });
      assert.ok(Object.isFrozen(keyPair));
    });

    test(`${scheme} rejects a hash that is not 32 bytes`, async () => {
      const { keyPair } = await freshKey(scheme);
      const hash = sha3('not 32 bytes');
      assert.throws(() => keyPair.sign('abc'), /64 hex characters/);
      assert.throws(() => keyPair.sign(`${hash}00`), /64 hex characters/);
      assert.throws(() => keyPair.sign(hash.replace(/^./, 'g')), /64 hex characters/);
    });
  }

  test('ed25519 signs raw hash bytes', async () => {
    const seed = randomBytes(32);
    const keyPair = await keyPairFromSeed('ed25519', seed);
    const privateKey = createPrivateKey({
      key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]),
      format: 'der',
      type: 'pkcs8',
    });
    const hash = sha3('raw bytes, not hex text');
    const overBytes = sign(null, Buffer.from(hash, 'hex'), privateKey).toString('hex');
    const overText = sign(null, Buffer.from(hash, 'ascii'), privateKey).toString('hex');
    assert.equal(keyPair.sign(hash), overBytes);
    assert.notEqual(keyPair.sign(hash), overText);
    assert.equal(verifySignature('ed25519', keyPair.publicKey, hash, overText), false);
  });

  test('ed25519 seed is first 32 bytes', async () => {
    const seed = randomBytes(64);
    const fromWhole = await keyPairFromSeed('ed25519', seed);
    const fromHalf = await keyPairFromSeed('ed25519', seed.subarray(0, 32));
    assert.equal(fromWhole.publicKey, fromHalf.publicKey);
  });

  test('bls0chain seed uses first 32 bytes', async () => {
    const seed = randomBytes(64);
    const fromWhole = await keyPairFromSeed('bls0chain', seed);
    const fromHalf = await keyPairFromSeed('bls0chain', seed.subarray(0, 32));
    assert.equal(fromWhole.publicKey, fromHalf.publicKey);
  });
});

describe('invalid private keys', () => {
  test('rejects non-hex text', async () => {
    await assert.rejects(keyPairFromPrivateKey('bls0chain', 'zz'.repeat(32)), InvalidKeyError);
    await assert.rejects(keyPairFromPrivateKey('ed25519', 'abc'), /not hex/);
  });

  test('rejects wrong lengths with a hint', async () => {
    const ed = await freshKey('ed25519');
    const bls = await freshKey('bls0chain');
    await assert.rejects(
      keyPairFromPrivateKey('bls0chain', ed.privateKey),
      /64 bytes.*looks like an ed25519 key/,
    );
    await assert.rejects(
      keyPairFromPrivateKey('ed25519', bls.privateKey),
      /32 bytes.*looks like a bls0chain key/,
    );
    await assert.rejects(keyPairFromPrivateKey('bls0chain', ''), /0 bytes/);
  });

  test('rejects bls0chain key above order', async () => {
    await assert.rejects(keyPairFromPrivateKey('bls0chain', 'ff'.repeat(32)), /not below the BN254 order/);
  });

  test('rejects zero bls0chain key', async () => {
    await assert.rejects(keyPairFromPrivateKey('bls0chain', '00'.repeat(32)), /is zero/);
  });

  test('rejects ed25519 key with foreign half', async () => {
    const one = await freshKey('ed25519');
    const two = await freshKey('ed25519');
    const mixed = one.privateKey.slice(0, 64) + two.keyPair.publicKey;
    await assert.rejects(keyPairFromPrivateKey('ed25519', mixed), (error: unknown) => {
      assert.ok(error instanceof InvalidKeyError);
      assert.match(error.message, /second half .* is not the public key of its seed/);
      assert.ok(!error.message.includes(one.privateKey.slice(0, 64)), 'seed in the message');
      return true;
    });
  });

  test('rejects unknown scheme', async () => {
    await assert.rejects(
      keyPairFromPrivateKey('rsa' as SignatureScheme, 'ab'.repeat(32)),
      /unknown signature scheme "rsa"/,
    );
  });
});

describe('verifySignature', () => {
  test('returns false on malformed input', async () => {
    const { keyPair } = await freshKey('bls0chain');
    const hash = sha3('x');
    const signature = keyPair.sign(hash);
    assert.equal(verifySignature('bls0chain', keyPair.publicKey, hash, 'zz'), false);
    assert.equal(verifySignature('bls0chain', keyPair.publicKey, hash, ''), false);
    assert.equal(verifySignature('bls0chain', keyPair.publicKey, hash.slice(2), signature), false);
    assert.equal(verifySignature('bls0chain', keyPair.publicKey.slice(2), hash, signature), false);
    assert.equal(verifySignature('bls0chain', 'ff'.repeat(64), hash, signature), false);
    assert.equal(verifySignature('bls0chain', '00'.repeat(64), hash, signature), false);
    assert.equal(verifySignature('ed25519', keyPair.publicKey, hash, signature), false);
    assert.equal(verifySignature('unknown' as SignatureScheme, keyPair.publicKey, hash, signature), false);

    const ed = await freshKey('ed25519');
    const edSignature = ed.keyPair.sign(hash);
    assert.equal(verifySignature('ed25519', ed.keyPair.publicKey, hash, edSignature.slice(2)), false);
    assert.equal(verifySignature('ed25519', `${ed.keyPair.publicKey}00`, hash, edSignature), false);
    assert.equal(verifySignature('bls0chain', ed.keyPair.publicKey, hash, edSignature), false);
  });

  test('clientIdOf rejects non-hex', () => {
    assert.throws(() => clientIdOf('xyz'), TypeError);
    assert.throws(() => clientIdOf(''), TypeError);
  });
});
