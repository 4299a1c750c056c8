/**
 * The fake chain's own hashing and signature checks: NIST SHA3-256 from node:crypto, herumi BLS on
 * BN254 from the npm package bls-wasm, and Ed25519 from node:crypto. Written apart from the
 * client's signing code on purpose, so a bug there makes the fake reject the transaction.
 */
import { createHash, createPublicKey, verify as verifyEd25519 } from 'node:crypto';
import { createRequire } from 'node:module';

/** Signature schemes a Züs network is configured with (`signature_scheme` in the node config). */
export type SignatureScheme = 'bls0chain' | 'ed25519';

/** Lowercase hex SHA3-256 of UTF-8 text or of raw bytes. */
export function sha3Hex(data: string | Uint8Array): string {
  return createHash('sha3-256').update(data).digest('hex');
}

/** Checks whether text is a hex-encoded 32-byte hash, as the chain's `encryption.IsHash` checks (either case). */
export function isHash(text: string): boolean {
  return /^[0-9a-fA-F]{64}$/.test(text);
}

/** Decodes hex as Go's hex.DecodeString does, or returns Go's error text. */
export function decodeHex(text: string): Uint8Array | { error: string } {
  for (let index = 0; index < text.length; index += 1) {
    const char = text[index] ?? '';
    if (!/[0-9a-fA-F]/.test(char)) {
      const code = char.codePointAt(0) ?? 0;
      return {
        error: `encoding/hex: invalid byte: U+${code.toString(16).toUpperCase().padStart(4, '0')} ${JSON.stringify(char).replaceAll('"', "'")}`,
      };
    }
  }
  if (text.length % 2 === 1) {
    return { error: 'encoding/hex: odd length hex string' };
  }
  return Uint8Array.from(Buffer.from(text, 'hex'));
}

/** The part of the bls-wasm 0.4.8 API the fake uses; the package ships no type declarations. */
interface BlsWasm {
  BN254: number;
  curveType?: number;
  mod?: unknown;
  init(curve: number): Promise<void>;
  deserializeHexStrToPublicKey(hex: string): { verify(signature: unknown, message: Uint8Array): boolean };
  deserializeHexStrToSignature(hex: string): unknown;
}

let blsReady: Promise<BlsWasm> | undefined;

/**
 * Loads bls-wasm and initialises it for BN254 once. The module is shared with any other user in
 * the process, so an instance that is already set up for BN254 is left as it is.
 */
function loadBls(): Promise<BlsWasm> {
  blsReady ??= (async () => {
    const require = createRequire(import.meta.url);
    const bls = require('bls-wasm') as BlsWasm;
    if (bls.mod === undefined || bls.curveType !== bls.BN254) {
      await bls.init(bls.BN254);
    }
    return bls;
  })();
  return blsReady;
}

/**
 * Result of a signature check: `valid`, `invalid` (the chain's "Invalid Signature"), or the error
 * text the chain returns when the public key or signature cannot even be decoded.
 */
export type SignatureCheck = { kind: 'valid' } | { kind: 'invalid' } | { kind: 'error'; message: string };

/**
 * Verifies `signatureHex` over the raw bytes `message` with `publicKeyHex`, as the chain's
 * bls0chain and ed25519 schemes do (both sign the 32 raw bytes of a hash).
 * NOTE: the texts for an undecodable BLS key or signature follow herumi's Go binding
 * (`err blsSignatureDeserialize <hex>`) from memory; no node was run to confirm them.
 */
export async function verifySignature(
  scheme: SignatureScheme,
  publicKeyHex: string,
  signatureHex: string,
  message: Uint8Array,
): Promise<SignatureCheck> {
  return scheme === 'bls0chain'
    ? verifyBls(publicKeyHex, signatureHex, message)
    : verifyEd25519Signature(publicKeyHex, signatureHex, message);
}

async function verifyBls(
  publicKeyHex: string,
  signatureHex: string,
  message: Uint8Array,
): Promise<SignatureCheck> {
  const bls = await loadBls();
  let publicKey: ReturnType<BlsWasm['deserializeHexStrToPublicKey']>;
  try {
    publicKey = bls.deserializeHexStrToPublicKey(publicKeyHex);
  } catch {
    return { kind: 'error', message: `err blsPublicKeyDeserialize ${publicKeyHex}` };
  }
  const decoded = decodeHex(signatureHex);
  if (!(decoded instanceof Uint8Array)) {
    return { kind: 'error', message: decoded.error };
  }
  let signature: unknown;
  try {
    signature = bls.deserializeHexStrToSignature(signatureHex);
  } catch {
    return { kind: 'error', message: `err blsSignatureDeserialize ${signatureHex.toLowerCase()}` };
  }
  return publicKey.verify(signature, message) ? { kind: 'valid' } : { kind: 'invalid' };
}

function verifyEd25519Signature(
  publicKeyHex: string,
  signatureHex: string,
  message: Uint8Array,
): SignatureCheck {
  const publicKeyBytes = decodeHex(publicKeyHex);
  if (!(publicKeyBytes instanceof Uint8Array)) {
    return { kind: 'error', message: publicKeyBytes.error };
  }
  const signature = decodeHex(signatureHex);
  if (!(signature instanceof Uint8Array)) {
    return { kind: 'error', message: signature.error };
  }
  if (publicKeyBytes.length !== 32 || signature.length !== 64) {
    return { kind: 'invalid' };
  }
  try {
    const key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKeyBytes).toString('base64url') },
      format: 'jwk',
    });
    return verifyEd25519(null, message, key, signature) ? { kind: 'valid' } : { kind: 'invalid' };
  } catch {
    return { kind: 'invalid' };
  }
}
