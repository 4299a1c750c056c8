import { readFile, stat } from 'node:fs/promises';
import { inspect } from 'node:util';
import { mnemonicToSeed, validateMnemonic } from '@scure/bip39';
import { wordlist as englishWords } from '@scure/bip39/wordlists/english.js';
import { ConfigError } from '../errors.js';
import {
  InvalidKeyError,
  isSignatureScheme,
  type KeyPair,
  keyPairFromPrivateKey,
  keyPairFromSeed,
  MNEMONIC_PASSPHRASE,
  SIGNATURE_SCHEMES,
  type SignatureScheme,
} from './signature.js';

/**
 * A Züs wallet that signs transaction hashes. Only the client id, public key and scheme can be
 * read: the private key stays in a private field, and `toJSON`, `util.inspect` and the logger
 * (which reads own enumerable properties) see only those three.
 */
export class Wallet {
  readonly clientId: string;
  readonly publicKey: string;
  readonly scheme: SignatureScheme;
  readonly #keyPair: KeyPair;

  constructor(keyPair: KeyPair) {
    this.clientId = keyPair.clientId;
    this.publicKey = keyPair.publicKey;
    this.scheme = keyPair.scheme;
    this.#keyPair = keyPair;
    Object.freeze(this);
  }

  /** Signs the 32 raw bytes of a 64-character hex hash and returns the signature in hex. */
  sign(hashHex: string): string {
    return this.#keyPair.sign(hashHex);
  }

  /** Signs arbitrary bytes as they are (no hash first); see KeyPair.signMessage. */
  signMessage(message: Uint8Array): string {
    return this.#keyPair.signMessage(message);
  }

  toJSON(): { clientId: string; publicKey: string; scheme: SignatureScheme } {
    return { clientId: this.clientId, publicKey: this.publicKey, scheme: this.scheme };
  }

  [inspect.custom](): string {
    return `Wallet { scheme: '${this.scheme}', clientId: '${this.clientId}', publicKey: '${this.publicKey}' }`;
  }
}

export interface LoadWalletOptions {
  /** Signature scheme of the network. It comes from the environment at run time, so it is checked. */
  scheme: SignatureScheme;
  /** Name of the environment variable that contains `source`, used in every error message. */
  variable: string;
}

/** Largest wallet file read. A gosdk wallet is under 1 KiB; anything far larger is the wrong file. */
const MAX_WALLET_FILE_BYTES = 64 * 1024;

const MNEMONIC_WORD_COUNTS = [12, 15, 18, 21, 24];
const ENGLISH_WORDS = new Set(englishWords);

/**
 * Loads the wallet from `source`: the wallet JSON itself when it starts with `{`, otherwise the
 * path of a file that contains it (a mounted secret). The JSON is the one gosdk and zwallet write
 * (`client_id`, `client_key`, `keys: [{public_key, private_key}]`, `mnemonics`, ...).
 *
 * The key comes from `keys[0].private_key`. Its public key must equal `keys[0].public_key` and
 * `client_key`, and `client_id` must be the sha3-256 of that public key. A wallet with no keys
 * but a `mnemonics` phrase is derived from the phrase. Split wallets are rejected.
 *
 * Throws ConfigError naming `options.variable` for every problem. No message contains the private
 * key or the mnemonic.
 */
export async function loadWallet(source: string, options: LoadWalletOptions): Promise<Wallet> {
  const { variable } = options;
  const scheme: unknown = options.scheme;
  if (!isSignatureScheme(scheme)) {
    throw new ConfigError(
      `${variable}: unknown signature scheme ${JSON.stringify(scheme)} (use ${SIGNATURE_SCHEMES.join(' or ')})`,
    );
  }

  const { text, origin } = await readWalletText(source, variable);
  const wallet = parseWalletJson(text, origin, variable);
  return walletFromJson(wallet, scheme, variable);
}

/**
 * Derives the wallet gosdk restores from a BIP39 mnemonic: the BIP39 seed with the scheme's
 * passphrase (`0chain-client-split-key` for bls0chain, `0chain-client-ed25519-key` for ed25519),
 * then the scheme's key from that seed. Words may be separated by any whitespace.
 *
 * Throws InvalidKeyError when a word is not in the BIP39 English list, the word count is wrong or
 * the checksum does not match. The message gives word positions, never the words.
 */
export async function walletFromMnemonic(mnemonic: string, scheme: SignatureScheme): Promise<Wallet> {
  if (!isSignatureScheme(scheme)) {
    throw new InvalidKeyError(
      `unknown signature scheme ${JSON.stringify(scheme)} (use ${SIGNATURE_SCHEMES.join(' or ')})`,
    );
  }
  // NOTE: gosdk feeds the phrase to PBKDF2 exactly as stored. Joining the words with single spaces
  // matches it for every phrase gosdk writes, but not for a hand-edited one with other spacing.
  const words = mnemonic.split(/\s+/).filter((word) => word !== '');
  if (words.length === 0) {
    throw new InvalidKeyError('the mnemonic is empty');
  }
  if (!MNEMONIC_WORD_COUNTS.includes(words.length)) {
    throw new InvalidKeyError(
      `the mnemonic has ${words.length} words, but a BIP39 mnemonic has 12, 15, 18, 21 or 24 (gosdk writes 24)`,
    );
  }
  const unknownPositions = words.flatMap((word, index) => (ENGLISH_WORDS.has(word) ? [] : [index + 1]));
  if (unknownPositions.length > 0) {
    const caseHint = words.some((word) => word !== word.toLowerCase()) ? ' (the list is lower case)' : '';
    const subject =
      unknownPositions.length === 1
        ? `mnemonic word ${unknownPositions[0]} is`
        : `mnemonic words ${unknownPositions.join(', ')} are`;
    throw new InvalidKeyError(`${subject} not in the BIP39 English word list${caseHint}`);
  }
  const phrase = words.join(' ');
  if (!validateMnemonic(phrase, englishWords)) {
    throw new InvalidKeyError(
      'the mnemonic checksum does not match, so a word is wrong or the words are out of order',
    );
  }

  const seed = await mnemonicToSeed(phrase, MNEMONIC_PASSPHRASE[scheme]);
  try {
    return new Wallet(await keyPairFromSeed(scheme, seed));
  } finally {
    seed.fill(0);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading the source
// ---------------------------------------------------------------------------------------------

interface WalletText {
  text: string;
  /** Name of the text's source in messages: a file path or "the value". */
  origin: string;
}

async function readWalletText(source: string, variable: string): Promise<WalletText> {
  const trimmed = source.trim();
  if (trimmed === '') {
    throw new ConfigError(
      `${variable}: the value is empty (set it to the path of the wallet file or to the wallet JSON)`,
    );
  }
  if (trimmed.startsWith('{')) {
    return { text: trimmed, origin: 'the value' };
  }

  const path = trimmed;
  const shown = showablePath(path);
  const fix = '(mount the wallet secret at that path, or set the variable to the wallet JSON)';
  let size: number;
  try {
    const info = await stat(path);
    if (info.isDirectory()) {
      throw new ConfigError(
        `${variable}: ${shown} is a folder (set the variable to the wallet file inside it)`,
      );
    }
    if (!info.isFile()) {
      throw new ConfigError(`${variable}: ${shown} is not a regular file ${fix}`);
    }
    size = info.size;
  } catch (error) {
    if (error instanceof ConfigError) {
      throw error;
    }
    throw fileError(error, variable, shown, fix);
  }
  if (size > MAX_WALLET_FILE_BYTES) {
    throw new ConfigError(
      `${variable}: ${shown} is ${size} bytes, but a wallet file is under ${MAX_WALLET_FILE_BYTES} bytes (check that it is the wallet file)`,
    );
  }

  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw fileError(error, variable, shown, fix);
  }
  // A BOM, as some editors write, is not JSON.
  return { text: text.replace(/^\uFEFF/, '').trim(), origin: shown };
}

function fileError(error: unknown, variable: string, shown: string, fix: string): ConfigError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new ConfigError(`${variable}: file not found: ${shown} ${fix}`);
    case 'EACCES':
    case 'EPERM':
      return new ConfigError(
        `${variable}: permission denied reading ${shown} (make the file readable by the user that runs zbox-workers)`,
      );
    default:
      return new ConfigError(`${variable}: reading ${shown} failed (${code ?? 'unknown error'}) ${fix}`);
  }
}

/**
 * Returns the path for messages, unless it may be a secret put in the variable by mistake (a
 * mnemonic has spaces, a private key is a long hex string): those are described, not shown.
 */
function showablePath(path: string): string {
  const plainPath = /^[\w./@+~-]+$/.test(path) && path.length <= 1024;
  const longHex = /[0-9a-fA-F]{32,}/.test(path);
  if (plainPath && !longHex) {
    return path;
  }
  return 'the value (not shown: it is neither wallet JSON starting with "{" nor a plain file path, and may be a key or mnemonic)';
}

// ---------------------------------------------------------------------------------------------
// Checking the JSON
// ---------------------------------------------------------------------------------------------

type JsonObject = Record<string, unknown>;

function parseWalletJson(text: string, origin: string, variable: string): JsonObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    // The parser's message quotes the text around the error, which may contain the key, so only
    // the position is kept.
    const position = /line \d+ column \d+/.exec(errorText(error))?.[0];
    throw new ConfigError(
      `${variable}: ${origin} is not valid JSON${position === undefined ? '' : ` (at ${position})`} ` +
        '(use the wallet JSON that zwallet or the Go SDK writes)',
    );
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(
      `${variable}: ${origin} is JSON but not an object (use the wallet JSON object with client_id, client_key and keys)`,
    );
  }
  return parsed as JsonObject;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : '';
}

/** Reads an optional string field and throws ConfigError when the field has another type. */
function optionalString(
  object: JsonObject,
  field: string,
  label: string,
  variable: string,
): string | undefined {
  const value = object[field];
  if (value === undefined || value === null) {
    return undefined;
  }
  if (typeof value !== 'string') {
    throw new ConfigError(`${variable}: ${label} is ${jsonType(value)}, expected a string`);
  }
  return value;
}

/** Names the JSON type of a value with its article, for messages: "a list", "an object", "a number". */
function jsonType(value: unknown): string {
  if (Array.isArray(value)) {
    return 'a list';
  }
  if (value === null || typeof value === 'object') {
    return 'an object';
  }
  return `a ${typeof value}`;
}

async function walletFromJson(json: JsonObject, scheme: SignatureScheme, variable: string): Promise<Wallet> {
  rejectSplitWallet(json, variable);

  const keys = json.keys;
  if (keys !== undefined && keys !== null && !Array.isArray(keys)) {
    throw new ConfigError(
      `${variable}: keys is ${jsonType(keys)}, expected a list of {public_key, private_key}`,
    );
  }
  const firstKey: unknown = Array.isArray(keys) ? keys[0] : undefined;

  let wallet: Wallet;
  if (firstKey === undefined) {
    wallet = await walletFromMnemonicField(json, scheme, variable);
  } else {
    wallet = await walletFromKeyPair(json, firstKey, scheme, variable);
  }

  const clientKey = optionalString(json, 'client_key', 'client_key', variable);
  if (clientKey !== undefined && clientKey.toLowerCase() !== wallet.publicKey) {
    throw new ConfigError(
      `${variable}: client_key does not match the private key (its public key is ${wallet.publicKey}), so the wallet file is damaged or was edited (restore the file that zwallet or the Go SDK wrote)`,
    );
  }
  const clientId = optionalString(json, 'client_id', 'client_id', variable);
  if (clientId !== undefined && clientId.toLowerCase() !== wallet.clientId) {
    throw new ConfigError(
      `${variable}: client_id does not match the public key (sha3-256 of the key is ${wallet.clientId}), so the wallet file is damaged or was edited (restore the file that zwallet or the Go SDK wrote)`,
    );
  }
  return wallet;
}

function rejectSplitWallet(json: JsonObject, variable: string): void {
  const isSplit = json.is_split;
  if (isSplit !== undefined && isSplit !== null && typeof isSplit !== 'boolean') {
    throw new ConfigError(`${variable}: is_split is ${jsonType(isSplit)}, expected true or false`);
  }
  const reason =
    'Its key is divided among several key pairs whose signatures are combined, which zbox-workers does not support (use a regular wallet with one key pair).';
  if (isSplit === true) {
    throw new ConfigError(`${variable}: split wallet (is_split is true). ${reason}`);
  }
  const keys = json.keys;
  if (Array.isArray(keys) && keys.length > 1) {
    throw new ConfigError(
      `${variable}: keys has ${keys.length} key pairs, which makes it a split wallet. ${reason}`,
    );
  }
}

/** Wallet from `keys[0]`, checked against `keys[0].public_key`. `mnemonics` is then ignored. */
async function walletFromKeyPair(
  json: JsonObject,
  firstKey: unknown,
  scheme: SignatureScheme,
  variable: string,
): Promise<Wallet> {
  if (firstKey === null || typeof firstKey !== 'object' || Array.isArray(firstKey)) {
    throw new ConfigError(
      `${variable}: keys[0] is ${jsonType(firstKey)}, expected {public_key, private_key}`,
    );
  }
  const entry = firstKey as JsonObject;
  const privateKey = optionalString(entry, 'private_key', 'keys[0].private_key', variable);
  if (privateKey === undefined || privateKey === '') {
    throw new ConfigError(
      `${variable}: keys[0].private_key is missing (a wallet that signs needs its private key; use the full wallet file, not an exported public key)`,
    );
  }
  const publicKey = optionalString(entry, 'public_key', 'keys[0].public_key', variable);
  if (publicKey === undefined || publicKey === '') {
    throw new ConfigError(
      `${variable}: keys[0].public_key is missing (use the wallet file as zwallet or the Go SDK wrote it)`,
    );
  }
  for (const field of ['client_id', 'client_key']) {
    if (optionalString(json, field, field, variable) === undefined) {
      throw new ConfigError(
        `${variable}: ${field} is missing (use the wallet file as zwallet or the Go SDK wrote it)`,
      );
    }
  }

  let keyPair: KeyPair;
  try {
    keyPair = await keyPairFromPrivateKey(scheme, privateKey.trim());
  } catch (error) {
    if (error instanceof InvalidKeyError) {
      throw new ConfigError(
        `${variable}: keys[0].private_key is invalid: ${error.message} (the network's signature scheme is ${scheme}, so check that the wallet was made for it)`,
      );
    }
    throw error;
  }
  if (publicKey.toLowerCase() !== keyPair.publicKey) {
    throw new ConfigError(
      `${variable}: keys[0].public_key does not match the private key (its public key is ${keyPair.publicKey}), so the wallet file is damaged or was edited (restore the file that zwallet or the Go SDK wrote)`,
    );
  }
  return new Wallet(keyPair);
}

async function walletFromMnemonicField(
  json: JsonObject,
  scheme: SignatureScheme,
  variable: string,
): Promise<Wallet> {
  const mnemonic = optionalString(json, 'mnemonics', 'mnemonics', variable);
  if (mnemonic === undefined || mnemonic.trim() === '') {
    throw new ConfigError(
      `${variable}: the wallet has neither keys nor mnemonics (expected keys[0].private_key, or a mnemonics phrase to derive the key from)`,
    );
  }
  try {
    return await walletFromMnemonic(mnemonic, scheme);
  } catch (error) {
    if (error instanceof InvalidKeyError) {
      throw new ConfigError(
        `${variable}: mnemonics is invalid: ${error.message} (restore the phrase as it was written down)`,
      );
    }
    throw error;
  }
}
