/**
 * Auth tickets of shared files: the base64 JSON an allocation owner hands out so that others can
 * download one file (or a directory) from the allocation's blobbers.
 *
 * Format (0chain/gosdk zboxcore/marker/authticket.go, blobber readmarker/authticket.go): standard
 * base64 of a JSON object with `client_id` (empty for a public share), `owner_id`,
 * `allocation_id`, `file_path_hash` (the lookup hash), `actual_file_hash`, `file_name`,
 * `reference_type` (`f` file, `d` directory), `expiration` and `timestamp` (unix seconds,
 * expiration 0 = none), `re_encryption_key`, `encrypted`, `signature`; newer SDK versions add
 * `available_after`.
 *
 * The owner signs sha3-256 of the `:`-joined fields with the wallet key. The field list grew over
 * SDK versions, so verification accepts each published form (see `ticketSignedTexts`).
 */
import { z } from 'zod';
import { PermanentError, TransientError } from '../errors.js';
import {
  initSignatureSchemes,
  type SignatureScheme,
  verifyMessageSignature,
  verifySignature,
} from '../zus/signature.js';
import { sha3Hex } from '../zus/transaction.js';
import { quoteText } from './url-guard.js';

/** A decoded auth ticket. Field names follow the JSON keys. */
export interface ShareTicket {
  /** Recipient's client id, or empty for a public share that anyone may use. */
  clientId: string;
  ownerId: string;
  allocationId: string;
  /** Lookup hash of the shared file or directory. */
  filePathHash: string;
  /** Content hash of the shared file when the ticket was issued (MD5 hex in current uploads), or empty. */
  actualFileHash: string;
  fileName: string;
  referenceType: 'f' | 'd';
  /** Unix seconds after which the ticket is expired; 0 means it never expires. */
  expiration: number;
  /** Unix seconds before which blobbers refuse the share, when the ticket carries the field. */
  availableAfter: number | undefined;
  /** Unix seconds when the owner issued the ticket. */
  timestamp: number;
  reEncryptionKey: string;
  encrypted: boolean;
  /** Owner's signature in hex. */
  signature: string;
  /** The JSON text exactly as decoded, which the file meta request sends as `auth_token`. */
  json: string;
}

/** Longest encoded ticket accepted. A real one is under 1 KiB; anything far larger is not a ticket. */
const MAX_ENCODED_TICKET_CHARS = 16 * 1024;

const HEX_64 = /^[0-9a-f]{64}$/;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

const unixSeconds = z.number().int().nonnegative();
const ticketSchema = z.object({
  client_id: z.string().regex(/^(?:[0-9a-f]{64})?$/, 'expected empty or 64 lowercase hex characters'),
  owner_id: z.string().regex(HEX_64, 'expected 64 lowercase hex characters'),
  allocation_id: z.string().regex(HEX_64, 'expected 64 lowercase hex characters'),
  file_path_hash: z.string().regex(HEX_64, 'expected 64 lowercase hex characters'),
  actual_file_hash: z.string().default(''),
  file_name: z.string().default(''),
  reference_type: z.enum(['f', 'd']),
  expiration: unixSeconds,
  available_after: unixSeconds.optional(),
  timestamp: unixSeconds,
  re_encryption_key: z.string().default(''),
  encrypted: z.boolean().default(false),
  signature: z.string().regex(/^(?:[0-9a-fA-F]{2})+$/, 'expected a hex signature'),
});

/**
 * Decodes an auth ticket (standard or URL-safe base64 of the ticket JSON) and checks its shape.
 * Throws PermanentError naming the problem; the message never contains the ticket.
 */
export function parseShareTicket(encoded: string): ShareTicket {
  const compact = encoded.replace(/\s+/g, '');
  if (compact === '') {
    throw new PermanentError('auth ticket is empty (expected the base64 text the owner shared)');
  }
  if (compact.length > MAX_ENCODED_TICKET_CHARS) {
    throw new PermanentError(
      `auth ticket is ${compact.length} characters long, over the limit of ${MAX_ENCODED_TICKET_CHARS} (expected the base64 text of a ticket)`,
    );
  }
  if (!BASE64.test(compact)) {
    const hint = compact.startsWith('{') ? ' (it looks like JSON; the platform stores the base64 form)' : '';
    throw new PermanentError(`auth ticket is not base64${hint}`);
  }

  const json = Buffer.from(compact.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8');
  let body: unknown;
  try {
    body = JSON.parse(json);
  } catch {
    throw new PermanentError('auth ticket is base64 but not of JSON (expected the ticket the owner shared)');
  }
  const parsed = ticketSchema.safeParse(body);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((issue) => `${issue.path.join('.') || 'ticket'}: ${issue.message}`)
      .join('; ');
    throw new PermanentError(`auth ticket is invalid: ${problems}`);
  }

  const ticket = parsed.data;
  return {
    clientId: ticket.client_id,
    ownerId: ticket.owner_id,
    allocationId: ticket.allocation_id,
    filePathHash: ticket.file_path_hash,
    actualFileHash: ticket.actual_file_hash,
    fileName: ticket.file_name,
    referenceType: ticket.reference_type,
    expiration: ticket.expiration,
    availableAfter: ticket.available_after,
    timestamp: ticket.timestamp,
    reEncryptionKey: ticket.re_encryption_key,
    encrypted: ticket.encrypted,
    signature: ticket.signature.toLowerCase(),
    json,
  };
}

export interface CheckShareTicketOptions {
  /** The current time (default: the system clock). */
  now?: Date;
}

/**
 * Checks that the ticket can download a file today. Throws PermanentError for a directory share,
 * an encrypted (private) share, an expired ticket (the message gives the expiry) or one that
 * expires before it was issued, and TransientError for a share that is not available yet.
 */
export function checkShareTicket(ticket: ShareTicket, options: CheckShareTicketOptions = {}): void {
  const nowSeconds = Math.floor((options.now ?? new Date()).getTime() / 1000);

  if (ticket.referenceType !== 'f') {
    throw new PermanentError(
      `auth ticket shares a directory (${quoteText(ticket.fileName)}), but only file shares are supported (share the file itself)`,
    );
  }
  if (ticket.encrypted) {
    throw new PermanentError(
      `auth ticket shares the encrypted file ${quoteText(ticket.fileName)}: encrypted shares are not supported yet`,
    );
  }
  if (ticket.expiration > 0 && ticket.expiration < ticket.timestamp) {
    throw new PermanentError(
      `auth ticket expires at ${isoTime(ticket.expiration)}, before it was issued at ${isoTime(ticket.timestamp)}, so blobbers reject it (ask the owner for a new link)`,
    );
  }
  if (ticket.expiration > 0 && ticket.expiration < nowSeconds) {
    throw new PermanentError(
      `auth ticket expired at ${isoTime(ticket.expiration)} (expiration ${ticket.expiration}); ask the owner to share ${quoteText(ticket.fileName)} again`,
    );
  }
  if (ticket.availableAfter !== undefined && ticket.availableAfter > nowSeconds) {
    throw new TransientError(
      `shared file ${quoteText(ticket.fileName)} is not available before ${isoTime(ticket.availableAfter)}`,
    );
  }
}

/** Decodes an auth ticket and checks that it can download a file now (`parseShareTicket`, then `checkShareTicket`). */
export function decodeShareTicket(encoded: string, options: CheckShareTicketOptions = {}): ShareTicket {
  const ticket = parseShareTicket(encoded);
  checkShareTicket(ticket, options);
  return ticket;
}

/** The allocation fields a ticket is checked against. */
export interface TicketAllocation {
  id: string;
  ownerId: string;
}

/**
 * Checks a ticket against the allocation it is used with and the client that uses it, as blobbers
 * do: same allocation id and owner, and a private ticket only for its recipient. `lookupHash`,
 * when given, must be the shared file's. Throws PermanentError naming the mismatch.
 */
export function checkTicketForAllocation(
  ticket: ShareTicket,
  allocation: TicketAllocation,
  clientId: string,
  lookupHash?: string,
): void {
  if (ticket.allocationId !== allocation.id) {
    throw new PermanentError(
      `auth ticket is for allocation ${ticket.allocationId}, not for allocation ${allocation.id}`,
    );
  }
  if (ticket.ownerId !== allocation.ownerId) {
    throw new PermanentError(
      `auth ticket names owner ${ticket.ownerId}, but allocation ${allocation.id} belongs to ${allocation.ownerId}`,
    );
  }
  if (ticket.clientId !== '' && ticket.clientId !== clientId) {
    throw new PermanentError(
      `auth ticket is a private share for client ${ticket.clientId}, so the operator wallet ${clientId} cannot use it`,
    );
  }
  if (lookupHash !== undefined && lookupHash !== ticket.filePathHash) {
    throw new PermanentError(
      `lookup hash ${lookupHash} is not the shared file's (${ticket.filePathHash}); a file ticket opens only its own file`,
    );
  }
}

/**
 * Returns the texts an owner may have signed, newest SDK form first:
 * - with `available_after`: allocation, client, owner, lookup hash, name, type, re-encryption key,
 *   expiration, available_after, timestamp, actual file hash, encrypted (gosdk after sprint-1.18);
 * - without it (gosdk sprint-1.18 and the blobber's check);
 * - the oldest form, which ends at the timestamp.
 */
export function ticketSignedTexts(ticket: ShareTicket): string[] {
  const head = [
    ticket.allocationId,
    ticket.clientId,
    ticket.ownerId,
    ticket.filePathHash,
    ticket.fileName,
    ticket.referenceType,
    ticket.reEncryptionKey,
    ticket.expiration,
  ].join(':');
  const tail = `${ticket.actualFileHash}:${ticket.encrypted}`;
  return [
    `${head}:${ticket.availableAfter ?? 0}:${ticket.timestamp}:${tail}`,
    `${head}:${ticket.timestamp}:${tail}`,
    `${head}:${ticket.timestamp}`,
  ];
}

/**
 * Checks the owner's signature on a ticket with the owner's wallet public key, over the 32 raw
 * bytes of sha3-256 of each form in `ticketSignedTexts`. Returns whether one verifies.
 */
export async function verifyTicketSignature(
  ticket: ShareTicket,
  scheme: SignatureScheme,
  ownerPublicKey: string,
): Promise<boolean> {
  if (scheme === 'bls0chain') {
    await initSignatureSchemes();
  }
  return ticketSignedTexts(ticket).some((text) =>
    verifySignature(scheme, ownerPublicKey, sha3Hex(text), ticket.signature),
  );
}

/** Encodes the ticket for the `X-Auth-Token` header of a download request: standard base64 of its JSON. */
export function authTokenHeader(ticket: ShareTicket): string {
  return Buffer.from(ticket.json, 'utf8').toString('base64');
}

/**
 * Computes the lookup hash of a path in an allocation: sha3-256 hex of `<allocation id>:<path>`,
 * with the absolute, cleaned path such as `/docs/a.pdf` (gosdk zboxcore/fileref/fileref.go
 * `GetReferenceLookup`).
 */
export function lookupHashOf(allocationId: string, path: string): string {
  return sha3Hex(`${allocationId}:${path}`);
}

function isoTime(unixSeconds: number): string {
  const date = new Date(unixSeconds * 1000);
  return Number.isNaN(date.getTime()) ? `${unixSeconds} (unix seconds)` : date.toISOString();
}

// ---------------------------------------------------------------------------------------------
// Owner signatures over raw bytes
// ---------------------------------------------------------------------------------------------

/**
 * Verifies a signature over raw message bytes. The Go SDK signs a file's content hash this way:
 * `client.Sign(actual_file_hash)` hex-decodes the hash and signs the bytes, so an MD5 hash gives a
 * 16-byte message (gosdk core/zcncrypto bls0chain_herumi.go `Sign`, `Verify`). `ed25519` also
 * covers the owner signing key of newer SDK versions, which signs the same bytes.
 * Returns false for any malformed input.
 */
export async function verifyBytesSignature(
  scheme: SignatureScheme,
  publicKeyHex: string,
  message: Uint8Array,
  signatureHex: string,
): Promise<boolean> {
  await initSignatureSchemes();
  return verifyMessageSignature(scheme, publicKeyHex, message, signatureHex);
}
