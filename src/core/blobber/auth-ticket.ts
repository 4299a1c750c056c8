/**
 * Auth tickets from restricted and enterprise blobbers. Such a blobber only joins an allocation
 * whose request carries its ticket for the allocation owner, and it issues tickets only to 0Box:
 *
 *   GET <blobber url>/v1/auth/generate?client_id=<owner client id>[&round=<auth round expiry>]
 *   Zbox-Signature: <the 0Box key's signature over the UTF-8 text of its own public key hex>
 *
 * The blobber checks the header against the key in its `0box.public_key` setting and returns
 * `{"auth_ticket": "<hex signature>"}`, signed with the blobber's own key. Source: 0chain/blobber
 * code/go/0chain.net/blobbercore/handler/handler.go (`Authenticate0Box`, the route) and
 * blobbercore/handler/auth_ticket.go (`GenerateAuthTicket`).
 */
import { PermanentError, TransientError } from '../errors.js';
import type { Logger } from '../output/logger.js';
import type { SignatureScheme } from '../zus/signature.js';
import { type BlobberFetch, type GuardedResponse, quoteText, redactText } from './url-guard.js';

export const AUTH_TICKET_PATH = '/v1/auth/generate';
export const ZBOX_SIGNATURE_HEADER = 'Zbox-Signature';

/** Hex length of a signature: herumi BLS G1 point (32 bytes) or Ed25519 (64 bytes). */
const SIGNATURE_HEX_LENGTH: Readonly<Record<SignatureScheme, number>> = { bls0chain: 64, ed25519: 128 };

const CLIENT_ID = /^[0-9a-f]{64}$/;
const LOWERCASE_HEX = /^[0-9a-f]*$/;

/**
 * The platform's 0Box key, which signs the `Zbox-Signature` header. The blobber verifies that
 * header over the raw bytes of the public key text, not over a hash, so the signer must sign any
 * message: `Wallet.sign` takes only a 32-byte hash and cannot produce it.
 */
export interface ZboxOperator {
  readonly scheme: SignatureScheme;
  /** Public key hex exactly as configured on the blobbers (`0box.public_key`). */
  readonly publicKey: string;
  /** Signs the raw message bytes with the scheme's own message hashing and returns the signature in hex. */
  signMessage(message: Uint8Array): string;
}

/** Returns the bytes the blobber verifies the `Zbox-Signature` header over: the UTF-8 text of the public key hex. */
export function zboxSignatureMessage(publicKey: string): Uint8Array {
  return new TextEncoder().encode(publicKey);
}

/**
 * Computes the `Zbox-Signature` header value. It is a fixed value per key (no time or nonce is
 * signed), so it works as a bearer credential: keep it out of logs and errors.
 */
export function zboxSignature(operator: ZboxOperator): string {
  return operator.signMessage(zboxSignatureMessage(operator.publicKey));
}

export interface AuthTicketRequest {
  /** The guarded blobber client (`createGuardedFetch`). */
  fetch: BlobberFetch;
  blobberUrl: string;
  /** Blobber id, used in messages and as the `dependency` of errors. */
  blobberId: string;
  /** Client id of the allocation owner the ticket is for (64 lowercase hex). */
  clientId: string;
  /**
   * Round until which the ticket is valid (`auth_round_expiry` of the allocation request). Blobbers
   * after the chain's "hermes" fork require it and sign `sha3("<client id>_<round>")`. Older ones
   * ignore it and sign the client id.
   */
  round?: number;
  operator: ZboxOperator;
  logger?: Logger;
}

/**
 * Requests an auth ticket from one blobber and returns it (lowercase hex).
 *
 * Throws PermanentError when the request is invalid or the blobber rejects it (403 for an operator
 * key it does not know) or returns something that is not a ticket (HTML, an empty body, non-hex,
 * a wrong length). Throws TransientError, with `dependency` = the blobber id, when the blobber
 * cannot be reached, times out or returns 5xx or 429. Messages never contain the signature header.
 */
export async function requestAuthTicket(request: AuthTicketRequest): Promise<string> {
  const { blobberId, clientId, round, operator } = request;
  if (!CLIENT_ID.test(clientId)) {
    throw new PermanentError(
      `client id ${quoteText(clientId)} is not 64 lowercase hex characters (a Züs client id is a sha3-256 hash)`,
    );
  }
  if (round !== undefined && !(Number.isSafeInteger(round) && round >= 0)) {
    throw new TypeError(`round must be a non-negative integer, got ${round}`);
  }

  const url = authTicketUrl(request.blobberUrl, blobberId, clientId, round);
  const signature = zboxSignature(operator);
  const secrets = [signature, operator.publicKey];

  let response: GuardedResponse;
  try {
    response = await request.fetch(url, {
      headers: { [ZBOX_SIGNATURE_HEADER]: signature, accept: 'application/json' },
      dependency: blobberId,
      redact: secrets,
    });
  } catch (error) {
    throw withBlobberPrefix(error, blobberId);
  }

  const ticket = ticketFromResponse(response, { blobberId, scheme: operator.scheme, secrets });
  request.logger?.debug('auth ticket issued', {
    blobber_id: blobberId,
    client_id: clientId,
    ...(round === undefined ? {} : { round }),
  });
  return ticket;
}

/** Builds the endpoint URL under the blobber URL, which may carry a path prefix (a proxy route). */
function authTicketUrl(
  blobberUrl: string,
  blobberId: string,
  clientId: string,
  round: number | undefined,
): string {
  let url: URL;
  try {
    url = new URL(blobberUrl);
  } catch {
    throw new PermanentError(`blobber ${blobberId} has the invalid URL ${quoteText(blobberUrl, 200)}`, {
      dependency: blobberId,
    });
  }
  url.pathname = `${url.pathname.replace(/\/+$/, '')}${AUTH_TICKET_PATH}`;
  url.search = '';
  url.hash = '';
  url.searchParams.set('client_id', clientId);
  if (round !== undefined) {
    url.searchParams.set('round', String(round));
  }
  return url.href;
}

function withBlobberPrefix(error: unknown, blobberId: string): unknown {
  if (error instanceof TransientError) {
    return new TransientError(`blobber ${blobberId}: ${error.message}`, {
      dependency: blobberId,
      cause: error,
    });
  }
  if (error instanceof PermanentError) {
    return new PermanentError(`blobber ${blobberId}: ${error.message}`, {
      dependency: blobberId,
      cause: error,
    });
  }
  return error;
}

interface ResponseContext {
  blobberId: string;
  scheme: SignatureScheme;
  /** Values that must not appear in a message even if the blobber echoes them. */
  secrets: readonly string[];
}

/** Reads the ticket out of a 1xx, 2xx or 4xx response, or throws the PermanentError that explains it. */
function ticketFromResponse(response: GuardedResponse, context: ResponseContext): string {
  const { blobberId } = context;
  const text = response.text();
  const quoted = quoteText(redactText(text, context.secrets));
  const fail = (reason: string) =>
    new PermanentError(`blobber ${blobberId} ${reason}`, { dependency: blobberId });

  if (response.status === 403) {
    const body = text.trim() === 'Invalid signature' ? '' : `; body ${quoted}`;
    throw fail(
      `rejected the operator signature (403 invalid signature): this platform's 0Box key is not registered on that blobber${body}`,
    );
  }
  if (response.status === 400) {
    throw badRequest(goError(text), quoted, fail);
  }
  if (response.status === 404) {
    throw fail(
      `has no auth ticket endpoint (404 for ${AUTH_TICKET_PATH}): its blobber version may not support restricted blobbers; body ${quoted}`,
    );
  }
  if (response.status < 200 || response.status >= 300) {
    throw fail(`returned HTTP ${response.status} to the auth ticket request: ${quoted}`);
  }

  if (text.trim() === '') {
    throw fail(`returned an empty body instead of an auth ticket (HTTP ${response.status})`);
  }
  const contentType = response.headers.get('content-type') ?? '';
  if (contentType.includes('html') || text.trimStart().startsWith('<')) {
    throw fail(`returned HTML instead of an auth ticket (a proxy or maintenance page?): ${quoted}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw fail(`returned a body that is not JSON instead of an auth ticket: ${quoted}`);
  }
  const ticket = (json as { auth_ticket?: unknown } | null)?.auth_ticket;
  if (typeof ticket !== 'string') {
    throw fail(`returned JSON without an "auth_ticket" string field: ${quoted}`);
  }
  return checkTicket(ticket, context.scheme, quoted, fail);
}

function checkTicket(
  ticket: string,
  scheme: SignatureScheme,
  quoted: string,
  fail: (reason: string) => PermanentError,
): string {
  if (ticket === '') {
    throw fail(`returned an empty auth ticket: ${quoted}`);
  }
  if (!LOWERCASE_HEX.test(ticket)) {
    throw fail(`returned an auth ticket that is not lowercase hex: ${quoted}`);
  }
  const expected = SIGNATURE_HEX_LENGTH[scheme];
  if (ticket.length !== expected) {
    throw fail(
      `returned an auth ticket of ${ticket.length} hex characters, but a ${scheme} signature has ${expected}: ${quoted}`,
    );
  }
  return ticket;
}

interface GoError {
  code?: string;
  error?: string;
}

/** Parses the blobber's error body `{"code": ..., "error": "<code>: <message>"}`, or returns `{}` for any other body. */
function goError(text: string): GoError {
  try {
    const json = JSON.parse(text) as unknown;
    if (json !== null && typeof json === 'object') {
      const { code, error } = json as Record<string, unknown>;
      return {
        ...(typeof code === 'string' ? { code } : {}),
        ...(typeof error === 'string' ? { error } : {}),
      };
    }
  } catch {
    // Not JSON: the caller quotes the body instead.
  }
  return {};
}

function badRequest(
  error: GoError,
  quoted: string,
  fail: (reason: string) => PermanentError,
): PermanentError {
  switch (error.code) {
    // Blobber revisions that check the header inside the handler return 400 with this code.
    case 'invalid_signature':
    case 'invalid_parameters':
      return fail(
        `rejected the operator signature (400 ${error.code}): this platform's 0Box key is not registered on that blobber`,
      );
    case 'missing_round':
      return fail(
        "requires a round (400 missing_round): request the ticket with the allocation request's auth_round_expiry",
      );
    case 'missing_client_id':
      return fail('did not receive the client id (400 missing_client_id)');
    default:
      return fail(`rejected the auth ticket request (400): ${quoted}`);
  }
}
