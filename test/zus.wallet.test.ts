import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inspect } from 'node:util';
import { generateMnemonic, validateMnemonic } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import { ConfigError } from '../src/core/errors.js';
import { createLogger } from '../src/core/output/logger.js';
import {
  InvalidKeyError,
  keyPairFromPrivateKey,
  keyPairFromSeed,
  type SignatureScheme,
  verifySignature,
} from '../src/core/zus/signature.js';
import { loadWallet, Wallet, walletFromMnemonic } from '../src/core/zus/wallet.js';

const VARIABLE = 'ZBOX_TEAM_WALLET';
const SCHEMES = ['bls0chain', 'ed25519'] as const;

const sha3 = (data: string | Buffer): string => createHash('sha3-256').update(data).digest('hex');

/** A wallet's secrets, for checking that no output contains them. */
interface Secrets {
  privateKey?: string;
  mnemonic?: string;
}

/** Makes a fresh random key in gosdk's private-key hex form, with its public key and client id. */
async function freshKey(scheme: SignatureScheme) {
  if (scheme === 'bls0chain') {
    const secret = randomBytes(32);
    // Little-endian: clearing the top three bits keeps the value below the BN254 order.
    secret[31] = (secret[31] ?? 0) & 0x1f;
    const privateKey = secret.toString('hex');
    const keyPair = await keyPairFromPrivateKey(scheme, privateKey);
    return { privateKey, publicKey: keyPair.publicKey, clientId: keyPair.clientId };
  }
  const seed = randomBytes(32);
  const keyPair = await keyPairFromSeed(scheme, seed);
  return {
    privateKey: seed.toString('hex') + keyPair.publicKey,
    publicKey: keyPair.publicKey,
    clientId: keyPair.clientId,
  };
}

/** Wallet JSON with the fields gosdk's `Wallet` type writes. */
function gosdkWallet(key: { privateKey: string; publicKey: string; clientId: string }, mnemonic = '') {
  return {
    client_id: key.clientId,
    client_key: key.publicKey,
    keys: [{ public_key: key.publicKey, private_key: key.privateKey }],
    mnemonics: mnemonic,
    version: '1.0',
    date_created: '2025-01-01T00:00:00Z',
    nonce: 0,
    is_split: false,
    peer_public_key: '',
  };
}

/** Collects every text through which a secret could leak from a thrown value. */
function errorTexts(error: unknown): string[] {
  const lines: string[] = [];
  const logger = createLogger({ json: true, level: 'debug', write: (line) => lines.push(line) });
  logger.error('wallet failed', { error });
  return [
    String(error),
    inspect(error, { depth: Number.POSITIVE_INFINITY, showHidden: true }),
    JSON.stringify(error),
    error instanceof Error ? error.message : '',
    error instanceof Error ? String(error.stack) : '',
    ...lines,
  ];
}

function assertNoSecret(texts: string[], secrets: Secrets): void {
  for (const text of texts) {
    const lower = text.toLowerCase();
    if (secrets.privateKey !== undefined) {
      // The first 32 bytes are the secret part of both schemes' private keys. Any 8 hex digits of
      // them count as a leak, because JSON.parse messages quote about 10 characters of the input.
      const secretHex = secrets.privateKey.slice(0, 64).toLowerCase();
      for (let start = 0; start + 8 <= secretHex.length; start++) {
        const piece = secretHex.slice(start, start + 8);
        assert.ok(!lower.includes(piece), `private key digits ${piece} in: ${text.slice(0, 160)}`);
      }
    }
    if (secrets.mnemonic !== undefined) {
      const words = secrets.mnemonic.split(/\s+/);
      for (let i = 0; i + 1 < words.length; i++) {
        const pair = `${words[i]} ${words[i + 1]}`;
        assert.ok(!lower.includes(pair), `mnemonic words "${pair}" in: ${text.slice(0, 120)}`);
      }
    }
  }
}

/** Awaits a rejection with a ConfigError naming the variable, matching `pattern`, leaking nothing. */
async function assertConfigError(
  promise: Promise<unknown>,
  pattern: RegExp,
  secrets: Secrets,
): Promise<string> {
  let caught: unknown;
  await assert.rejects(promise, (error: unknown) => {
    caught = error;
    return true;
  });
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${inspect(caught)}`);
  assert.ok(
    caught.message.startsWith(`${VARIABLE}: `),
    `message does not name the variable: ${caught.message}`,
  );
  assert.match(caught.message, pattern);
  assertNoSecret(errorTexts(caught), secrets);
  return caught.message;
}

/** Returns `mnemonic` with its last word replaced so that the BIP39 checksum no longer matches. */
function breakChecksum(mnemonic: string): string {
  const words = mnemonic.split(' ');
  for (const candidate of wordlist) {
    const changed = [...words.slice(0, -1), candidate].join(' ');
    if (!validateMnemonic(changed, wordlist)) {
      return changed;
    }
  }
  throw new Error('every last word kept the checksum valid');
}

let folder: string;

before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'zbox-wallet-test-'));
});

after(async () => {
  await rm(folder, { recursive: true, force: true });
});

async function writeWalletFile(name: string, content: string): Promise<string> {
  const path = join(folder, name);
  await writeFile(path, content, { mode: 0o600 });
  return path;
}

// ---------------------------------------------------------------------------------------------
// Reference vectors
// ---------------------------------------------------------------------------------------------

interface Vector {
  name: string;
  source: string;
  private_key?: string;
  public_key: string;
  client_id: string;
  mnemonic?: string;
  message_hash: string;
  signature: string;
}

function readVectors(file: string): Vector[] | undefined {
  const referenceFolder = process.env.ZUS_REFERENCE_DATA;
  if (referenceFolder === undefined || referenceFolder === '') {
    return undefined;
  }
  return (JSON.parse(readFileSync(join(referenceFolder, file), 'utf8')) as { vectors: Vector[] }).vectors;
}

/**
 * Key pairs and mnemonics published in 0chain/gosdk, 0chain/system_test, 0chain/0chain and
 * 0chain/blobber (each vector's `source` field, printed as a diagnostic). A wallet signature equal to
 * the vector's deterministic signature shows that the wallet contains the vector's private key.
 */
for (const [scheme, file] of [
  ['bls0chain', 'vectors-bls.json'],
  ['ed25519', 'vectors-ed25519.json'],
] as const) {
  describe(`${scheme} reference wallets`, () => {
    const vectors = readVectors(file);
    if (vectors === undefined) {
      test(`${scheme} wallets`, (t) => {
        t.skip(
          'ZUS_REFERENCE_DATA is not set: it names the folder of Züs reference vectors (.ci/run sets it)',
        );
      });
      return;
    }

    for (const vector of vectors) {
      const { mnemonic, private_key: privateKey } = vector;
      if (mnemonic !== undefined) {
        test(`${vector.name}: mnemonic to keys`, async (t) => {
          t.diagnostic(`source: ${vector.source}`);
          const wallet = await walletFromMnemonic(mnemonic, scheme);
          assert.equal(wallet.publicKey, vector.public_key);
          assert.equal(wallet.clientId, vector.client_id);
          assert.equal(wallet.sign(vector.message_hash), vector.signature, 'same private key as the vector');

          const fromJson = await loadWallet(JSON.stringify({ mnemonics: mnemonic, version: '1.0' }), {
            scheme,
            variable: VARIABLE,
          });
          assert.equal(fromJson.clientId, vector.client_id);
        });
      }

      if (privateKey !== undefined) {
        test(`${vector.name}: wallet file loads`, async (t) => {
          t.diagnostic(`source: ${vector.source}`);
          const json = gosdkWallet(
            { privateKey, publicKey: vector.public_key, clientId: vector.client_id },
            mnemonic ?? '',
          );
          const path = await writeWalletFile(`${scheme}-${vector.name}.json`, JSON.stringify(json, null, 2));
          const wallet = await loadWallet(path, { scheme, variable: VARIABLE });
          assert.equal(wallet.clientId, vector.client_id);
          assert.equal(wallet.publicKey, vector.public_key);
          assert.equal(wallet.scheme, scheme);
          assert.equal(wallet.sign(vector.message_hash), vector.signature);
          assert.equal(
            verifySignature(scheme, wallet.publicKey, vector.message_hash, wallet.sign(vector.message_hash)),
            true,
          );
        });
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Valid wallets made here
// ---------------------------------------------------------------------------------------------

for (const scheme of SCHEMES) {
  describe(`${scheme} wallet`, () => {
    test('loads from file and value', async () => {
      const key = await freshKey(scheme);
      const text = JSON.stringify(gosdkWallet(key));
      // A byte-order mark and surrounding whitespace, as editors and secret tools may add.
      const path = await writeWalletFile(`${scheme}-valid.json`, `\uFEFF\n${text}\n`);

      for (const source of [path, text, `  ${text}\n`]) {
        const wallet = await loadWallet(source, { scheme, variable: VARIABLE });
        assert.ok(wallet instanceof Wallet);
        assert.equal(wallet.clientId, key.clientId);
        assert.equal(wallet.publicKey, key.publicKey);
        const hash = sha3(`payment ${source.length}`);
        assert.equal(verifySignature(scheme, key.publicKey, hash, wallet.sign(hash)), true);
      }
    });

    test('accepts upper-case hex fields', async () => {
      const key = await freshKey(scheme);
      const json = gosdkWallet({
        privateKey: key.privateKey.toUpperCase(),
        publicKey: key.publicKey.toUpperCase(),
        clientId: key.clientId.toUpperCase(),
      });
      const wallet = await loadWallet(JSON.stringify(json), { scheme, variable: VARIABLE });
      assert.equal(wallet.publicKey, key.publicKey);
      assert.equal(wallet.clientId, key.clientId);
    });

    test('derives from mnemonic only', async () => {
      const mnemonic = generateMnemonic(wordlist, 256);
      const expected = await walletFromMnemonic(mnemonic, scheme);
      // Newlines and repeated spaces, as a phrase pasted into a secret may have.
      const spaced = mnemonic.split(' ').join(' \n  ');
      const wallet = await loadWallet(JSON.stringify({ mnemonics: spaced }), { scheme, variable: VARIABLE });
      assert.equal(wallet.clientId, expected.clientId);

      const withIds = {
        mnemonics: mnemonic,
        client_id: expected.clientId,
        client_key: expected.publicKey,
        keys: [],
      };
      const checked = await loadWallet(JSON.stringify(withIds), { scheme, variable: VARIABLE });
      assert.equal(checked.publicKey, expected.publicKey);
    });

    test('keys win over mnemonic', async () => {
      const key = await freshKey(scheme);
      const json = gosdkWallet(key, generateMnemonic(wordlist, 256));
      const wallet = await loadWallet(JSON.stringify(json), { scheme, variable: VARIABLE });
      assert.equal(wallet.clientId, key.clientId);
    });

    test('shows no private key', async () => {
      const mnemonic = generateMnemonic(wordlist, 256);
      const fromMnemonic = await walletFromMnemonic(mnemonic, scheme);
      const key = await freshKey(scheme);
      const wallet = await loadWallet(JSON.stringify(gosdkWallet(key, mnemonic)), {
        scheme,
        variable: VARIABLE,
      });

      for (const [subject, secrets] of [
        [wallet, { privateKey: key.privateKey, mnemonic }],
        [fromMnemonic, { mnemonic }],
      ] as const) {
        const lines: string[] = [];
        const logger = createLogger({ json: true, level: 'debug', write: (line) => lines.push(line) });
        logger.info('wallet loaded', { team_wallet: subject });
        const texts = [
          inspect(subject),
          inspect(subject, { showHidden: true, depth: Number.POSITIVE_INFINITY }),
          inspect({ nested: [subject] }),
          JSON.stringify(subject),
          JSON.stringify({ subject }),
          String(subject),
          Object.getOwnPropertyNames(subject).join(','),
          ...lines,
        ];
        assertNoSecret(texts, secrets);
        assert.ok(inspect(subject).includes(subject.clientId));
      }

      assert.deepEqual(JSON.parse(JSON.stringify(wallet)), {
        clientId: key.clientId,
        publicKey: key.publicKey,
        scheme,
      });
      assert.deepEqual(Object.keys(wallet).sort(), ['clientId', 'publicKey', 'scheme']);
      assert.ok(Object.isFrozen(wallet));
      assert.throws(() => {
        (wallet as unknown as { clientId: string }).clientId = 'other';
      }, TypeError);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Invalid wallets: each error is a ConfigError naming the variable, with no secret in it
// ---------------------------------------------------------------------------------------------

describe('invalid wallet source', () => {
  test('rejects file that is not JSON', async () => {
    const key = await freshKey('bls0chain');
    const text = JSON.stringify(gosdkWallet(key));
    // Without its quotes the key is an unexpected token, and V8's message quotes the text there.
    const unquoted = text.replace(`"${key.privateKey}"`, key.privateKey);
    const path = await writeWalletFile('unquoted.json', unquoted);
    const message = await assertConfigError(
      loadWallet(path, { scheme: 'bls0chain', variable: VARIABLE }),
      /is not valid JSON.*\(use the wallet JSON that zwallet or the Go SDK writes\)/,
      { privateKey: key.privateKey },
    );
    assert.ok(message.includes(path));

    const truncated = await writeWalletFile(
      'truncated.json',
      text.slice(0, text.indexOf(key.privateKey) + 40),
    );
    await assertConfigError(
      loadWallet(truncated, { scheme: 'bls0chain', variable: VARIABLE }),
      /is not valid JSON \(at line 1 column \d+\)/,
      { privateKey: key.privateKey },
    );

    await assertConfigError(
      loadWallet(`${text.slice(0, -1)},}`, { scheme: 'bls0chain', variable: VARIABLE }),
      /the value is not valid JSON/,
      { privateKey: key.privateKey },
    );
  });

  test('rejects missing file', async () => {
    const path = join(folder, 'missing', 'wallet.json');
    const message = await assertConfigError(
      loadWallet(path, { scheme: 'bls0chain', variable: VARIABLE }),
      /file not found/,
      {},
    );
    assert.equal(
      message,
      `${VARIABLE}: file not found: ${path} (mount the wallet secret at that path, or set the variable to the wallet JSON)`,
    );
  });

  test('rejects empty value', async () => {
    await assertConfigError(loadWallet('  \n', { scheme: 'ed25519', variable: VARIABLE }), /empty/, {});
  });

  test('rejects folder path', async () => {
    const path = join(folder, 'secret-folder');
    await mkdir(path, { recursive: true });
    await assertConfigError(
      loadWallet(path, { scheme: 'ed25519', variable: VARIABLE }),
      /is a folder \(set the variable to the wallet file inside it\)/,
      {},
    );
  });

  test('rejects oversized file', async () => {
    const path = await writeWalletFile('large.json', `{"pad": "${'x'.repeat(70_000)}"}`);
    await assertConfigError(
      loadWallet(path, { scheme: 'ed25519', variable: VARIABLE }),
      /bytes, but a wallet file/,
      {},
    );
  });

  test('hides a key or mnemonic given as value', async () => {
    const key = await freshKey('ed25519');
    await assertConfigError(
      loadWallet(key.privateKey, { scheme: 'ed25519', variable: VARIABLE }),
      /file not found: the value \(not shown/,
      { privateKey: key.privateKey },
    );
    const mnemonic = generateMnemonic(wordlist, 256);
    await assertConfigError(
      loadWallet(mnemonic, { scheme: 'ed25519', variable: VARIABLE }),
      /the value \(not shown/,
      { mnemonic },
    );
  });

  test('rejects JSON that is not an object', async () => {
    const key = await freshKey('bls0chain');
    const path = await writeWalletFile('array.json', JSON.stringify([gosdkWallet(key)]));
    await assertConfigError(
      loadWallet(path, { scheme: 'bls0chain', variable: VARIABLE }),
      /is JSON but not an object/,
      { privateKey: key.privateKey },
    );
  });

  test('rejects unknown scheme', async () => {
    const key = await freshKey('bls0chain');
    const message = await assertConfigError(
      loadWallet(JSON.stringify(gosdkWallet(key)), { scheme: 'x' as SignatureScheme, variable: VARIABLE }),
      /unknown signature scheme/,
      { privateKey: key.privateKey },
    );
    assert.equal(message, `${VARIABLE}: unknown signature scheme "x" (use bls0chain or ed25519)`);
  });
});

describe('invalid wallet content', () => {
  for (const scheme of SCHEMES) {
    test(`${scheme} rejects client id mismatch`, async () => {
      const key = await freshKey(scheme);
      const other = await freshKey(scheme);
      const json = { ...gosdkWallet(key), client_id: other.clientId };
      const message = await assertConfigError(
        loadWallet(JSON.stringify(json), { scheme, variable: VARIABLE }),
        /client_id does not match the public key \(sha3-256 of the key is [0-9a-f]{64}\)/,
        { privateKey: key.privateKey },
      );
      assert.ok(message.includes(key.clientId));
    });

    test(`${scheme} rejects public key mismatch`, async () => {
      const key = await freshKey(scheme);
      const other = await freshKey(scheme);
      const json = gosdkWallet(key);
      const [first] = json.keys;
      assert.ok(first !== undefined);
      first.public_key = other.publicKey;
      const message = await assertConfigError(
        loadWallet(JSON.stringify(json), { scheme, variable: VARIABLE }),
        /keys\[0\]\.public_key does not match the private key/,
        { privateKey: key.privateKey },
      );
      assert.ok(message.includes(key.publicKey));
    });

    test(`${scheme} rejects client key mismatch`, async () => {
      const key = await freshKey(scheme);
      const other = await freshKey(scheme);
      await assertConfigError(
        loadWallet(JSON.stringify({ ...gosdkWallet(key), client_key: other.publicKey }), {
          scheme,
          variable: VARIABLE,
        }),
        /client_key does not match the private key/,
        { privateKey: key.privateKey },
      );
    });

    test(`${scheme} rejects split wallet`, async () => {
      const key = await freshKey(scheme);
      const second = await freshKey(scheme);
      await assertConfigError(
        loadWallet(JSON.stringify({ ...gosdkWallet(key), is_split: true }), { scheme, variable: VARIABLE }),
        /split wallet \(is_split is true\).*does not support/,
        { privateKey: key.privateKey },
      );
      const twoKeys = {
        ...gosdkWallet(key),
        keys: [
          { public_key: key.publicKey, private_key: key.privateKey },
          { public_key: second.publicKey, private_key: second.privateKey },
        ],
      };
      await assertConfigError(
        loadWallet(JSON.stringify(twoKeys), { scheme, variable: VARIABLE }),
        /keys has 2 key pairs, which makes it a split wallet/,
        { privateKey: second.privateKey },
      );
    });

    test(`${scheme} rejects missing fields`, async () => {
      const key = await freshKey(scheme);
      const secrets = { privateKey: key.privateKey };
      const { client_id: _id, ...noClientId } = gosdkWallet(key);
      await assertConfigError(
        loadWallet(JSON.stringify(noClientId), { scheme, variable: VARIABLE }),
        /client_id is missing/,
        secrets,
      );
      const noPrivateKey = { ...gosdkWallet(key), keys: [{ public_key: key.publicKey }] };
      await assertConfigError(
        loadWallet(JSON.stringify(noPrivateKey), { scheme, variable: VARIABLE }),
        /keys\[0\]\.private_key is missing/,
        secrets,
      );
      await assertConfigError(
        loadWallet(JSON.stringify({ client_id: key.clientId, keys: [] }), { scheme, variable: VARIABLE }),
        /neither keys nor mnemonics/,
        secrets,
      );
      await assertConfigError(
        loadWallet(JSON.stringify({ ...gosdkWallet(key), keys: { 0: 'x' } }), { scheme, variable: VARIABLE }),
        /keys is an object, expected a list/,
        secrets,
      );
      await assertConfigError(
        loadWallet(JSON.stringify({ ...gosdkWallet(key), client_id: 7 }), { scheme, variable: VARIABLE }),
        /client_id is a number, expected a string/,
        secrets,
      );
    });
  }

  test('rejects wallet of other scheme', async () => {
    const bls = await freshKey('bls0chain');
    await assertConfigError(
      loadWallet(JSON.stringify(gosdkWallet(bls)), { scheme: 'ed25519', variable: VARIABLE }),
      /keys\[0\]\.private_key is invalid: .*looks like a bls0chain key.*signature scheme is ed25519/,
      { privateKey: bls.privateKey },
    );
    const ed = await freshKey('ed25519');
    await assertConfigError(
      loadWallet(JSON.stringify(gosdkWallet(ed)), { scheme: 'bls0chain', variable: VARIABLE }),
      /looks like an ed25519 key/,
      { privateKey: ed.privateKey },
    );
  });

  test('rejects non-hex private key', async () => {
    const key = await freshKey('bls0chain');
    const json = gosdkWallet({ ...key, privateKey: `${key.privateKey.slice(0, 62)}zz` });
    await assertConfigError(
      loadWallet(JSON.stringify(json), { scheme: 'bls0chain', variable: VARIABLE }),
      /keys\[0\]\.private_key is invalid: the private key is not hex/,
      { privateKey: key.privateKey.slice(0, 62) },
    );
  });
});

describe('invalid mnemonic', () => {
  for (const scheme of SCHEMES) {
    test(`${scheme} rejects bad checksum`, async () => {
      const mnemonic = breakChecksum(generateMnemonic(wordlist, 256));
      await assert.rejects(walletFromMnemonic(mnemonic, scheme), (error: unknown) => {
        assert.ok(error instanceof InvalidKeyError);
        assert.match(error.message, /checksum does not match/);
        assertNoSecret(errorTexts(error), { mnemonic });
        return true;
      });
      await assertConfigError(
        loadWallet(JSON.stringify({ mnemonics: mnemonic }), { scheme, variable: VARIABLE }),
        /mnemonics is invalid: the mnemonic checksum does not match/,
        { mnemonic },
      );
    });
  }

  test('rejects unknown words by position', async () => {
    const words = generateMnemonic(wordlist, 256).split(' ');
    words[2] = 'zbox';
    words[9] = 'notaword';
    const mnemonic = words.join(' ');
    await assertConfigError(
      loadWallet(JSON.stringify({ mnemonics: mnemonic }), { scheme: 'bls0chain', variable: VARIABLE }),
      /mnemonic words 3, 10 are not in the BIP39 English word list/,
      { mnemonic },
    );
    const upper = generateMnemonic(wordlist, 256).toUpperCase();
    await assert.rejects(walletFromMnemonic(upper, 'ed25519'), /the list is lower case/);
  });

  test('rejects wrong word count', async () => {
    const mnemonic = generateMnemonic(wordlist, 256).split(' ').slice(0, 23).join(' ');
    await assertConfigError(
      loadWallet(JSON.stringify({ mnemonics: mnemonic }), { scheme: 'ed25519', variable: VARIABLE }),
      /has 23 words, but a BIP39 mnemonic has 12, 15, 18, 21 or 24/,
      { mnemonic },
    );
    await assert.rejects(walletFromMnemonic('   ', 'ed25519'), /the mnemonic is empty/);
  });

  test('rejects unknown scheme', async () => {
    await assert.rejects(
      walletFromMnemonic(generateMnemonic(wordlist, 256), 'x' as SignatureScheme),
      /unknown signature scheme "x"/,
    );
  });
});
