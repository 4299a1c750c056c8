import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { keyPairFromPrivateKey, verifySignature } from '../src/core/zus/signature.js';
import {
  parseStoredTransaction,
  sendData,
  sha3Hex,
  signTransaction,
  TXN_TYPE_SEND,
  transactionHash,
  transactionJson,
} from '../src/core/zus/transaction.js';

interface SendVector {
  name: string;
  source: string;
  private_key: string;
  transaction: Record<string, unknown> & { hash: string; signature: string; transaction_data: string };
}

function sendVector(): SendVector | { skip: string } {
  const folder = process.env.ZUS_REFERENCE_DATA;
  if (folder === undefined || folder === '') {
    return {
      skip: 'ZUS_REFERENCE_DATA is not set: it names the folder of reference vectors (.ci/run sets it)',
    };
  }
  const file = JSON.parse(readFileSync(join(folder, 'vectors-bls.json'), 'utf8')) as {
    vectors: SendVector[];
  };
  const vector = file.vectors.find((item) => item.name === 'example-bls_send');
  if (vector === undefined) {
    return { skip: 'vectors-bls.json has no example-bls_send vector' };
  }
  return vector;
}

test('send matches the reference vector', async (t) => {
  const vector = sendVector();
  if ('skip' in vector) {
    t.skip(vector.skip);
    return;
  }
  // Source of the vector: its `source` field (computed with bls-wasm over the current hash format).
  t.diagnostic(vector.source);
  const expected = vector.transaction;
  const signer = await keyPairFromPrivateKey('bls0chain', vector.private_key);
  const signed = signTransaction(signer, {
    toClientId: String(expected.to_client_id),
    chainId: String(expected.chain_id),
    data: expected.transaction_data,
    valueSas: BigInt(expected.transaction_value as number),
    feeSas: BigInt(expected.transaction_fee as number),
    nonce: Number(expected.transaction_nonce),
    type: Number(expected.transaction_type),
    creationDate: Number(expected.creation_date),
  });
  assert.equal(signed.hash, expected.hash);
  assert.equal(signed.signature, expected.signature);
  assert.deepEqual(JSON.parse(transactionJson(signed)), expected);
});

test('hash covers value but not fee', () => {
  const base = {
    creationDate: 1_700_000_000,
    nonce: 7,
    clientId: 'a'.repeat(64),
    toClientId: 'b'.repeat(64),
    data: '{}',
  };
  const one = transactionHash({ ...base, valueSas: 1n });
  assert.notEqual(one, transactionHash({ ...base, valueSas: 2n }));
  assert.notEqual(one, transactionHash({ ...base, valueSas: 1n, nonce: 8 }));
  assert.equal(one, sha3Hex(`1700000000:7:${'a'.repeat(64)}:${'b'.repeat(64)}:1:${sha3Hex('{}')}`));
});

test('signature covers the raw hash bytes', async () => {
  const { randomBytes } = await import('node:crypto');
  const { ed25519KeyHex } = await freshEd25519(randomBytes(32));
  const signer = await keyPairFromPrivateKey('ed25519', ed25519KeyHex);
  const signed = signTransaction(signer, {
    toClientId: 'c'.repeat(64),
    chainId: 'd'.repeat(64),
    data: sendData('grant'),
    valueSas: 5n,
    feeSas: 1n,
    nonce: 1,
    type: TXN_TYPE_SEND,
    creationDate: 1_700_000_000,
  });
  assert.equal(verifySignature('ed25519', signer.publicKey, signed.hash, signed.signature), true);
});

test('amounts above 2^53 keep every digit', async () => {
  const { randomBytes } = await import('node:crypto');
  const { ed25519KeyHex } = await freshEd25519(randomBytes(32));
  const signer = await keyPairFromPrivateKey('ed25519', ed25519KeyHex);
  const value = 4_000_000_000_000_000_123n;
  const signed = signTransaction(signer, {
    toClientId: 'c'.repeat(64),
    chainId: 'd'.repeat(64),
    data: '{}',
    valueSas: value,
    feeSas: 10n,
    nonce: 1,
    type: TXN_TYPE_SEND,
    creationDate: 1_700_000_000,
  });
  const text = transactionJson(signed);
  assert.match(text, /"transaction_value":4000000000000000123,/);
  assert.equal(parseStoredTransaction(text).transaction_value, value);
});

test('negative value is rejected', async () => {
  const signer = { clientId: 'a'.repeat(64), publicKey: 'b', sign: () => 'never' };
  assert.throws(
    () =>
      signTransaction(signer, {
        toClientId: 'c'.repeat(64),
        chainId: 'd'.repeat(64),
        data: '{}',
        valueSas: -1n,
        feeSas: 0n,
        nonce: 1,
        type: TXN_TYPE_SEND,
        creationDate: 1,
      }),
    /must not be negative/,
  );
});

/** A golang-style ed25519 private key (seed || public key) made from a random seed. */
async function freshEd25519(seed: Buffer): Promise<{ ed25519KeyHex: string }> {
  const { createPrivateKey, createPublicKey } = await import('node:crypto');
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  const publicDer = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const publicKey = publicDer.subarray(publicDer.length - 32);
  return { ed25519KeyHex: Buffer.concat([seed, publicKey]).toString('hex') };
}
