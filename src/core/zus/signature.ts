import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { createRequire } from 'node:module';

/**
 * The two signature schemes of the Züs chain, with keys, client ids and signatures in the hex forms
 * the Go SDK (gosdk core/zcncrypto) writes and the miners check:
 *
 * - `bls0chain`: herumi BLS on BN254 in its default (non-Ethereum) mode. Secret key = 32 bytes,
 *   public key = compressed G2 point (64 bytes), signature = compressed G1 point (32 bytes), each
 *   in herumi's `serializeToHexStr` form. The npm package `bls-wasm` is herumi's own WebAssembly
 *   build of the same C++ library.
 * - `ed25519`: private key = 32-byte seed followed by the 32-byte public key, as
 *   golang.org/x/crypto/ed25519 stores it. Signature = 64 bytes.
 *
 * Both schemes sign the 32 raw bytes of a hash, never its hex text.
 * client id = hex(sha3_256(public key bytes)), with NIST SHA3-256.
 */

export type SignatureScheme = 'bls0chain' | 'ed25519';

export const SIGNATURE_SCHEMES: readonly SignatureScheme[] = ['bls0chain', 'ed25519'];

/**
 * BIP39 passphrase from which each scheme derives its key seed out of a mnemonic (gosdk
 * bls0chain_herumi.go GenerateKeys and ed255190chain.go GenerateKeys).
 */
export const MNEMONIC_PASSPHRASE: Readonly<Record<SignatureScheme, string>> = {
  bls0chain: '0chain-client-split-key',
  ed25519: '0chain-client-ed25519-key',
};

/**
 * A key pair that can sign but never shows its private key: the key lives in a closure, and
 * `toJSON` and `util.inspect` show only the public fields.
 */
export interface KeyPair {
  readonly scheme: SignatureScheme;
  /** Public key in lower-case hex, as sent in a transaction's `public_key`. */
  readonly publicKey: string;
  /** sha3-256 of the public key bytes, lower-case hex. */
  readonly clientId: string;
  /** Signs the 32 raw bytes of a 64-character hex hash and returns the signature in hex. */
  sign(hashHex: string): string;
  /**
   * Signs arbitrary bytes as they are, without hashing them first, and returns the signature in
   * hex. Blobbers check the `Zbox-Signature` header this way, over the public-key text itself.
   */
  signMessage(message: Uint8Array): string;
}

/**
 * A private key or seed that no key pair can be made from. The message describes the problem and
 * never contains the key.
 */
export class InvalidKeyError extends Error {
  override name = 'InvalidKeyError';
}

const HEX = /^(?:[0-9a-fA-F]{2})*$/;
const HASH_HEX = /^[0-9a-fA-F]{64}$/;

const BLS_SECRET_KEY_BYTES = 32;
const ED25519_SEED_BYTES = 32;
const ED25519_PUBLIC_KEY_BYTES = 32;
const ED25519_SIGNATURE_BYTES = 64;

/** DER header of a PKCS#8 Ed25519 private key (RFC 8410); the 32-byte seed follows it. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export function isSignatureScheme(value: unknown): value is SignatureScheme {
  return typeof value === 'string' && (SIGNATURE_SCHEMES as readonly string[]).includes(value);
}

/** Checks whether `text` is hex of whole bytes, in either case. */
export function isHex(text: string): boolean {
  return HEX.test(text);
}

/**
 * Computes the client id of a public key: sha3-256 of the key's bytes, lower-case hex.
 * Throws a TypeError when the key is not hex.
 */
export function clientIdOf(publicKeyHex: string): string {
  if (publicKeyHex === '' || !isHex(publicKeyHex)) {
    throw new TypeError(`public key is not hex: ${JSON.stringify(publicKeyHex)}`);
  }
  return createHash('sha3-256').update(Buffer.from(publicKeyHex, 'hex')).digest('hex');
}

// ---------------------------------------------------------------------------------------------
// bls-wasm loading
// ---------------------------------------------------------------------------------------------

/** The part of the `bls-wasm` 0.4.8 API used here; the package ships no type declarations. */
interface BlsSecretKey {
  deserializeHexStr(hex: string): void;
  setLittleEndian(bytes: Uint8Array): void;
  isZero(): boolean;
  getPublicKey(): BlsPublicKey;
  sign(message: Uint8Array): BlsSignature;
}

interface BlsPublicKey {
  deserializeHexStr(hex: string): void;
  serializeToHexStr(): string;
  isZero(): boolean;
  isValidOrder(): boolean | number;
  verify(signature: BlsSignature, message: Uint8Array): boolean;
}

interface BlsSignature {
  deserializeHexStr(hex: string): void;
  serializeToHexStr(): string;
  isValidOrder(): boolean | number;
}

interface BlsLibrary {
  BN254: number;
  init(curve: number): Promise<void>;
  SecretKey: new () => BlsSecretKey;
  PublicKey: new () => BlsPublicKey;
  Signature: new () => BlsSignature;
}

let blsLoading: Promise<BlsLibrary> | undefined;
let blsLoaded: BlsLibrary | undefined;

/**
 * Loads and initialises bls-wasm for BN254 on the first call and returns the same promise after.
 * The package is required lazily, so a command that never signs does not compile the WebAssembly.
 */
function loadBls(): Promise<BlsLibrary> {
  blsLoading ??= (async () => {
    const require = createRequire(import.meta.url);
    const bls = require('bls-wasm') as BlsLibrary;
    await bls.init(bls.BN254);
    blsLoaded = bls;
    return bls;
  })().catch((error: unknown) => {
    blsLoading = undefined;
    throw error;
  });
  return blsLoading;
}

/**
 * Loads what the signature schemes need (the BLS WebAssembly module). Call it once before
 * `verifySignature`. The key pair functions call it themselves.
 */
export async function initSignatureSchemes(): Promise<void> {
  await loadBls();
}

function loadedBls(): BlsLibrary {
  if (blsLoaded === undefined) {
    throw new Error('bls0chain is not initialised: await initSignatureSchemes() before verifying');
  }
  return blsLoaded;
}

// ---------------------------------------------------------------------------------------------
// Key pairs
// ---------------------------------------------------------------------------------------------

function hashBytes(hashHex: string): Uint8Array {
  if (!HASH_HEX.test(hashHex)) {
    throw new TypeError(
      `hash to sign must be 64 hex characters (a sha3-256 digest), got ${JSON.stringify(hashHex)}`,
    );
  }
  return new Uint8Array(Buffer.from(hashHex, 'hex'));
}

function makeKeyPair(
  scheme: SignatureScheme,
  publicKey: string,
  signBytes: (message: Uint8Array) => string,
): KeyPair {
  const keyPair: KeyPair = {
    scheme,
    publicKey,
    clientId: clientIdOf(publicKey),
    sign: (hashHex: string) => signBytes(hashBytes(hashHex)),
    signMessage: (message: Uint8Array) => signBytes(message),
  };
  Object.defineProperties(keyPair, {
    toJSON: { value: () => ({ scheme, publicKey, clientId: keyPair.clientId }) },
    [Symbol.for('nodejs.util.inspect.custom')]: {
      value: () => `KeyPair { scheme: '${scheme}', clientId: '${keyPair.clientId}' }`,
    },
  });
  return Object.freeze(keyPair);
}

function blsKeyPair(secretKey: BlsSecretKey): KeyPair {
  if (secretKey.isZero()) {
    throw new InvalidKeyError('the bls0chain private key is zero');
  }
  const publicKey = secretKey.getPublicKey().serializeToHexStr();
  return makeKeyPair('bls0chain', publicKey, (message) => secretKey.sign(message).serializeToHexStr());
}

function ed25519KeyPair(seed: Uint8Array): KeyPair {
  const privateKey = createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const publicKey = ed25519PublicKeyBytes(privateKey).toString('hex');
  return makeKeyPair('ed25519', publicKey, (message) => sign(null, message, privateKey).toString('hex'));
}

/** Raw 32 bytes of an Ed25519 key's public key: the end of its SPKI DER form. */
function ed25519PublicKeyBytes(key: KeyObject): Buffer {
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
  return spki.subarray(spki.length - ED25519_PUBLIC_KEY_BYTES);
}

/**
 * Makes a key pair from a private key in the hex form gosdk stores in a wallet's
 * `keys[].private_key`. Throws InvalidKeyError (without the key in its message) when the text is
 * not such a key, for example a bls0chain key given for ed25519.
 */
export async function keyPairFromPrivateKey(
  scheme: SignatureScheme,
  privateKeyHex: string,
): Promise<KeyPair> {
  if (!isHex(privateKeyHex)) {
    throw new InvalidKeyError('the private key is not hex');
  }
  const bytes = privateKeyHex.length / 2;
  switch (scheme) {
    case 'bls0chain': {
      if (bytes !== BLS_SECRET_KEY_BYTES) {
        throw new InvalidKeyError(
          `the private key is ${bytes} bytes, but a bls0chain private key is ${BLS_SECRET_KEY_BYTES} bytes` +
            (bytes === ED25519_SEED_BYTES + ED25519_PUBLIC_KEY_BYTES
              ? ' (this looks like an ed25519 key)'
              : ''),
        );
      }
      const bls = await loadBls();
      const secretKey = new bls.SecretKey();
      try {
        secretKey.deserializeHexStr(privateKeyHex);
      } catch {
        // herumi rejects a value at or above the BN254 group order.
        throw new InvalidKeyError(
          'the private key is not a valid bls0chain secret key (not below the BN254 order)',
        );
      }
      return blsKeyPair(secretKey);
    }
    case 'ed25519': {
      if (bytes !== ED25519_SEED_BYTES + ED25519_PUBLIC_KEY_BYTES) {
        throw new InvalidKeyError(
          `the private key is ${bytes} bytes, but an ed25519 private key is 64 bytes (32-byte seed, then the public key)` +
            (bytes === BLS_SECRET_KEY_BYTES ? ' (this looks like a bls0chain key)' : ''),
        );
      }
      const keyBytes = Buffer.from(privateKeyHex, 'hex');
      const keyPair = ed25519KeyPair(keyBytes.subarray(0, ED25519_SEED_BYTES));
      const storedPublicKey = keyBytes.subarray(ED25519_SEED_BYTES).toString('hex');
      if (storedPublicKey !== keyPair.publicKey) {
        throw new InvalidKeyError(
          `the second half of the ed25519 private key (${storedPublicKey}) is not the public key of its seed (${keyPair.publicKey})`,
        );
      }
      return keyPair;
    }
    default:
      throw new InvalidKeyError(`unknown signature scheme ${JSON.stringify(scheme)}`);
  }
}

/**
 * Makes a key pair from a BIP39 seed (64 bytes) the way gosdk does when it restores a wallet
 * from its mnemonic:
 *
 * - bls0chain: gosdk makes the seed herumi's random source for `SetByCSPRNG`, which reads 32
 *   bytes and masks them into the field exactly as `setLittleEndian` does. `setLittleEndian`
 *   itself reads only the first 32 bytes, so it yields the same key from the whole seed.
 * - ed25519: golang.org/x/crypto's `GenerateKey(reader)` reads the first 32 bytes as the seed.
 */
export async function keyPairFromSeed(scheme: SignatureScheme, seed: Uint8Array): Promise<KeyPair> {
  if (seed.length < 32) {
    throw new InvalidKeyError(`the key seed is ${seed.length} bytes, but at least 32 are needed`);
  }
  switch (scheme) {
    case 'bls0chain': {
      const bls = await loadBls();
      const secretKey = new bls.SecretKey();
      try {
        secretKey.setLittleEndian(seed);
      } catch {
        // bls-wasm puts the input bytes into this error's message, so it is replaced.
        throw new InvalidKeyError('herumi could not make a bls0chain secret key from the seed');
      }
      return blsKeyPair(secretKey);
    }
    case 'ed25519':
      return ed25519KeyPair(seed.subarray(0, ED25519_SEED_BYTES));
    default:
      throw new InvalidKeyError(`unknown signature scheme ${JSON.stringify(scheme)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

/**
 * Checks a signature over the 32 raw bytes of `hashHex`, as a miner does for a transaction.
 * Returns false for any malformed input (bad hex, wrong length, a point off the curve or outside
 * the prime-order subgroup) instead of throwing. For bls0chain, `initSignatureSchemes()` must have
 * finished first, otherwise it throws.
 */
export function verifySignature(
  scheme: SignatureScheme,
  publicKeyHex: string,
  hashHex: string,
  signatureHex: string,
): boolean {
  if (!HASH_HEX.test(hashHex) || !isHex(publicKeyHex) || !isHex(signatureHex)) {
    return false;
  }
  return verifyMessageSignature(
    scheme,
    publicKeyHex,
    new Uint8Array(Buffer.from(hashHex, 'hex')),
    signatureHex,
  );
}

/**
 * Verifies a signature over raw message bytes, as they are and not hashed first (the Go SDK signs
 * a file's content hash this way). For bls0chain, initSignatureSchemes must have finished.
 * Returns false for any malformed input.
 */
export function verifyMessageSignature(
  scheme: SignatureScheme,
  publicKeyHex: string,
  message: Uint8Array,
  signatureHex: string,
): boolean {
  if (!isHex(publicKeyHex) || !isHex(signatureHex)) {
    return false;
  }
  switch (scheme) {
    case 'bls0chain':
      return verifyBls(loadedBls(), publicKeyHex, message, signatureHex);
    case 'ed25519':
      return verifyEd25519(publicKeyHex, message, signatureHex);
    default:
      return false;
  }
}

function verifyBls(
  bls: BlsLibrary,
  publicKeyHex: string,
  message: Uint8Array,
  signatureHex: string,
): boolean {
  const publicKey = new bls.PublicKey();
  const signature = new bls.Signature();
  try {
    publicKey.deserializeHexStr(publicKeyHex);
    signature.deserializeHexStr(signatureHex);
  } catch {
    return false;
  }
  // herumi checks the subgroup on deserialisation only when asked to, so it is checked here.
  if (publicKey.isZero() || !publicKey.isValidOrder() || !signature.isValidOrder()) {
    return false;
  }
  return publicKey.verify(signature, message);
}

function verifyEd25519(publicKeyHex: string, message: Uint8Array, signatureHex: string): boolean {
  if (
    publicKeyHex.length !== ED25519_PUBLIC_KEY_BYTES * 2 ||
    signatureHex.length !== ED25519_SIGNATURE_BYTES * 2
  ) {
    return false;
  }
  try {
    const publicKey = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKeyHex, 'hex').toString('base64url') },
      format: 'jwk',
    });
    return verify(null, message, publicKey, Buffer.from(signatureHex, 'hex'));
  } catch {
    return false;
  }
}
