/**
 * Tests of the fake Züs network's own rules: raw HTTP requests with transactions signed here with
 * bls-wasm and node:crypto, never with the project's client code, so the fake is checked on its own.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type KeyObject, sign as signEd25519 } from 'node:crypto';
import { createRequire } from 'node:module';
import { after, before, beforeEach, describe, test } from 'node:test';
import {
  MAIN_CHAIN_ID,
  MINER_SC_ADDRESS,
  STORAGE_SC_ADDRESS,
  startZusNetwork,
  type ZusNetworkFake,
} from '../src/sandbox/zus-network.js';

// --- keys and transactions built by the test itself ---

interface BlsSecretKey {
  setByCSPRNG(): void;
  getPublicKey(): { serializeToHexStr(): string };
  sign(message: Uint8Array): { serializeToHexStr(): string };
}

interface BlsWasm {
  BN254: number;
  init(curve: number): Promise<void>;
  SecretKey: new () => BlsSecretKey;
}

const require = createRequire(import.meta.url);
const bls = require('bls-wasm') as BlsWasm;

function sha3(data: string | Uint8Array): string {
  return createHash('sha3-256').update(data).digest('hex');
}

interface Wallet {
  clientId: string;
  publicKey: string;
  /** Signs the 32 raw bytes of a hex hash. */
  sign(hashHex: string): string;
}

function blsWallet(): Wallet {
  const secret = new bls.SecretKey();
  secret.setByCSPRNG();
  const publicKey = secret.getPublicKey().serializeToHexStr();
  return {
    clientId: sha3(Buffer.from(publicKey, 'hex')),
    publicKey,
    sign: (hashHex) => secret.sign(Buffer.from(hashHex, 'hex')).serializeToHexStr(),
  };
}

function ed25519Wallet(): Wallet {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url').toString('hex');
  return {
    clientId: sha3(Buffer.from(raw, 'hex')),
    publicKey: raw,
    sign: (hashHex) =>
      signEd25519(null, Buffer.from(hashHex, 'hex'), privateKey as KeyObject).toString('hex'),
  };
}

const ZCN = 10_000_000_000;
const GIB = 1024 ** 3;
const TRANSFER_FEE = 100_000_000;
/** new_allocation_request and update_allocation_request cost more than max_fee, so their fee is 1 ZCN. */
const STORAGE_FEE = ZCN;

interface TransactionFields {
  to: string;
  value?: number;
  fee?: number;
  nonce: number;
  type?: number;
  data?: string;
  creationDate?: number;
  chainId?: string;
}

type SignedTransaction = Record<string, unknown> & { hash: string };

function signTransaction(
  wallet: Wallet,
  network: ZusNetworkFake,
  fields: TransactionFields,
): SignedTransaction {
  const creationDate = fields.creationDate ?? network.now();
  const value = fields.value ?? 0;
  const data = fields.data ?? '';
  const hash = sha3(`${creationDate}:${fields.nonce}:${wallet.clientId}:${fields.to}:${value}:${sha3(data)}`);
  return {
    hash,
    version: '1.0',
    client_id: wallet.clientId,
    public_key: wallet.publicKey,
    to_client_id: fields.to,
    chain_id: fields.chainId ?? MAIN_CHAIN_ID,
    transaction_data: data,
    transaction_value: value,
    signature: wallet.sign(hash),
    creation_date: creationDate,
    transaction_fee: fields.fee ?? TRANSFER_FEE,
    transaction_nonce: fields.nonce,
    transaction_type: fields.type ?? 0,
    txn_output_hash: '',
    transaction_status: 0,
  };
}

function send(
  wallet: Wallet,
  network: ZusNetworkFake,
  to: string,
  value: number,
  nonce: number,
): SignedTransaction {
  return signTransaction(wallet, network, {
    to,
    value,
    nonce,
    data: JSON.stringify({ name: 'transfer', input: { note: 'test' } }),
  });
}

function storageCall(
  wallet: Wallet,
  network: ZusNetworkFake,
  name: string,
  input: unknown,
  fields: { nonce: number; value?: number; fee?: number },
): SignedTransaction {
  return signTransaction(wallet, network, {
    to: STORAGE_SC_ADDRESS,
    type: 1000,
    data: JSON.stringify({ name, input }),
    fee: STORAGE_FEE,
    ...fields,
  });
}

interface Answer {
  status: number;
  contentType: string;
  text: string;
  json: unknown;
}

async function request(url: string, init?: RequestInit): Promise<Answer> {
  const response = await fetch(url, init);
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', text, json };
}

function put(
  network: ZusNetworkFake,
  transaction: unknown,
  options: { miner?: number; contentType?: string | null; body?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (options.contentType !== null) {
    headers['content-type'] = options.contentType ?? 'application/json';
  }
  return request(`${network.minerUrls[options.miner ?? 0]}/v1/transaction/put`, {
    method: 'POST',
    headers,
    body: options.body ?? JSON.stringify(transaction),
  });
}

function sharderGet(
  network: ZusNetworkFake,
  path: string,
  query: Record<string, string> = {},
): Promise<Answer> {
  const search = new URLSearchParams(query).toString();
  return request(`${network.sharderUrls[0]}${path}${search === '' ? '' : `?${search}`}`);
}

function storageGet(
  network: ZusNetworkFake,
  endpoint: string,
  query: Record<string, string> = {},
): Promise<Answer> {
  return sharderGet(network, `/v1/screst/${STORAGE_SC_ADDRESS}/${endpoint}`, query);
}

async function confirmation(network: ZusNetworkFake, hash: string): Promise<Record<string, unknown>> {
  const answer = await sharderGet(network, '/v1/transaction/get/confirmation', { hash, content: 'lfb' });
  assert.equal(answer.status, 200, answer.text);
  const body = answer.json as { confirmation?: Record<string, unknown> };
  assert.ok(body.confirmation !== undefined, `no confirmation for ${hash}: ${answer.text}`);
  return body.confirmation;
}

function chainError(answer: Answer): { code?: string; error: string } {
  return answer.json as { code?: string; error: string };
}

function record(network: ZusNetworkFake, hash: string) {
  const found = network.transactions().find((item) => item.hash === hash);
  assert.ok(found !== undefined, `no ledger record for ${hash}`);
  return found;
}

const STORAGE_FIELDS: Record<string, string> = {
  time_unit: '720h0m0s',
  min_alloc_size: '1048576',
  max_blobbers_per_allocation: '20',
  max_read_price: '0',
  max_write_price: '0.1',
  min_write_price: '0.001',
  cancellation_charge: '0.2',
  health_check_period: '1h0m0s',
  'writepool.min_lock': '0.1',
};

const BLOBBER_PRICE = 100_000_000;

function blobberId(index: number): string {
  return sha3(`test blobber ${index}`);
}

function allocationInput(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    data_shards: 2,
    parity_shards: 2,
    size: 2 * GIB,
    owner_id: '',
    owner_public_key: '',
    blobbers: [0, 1, 2, 3].map(blobberId),
    blobber_auth_tickets: ['', '', '', ''],
    read_price_range: { min: 0, max: 0 },
    write_price_range: { min: 0, max: ZCN / 10 },
    third_party_extendable: false,
    is_enterprise: false,
    storage_version: 1,
    ...overrides,
  };
}

/** One time unit of 2 GiB on 2+2 blobbers at 0.01 ZCN per GiB: 4 × 1 GiB × price. */
const ALLOCATION_COST = 4 * BLOBBER_PRICE;

before(async () => {
  await bls.init(bls.BN254);
});

describe('fake miners: discovery and fees', () => {
  let network: ZusNetworkFake;

  before(async () => {
    network = await startZusNetwork({ sharders: 1, miners: 2, storageConfigFields: STORAGE_FIELDS });
  });
  after(() => network.close());

  test('block worker lists the miners', async () => {
    const answer = await request(`${network.blockWorkerUrl}/network`);

    assert.deepEqual(answer.json, { miners: network.minerUrls, sharders: network.sharderUrls });
    assert.equal(network.minerUrls.length, 2);
  });

  test('fees table has the bare map shape', async () => {
    const answer = await request(`${network.minerUrls[0]}/v1/fees_table`);

    const table = answer.json as Record<string, Record<string, number>>;
    assert.equal(answer.status, 200);
    assert.deepEqual(Object.keys(table), [STORAGE_SC_ADDRESS, 'transfer']);
    assert.deepEqual(table.transfer, { transfer: TRANSFER_FEE });
    assert.equal(table[STORAGE_SC_ADDRESS]?.new_allocation_request, STORAGE_FEE);
    assert.equal(table[STORAGE_SC_ADDRESS]?.update_allocation_request, STORAGE_FEE);
  });

  test('estimate_txn_fee returns the fee of a transaction', async () => {
    const wallet = blsWallet();
    const transaction = send(wallet, network, blsWallet().clientId, 1, 1);

    const answer = await request(`${network.minerUrls[1]}/v1/estimate_txn_fee`, {
      method: 'POST',
      body: JSON.stringify(transaction),
    });

    assert.deepEqual(answer.json, { fee: TRANSFER_FEE });
  });

  test('estimate_txn_fee needs a public key', async () => {
    const answer = await request(`${network.minerUrls[0]}/v1/estimate_txn_fee`, {
      method: 'POST',
      body: JSON.stringify({ to_client_id: STORAGE_SC_ADDRESS }),
    });

    assert.equal(answer.status, 400);
    assert.deepEqual(answer.json, { error: 'transaction missing public key' });
  });
});

describe('fake miners: rejections', () => {
  let network: ZusNetworkFake;
  let wallet: Wallet;
  const recipient = sha3('recipient');

  before(async () => {
    network = await startZusNetwork({
      sharders: 1,
      storageConfigFields: STORAGE_FIELDS,
      maxPayloadBytes: 2048,
    });
  });
  beforeEach(() => {
    wallet = blsWallet();
    network.setBalance(wallet.clientId, 10 * ZCN);
  });
  after(() => network.close());

  async function expectRejection(transaction: unknown, expected: { code?: string; error: string | RegExp }) {
    const answer = await put(network, transaction);
    assert.equal(answer.status, 400, answer.text);
    const body = chainError(answer);
    assert.equal(body.code, expected.code);
    if (typeof expected.error === 'string') {
      assert.equal(body.error, expected.error);
    } else {
      assert.match(body.error, expected.error);
    }
    return body;
  }

  test('requires the JSON content type', async () => {
    const answer = await put(network, send(wallet, network, recipient, 1, 1), { contentType: 'text/plain' });

    assert.equal(answer.status, 400);
    assert.equal(answer.text, 'Header Content-type=application/json not found\n');
  });

  test('rejects a body that is not a transaction', async () => {
    const invalidJson = await put(network, undefined, { body: '{"hash":' });
    const wrongType = await put(network, undefined, { body: '{"transaction_nonce":"1"}' });

    assert.equal(invalidJson.text, 'Error decoding json\n');
    assert.equal(wrongType.text, 'Error decoding json\n');
  });

  test('requires a public key that matches client_id', async () => {
    const transaction = send(wallet, network, recipient, 1, 1);
    const other = blsWallet();

    const missing = await put(network, { ...transaction, public_key: '' });
    const mismatched = await put(network, { ...transaction, public_key: other.publicKey });

    assert.equal(missing.status, 400);
    assert.equal(missing.text, 'Error computing properties\n');
    assert.equal(mismatched.text, 'Error computing properties\n');
  });

  test('requires a 64-hex to_client_id', async () => {
    await expectRejection(send(wallet, network, 'a'.repeat(66), 1, 1), { error: 'invalid to client id' });
  });

  test('rejects another chain id', async () => {
    const transaction = signTransaction(wallet, network, {
      to: recipient,
      nonce: 1,
      chainId: 'b'.repeat(64),
    });

    await expectRejection(transaction, { error: `chain ${'b'.repeat(64)} is not supported by this server` });
  });

  test('rejects a creation date outside the window', async () => {
    const now = network.now();
    const old = signTransaction(wallet, network, { to: recipient, nonce: 1, creationDate: now - 601 });
    const edge = signTransaction(wallet, network, { to: recipient, nonce: 1, creationDate: now - 600 });

    await expectRejection(old, {
      code: 'invalid_request',
      error: `invalid_request: Invalid request (Transaction creation time not within tolerance: ts=${now} txn.creation_date=${now - 601})`,
    });
    assert.equal((await put(network, edge)).status, 200);
  });

  test('rejects a transaction to its own sender', async () => {
    await expectRejection(send(wallet, network, wallet.clientId, 1, 1), {
      code: 'invalid_request',
      error: 'invalid_request: Invalid request (from and to client should be different)',
    });
  });

  test('recomputes the hash', async () => {
    const transaction = send(wallet, network, recipient, 1, 1);

    const body = await expectRejection(
      { ...transaction, transaction_value: 2 },
      {
        code: 'hash_mismatch',
        error: /^hash_mismatch: The hash of the data doesn't match with the provided hash: /,
      },
    );
    assert.ok(body.error.includes(`:${wallet.clientId}:${recipient}:2:`), body.error);
  });

  test('verifies the signature over the raw hash bytes', async () => {
    const transaction = send(wallet, network, recipient, 1, 1);
    const forged = blsWallet().sign(transaction.hash);
    const overHexText = wallet.sign(sha3(transaction.hash));

    for (const signature of [forged, overHexText]) {
      await expectRejection(
        { ...transaction, signature },
        { code: 'invalid_signature', error: 'invalid_signature: Invalid Signature' },
      );
    }
  });

  test('rejects a payload over the maximum', async () => {
    const transaction = signTransaction(wallet, network, { to: recipient, nonce: 1, data: 'x'.repeat(2049) });

    await expectRejection(transaction, {
      code: 'txn_exceed_max_payload',
      error: 'txn_exceed_max_payload: transaction payload exceeds the max payload (2048)',
    });
  });

  test('rejects used and far future nonces', async () => {
    await expectRejection(send(wallet, network, recipient, 1, 0), { error: 'invalid transaction nonce' });
    await expectRejection(send(wallet, network, recipient, 1, 12), { error: 'invalid future transaction' });
    assert.equal((await put(network, send(wallet, network, recipient, 1, 1))).status, 200);
    await expectRejection(send(wallet, network, recipient, 2, 1), { error: 'invalid transaction nonce' });
    assert.equal((await put(network, send(wallet, network, recipient, 1, 11))).status, 200);
  });

  test('requires the table fee', async () => {
    const transaction = signTransaction(wallet, network, {
      to: recipient,
      nonce: 1,
      fee: TRANSFER_FEE - 1,
      data: '{"name":"transfer","input":{}}',
    });

    await expectRejection(transaction, { error: 'insufficient transaction fee' });
  });

  test('checks the balance of the next transaction', async () => {
    network.setBalance(wallet.clientId, ZCN);

    await expectRejection(send(wallet, network, recipient, ZCN + 1, 1), {
      error: 'insufficient balance to send',
    });
    network.setBalance(wallet.clientId, TRANSFER_FEE - 1);
    await expectRejection(send(wallet, network, recipient, 0, 1), {
      error: 'insufficient balance to pay fee',
    });
    // A later nonce is not checked against the balance when it arrives.
    assert.equal((await put(network, send(wallet, network, recipient, ZCN, 2))).status, 200);
  });

  test('rejects a smart-contract call without a function', async () => {
    const transaction = signTransaction(wallet, network, {
      to: STORAGE_SC_ADDRESS,
      nonce: 1,
      type: 1000,
      data: 'not json',
    });

    const answer = await put(network, transaction);

    assert.equal(answer.text, 'Error computing properties\n');
  });
});

describe('fake miners: ed25519 networks', () => {
  test('verifies ed25519 signatures and rejects BLS ones', async () => {
    const network = await startZusNetwork({ sharders: 1, signatureScheme: 'ed25519' });
    try {
      const edWallet = ed25519Wallet();
      const blsClient = blsWallet();
      network.setBalance(edWallet.clientId, ZCN);
      network.setBalance(blsClient.clientId, ZCN);

      const accepted = await put(network, send(edWallet, network, blsClient.clientId, 5, 1));
      const rejected = await put(network, send(blsClient, network, edWallet.clientId, 5, 1));

      assert.equal(accepted.status, 200, accepted.text);
      assert.equal(rejected.status, 400);
      network.setClientSignatureScheme(blsClient.clientId, 'bls0chain');
      assert.equal((await put(network, send(blsClient, network, edWallet.clientId, 5, 1))).status, 200);
    } finally {
      await network.close();
    }
  });
});

describe('fake chain: sends and confirmations', () => {
  let network: ZusNetworkFake;

  before(async () => {
    network = await startZusNetwork({ sharders: 2, storageConfigFields: STORAGE_FIELDS, startRound: 100 });
  });
  after(() => network.close());

  test('moves value and charges the fee', async () => {
    const sender = blsWallet();
    const recipient = blsWallet();
    network.setBalance(sender.clientId, 10 * ZCN);
    const minerScBefore = network.getBalance(MINER_SC_ADDRESS);
    const roundBefore = network.currentRound();
    const transaction = send(sender, network, recipient.clientId, 3 * ZCN, 1);

    const answer = await put(network, transaction, { miner: 2 });

    assert.equal(answer.status, 200, answer.text);
    const accepted = answer.json as { async: boolean; entity: Record<string, unknown> };
    assert.equal(accepted.async, true);
    assert.equal(accepted.entity.hash, transaction.hash);
    assert.equal(accepted.entity.transaction_status, 0);
    assert.equal(network.getBalance(sender.clientId), BigInt(7 * ZCN - TRANSFER_FEE));
    assert.equal(network.getBalance(recipient.clientId), BigInt(3 * ZCN));
    assert.equal(network.getBalance(MINER_SC_ADDRESS) - minerScBefore, BigInt(TRANSFER_FEE));
    assert.equal(network.getNonce(sender.clientId), 1);
    assert.equal(network.currentRound(), roundBefore + 1);
  });

  test('serves the confirmation in both content modes', async () => {
    const sender = blsWallet();
    network.setBalance(sender.clientId, ZCN);
    const transaction = send(sender, network, sha3('someone'), 10, 1);
    await put(network, transaction);

    const wrapped = await sharderGet(network, '/v1/transaction/get/confirmation', {
      hash: transaction.hash,
      content: 'lfb',
    });
    const bare = await sharderGet(network, '/v1/transaction/get/confirmation', { hash: transaction.hash });

    const body = wrapped.json as {
      confirmation: Record<string, unknown>;
      latest_finalized_block: { round: number };
    };
    assert.deepEqual(Object.keys(body), ['confirmation', 'latest_finalized_block']);
    assert.equal(body.confirmation.hash, transaction.hash);
    assert.equal(body.confirmation.transaction_status, 1);
    assert.equal(body.confirmation.round, network.currentRound());
    assert.equal(body.latest_finalized_block.round, network.currentRound());
    const txn = body.confirmation.txn as Record<string, unknown>;
    assert.equal(txn.transaction_status, 1);
    assert.equal(txn.txn_output_hash, sha3(''));
    assert.deepEqual(bare.json, body.confirmation);
    const path = body.confirmation.merkle_tree_path as { nodes: string[] };
    assert.equal(body.confirmation.merkle_tree_root, sha3(`${path.nodes[0]}${path.nodes[0]}`));
  });

  test('answers not found for an unknown hash', async () => {
    const hash = sha3('never sent');

    const wrapped = await sharderGet(network, '/v1/transaction/get/confirmation', { hash, content: 'lfb' });
    const bare = await sharderGet(network, '/v1/transaction/get/confirmation', { hash });
    const missing = await sharderGet(network, '/v1/transaction/get/confirmation');

    assert.equal(wrapped.status, 200);
    const body = wrapped.json as { error: unknown; latest_finalized_block: unknown };
    assert.deepEqual(body.error, {
      code: 'entity_not_found',
      msg: `txn_summary not found with id = ${hash}`,
    });
    assert.ok(body.latest_finalized_block !== undefined);
    assert.equal(bare.status, 400);
    assert.deepEqual(bare.json, {
      code: 'entity_not_found',
      error: `entity_not_found: txn_summary not found with id = ${hash}`,
    });
    assert.equal(
      chainError(missing).error,
      'invalid_request: Invalid request (transaction hash (parameter hash) is required)',
    );
  });

  test('serves balances and value not present', async () => {
    const sender = blsWallet();
    network.setBalance(sender.clientId, ZCN);
    const transaction = send(sender, network, sha3('x'), 1, 1);
    await put(network, transaction);

    const known = await sharderGet(network, '/v1/client/get/balance', { client_id: sender.clientId });
    const unknown = await sharderGet(network, '/v1/client/get/balance', { client_id: sha3('unknown') });

    assert.deepEqual(known.json, {
      txn: transaction.hash,
      round: network.currentRound(),
      balance: ZCN - 1 - TRANSFER_FEE,
      nonce: 1,
    });
    assert.equal(unknown.status, 400);
    assert.deepEqual(unknown.json, { error: 'value not present' });
  });

  test('keeps amounts above 2^53 exact', async () => {
    const sender = blsWallet();
    const big = 2n ** 60n;
    network.setBalance(sender.clientId, big);

    const answer = await sharderGet(network, '/v1/client/get/balance', { client_id: sender.clientId });

    assert.ok(answer.text.includes(`"balance":${big}`), answer.text);
  });

  test('serves the round and the latest finalized block', async () => {
    const round = await sharderGet(network, '/v1/current-round');
    const block = await sharderGet(network, '/v1/block/get/latest_finalized');

    assert.equal(round.json, network.currentRound());
    const summary = block.json as Record<string, unknown>;
    assert.equal(summary.round, network.currentRound());
    assert.equal(summary.creation_date, network.now());
  });

  test('drops a send that cannot pay value and fee at execution', async () => {
    const sender = blsWallet();
    network.setBalance(sender.clientId, ZCN);
    const transaction = send(sender, network, sha3('y'), ZCN, 1);

    const answer = await put(network, transaction);

    // The miner checks value and fee apart; the state update needs both.
    assert.equal(answer.status, 200);
    assert.equal(record(network, transaction.hash).state, 'dropped');
    assert.equal(record(network, transaction.hash).output, 'insufficient balance to send');
    assert.equal(network.getNonce(sender.clientId), 0);
    const lookup = await sharderGet(network, '/v1/transaction/get/confirmation', { hash: transaction.hash });
    assert.equal(lookup.status, 400);
  });
});

describe('fake chain: pool, duplicates and clock', () => {
  let network: ZusNetworkFake;
  const recipient = sha3('pool recipient');

  before(async () => {
    network = await startZusNetwork({ sharders: 1, miners: 3, storageConfigFields: STORAGE_FIELDS });
  });
  after(() => network.close());

  test('applies the same transaction once', async () => {
    const sender = blsWallet();
    network.setBalance(sender.clientId, ZCN);
    const transaction = send(sender, network, recipient, 1000, 1);
    network.pauseBlocks();

    const answers = await Promise.all([0, 1, 2].map((miner) => put(network, transaction, { miner })));
    await network.resumeBlocks();
    const again = await put(network, transaction, { miner: 1 });

    assert.deepEqual(
      answers.map((answer) => answer.status),
      [200, 200, 200],
    );
    const entry = record(network, transaction.hash);
    assert.equal(entry.submissions, 3);
    assert.equal(entry.applied, 1);
    assert.equal(network.getBalance(sender.clientId), BigInt(ZCN - 1000 - TRANSFER_FEE));
    assert.equal(again.status, 400);
    assert.deepEqual(again.json, { error: 'invalid transaction nonce' });
  });

  test('applies concurrent copies once', async () => {
    const sender = blsWallet();
    network.setBalance(sender.clientId, ZCN);
    const transaction = send(sender, network, recipient, 1000, 1);

    const answers = await Promise.all(
      [0, 1, 2, 0, 1, 2].map((miner) => put(network, transaction, { miner })),
    );

    for (const answer of answers) {
      assert.ok(
        answer.status === 200 || chainError(answer).error === 'invalid transaction nonce',
        answer.text,
      );
    }
    const entry = record(network, transaction.hash);
    assert.equal(entry.state, 'applied');
    assert.equal(entry.applied, 1);
    assert.equal(network.getNonce(sender.clientId), 1);
    assert.equal(network.getBalance(sender.clientId), BigInt(ZCN - 1000 - TRANSFER_FEE));
  });

  test('applies one of two transactions with one nonce', async () => {
    const sender = blsWallet();
    network.setBalance(sender.clientId, ZCN);
    const cheap = send(sender, network, recipient, 1, 1);
    const dear = signTransaction(sender, network, {
      to: recipient,
      value: 2,
      nonce: 1,
      fee: TRANSFER_FEE + 5,
    });
    network.pauseBlocks();

    assert.equal((await put(network, cheap)).status, 200);
    assert.equal((await put(network, dear)).status, 200);
    await network.resumeBlocks();

    assert.equal(record(network, dear.hash).state, 'applied');
    assert.equal(record(network, cheap.hash).state, 'replaced');
    assert.equal(record(network, cheap.hash).applied, 0);
    assert.equal(network.getNonce(sender.clientId), 1);
    assert.equal(network.getBalance(sender.clientId), BigInt(ZCN - 2 - TRANSFER_FEE - 5));
  });

  test('holds later nonces until the gap fills', async () => {
    const sender = blsWallet();
    network.setBalance(sender.clientId, ZCN);
    const third = send(sender, network, recipient, 3, 3);
    const second = send(sender, network, recipient, 2, 2);
    const first = send(sender, network, recipient, 1, 1);

    await put(network, third);
    await put(network, second);
    const waiting = await sharderGet(network, '/v1/transaction/get/confirmation', { hash: third.hash });
    await put(network, first);

    assert.equal(waiting.status, 400);
    const rounds = await Promise.all(
      [first, second, third].map(async (item) => (await confirmation(network, item.hash)).round),
    );
    assert.deepEqual(rounds, [rounds[0], (rounds[0] as number) + 1, (rounds[0] as number) + 2]);
    assert.equal(network.getNonce(sender.clientId), 3);
  });

  test('drops a waiting transaction that ages out', async () => {
    const sender = blsWallet();
    network.setBalance(sender.clientId, ZCN);
    const waiting = send(sender, network, recipient, 2, 2);
    await put(network, waiting);

    network.advanceClock(600);
    const first = send(sender, network, recipient, 1, 1);
    await put(network, first);
    network.advanceClock(1);
    const resent = await put(network, waiting);

    assert.equal(record(network, waiting.hash).state, 'expired');
    assert.equal(record(network, first.hash).state, 'applied');
    assert.equal(network.getNonce(sender.clientId), 1);
    assert.equal(resent.status, 400);
    assert.match(chainError(resent).error, /Transaction creation time not within tolerance/);
  });

  test('reports the chain clock as the block time', async () => {
    const before = network.now();

    network.advanceClock(3600);
    const block = await sharderGet(network, '/v1/block/get/latest_finalized');

    assert.equal(network.now(), before + 3600);
    assert.equal((block.json as { creation_date: number }).creation_date, before + 3600);
  });

  test('advances rounds without transactions', async () => {
    const round = network.currentRound();

    network.advanceRounds(5);

    assert.equal(network.currentRound(), round + 5);
    assert.equal((await sharderGet(network, '/v1/current-round')).json, round + 5);
  });

  test('can start the clock at a fixed time', async () => {
    const fixed = await startZusNetwork({ sharders: 1, clockStart: 1_700_000_000 });
    try {
      fixed.advanceClock(10);

      assert.equal(fixed.now(), 1_700_000_010);
    } finally {
      await fixed.close();
    }
  });
});

describe('fake miners: node behaviours', () => {
  let network: ZusNetworkFake;

  before(async () => {
    network = await startZusNetwork({ sharders: 1, miners: 3, slowMs: 200 });
  });
  after(() => network.close());

  test('applies a transaction whose response is dropped', async () => {
    const sender = blsWallet();
    network.setBalance(sender.clientId, ZCN);
    const transaction = send(sender, network, sha3('drop'), 7, 1);
    network.dropNextPutResponse();

    await assert.rejects(put(network, transaction), TypeError);
    const entry = record(network, transaction.hash);

    assert.equal(entry.state, 'applied');
    assert.equal((await confirmation(network, transaction.hash)).transaction_status, 1);
    assert.equal((await put(network, send(sender, network, sha3('drop'), 7, 2))).status, 200);
  });

  test('down, 503 and refusing miners accept nothing', async () => {
    const sender = blsWallet();
    network.setBalance(sender.clientId, ZCN);
    const transaction = send(sender, network, sha3('refused'), 7, 1);
    await network.setMinerBehaviour(0, 'down');
    await network.setMinerBehaviour(1, 'http503');
    await network.setMinerBehaviour(2, { error: 'miner state not ready', code: 'internal_error' });

    await assert.rejects(put(network, transaction, { miner: 0 }));
    const unavailable = await put(network, transaction, { miner: 1 });
    const refused = await put(network, transaction, { miner: 2 });

    assert.equal(unavailable.status, 503);
    assert.equal(refused.status, 500);
    assert.deepEqual(refused.json, {
      code: 'internal_error',
      error: 'internal_error: miner state not ready',
    });
    assert.equal(
      network.transactions().some((item) => item.hash === transaction.hash),
      false,
    );
    for (const index of [0, 1, 2]) {
      await network.setMinerBehaviour(index, 'ok');
    }
    assert.equal((await put(network, transaction, { miner: 0 })).status, 200);
  });

  test('a slow miner answers late', async () => {
    const sender = blsWallet();
    network.setBalance(sender.clientId, ZCN);
    await network.setMinerBehaviour(1, 'slow');
    const started = Date.now();

    const answer = await put(network, send(sender, network, sha3('slow'), 1, 1), { miner: 1 });

    assert.equal(answer.status, 200);
    assert.ok(Date.now() - started >= 190, `answered after ${Date.now() - started} ms`);
    await network.setMinerBehaviour(1, 'ok');
  });
});

describe('fake storage SC: new allocations', () => {
  let network: ZusNetworkFake;
  let owner: Wallet;
  let nonce: number;

  before(async () => {
    network = await startZusNetwork({ sharders: 1, storageConfigFields: STORAGE_FIELDS });
    for (let index = 0; index < 6; index += 1) {
      network.upsertBlobber({ id: blobberId(index), writePrice: BLOBBER_PRICE, readPrice: 0 });
    }
  });
  beforeEach(() => {
    owner = blsWallet();
    nonce = 0;
    network.setBalance(owner.clientId, 100 * ZCN);
  });
  after(() => network.close());

  async function create(input: Record<string, unknown>, value: number) {
    nonce += 1;
    const transaction = storageCall(owner, network, 'new_allocation_request', input, { nonce, value });
    const answer = await put(network, transaction);
    assert.equal(answer.status, 200, answer.text);
    return { transaction, confirmation: await confirmation(network, transaction.hash) };
  }

  test('creates an allocation that the sharders serve', async () => {
    const { transaction, confirmation: result } = await create(allocationInput(), ALLOCATION_COST);

    assert.equal(result.transaction_status, 1);
    const output = JSON.parse((result.txn as { transaction_output: string }).transaction_output) as {
      id: string;
      blobber_ids: string[];
    };
    assert.equal(output.id, transaction.hash);
    assert.deepEqual(output.blobber_ids, [0, 1, 2, 3].map(blobberId));
    const allocation = (await storageGet(network, 'allocation', { allocation: transaction.hash }))
      .json as Record<string, unknown>;
    assert.equal(allocation.owner_id, owner.clientId);
    assert.equal(allocation.owner_public_key, owner.publicKey);
    assert.equal(allocation.expiration_date, (transaction.creation_date as number) + 720 * 3600);
    assert.equal(allocation.write_pool, ALLOCATION_COST);
    assert.equal(allocation.time_unit, 720 * 3600 * 1e9);
    assert.equal((allocation.blobbers as unknown[]).length, 4);
    assert.equal(network.getBalance(owner.clientId), BigInt(100 * ZCN - ALLOCATION_COST - STORAGE_FEE));
    const listed = (await storageGet(network, 'allocations', { client: owner.clientId })).json as {
      id: string;
    }[];
    assert.deepEqual(
      listed.map((item) => item.id),
      [transaction.hash],
    );
  });

  test('makes owner_id the owner', async () => {
    const other = blsWallet();

    const { transaction } = await create(
      allocationInput({ owner_id: other.clientId, owner_public_key: other.publicKey }),
      ALLOCATION_COST,
    );

    const allocation = (await storageGet(network, 'allocation', { allocation: transaction.hash }))
      .json as Record<string, unknown>;
    assert.equal(allocation.owner_id, other.clientId);
  });

  test('fails a lock below the cost and charges only the fee', async () => {
    const { confirmation: result } = await create(allocationInput(), ALLOCATION_COST - 1);

    assert.equal(result.transaction_status, 2);
    assert.equal(
      (result.txn as { transaction_output: string }).transaction_output,
      `allocation_creation_failed: not enough tokens to honor the allocation cost ${ALLOCATION_COST - 1} < ${ALLOCATION_COST}`,
    );
    assert.equal(network.getBalance(owner.clientId), BigInt(100 * ZCN - STORAGE_FEE));
    assert.equal(network.getNonce(owner.clientId), 1);
  });

  test('caps the price at max_write_price and rounds each blobber down', async () => {
    network.upsertBlobber({ id: blobberId(9), writePrice: 3 * ZCN });
    const blobbers = [0, 1, 2, 9].map(blobberId);
    const size = 3 * GIB + 1;
    // ceil(size / 2) bytes per blobber; 0.1 ZCN is the cap.
    const perBlobber = Math.ceil(size / 2) / GIB;
    const cost = 3 * Math.trunc(BLOBBER_PRICE * perBlobber) + Math.trunc((ZCN / 10) * perBlobber);

    const short = await create(
      allocationInput({ size, blobbers, write_price_range: { min: 0, max: 3 * ZCN } }),
      cost - 1,
    );
    const enough = await create(
      allocationInput({ size, blobbers, write_price_range: { min: 0, max: 3 * ZCN } }),
      cost,
    );

    assert.match(
      (short.confirmation.txn as { transaction_output: string }).transaction_output,
      new RegExp(`< ${cost}$`),
    );
    assert.equal(enough.confirmation.transaction_status, 1);
  });

  test('reports each rejected blobber', async () => {
    network.upsertBlobber({ id: blobberId(10), writePrice: BLOBBER_PRICE, isKilled: true });
    network.upsertBlobber({ id: blobberId(11), writePrice: BLOBBER_PRICE, notAvailable: true });
    const blobbers = [0, 1, 10, 11].map(blobberId);

    const { confirmation: result } = await create(allocationInput({ blobbers }), ALLOCATION_COST);

    assert.equal(
      (result.txn as { transaction_output: string }).transaction_output,
      `allocation_creation_failed: Not enough blobbers to honor the allocation: blobber ${blobberId(10)} is not active, killed, blobber ${blobberId(11)} is not currently available for new allocations`,
    );
  });

  test('uses the first data+parity blobbers that pass', async () => {
    network.upsertBlobber({ id: blobberId(12), writePrice: BLOBBER_PRICE, isShutdown: true });
    const blobbers = [12, 0, 1, 2, 3].map(blobberId);

    const { confirmation: result } = await create(
      allocationInput({ blobbers, blobber_auth_tickets: ['', '', '', '', ''] }),
      ALLOCATION_COST,
    );

    const output = JSON.parse((result.txn as { transaction_output: string }).transaction_output) as {
      blobber_ids: string[];
    };
    assert.deepEqual(output.blobber_ids, [0, 1, 2, 3].map(blobberId));
  });

  test('checks the request before the blobbers', async () => {
    const small = await create(allocationInput({ size: 1024 }), ALLOCATION_COST);
    const tickets = await create(allocationInput({ blobber_auth_tickets: [''] }), ALLOCATION_COST);
    const missing = await create(
      allocationInput({ blobbers: [blobberId(0), blobberId(1), blobberId(2), sha3('no')] }),
      ALLOCATION_COST,
    );
    const malformed = await create(allocationInput({ size: '2GB' }), ALLOCATION_COST);

    const output = (item: { confirmation: Record<string, unknown> }) =>
      (item.confirmation.txn as { transaction_output: string }).transaction_output;
    assert.equal(output(small), 'allocation_creation_failed: invalid request: insufficient allocation size');
    assert.equal(output(tickets), 'allocation_creation_failed: blobber_auth_tickets are less than blobbers');
    assert.equal(output(missing), 'allocation_creation_failed: get blobbers failed: value not present');
    assert.equal(
      output(malformed),
      'allocation_creation_failed: malformed request: json: cannot unmarshal string into Go struct field newAllocationRequest.size of type int64',
    );
  });

  test('needs a signed auth ticket for a restricted blobber', async () => {
    const blobberKey = new bls.SecretKey();
    blobberKey.setByCSPRNG();
    const restricted = blobberId(20);
    network.upsertBlobber({
      id: restricted,
      writePrice: BLOBBER_PRICE,
      isRestricted: true,
      publicKey: blobberKey.getPublicKey().serializeToHexStr(),
    });
    const blobbers = [0, 1, 2, 20].map(blobberId);
    const expiry = network.currentRound() + 100;
    const ticket = blobberKey
      .sign(Buffer.from(sha3(`${owner.clientId}_${expiry}`), 'hex'))
      .serializeToHexStr();
    const wrongOwner = blobberKey
      .sign(Buffer.from(sha3(`${sha3('x')}_${expiry}`), 'hex'))
      .serializeToHexStr();

    const without = await create(allocationInput({ blobbers }), ALLOCATION_COST);
    const forged = await create(
      allocationInput({
        blobbers,
        blobber_auth_tickets: ['', '', '', wrongOwner],
        auth_round_expiry: expiry,
      }),
      ALLOCATION_COST,
    );
    const expired = await create(
      allocationInput({ blobbers, blobber_auth_tickets: ['', '', '', ticket], auth_round_expiry: 1 }),
      ALLOCATION_COST,
    );
    const valid = await create(
      allocationInput({ blobbers, blobber_auth_tickets: ['', '', '', ticket], auth_round_expiry: expiry }),
      ALLOCATION_COST,
    );

    const output = (item: { confirmation: Record<string, unknown> }) =>
      (item.confirmation.txn as { transaction_output: string }).transaction_output;
    assert.match(
      output(without),
      new RegExp(
        `blobber ${restricted} auth ticket verification failed: invalid_auth_ticket: empty auth ticket$`,
      ),
    );
    assert.match(output(forged), new RegExp(`blobber ${restricted} auth ticket verification failed$`));
    assert.match(
      output(expired),
      /auth_ticket_expired: auth ticket expired, current round: \d+, expiry round: 1$/,
    );
    assert.equal(valid.confirmation.transaction_status, 1, output(valid));
  });

  test('keeps enterprise and open allocations apart', async () => {
    network.upsertBlobber({ id: blobberId(21), writePrice: BLOBBER_PRICE, isEnterprise: true });
    const blobbers = [0, 1, 2, 21].map(blobberId);

    const { confirmation: result } = await create(allocationInput({ blobbers }), ALLOCATION_COST);

    assert.match(
      (result.txn as { transaction_output: string }).transaction_output,
      new RegExp(`blobber ${blobberId(21)} is enterprise$`),
    );
  });

  test('fails a lock above the balance', async () => {
    network.setBalance(owner.clientId, 2 * ZCN);

    const { confirmation: result } = await create(allocationInput(), 3 * ZCN);

    assert.equal(result.transaction_status, 2);
    assert.equal(
      (result.txn as { transaction_output: string }).transaction_output,
      'allocation_creation_failed: lock amount is greater than balance',
    );
    assert.equal(network.getBalance(owner.clientId), BigInt(ZCN));
  });

  test('drops a call whose lock leaves too little for the fee', async () => {
    network.setBalance(owner.clientId, 2 * ZCN);
    const transaction = storageCall(owner, network, 'new_allocation_request', allocationInput(), {
      nonce: 1,
      value: 2 * ZCN,
    });

    const answer = await put(network, transaction);

    assert.equal(answer.status, 200, answer.text);
    assert.equal(record(network, transaction.hash).state, 'dropped');
    assert.equal(network.getBalance(owner.clientId), BigInt(2 * ZCN));
    assert.equal(network.getNonce(owner.clientId), 0);
    const created = await storageGet(network, 'allocation', { allocation: transaction.hash });
    assert.equal(created.status, 500);
  });
});

describe('fake storage SC: failed status of older nodes', () => {
  test('records status 3 when configured', async () => {
    const network = await startZusNetwork({
      sharders: 1,
      storageConfigFields: STORAGE_FIELDS,
      executionErrorStatus: 3,
    });
    try {
      const owner = blsWallet();
      network.setBalance(owner.clientId, 10 * ZCN);
      const transaction = storageCall(owner, network, 'new_allocation_request', allocationInput(), {
        nonce: 1,
      });

      await put(network, transaction);

      assert.equal((await confirmation(network, transaction.hash)).transaction_status, 3);
      assert.equal(record(network, transaction.hash).state, 'failed');
    } finally {
      await network.close();
    }
  });
});

describe('fake storage SC: updates', () => {
  let network: ZusNetworkFake;
  let owner: Wallet;
  let stranger: Wallet;
  const nonces = new Map<string, number>();

  function nextNonce(wallet: Wallet): number {
    const value = (nonces.get(wallet.clientId) ?? 0) + 1;
    nonces.set(wallet.clientId, value);
    return value;
  }

  async function call(wallet: Wallet, name: string, input: Record<string, unknown>, value = 0) {
    const transaction = storageCall(wallet, network, name, input, { nonce: nextNonce(wallet), value });
    const answer = await put(network, transaction);
    assert.equal(answer.status, 200, answer.text);
    const result = await confirmation(network, transaction.hash);
    return {
      transaction,
      status: result.transaction_status,
      output: (result.txn as { transaction_output: string }).transaction_output,
    };
  }

  async function createAllocation(extendable: boolean): Promise<string> {
    const created = await call(
      owner,
      'new_allocation_request',
      allocationInput({ third_party_extendable: extendable }),
      ALLOCATION_COST,
    );
    assert.equal(created.status, 1, created.output);
    return created.transaction.hash;
  }

  async function allocation(id: string): Promise<Record<string, unknown>> {
    return (await storageGet(network, 'allocation', { allocation: id })).json as Record<string, unknown>;
  }

  before(async () => {
    network = await startZusNetwork({ sharders: 1, storageConfigFields: STORAGE_FIELDS });
    for (let index = 0; index < 6; index += 1) {
      network.upsertBlobber({ id: blobberId(index), writePrice: BLOBBER_PRICE, readPrice: 0 });
    }
  });
  beforeEach(() => {
    owner = blsWallet();
    stranger = blsWallet();
    network.setBalance(owner.clientId, 100 * ZCN);
    network.setBalance(stranger.clientId, 100 * ZCN);
  });
  after(() => network.close());

  test('owner extends and grows an allocation with the required lock', async () => {
    const id = await createAllocation(false);
    network.advanceClock(3600);

    const short = await call(owner, 'update_allocation_request', { id, size: 2 * GIB, extend: true });
    const grown = await call(
      owner,
      'update_allocation_request',
      { id, size: 2 * GIB, extend: true },
      ALLOCATION_COST,
    );

    assert.equal(short.status, 2);
    assert.equal(
      short.output,
      `allocation_updating_failed: not enough tokens to cover update allocation cost (locked : 0 < required : ${ALLOCATION_COST})`,
    );
    assert.equal(grown.status, 1, grown.output);
    const state = await allocation(id);
    assert.equal(state.size, 4 * GIB);
    assert.equal(state.expiration_date, (grown.transaction.creation_date as number) + 720 * 3600);
    assert.equal(state.write_pool, 2 * ALLOCATION_COST);
    assert.equal(state.tx, grown.transaction.hash);
  });

  test('min lock endpoint adds 5% to the required lock', async () => {
    const id = await createAllocation(false);
    const data = JSON.stringify({ id, owner_id: owner.clientId, size: 2 * GIB, extend: true });

    const answer = await storageGet(network, 'allocation-update-min-lock', { data });

    const minLock = (answer.json as { min_lock_demand: number }).min_lock_demand;
    assert.equal(minLock, Math.trunc(ALLOCATION_COST * 1.05));
    const update = await call(
      owner,
      'update_allocation_request',
      { id, size: 2 * GIB, extend: true },
      minLock,
    );
    assert.equal(update.status, 1, update.output);
  });

  test('min lock endpoint reports unknown allocations and bad sizes', async () => {
    const unknown = await storageGet(network, 'allocation-update-min-lock', {
      data: JSON.stringify({ id: sha3('none'), size: 1 }),
    });
    const negative = await storageGet(network, 'allocation-update-min-lock', {
      data: JSON.stringify({ id: sha3('none'), size: -1 }),
    });

    assert.equal(unknown.status, 400);
    assert.equal(
      chainError(unknown).error,
      `invalid_request: error retrieving allocation: ${sha3('none')}, error: record not found`,
    );
    assert.deepEqual(negative.json, { code: 'invalid_request', error: 'invalid_request: invalid size' });
  });

  test('a stranger cannot change an allocation that is not third-party extendable', async () => {
    const id = await createAllocation(false);

    const result = await call(stranger, 'update_allocation_request', { id, extend: true }, ALLOCATION_COST);

    assert.equal(result.status, 2);
    assert.equal(result.output, 'allocation_updating_failed: only owner can update the allocation');
    assert.equal(network.getBalance(stranger.clientId), BigInt(100 * ZCN - STORAGE_FEE));
  });

  test('a stranger may only extend a third-party-extendable allocation', async () => {
    const id = await createAllocation(true);

    const options = await call(stranger, 'update_allocation_request', {
      id,
      file_options_changed: true,
      file_options: 1,
    });
    const extended = await call(
      stranger,
      'update_allocation_request',
      { id, extend: true, file_options_changed: true, file_options: 1, add_blobber_id: blobberId(4) },
      0,
    );

    assert.equal(options.output, 'allocation_updating_failed: only owner can update the allocation');
    assert.equal(extended.status, 1, extended.output);
    const state = await allocation(id);
    // The extension applied; the option and blobber changes of a non-owner are ignored.
    assert.equal(state.expiration_date, (extended.transaction.creation_date as number) + 720 * 3600);
    assert.equal(state.file_options, 63);
    assert.equal((state.blobber_details as unknown[]).length, 4);
    assert.equal(state.owner_id, owner.clientId);
  });

  test('owner adds and replaces blobbers', async () => {
    const id = await createAllocation(false);

    // The chain's "changes nothing" check ignores remove_blobber_id, so a lone removal fails there.
    const removeOnly = await call(owner, 'update_allocation_request', {
      id,
      remove_blobber_id: blobberId(0),
    });
    const removeAndExtend = await call(owner, 'update_allocation_request', {
      id,
      extend: true,
      remove_blobber_id: blobberId(0),
    });
    const added = await call(
      owner,
      'update_allocation_request',
      { id, add_blobber_id: blobberId(4) },
      BLOBBER_PRICE,
    );
    const replaced = await call(
      owner,
      'update_allocation_request',
      {
        id,
        add_blobber_id: blobberId(5),
        remove_blobber_id: blobberId(0),
      },
      BLOBBER_PRICE,
    );
    const again = await call(owner, 'update_allocation_request', { id, add_blobber_id: blobberId(5) });

    assert.equal(removeOnly.output, 'allocation_updating_failed: update allocation changes nothing');
    assert.equal(
      removeAndExtend.output,
      'allocation_updating_failed: cannot remove a blobber without adding one',
    );
    assert.equal(added.status, 1, added.output);
    assert.equal(replaced.status, 1, replaced.output);
    assert.equal(
      again.output,
      `allocation_updating_failed: cannot add blobber ${blobberId(5)}, already in allocation`,
    );
    const state = await allocation(id);
    assert.equal(state.parity_shards, 3);
    assert.deepEqual(
      (state.blobber_details as { blobber_id: string }[]).map((item) => item.blobber_id),
      [5, 1, 2, 3, 4].map(blobberId),
    );
  });

  test('rejects updates that change nothing or reduce', async () => {
    const id = await createAllocation(false);

    const nothing = await call(owner, 'update_allocation_request', { id });
    const reduce = await call(owner, 'update_allocation_request', { id, size: -1 });
    const unknown = await call(owner, 'update_allocation_request', { id: sha3('missing'), extend: true });

    assert.equal(nothing.output, 'allocation_updating_failed: update allocation changes nothing');
    assert.equal(reduce.output, "allocation_updating_failed: allocation can't be reduced");
    assert.equal(
      unknown.output,
      "allocation_updating_failed: can't get existing allocation: value not present",
    );
  });

  test('owner transfers ownership only with a public key', async () => {
    const id = await createAllocation(false);

    const withoutKey = await call(owner, 'update_allocation_request', { id, owner_id: stranger.clientId });
    const withKey = await call(owner, 'update_allocation_request', {
      id,
      owner_id: stranger.clientId,
      owner_public_key: stranger.publicKey,
    });

    assert.equal(
      withoutKey.output,
      'allocation_updating_failed: owner public key is required when updating owner id',
    );
    assert.equal(withKey.status, 1, withKey.output);
    assert.equal((await allocation(id)).owner_id, stranger.clientId);
  });

  test('a stranger with an owner-signed update ticket acts for the owner', async () => {
    const ownerKey = new bls.SecretKey();
    ownerKey.setByCSPRNG();
    const ownerPublicKey = ownerKey.getPublicKey().serializeToHexStr();
    const created = await call(
      owner,
      'new_allocation_request',
      allocationInput({
        owner_id: sha3(Buffer.from(ownerPublicKey, 'hex')),
        owner_public_key: ownerPublicKey,
      }),
      ALLOCATION_COST,
    );
    const id = created.transaction.hash;
    const ownerId = sha3(Buffer.from(ownerPublicKey, 'hex'));
    const roundExpiry = network.currentRound() + 50;
    const ticket = (operation: string, signer: BlsSecretKey) => ({
      allocation_id: id,
      user_id: stranger.clientId,
      round_expiry: roundExpiry,
      operation_type: operation,
      signature: signer
        .sign(Buffer.from(`${id}:${roundExpiry}:${stranger.clientId}:${operation}`))
        .serializeToHexStr(),
    });
    const otherKey = new bls.SecretKey();
    otherKey.setByCSPRNG();

    const forged = await call(stranger, 'update_allocation_request', {
      id,
      owner_id: ownerId,
      add_blobber_id: blobberId(4),
      update_ticket: ticket('add_blobber', otherKey),
    });
    const wrongOperation = await call(stranger, 'update_allocation_request', {
      id,
      owner_id: ownerId,
      add_blobber_id: blobberId(4),
      update_ticket: ticket('extend', ownerKey),
    });
    const added = await call(
      stranger,
      'update_allocation_request',
      { id, owner_id: ownerId, add_blobber_id: blobberId(4), update_ticket: ticket('add_blobber', ownerKey) },
      BLOBBER_PRICE,
    );

    assert.match(forged.output, /^allocation_updating_failed: UpdateTicket Signature verification failed/);
    assert.equal(
      wrongOperation.output,
      'allocation_updating_failed: invalid UpdateTicket: OperationType extend has conflicting or missing parameters',
    );
    assert.equal(added.status, 1, added.output);
    assert.equal((await allocation(id)).parity_shards, 3);
  });

  test('refuses to update an expired allocation', async () => {
    const id = await createAllocation(true);
    network.advanceClock(720 * 3600 + 1);

    const result = await call(owner, 'update_allocation_request', { id, extend: true }, ALLOCATION_COST);

    assert.equal(result.output, "allocation_updating_failed: can't update expired allocation");
  });
});

describe('fake sharders: blobber reads', () => {
  let network: ZusNetworkFake;

  before(async () => {
    network = await startZusNetwork({ sharders: 1, storageConfigFields: STORAGE_FIELDS });
    network.upsertBlobber({ id: blobberId(0), writePrice: BLOBBER_PRICE });
    network.upsertBlobber({ id: blobberId(1), writePrice: BLOBBER_PRICE, isRestricted: true });
    network.upsertBlobber({ id: blobberId(2), writePrice: BLOBBER_PRICE, isKilled: true });
    network.upsertBlobber({ id: blobberId(3), writePrice: BLOBBER_PRICE, notAvailable: true });
    network.upsertBlobber({ id: blobberId(4), writePrice: 2 * ZCN });
    network.upsertBlobber({ id: blobberId(5), writePrice: BLOBBER_PRICE, capacity: GIB / 2 });
  });
  after(() => network.close());

  test("getblobbers lists every blobber with today's fields", async () => {
    const answer = await storageGet(network, 'getblobbers');

    const nodes = (answer.json as { Nodes: Record<string, unknown>[] }).Nodes;
    assert.equal(nodes.length, 6);
    const restricted = nodes.find((node) => node.id === blobberId(1));
    assert.equal(restricted?.is_restricted, true);
    assert.equal(nodes.find((node) => node.id === blobberId(2))?.is_killed, true);
    assert.equal(nodes.find((node) => node.id === blobberId(3))?.not_available, true);
    assert.ok(restricted !== undefined);
    for (const field of [
      'is_enterprise',
      'is_shutdown',
      'terms',
      'capacity',
      'allocated',
      'storage_version',
    ]) {
      assert.ok(field in restricted, `missing ${field}`);
    }
    const active = (await storageGet(network, 'getblobbers', { active: 'true' })).json as {
      Nodes: unknown[];
    };
    assert.equal(active.Nodes.length, 5);
  });

  test('getBlobber answers one blobber or internal_error', async () => {
    const found = await storageGet(network, 'getBlobber', { blobber_id: blobberId(0) });
    const missing = await storageGet(network, 'getBlobber', { blobber_id: sha3('none') });

    assert.equal((found.json as { id: string }).id, blobberId(0));
    assert.equal(missing.status, 500);
    assert.deepEqual(missing.json, {
      code: 'internal_error',
      error: `internal_error: error retrieving blobber ${sha3('none')}, error record not found`,
    });
  });

  test('alloc_blobbers applies the chain filters', async () => {
    const request = (overrides: Record<string, unknown>) =>
      JSON.stringify({
        data_shards: 1,
        parity_shards: 1,
        size: GIB,
        read_price_range: { min: 0, max: 0 },
        write_price_range: { min: 0, max: ZCN },
        is_restricted: 0,
        storage_version: 1,
        ...overrides,
      });

    const any = await storageGet(network, 'alloc_blobbers', { allocation_data: request({}) });
    const open = await storageGet(network, 'alloc_blobbers', {
      allocation_data: request({ parity_shards: 0, is_restricted: 2 }),
    });
    const tooMany = await storageGet(network, 'alloc_blobbers', {
      allocation_data: request({ data_shards: 2, is_restricted: 1 }),
    });
    const forced = await storageGet(network, 'alloc_blobbers', {
      allocation_data: request({ data_shards: 2, is_restricted: 1 }),
      force: 'true',
    });

    assert.deepEqual(any.json, [blobberId(0), blobberId(1)]);
    assert.deepEqual(open.json, [blobberId(0)]);
    assert.equal(tooMany.status, 400);
    assert.deepEqual(tooMany.json, { error: 'not enough blobbers to honor the allocation : 1 < 3' });
    assert.deepEqual(forced.json, [blobberId(1)]);
  });
});
