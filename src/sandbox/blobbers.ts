/**
 * Loopback fakes of restricted blobbers, for the auth ticket client. Each one serves
 * `GET /v1/auth/generate` as 0chain/blobber does (blobbercore/handler/handler.go
 * `Authenticate0Box`, blobbercore/handler/auth_ticket.go `GenerateAuthTicket`):
 *
 * - `Zbox-Signature` must verify with the configured 0Box public key over the UTF-8 text of that
 *   key, otherwise 403 with the body `Invalid signature`.
 * - `client_id` is required: 400 `{"code":"missing_client_id", ...}` otherwise.
 * - Ticket of an unbound blobber (before the chain's "hermes" fork): the blobber's signature over
 *   the 32 raw bytes of the hex client id. Ticket of a round-bound blobber: its signature over
 *   sha3_256_hex("<client_id>_<round>"), and `round` is required (400 `missing_round`).
 * - Response: 200 `{"auth_ticket":"<hex>"}` with a trailing newline, as Go's json.Encoder writes it.
 *
 * The signing and verifying code here is separate from the client's (raw bls-wasm and node:crypto
 * calls), so a client that signs the wrong bytes is rejected. Listens on 127.0.0.1 only.
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import type { ZboxOperator } from '../core/blobber/auth-ticket.js';
import {
  clientIdOf,
  initSignatureSchemes,
  keyPairFromSeed,
  type SignatureScheme,
} from '../core/zus/signature.js';

// ---------------------------------------------------------------------------------------------
// Keys that sign raw bytes
// ---------------------------------------------------------------------------------------------

/** The part of the bls-wasm 0.4.8 API used here. The package ships no type declarations. */
interface BlsModule {
  BN254: number;
  curveType?: number;
  mod?: unknown;
  init(curve: number): Promise<void>;
  SecretKey: new () => {
    setLittleEndian(bytes: Uint8Array): void;
    getPublicKey(): { serializeToHexStr(): string };
    sign(message: Uint8Array): { serializeToHexStr(): string };
  };
  PublicKey: new () => {
    deserializeHexStr(hex: string): void;
    verify(signature: unknown, message: Uint8Array): boolean;
  };
  Signature: new () => { deserializeHexStr(hex: string): void };
}

let blsModule: Promise<BlsModule> | undefined;

/**
 * Loads bls-wasm through the project's own initialisation first, so the process keeps one BN254
 * instance of the module, and initialises it here only if that did not happen.
 */
function loadBls(): Promise<BlsModule> {
  blsModule ??= (async () => {
    await initSignatureSchemes();
    const bls = createRequire(import.meta.url)('bls-wasm') as BlsModule;
    if (bls.mod === undefined || bls.curveType !== bls.BN254) {
      await bls.init(bls.BN254);
    }
    return bls;
  })();
  return blsModule;
}

/** DER header of a PKCS#8 Ed25519 private key (RFC 8410). The 32-byte seed follows it. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** A key pair that signs arbitrary bytes, as gosdk's schemes do after hex-decoding their input. */
export interface RawKeyPair {
  scheme: SignatureScheme;
  publicKey: string;
  /** Signs the message bytes and returns the signature in hex. */
  signBytes(message: Uint8Array): string;
}

/** Makes a key pair from a 32-byte seed the way gosdk derives one (BLS `setLittleEndian`, Ed25519 seed). */
export async function rawKeyPairFromSeed(scheme: SignatureScheme, seed: Uint8Array): Promise<RawKeyPair> {
  if (scheme === 'bls0chain') {
    const bls = await loadBls();
    const secretKey = new bls.SecretKey();
    secretKey.setLittleEndian(seed);
    return {
      scheme,
      publicKey: secretKey.getPublicKey().serializeToHexStr(),
      signBytes: (message) => secretKey.sign(message).serializeToHexStr(),
    };
  }
  const privateKey = createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8_PREFIX, seed.subarray(0, 32)]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return {
    scheme,
    publicKey: spki.subarray(spki.length - 32).toString('hex'),
    signBytes: (message) => sign(null, message, privateKey).toString('hex'),
  };
}

/**
 * Verifies a hex signature over raw message bytes, as gosdk's `Verify(signature, hex(message))`
 * does. Any decoding problem counts as an invalid signature, as the blobber treats it.
 */
export async function verifyBytes(
  scheme: SignatureScheme,
  publicKeyHex: string,
  signatureHex: string,
  message: Uint8Array,
): Promise<boolean> {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(signatureHex) || !/^(?:[0-9a-fA-F]{2})+$/.test(publicKeyHex)) {
    return false;
  }
  if (scheme === 'bls0chain') {
    const bls = await loadBls();
    try {
      const publicKey = new bls.PublicKey();
      publicKey.deserializeHexStr(publicKeyHex);
      const signature = new bls.Signature();
      signature.deserializeHexStr(signatureHex);
      return publicKey.verify(signature, message);
    } catch {
      return false;
    }
  }
  try {
    const key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKeyHex, 'hex').toString('base64url') },
      format: 'jwk',
    });
    return verify(null, message, key, Buffer.from(signatureHex, 'hex'));
  } catch {
    return false;
  }
}

/** A sandbox 0Box operator: a fresh key that can sign the `Zbox-Signature` message. */
export interface SandboxOperator extends ZboxOperator {
  clientId: string;
}

/**
 * Creates a fresh 0Box operator key for tests and the demo. Its public key is checked against the
 * project's own key derivation (`keyPairFromSeed`) from the same seed, so the operator is the key a
 * wallet with that seed would have.
 */
export async function createSandboxOperator(scheme: SignatureScheme = 'bls0chain'): Promise<SandboxOperator> {
  const seed = randomBytes(32);
  const raw = await rawKeyPairFromSeed(scheme, seed);
  const walletKey = await keyPairFromSeed(scheme, seed);
  if (walletKey.publicKey !== raw.publicKey) {
    throw new Error(`sandbox ${scheme} key derivation differs from the wallet's for the same seed`);
  }
  return {
    scheme,
    publicKey: raw.publicKey,
    clientId: walletKey.clientId,
    signMessage: (message) => raw.signBytes(message),
  };
}

// ---------------------------------------------------------------------------------------------
// Fake blobbers
// ---------------------------------------------------------------------------------------------

/**
 * Behaviour of a fake blobber for the next requests:
 * - `ok`: responds as the real blobber does;
 * - `down`: stops listening, so connections are refused;
 * - `slow`: responds correctly after `slowMs`;
 * - `http500`: 500 with Go's plain-text error body;
 * - `html`: 200 with an HTML page, as a proxy or maintenance page sends;
 * - `empty`: 200 with an empty body;
 * - `non-hex`: 200 with an `auth_ticket` of the right length that is not hex;
 * - `short`: 200 with only the first half of the ticket.
 */
export type FakeBlobberBehaviour =
  | 'ok'
  | 'down'
  | 'slow'
  | 'http500'
  | 'html'
  | 'empty'
  | 'non-hex'
  | 'short';

export interface FakeBlobber {
  index: number;
  /** Blobber id: sha3-256 of its public key, as for every Züs node. */
  id: string;
  /** Base URL, `http://127.0.0.1:<port>`. */
  url: string;
  /** Public key hex the tickets verify with. */
  publicKey: string;
  scheme: SignatureScheme;
  readonly behaviour: FakeBlobberBehaviour;
}

/** One request a fake blobber responded to. The signature header's value is not kept. */
export interface FakeBlobberRequest {
  blobberIndex: number;
  blobberId: string;
  method: string;
  path: string;
  clientId: string | null;
  round: string | null;
  signaturePresent: boolean;
  status: number;
}

export interface FakeBlobbersOptions {
  count: number;
  /** 0Box public key configured on every blobber (`0box.public_key`). */
  operatorPublicKey: string;
  /** Signature scheme of the network, used by the blobbers and for the 0Box key. Default bls0chain. */
  scheme?: SignatureScheme;
  /** Whether the blobbers run the round-bound ticket version (after the "hermes" fork). */
  roundBound: boolean;
  /** Delay of the `slow` behaviour in milliseconds (default 30 000). */
  slowMs?: number;
}

export interface FakeBlobbers {
  blobbers: readonly FakeBlobber[];
  /** Every request responded to, in order. */
  readonly requests: readonly FakeBlobberRequest[];
  setBehaviour(index: number, behaviour: FakeBlobberBehaviour): Promise<void>;
  close(): Promise<void>;
}

const AUTH_TICKET_PATH = '/v1/auth/generate';

interface BlobberState {
  blobber: FakeBlobber & { behaviour: FakeBlobberBehaviour };
  key: RawKeyPair;
  server: Server;
  port: number;
  listening: boolean;
  timers: Set<NodeJS.Timeout>;
}

/** Starts `count` fake blobbers on 127.0.0.1, each on its own port and with its own key. */
export async function startFakeBlobbers(options: FakeBlobbersOptions): Promise<FakeBlobbers> {
  const scheme = options.scheme ?? 'bls0chain';
  const slowMs = options.slowMs ?? 30_000;
  const requests: FakeBlobberRequest[] = [];
  const states: BlobberState[] = [];

  for (let index = 0; index < options.count; index += 1) {
    const key = await rawKeyPairFromSeed(scheme, randomBytes(32));
    const state: BlobberState = {
      blobber: {
        index,
        id: clientIdOf(key.publicKey),
        url: '',
        publicKey: key.publicKey,
        scheme,
        behaviour: 'ok',
      },
      key,
      server: createServer(),
      port: 0,
      listening: false,
      timers: new Set(),
    };
    state.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      const record = (status: number) => {
        const url = new URL(request.url ?? '/', 'http://blobber');
        requests.push({
          blobberIndex: index,
          blobberId: state.blobber.id,
          method: request.method ?? '',
          path: url.pathname,
          clientId: url.searchParams.get('client_id'),
          round: url.searchParams.get('round'),
          signaturePresent: (request.headers['zbox-signature'] ?? '') !== '',
          status,
        });
      };
      answer(state, request, response, {
        operatorPublicKey: options.operatorPublicKey,
        roundBound: options.roundBound,
        slowMs,
      })
        .then(record)
        .catch((error: unknown) => {
          response.destroy(error instanceof Error ? error : new Error(String(error)));
        });
    });
    await listen(state);
    state.blobber.url = `http://127.0.0.1:${state.port}`;
    states.push(state);
  }

  const stateAt = (index: number): BlobberState => {
    const state = states[index];
    if (state === undefined) {
      throw new RangeError(`no fake blobber at index ${index} (there are ${states.length})`);
    }
    return state;
  };

  return {
    blobbers: states.map((state) => state.blobber),
    requests,
    async setBehaviour(index, behaviour) {
      const state = stateAt(index);
      state.blobber.behaviour = behaviour;
      if (behaviour === 'down' && state.listening) {
        await stopListening(state);
      } else if (behaviour !== 'down' && !state.listening) {
        await listen(state);
      }
    },
    async close() {
      await Promise.all(states.map((state) => stopListening(state)));
    },
  };
}

function listen(state: BlobberState): Promise<void> {
  return new Promise((resolve, reject) => {
    state.server.once('error', reject);
    state.server.listen(state.port, '127.0.0.1', () => {
      state.server.off('error', reject);
      state.port = (state.server.address() as AddressInfo).port;
      state.listening = true;
      resolve();
    });
  });
}

function stopListening(state: BlobberState): Promise<void> {
  for (const timer of state.timers) {
    clearTimeout(timer);
  }
  state.timers.clear();
  if (!state.listening) {
    return Promise.resolve();
  }
  state.listening = false;
  return new Promise((resolve) => {
    state.server.close(() => resolve());
    state.server.closeAllConnections();
  });
}

interface AnswerOptions {
  operatorPublicKey: string;
  roundBound: boolean;
  slowMs: number;
}

/** Responds to one request according to the blobber's behaviour and returns the status sent. */
async function answer(
  state: BlobberState,
  request: IncomingMessage,
  response: ServerResponse,
  options: AnswerOptions,
): Promise<number> {
  switch (state.blobber.behaviour) {
    case 'http500':
      return sendGoHttpError(response, 500, 'Internal Server Error');
    case 'html':
      return send(
        response,
        200,
        '<!DOCTYPE html>\n<html><head><title>Maintenance</title></head><body><h1>Down for maintenance</h1><p>This blobber is being upgraded. Please try again later.</p></body></html>\n',
        { 'content-type': 'text/html; charset=utf-8' },
      );
    case 'empty':
      return send(response, 200, '', { 'content-type': 'application/json' });
    case 'slow':
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          state.timers.delete(timer);
          resolve();
        }, options.slowMs);
        state.timers.add(timer);
      });
      return answerAsBlobber(state, request, response, options);
    default:
      return answerAsBlobber(state, request, response, options);
  }
}

/** Responds as the real blobber's routing, `Authenticate0Box` and `GenerateAuthTicket` do. */
async function answerAsBlobber(
  state: BlobberState,
  request: IncomingMessage,
  response: ServerResponse,
  options: AnswerOptions,
): Promise<number> {
  const url = new URL(request.url ?? '/', 'http://blobber');
  if (url.pathname !== AUTH_TICKET_PATH) {
    return send(response, 404, '404 page not found\n', { 'content-type': 'text/plain; charset=utf-8' });
  }

  // Authenticate0Box verifies the header over hex(bytes of the configured key text), and gosdk's
  // Verify hex-decodes that back to the bytes of the key text.
  const signature = String(request.headers['zbox-signature'] ?? '');
  const message = new TextEncoder().encode(options.operatorPublicKey);
  if (
    signature === '' ||
    !(await verifyBytes(state.key.scheme, options.operatorPublicKey, signature, message))
  ) {
    return send(response, 403, 'Invalid signature', { 'content-type': 'text/plain; charset=utf-8' });
  }

  // ToJSONResponse responds to OPTIONS with the CORS headers and no body.
  if (request.method === 'OPTIONS') {
    return send(response, 200, '', {
      'access-control-allow-origin': '*',
      'access-control-allow-methods': 'POST, GET, OPTIONS, PUT, DELETE',
      'access-control-allow-headers': 'Accept, Content-Type, Accept-Encoding',
    });
  }

  const clientId = url.searchParams.get('client_id') ?? '';
  if (clientId === '') {
    return sendGoJsonError(response, 'missing_client_id', 'client_id is required');
  }
  let payload: Buffer;
  if (options.roundBound) {
    const round = url.searchParams.get('round') ?? '';
    if (round === '') {
      return sendGoJsonError(response, 'missing_round', 'round is required');
    }
    payload = createHash('sha3-256').update(`${clientId}_${round}`).digest();
  } else {
    // node.Self.Sign hex-decodes its input, so a client id that is not hex makes it fail.
    if (!/^(?:[0-9a-fA-F]{2})*$/.test(clientId)) {
      return sendGoJsonError(response, 'signature_failed', 'signature failed');
    }
    payload = Buffer.from(clientId, 'hex');
  }

  let ticket = state.key.signBytes(payload);
  if (state.blobber.behaviour === 'non-hex') {
    ticket = 'zz'.repeat(ticket.length / 2);
  } else if (state.blobber.behaviour === 'short') {
    ticket = ticket.slice(0, ticket.length / 2);
  }
  return send(response, 200, `${JSON.stringify({ auth_ticket: ticket })}\n`, {
    'access-control-allow-origin': '*',
    'content-type': 'application/json',
    'x-content-type-options': 'nosniff',
  });
}

function send(
  response: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string>,
): number {
  response.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body) });
  response.end(body);
  return status;
}

/**
 * Sends an error as the blobber's `common.Respond` does: 400, `{"code": ..., "error": "<code>: <message>"}`
 * (keys in Go's sorted map order), then two newlines (json.Encoder's and Fprintln's).
 */
function sendGoJsonError(response: ServerResponse, code: string, message: string): number {
  const body = `${JSON.stringify({ code, error: `${code}: ${message}` })}\n\n`;
  return send(response, 400, body, {
    'access-control-allow-origin': '*',
    'content-type': 'application/json',
    'x-content-type-options': 'nosniff',
  });
}

/** Sends an error as Go's `http.Error(w, text, status)` does: plain text, a newline and the nosniff header. */
function sendGoHttpError(response: ServerResponse, status: number, text: string): number {
  return send(response, status, `${text}\n`, {
    'content-type': 'text/plain; charset=utf-8',
    'x-content-type-options': 'nosniff',
  });
}
