/**
 * Streams a file shared with an auth ticket from the allocation's blobbers into a temporary file.
 *
 * Steps, as the Go SDK's auth-ticket download does them (0chain/gosdk zboxcore/sdk/downloadworker.go,
 * blockdownloadworker.go, filemetaworker.go; 0chain/blobber handler/storage_handler.go `GetFileMeta`,
 * object_operation_handler.go `DownloadFile`):
 *
 * 1. File metadata from every blobber (`POST /v1/file/meta/<allocation tx>`). At least d + 1 of
 *    them (d when the allocation has no parity) must agree on the content hash, its owner
 *    signature and the size. Only agreeing blobbers serve blocks.
 * 2. Block ranges (`GET /v1/file/download/<allocation tx>`, at most 500 blocks of 64 KiB each)
 *    from d blobbers, data shards first. A blobber that fails, times out or returns the wrong
 *    length is dropped for the rest of the file, and a parity blobber serves its rows instead.
 *    The missing data pieces are rebuilt with Reed–Solomon. With parity, one extra blobber serves
 *    every range, so each row is checked against it. A blobber whose pieces disagree with all
 *    others is found (when at least two spare shards are present) and dropped.
 * 3. Rows are written in order to a temporary file, trimmed to the file size, while an MD5 of the
 *    output is computed and compared with the owner-signed `actual_file_hash` at the end.
 *
 * Memory holds at most `concurrency + 1` block ranges: about
 * (concurrency + 1) × (d + 1) × blocksPerRequest × 64 KiB, plus rebuilt pieces.
 * Blobbers that charge for reads are never asked for blocks: paid read markers are not supported.
 */
import { createHash, type Hash, randomUUID } from 'node:crypto';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { errorMessage, PermanentError, TransientError } from '../errors.js';
import type { Logger } from '../output/logger.js';
import type { SignatureScheme } from '../zus/signature.js';
import { BLOCK_SIZE_BYTES, pieceBytes, ReedSolomon, type ShardLayout, shardLayout } from './erasure.js';
import {
  authTokenHeader,
  checkShareTicket,
  checkTicketForAllocation,
  type ShareTicket,
  verifyBytesSignature,
  verifyTicketSignature,
} from './share.js';
import { type BlobberFetch, type GuardedResponse, quoteText } from './url-guard.js';

/** Most blocks one download request may ask for: the blobber's `block_limit_request` (0chain/blobber config). */
export const MAX_BLOCKS_PER_REQUEST = 500;

const DEFAULT_CONCURRENCY = 4;
/** 2 MiB per blobber per request. A guess that keeps memory small, where the Go SDK requests 100 blocks. */
const DEFAULT_BLOCKS_PER_REQUEST = 32;
/** Limit of one blobber request. A guess: it allows 2 MiB at about 70 KB/s. */
const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_META_RESPONSE_BYTES = 1024 * 1024;
/** Body cap of a block request that fails: room for the blobber's error text. */
const MIN_BLOCK_RESPONSE_CAP_BYTES = 16 * 1024;

/** The allocation fields a download needs (see `fetchAllocationBlobbers`). */
export interface ShareAllocation {
  id: string;
  /** Latest transaction hash of the allocation; blobber URLs carry it. */
  tx: string;
  ownerId: string;
  /** Owner's wallet public key; without it, owner signatures cannot be checked. */
  ownerPublicKey?: string;
  /** Owner's Ed25519 signing key of newer SDK versions, tried for file hash signatures. */
  ownerSigningPublicKey?: string;
  dataShards: number;
  parityShards: number;
}

/** A blobber at its shard position. */
export interface ShareBlobber {
  id: string;
  url: string;
  /** Read price in SAS per GiB; a blobber with a price above 0 is never asked for blocks. */
  readPriceSas: bigint;
}

/** The client that downloads: its id and key go in `X-App-Client-ID` and `X-App-Client-Key`. */
export interface DownloadClient {
  clientId: string;
  publicKey: string;
  /** Signature scheme of the network, used to check the owner's signatures. */
  scheme: SignatureScheme;
}

export interface DownloadShareOptions {
  /** A decoded ticket (`decodeShareTicket`); it is checked again here. */
  ticket: ShareTicket;
  /** Lookup hash of the file to download (default: the ticket's `file_path_hash`). */
  lookupHash?: string;
  allocation: ShareAllocation;
  /** Exactly data + parity blobbers, in shard order. */
  blobbers: readonly ShareBlobber[];
  /** The guarded blobber client (`createGuardedFetch`). */
  fetch: BlobberFetch;
  operator: DownloadClient;
  /** Folder of the temporary file. */
  tempDir: string;
  /** Block ranges fetched at once (default 4). Each range requests blocks from d or d + 1 blobbers in parallel. */
  concurrency?: number;
  /** Blocks of 64 KiB per request and blobber, 1 to 500 (default 32). */
  blocksPerRequest?: number;
  /** Limit of each blobber request in milliseconds (default 30 000). */
  timeoutMs?: number;
  /** Fetch one extra shard per range to check every row against parity (default true). */
  checkParity?: boolean;
  logger: Logger;
  signal?: AbortSignal;
  /** The current time, for the ticket's expiry (default: the system clock). */
  now?: Date;
}

/** A downloaded file in a temporary file. The caller deletes `path` when done with it. */
export interface DownloadedShare {
  path: string;
  sizeBytes: number;
  /** Content hash in hex, equal to the owner-signed `actual_file_hash`. */
  contentHash: string;
  contentHashAlgorithm: ContentHashAlgorithm;
  name: string;
  mimeType: string;
  /** Checks passed beyond the content hash. */
  verified: {
    /** The ticket's signature verified with the owner's public key. */
    ticketSignature: boolean;
    /** The `actual_file_hash_signature` verified with an owner key on the agreeing metadata. */
    contentHashSignature: boolean;
    /** Blobbers whose metadata agreed. */
    agreeingBlobbers: number;
  };
  /** Rows in which at least one data piece was rebuilt from parity. */
  rowsRebuilt: number;
}

export type ContentHashAlgorithm = 'md5' | 'sha3-256';

/**
 * Downloads the shared file into a new file in `tempDir` and returns it. The temporary file is
 * removed when the download fails.
 *
 * Throws PermanentError when no retry can download the file: an invalid, expired or encrypted
 * share, a directory, blobbers that reject the ticket or that the URL guard rejects, or reads that
 * would need payment. Throws TransientError (dependency `blobbers:<allocation id>`) when too few
 * blobbers respond or agree, or the content does not match its hash.
 */
export async function downloadShare(options: DownloadShareOptions): Promise<DownloadedShare> {
  const context = createContext(options);
  const { ticket, allocation, operator, logger } = context;

  checkShareTicket(ticket, options.now === undefined ? {} : { now: options.now });
  checkTicketForAllocation(ticket, allocation, operator.clientId, context.lookupHash);
  const ticketSignature = await checkTicketSignature(context);

  const meta = await readFileMeta(context);
  const layout = shardLayout(meta.sizeBytes, allocation.dataShards);
  excludePaidBlobbers(context);
  requireEnoughBlobbers(context, 'before the download');

  logger.info('share download started', {
    file_name: meta.name,
    size_bytes: meta.sizeBytes,
    rows: layout.rows,
    data_shards: allocation.dataShards,
    parity_shards: allocation.parityShards,
    usable_blobbers: context.pool.usable().length,
  });
  const started = performance.now();
  const path = join(options.tempDir, `share-${allocation.id.slice(0, 12)}-${randomUUID()}.download`);
  const written = await writeFile(context, layout, meta, path);

  logger.info('share download finished', {
    file_name: meta.name,
    size_bytes: meta.sizeBytes,
    rows_rebuilt: written.rowsRebuilt,
    duration_ms: Math.round(performance.now() - started),
  });
  return {
    path,
    sizeBytes: meta.sizeBytes,
    contentHash: meta.contentHash,
    contentHashAlgorithm: meta.hashAlgorithm,
    name: meta.name,
    mimeType: meta.mimeType,
    verified: {
      ticketSignature,
      contentHashSignature: meta.signatureVerified,
      agreeingBlobbers: meta.agreeing.length,
    },
    rowsRebuilt: written.rowsRebuilt,
  };
}

// ---------------------------------------------------------------------------------------------
// Context and the blobber pool
// ---------------------------------------------------------------------------------------------

interface DownloadContext {
  ticket: ShareTicket;
  lookupHash: string;
  allocation: ShareAllocation;
  blobbers: readonly ShareBlobber[];
  fetch: BlobberFetch;
  operator: DownloadClient;
  logger: Logger;
  concurrency: number;
  blocksPerRequest: number;
  timeoutMs: number;
  checkParity: boolean;
  signal: AbortSignal | undefined;
  codec: ReedSolomon;
  pool: BlobberPool;
  /** Base64 ticket for `X-Auth-Token`; kept out of error messages. */
  authToken: string;
  /** Random id sent as `X-Connection-ID`, as the Go SDK does on every download. */
  connectionId: string;
}

function createContext(options: DownloadShareOptions): DownloadContext {
  const { allocation, blobbers } = options;
  const total = allocation.dataShards + allocation.parityShards;
  if (blobbers.length !== total) {
    throw new RangeError(
      `allocation ${allocation.id} has ${allocation.dataShards} data + ${allocation.parityShards} parity shards, but ${blobbers.length} blobbers were given`,
    );
  }
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`invalid concurrency ${concurrency}: expected an integer of at least 1`);
  }
  const blocksPerRequest = options.blocksPerRequest ?? DEFAULT_BLOCKS_PER_REQUEST;
  if (
    !Number.isInteger(blocksPerRequest) ||
    blocksPerRequest < 1 ||
    blocksPerRequest > MAX_BLOCKS_PER_REQUEST
  ) {
    throw new RangeError(
      `invalid blocks per request ${blocksPerRequest}: expected an integer from 1 to ${MAX_BLOCKS_PER_REQUEST} (the blobbers' limit)`,
    );
  }
  const lookupHash = options.lookupHash ?? options.ticket.filePathHash;
  const logger = options.logger.child({ allocation_id: allocation.id, lookup_hash: lookupHash });
  return {
    ticket: options.ticket,
    lookupHash,
    allocation,
    blobbers,
    fetch: options.fetch,
    operator: options.operator,
    logger,
    concurrency,
    blocksPerRequest,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    checkParity: options.checkParity ?? true,
    signal: options.signal,
    codec: new ReedSolomon(allocation.dataShards, allocation.parityShards),
    pool: new BlobberPool(blobbers, logger),
    authToken: authTokenHeader(options.ticket),
    connectionId: randomUUID(),
  };
}

/**
 * Reason a blobber no longer serves this file. A `permanent` reason needs someone to act (a
 * rejected URL, a rejected ticket, a paid read), while the others may pass.
 */
interface Exclusion {
  reason: string;
  permanent: boolean;
}

/** Tracks which blobbers may still serve the file. Shard order is the order of preference. */
class BlobberPool {
  readonly #blobbers: readonly ShareBlobber[];
  readonly #logger: Logger;
  readonly #excluded = new Map<number, Exclusion>();

  constructor(blobbers: readonly ShareBlobber[], logger: Logger) {
    this.#blobbers = blobbers;
    this.#logger = logger;
  }

  /** Indices of the blobbers still usable, in shard order. */
  usable(): number[] {
    return this.#blobbers.flatMap((_blobber, index) => (this.#excluded.has(index) ? [] : [index]));
  }

  isUsable(index: number): boolean {
    return !this.#excluded.has(index);
  }

  /** Drops a blobber for the rest of the file and logs why. The first reason is kept. */
  exclude(index: number, exclusion: Exclusion): void {
    if (this.#excluded.has(index)) {
      return;
    }
    this.#excluded.set(index, exclusion);
    const blobber = this.#blobbers[index];
    this.#logger.warn('blobber dropped for this file', {
      shard: index,
      blobber_id: blobber?.id,
      url: blobber?.url,
      reason: exclusion.reason,
    });
  }

  /** Returns whether every dropped blobber was dropped for a reason no retry fixes. */
  allExclusionsPermanent(): boolean {
    return [...this.#excluded.values()].every((exclusion) => exclusion.permanent);
  }

  /** Reasons of the dropped blobbers for an error message, one per blobber. */
  describeExclusions(): string {
    return [...this.#excluded.entries()]
      .sort(([a], [b]) => a - b)
      .map(
        ([index, exclusion]) =>
          `shard ${index} (${describeBlobber(this.#blobbers[index])}): ${exclusion.reason}`,
      )
      .join('; ');
  }
}

function describeBlobber(blobber: ShareBlobber | undefined): string {
  return blobber === undefined ? 'unknown blobber' : `blobber ${blobber.id.slice(0, 12)}… at ${blobber.url}`;
}

function excludePaidBlobbers(context: DownloadContext): void {
  context.blobbers.forEach((blobber, index) => {
    if (blobber.readPriceSas > 0n) {
      context.pool.exclude(index, {
        reason: `read price ${blobber.readPriceSas} SAS per GiB is above 0, and paid read markers are not supported`,
        permanent: true,
      });
    }
  });
}

/** Throws when fewer than d blobbers remain usable. `stage` names the point of the download in the message. */
function requireEnoughBlobbers(context: DownloadContext, stage: string): void {
  const usable = context.pool.usable().length;
  const needed = context.allocation.dataShards;
  if (usable < needed) {
    throw notEnoughBlobbers(
      context,
      `${usable} of ${context.blobbers.length} blobbers can serve the file ${stage}, but ${needed} are needed`,
    );
  }
}

function notEnoughBlobbers(context: DownloadContext, summary: string): Error {
  const message = `share download from allocation ${context.allocation.id} failed: ${summary}: ${context.pool.describeExclusions()}`;
  if (context.pool.allExclusionsPermanent()) {
    return new PermanentError(message);
  }
  return new TransientError(message, { dependency: `blobbers:${context.allocation.id}` });
}

// ---------------------------------------------------------------------------------------------
// Ticket signature
// ---------------------------------------------------------------------------------------------

async function checkTicketSignature(context: DownloadContext): Promise<boolean> {
  const ownerKey = context.allocation.ownerPublicKey ?? '';
  if (ownerKey === '') {
    context.logger.warn('owner public key unknown, so the auth ticket signature is not checked');
    return false;
  }
  if (!(await verifyTicketSignature(context.ticket, context.operator.scheme, ownerKey))) {
    throw new PermanentError(
      `auth ticket signature does not verify with the public key of allocation owner ${context.allocation.ownerId}, so the ticket was altered or not issued by the owner`,
    );
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// File metadata and consensus
// ---------------------------------------------------------------------------------------------

/** The agreed metadata of the file. */
interface FileMeta {
  name: string;
  mimeType: string;
  sizeBytes: number;
  contentHash: string;
  hashAlgorithm: ContentHashAlgorithm;
  signatureVerified: boolean;
  /** Shard indices of the blobbers that agreed. */
  agreeing: number[];
}

/** The keys of the blobber's file listing used here (blobber reference/ref.go, `filelist` tags). */
const metaSchema = z.object({
  type: z.string(),
  name: z.string().default(''),
  lookup_hash: z.string().default(''),
  size: z.number().int().nonnegative().default(0),
  actual_file_size: z.number().int().nonnegative(),
  actual_file_hash: z.string(),
  actual_file_hash_signature: z.string().default(''),
  chunk_size: z.number().int().nonnegative().default(0),
  mimetype: z.string().default(''),
  encrypted_key: z.string().default(''),
});

type BlobberMeta = z.infer<typeof metaSchema>;

type MetaOutcome =
  | { kind: 'meta'; index: number; meta: BlobberMeta }
  | { kind: 'failed'; index: number; exclusion: Exclusion };

/**
 * Reads the file metadata from every blobber and returns what enough of them agree on. Blobbers
 * that failed or disagreed are dropped from the pool.
 */
async function readFileMeta(context: DownloadContext): Promise<FileMeta> {
  const outcomes = await Promise.all(
    context.blobbers.map((_blobber, index) => requestFileMeta(context, index)),
  );
  if (context.signal?.aborted === true) {
    throw context.signal.reason;
  }
  const answers: Array<{ index: number; meta: BlobberMeta }> = [];
  for (const outcome of outcomes) {
    if (outcome.kind === 'failed') {
      context.pool.exclude(outcome.index, outcome.exclusion);
    } else if (outcome.meta.lookup_hash !== '' && outcome.meta.lookup_hash !== context.lookupHash) {
      context.pool.exclude(outcome.index, {
        reason: `returned the metadata of lookup hash ${outcome.meta.lookup_hash} instead`,
        permanent: false,
      });
    } else {
      answers.push({ index: outcome.index, meta: outcome.meta });
    }
  }

  const signed = await keepSignedAnswers(context, answers);
  const { dataShards, parityShards } = context.allocation;
  const threshold = parityShards > 0 ? dataShards + 1 : dataShards;
  const groups = groupAnswers(signed.answers);
  const winner = groups[0];
  if (winner === undefined || winner.length < threshold) {
    throw notEnoughBlobbers(
      context,
      `${winner?.length ?? 0} of ${context.blobbers.length} blobbers returned matching metadata for the shared file, but ${threshold} must agree`,
    );
  }
  for (const group of groups.slice(1)) {
    for (const answer of group) {
      context.pool.exclude(answer.index, {
        reason: `its metadata (content hash ${answer.meta.actual_file_hash}, ${answer.meta.actual_file_size} bytes) differs from the agreeing blobbers'`,
        permanent: false,
      });
    }
  }
  const agreed = (winner[0] as { meta: BlobberMeta }).meta;
  return toFileMeta(
    context,
    agreed,
    winner.map((answer) => answer.index),
    signed.verified,
  );
}

async function requestFileMeta(context: DownloadContext, index: number): Promise<MetaOutcome> {
  const blobber = context.blobbers[index] as ShareBlobber;
  // The blobber reads `path_hash` and `auth_token` (the ticket JSON, not base64) as form values.
  const form = new FormData();
  form.set('path_hash', context.lookupHash);
  form.set('auth_token', context.ticket.json);
  const encoded = new Request('http://form.invalid/', { method: 'POST', body: form });
  const body = new Uint8Array(await encoded.arrayBuffer());

  let response: GuardedResponse;
  try {
    response = await context.fetch(`${blobber.url}/v1/file/meta/${context.allocation.tx}`, {
      method: 'POST',
      headers: {
        ...clientHeaders(context),
        'Content-Type': encoded.headers.get('content-type') ?? 'multipart/form-data',
      },
      body,
      dependency: blobber.id,
      timeoutMs: context.timeoutMs,
      maxResponseBytes: MAX_META_RESPONSE_BYTES,
      redact: [context.ticket.json, context.authToken],
      ...(context.signal === undefined ? {} : { signal: context.signal }),
    });
  } catch (error) {
    return { kind: 'failed', index, exclusion: requestFailure('file metadata', error) };
  }

  if (response.status !== 200) {
    return { kind: 'failed', index, exclusion: describeErrorResponse('file metadata', response, context) };
  }
  let json: unknown;
  try {
    json = JSON.parse(response.text());
  } catch {
    return {
      kind: 'failed',
      index,
      exclusion: { reason: `file metadata is not JSON: ${quoteText(response.text())}`, permanent: false },
    };
  }
  const parsed = metaSchema.safeParse(json);
  if (!parsed.success) {
    return {
      kind: 'failed',
      index,
      exclusion: { reason: `file metadata has the wrong shape: ${parsed.error.message}`, permanent: false },
    };
  }
  return { kind: 'meta', index, meta: parsed.data };
}

/** Returns the headers of every blobber request: the requesting client and the allocation. */
function clientHeaders(context: DownloadContext): Record<string, string> {
  return {
    'X-App-Client-ID': context.operator.clientId,
    'X-App-Client-Key': context.operator.publicKey,
    'ALLOCATION-ID': context.allocation.id,
  };
}

/**
 * Drops the metadata responses whose content hash signature does not verify with an owner key, as
 * the Go SDK does. Without any owner key, every response is kept and `verified` is false.
 */
async function keepSignedAnswers(
  context: DownloadContext,
  answers: Array<{ index: number; meta: BlobberMeta }>,
): Promise<{ answers: Array<{ index: number; meta: BlobberMeta }>; verified: boolean }> {
  const ownerKey = context.allocation.ownerPublicKey ?? '';
  const signingKey = context.allocation.ownerSigningPublicKey ?? '';
  if (ownerKey === '' && signingKey === '') {
    context.logger.warn('owner keys unknown, so the content hash signature is not checked');
    return { answers, verified: false };
  }

  const results = new Map<string, Promise<boolean>>();
  const verify = (meta: BlobberMeta) => {
    const key = `${meta.actual_file_hash}:${meta.actual_file_hash_signature}`;
    let result = results.get(key);
    if (result === undefined) {
      result = verifyContentHashSignature(context, meta, ownerKey, signingKey);
      results.set(key, result);
    }
    return result;
  };

  const signedAnswers: Array<{ index: number; meta: BlobberMeta }> = [];
  for (const answer of answers) {
    if (await verify(answer.meta)) {
      signedAnswers.push(answer);
    } else {
      context.pool.exclude(answer.index, {
        reason: `its content hash signature does not verify with the owner's key`,
        permanent: false,
      });
    }
  }
  return { answers: signedAnswers, verified: true };
}

/**
 * Checks `actual_file_hash_signature`: the owner's signature over the raw bytes of the hex hash,
 * by the wallet key, or by the Ed25519 signing key of newer SDK versions
 * (gosdk chunked_upload_form_builder.go).
 */
async function verifyContentHashSignature(
  context: DownloadContext,
  meta: BlobberMeta,
  ownerKey: string,
  signingKey: string,
): Promise<boolean> {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(meta.actual_file_hash)) {
    return false;
  }
  const message = new Uint8Array(Buffer.from(meta.actual_file_hash, 'hex'));
  const signature = meta.actual_file_hash_signature;
  if (
    ownerKey !== '' &&
    (await verifyBytesSignature(context.operator.scheme, ownerKey, message, signature))
  ) {
    return true;
  }
  return signingKey !== '' && verifyBytesSignature('ed25519', signingKey, message, signature);
}

/** Groups metadata responses that agree on what identifies the content, largest group first. */
function groupAnswers(
  answers: Array<{ index: number; meta: BlobberMeta }>,
): Array<Array<{ index: number; meta: BlobberMeta }>> {
  const groups = new Map<string, Array<{ index: number; meta: BlobberMeta }>>();
  for (const answer of answers) {
    const { meta } = answer;
    const key = JSON.stringify([
      meta.type,
      meta.actual_file_hash,
      meta.actual_file_hash_signature,
      meta.actual_file_size,
      meta.chunk_size,
      meta.encrypted_key !== '',
    ]);
    const group = groups.get(key) ?? [];
    group.push(answer);
    groups.set(key, group);
  }
  return [...groups.values()].sort((a, b) => b.length - a.length);
}

/** Checks the agreed metadata describes a file this downloader can fetch, and returns it. */
function toFileMeta(
  context: DownloadContext,
  meta: BlobberMeta,
  agreeing: number[],
  signatureVerified: boolean,
): FileMeta {
  const name = meta.name === '' ? context.ticket.fileName : meta.name;
  if (meta.type !== 'f') {
    throw new PermanentError(
      `lookup hash ${context.lookupHash} is ${meta.type === 'd' ? 'a directory' : `of reference type ${quoteText(meta.type)}`} (${quoteText(name)}), not a file`,
    );
  }
  if (meta.encrypted_key !== '') {
    throw new PermanentError(
      `shared file ${quoteText(name)} is encrypted: encrypted shares are not supported yet`,
    );
  }
  if (meta.chunk_size !== 0 && meta.chunk_size !== BLOCK_SIZE_BYTES) {
    throw new PermanentError(
      `shared file ${quoteText(name)} was uploaded with a chunk size of ${meta.chunk_size} bytes, but blobbers serve ${BLOCK_SIZE_BYTES}-byte blocks, so only that chunk size is supported`,
    );
  }
  const contentHash = meta.actual_file_hash.toLowerCase();
  const hashAlgorithm = contentHashAlgorithm(contentHash);
  if (hashAlgorithm === undefined) {
    throw new PermanentError(
      `shared file ${quoteText(name)} has the content hash ${quoteText(contentHash)}, which is neither MD5 nor SHA3-256 hex`,
    );
  }
  if (context.ticket.actualFileHash !== '' && context.ticket.actualFileHash !== contentHash) {
    context.logger.info('file changed since it was shared', {
      ticket_hash: context.ticket.actualFileHash,
      content_hash: contentHash,
    });
  }
  const expectedShardBytes = shardLayout(meta.actual_file_size, context.allocation.dataShards).shardSizeBytes;
  if (meta.size !== expectedShardBytes) {
    context.logger.debug('blobber shard size differs from the layout', {
      shard_size_bytes: meta.size,
      expected_bytes: expectedShardBytes,
    });
  }
  return {
    name,
    mimeType: meta.mimetype === '' ? 'application/octet-stream' : meta.mimetype,
    sizeBytes: meta.actual_file_size,
    contentHash,
    hashAlgorithm,
    signatureVerified,
    agreeing,
  };
}

/**
 * Returns the hash function of a content hash: uploads by the Go SDK store an MD5 of the file
 * (gosdk zboxcore/sdk/chunked_upload_hasher.go).
 */
function contentHashAlgorithm(hash: string): ContentHashAlgorithm | undefined {
  if (/^[0-9a-f]{32}$/.test(hash)) {
    return 'md5';
  }
  // NOTE: older gosdk downloaders compared the file's SHA3-256 with actual_file_hash, so
  // 64-character hashes are tried as SHA3-256. No such upload was available to test against.
  if (/^[0-9a-f]{64}$/.test(hash)) {
    return 'sha3-256';
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Errors of single requests
// ---------------------------------------------------------------------------------------------

/** Error codes with which a blobber rejects the ticket or the file itself. */
const PERMANENT_REFUSAL_CODES = new Set([
  'invalid_authticket',
  'invalid_share',
  'invalid_parameters',
  'invalid_signature',
  'file_meta',
]);

/** Describes a non-200 response. The code comes from `X-App-Error-Code` or the JSON error body. */
function describeErrorResponse(
  operation: string,
  response: GuardedResponse,
  context: DownloadContext,
): Exclusion {
  const text = response.text();
  let code = response.headers.get('x-app-error-code') ?? '';
  if (code === '') {
    try {
      const parsed = JSON.parse(text) as { code?: unknown };
      code = typeof parsed.code === 'string' ? parsed.code : '';
    } catch {
      code = /^([a-z_]+):/.exec(text.trim())?.[1] ?? '';
    }
  }
  const quotedBody = quoteText(text.split(context.ticket.json).join('[ticket]'), 300);
  return {
    reason: `${operation} request returned HTTP ${response.status}${code === '' ? '' : ` (${code})`}: ${quotedBody}`,
    permanent: response.status < 500 && PERMANENT_REFUSAL_CODES.has(code),
  };
}

/** Describes a request that got no usable response: the guard's errors keep their kind. */
function requestFailure(operation: string, error: unknown): Exclusion {
  return {
    reason: `${operation} request failed: ${errorMessage(error)}`,
    permanent: error instanceof PermanentError,
  };
}

// ---------------------------------------------------------------------------------------------
// Block ranges
// ---------------------------------------------------------------------------------------------

/** Consecutive rows fetched with one request per blobber. */
interface BlockRange {
  firstRow: number;
  rows: number;
}

/** Bytes of a range ready to write in order, and how many of its rows needed rebuilding. */
interface RangeOutput {
  chunks: Uint8Array[];
  rowsRebuilt: number;
}

/** A failed block request, with whether someone must act before a retry can succeed. */
class BlockRequestError extends Error {
  override name = 'BlockRequestError';

  constructor(
    message: string,
    readonly permanent: boolean,
  ) {
    super(message);
  }
}

function planRanges(layout: ShardLayout, blocksPerRequest: number): BlockRange[] {
  const ranges: BlockRange[] = [];
  for (let firstRow = 0; firstRow < layout.rows; firstRow += blocksPerRequest) {
    ranges.push({ firstRow, rows: Math.min(blocksPerRequest, layout.rows - firstRow) });
  }
  return ranges;
}

/** Bytes each blobber returns for a range: full blocks, and a short last piece at the end of the file. */
function rangeBytes(layout: ShardLayout, range: BlockRange): number {
  const lastRow = range.firstRow + range.rows - 1;
  return (range.rows - 1) * BLOCK_SIZE_BYTES + pieceBytes(layout, lastRow);
}

/** Fetches one blobber's blocks of a range and checks the length. */
async function fetchBlocks(
  context: DownloadContext,
  layout: ShardLayout,
  range: BlockRange,
  index: number,
  signal: AbortSignal,
): Promise<Uint8Array> {
  const blobber = context.blobbers[index] as ShareBlobber;
  const expected = rangeBytes(layout, range);
  let response: GuardedResponse;
  try {
    response = await context.fetch(`${blobber.url}/v1/file/download/${context.allocation.tx}`, {
      headers: {
        ...clientHeaders(context),
        'X-Path-Hash': context.lookupHash,
        'X-Block-Num': String(range.firstRow),
        'X-Num-Blocks': String(range.rows),
        'X-Auth-Token': context.authToken,
        'X-Mode': 'full',
        'X-Verify-Download': 'false',
        'X-Connection-ID': context.connectionId,
      },
      dependency: blobber.id,
      timeoutMs: context.timeoutMs,
      maxResponseBytes: Math.max(expected, MIN_BLOCK_RESPONSE_CAP_BYTES),
      redact: [context.authToken, context.ticket.json],
      signal,
    });
  } catch (error) {
    if (signal.aborted) {
      throw error;
    }
    const failure = requestFailure(`blocks ${describeRows(range)}`, error);
    throw new BlockRequestError(failure.reason, failure.permanent);
  }
  if (response.status !== 200) {
    const failure = describeErrorResponse(`blocks ${describeRows(range)}`, response, context);
    throw new BlockRequestError(failure.reason, failure.permanent);
  }
  if (response.body.length !== expected) {
    throw new BlockRequestError(
      `blocks ${describeRows(range)} request returned ${response.body.length} bytes, but the file's layout gives ${expected}`,
      false,
    );
  }
  return response.body;
}

function describeRows(range: BlockRange): string {
  return range.rows === 1 ? `${range.firstRow}` : `${range.firstRow}-${range.firstRow + range.rows - 1}`;
}

/**
 * Fetches the range from usable blobbers in shard order until `pieces` contains `count` of them.
 * A blobber that fails is dropped from the pool, and the next one is requested instead.
 * NOTE: unlike the Go SDK, which retries 429, 500 and 502 up to 3 times, one failure drops a
 * blobber for the rest of the file, so a short rate limit moves its rows to parity blobbers.
 */
async function collectPieces(
  context: DownloadContext,
  layout: ShardLayout,
  range: BlockRange,
  pieces: Map<number, Uint8Array>,
  count: number,
  signal: AbortSignal,
): Promise<void> {
  const tried = new Set(pieces.keys());
  const lane = async (): Promise<void> => {
    for (;;) {
      const next = context.pool.usable().find((index) => !tried.has(index));
      if (next === undefined || signal.aborted) {
        return;
      }
      tried.add(next);
      try {
        pieces.set(next, await fetchBlocks(context, layout, range, next, signal));
        return;
      } catch (error) {
        if (!(error instanceof BlockRequestError)) {
          throw error;
        }
        context.pool.exclude(next, { reason: error.message, permanent: error.permanent });
      }
    }
  };
  const lanes = Math.max(0, count - pieces.size);
  await Promise.all(Array.from({ length: lanes }, lane));
}

/**
 * Fetches, checks and decodes one range. With a spare shard, every row is checked against it.
 * When they disagree, the range is also requested from the other blobbers to find the wrong one.
 */
async function downloadRange(
  context: DownloadContext,
  layout: ShardLayout,
  range: BlockRange,
  signal: AbortSignal,
): Promise<RangeOutput> {
  const { dataShards } = context.allocation;
  const requiredPieces =
    context.checkParity && context.pool.usable().length > dataShards ? dataShards + 1 : dataShards;
  const pieces = new Map<number, Uint8Array>();
  await collectPieces(context, layout, range, pieces, requiredPieces, signal);
  throwIfAborted(signal);
  keepUsable(context, pieces);
  if (pieces.size < requiredPieces) {
    // Another range dropped a blobber whose pieces this one had fetched meanwhile.
    await collectPieces(context, layout, range, pieces, requiredPieces, signal);
    throwIfAborted(signal);
    keepUsable(context, pieces);
  }
  if (pieces.size < dataShards) {
    throw notEnoughBlobbers(
      context,
      `${pieces.size} of ${context.blobbers.length} blobbers returned rows ${describeRows(range)}, but ${dataShards} are needed`,
    );
  }

  if (pieces.size > dataShards && !piecesConsistent(context, layout, range, pieces)) {
    await collectPieces(context, layout, range, pieces, context.blobbers.length, signal);
    throwIfAborted(signal);
    const wrong = findWrongPiece(context, layout, range, pieces);
    if (wrong === undefined) {
      throw new TransientError(
        `share download from allocation ${context.allocation.id} failed: blobbers returned inconsistent pieces for rows ${describeRows(range)}, and ${pieces.size} pieces are too few to tell which is wrong`,
        { dependency: `blobbers:${context.allocation.id}` },
      );
    }
    context.pool.exclude(wrong, {
      reason: `its pieces of rows ${describeRows(range)} disagree with the other shards (corrupt data)`,
      permanent: false,
    });
    pieces.delete(wrong);
  }
  return assembleRange(context, layout, range, pieces);
}

/** Forgets pieces of blobbers another range has meanwhile found to be wrong. */
function keepUsable(context: DownloadContext, pieces: Map<number, Uint8Array>): void {
  for (const index of pieces.keys()) {
    if (!context.pool.isUsable(index)) {
      pieces.delete(index);
    }
  }
}

/** Returns the pieces of one row, by shard index. */
function rowPieces(
  context: DownloadContext,
  layout: ShardLayout,
  range: BlockRange,
  row: number,
  pieces: ReadonlyMap<number, Uint8Array>,
): Array<Uint8Array | undefined> {
  const length = pieceBytes(layout, row);
  const offset = (row - range.firstRow) * BLOCK_SIZE_BYTES;
  const shards: Array<Uint8Array | undefined> = new Array(context.codec.totalShards).fill(undefined);
  for (const [index, buffer] of pieces) {
    shards[index] = buffer.subarray(offset, offset + length);
  }
  return shards;
}

/**
 * Checks that the pieces beyond the first d agree with the ones those d determine, row by row.
 * Scratch buffers are allocated once per call.
 */
function piecesConsistent(
  context: DownloadContext,
  layout: ShardLayout,
  range: BlockRange,
  pieces: ReadonlyMap<number, Uint8Array>,
): boolean {
  const { codec } = context;
  const present = [...pieces.keys()].sort((a, b) => a - b);
  const basis = present.slice(0, codec.dataShards);
  const checks = present.slice(codec.dataShards);
  const scratch = Array.from({ length: codec.dataShards + 1 }, () => new Uint8Array(BLOCK_SIZE_BYTES));

  for (let row = range.firstRow; row < range.firstRow + range.rows; row += 1) {
    const all = rowPieces(context, layout, range, row, pieces);
    const length = pieceBytes(layout, row);
    const shards = all.map((piece, index) => (basis.includes(index) ? piece : undefined));
    codec.reconstructData(
      shards,
      scratch.slice(0, codec.dataShards).map((buffer) => buffer.subarray(0, length)),
    );
    const data = shards.slice(0, codec.dataShards) as Uint8Array[];
    const parity = (scratch[codec.dataShards] as Uint8Array).subarray(0, length);
    for (const index of checks) {
      let expected: Uint8Array;
      if (index < codec.dataShards) {
        expected = data[index] as Uint8Array;
      } else {
        codec.computeShard(index, data, parity);
        expected = parity;
      }
      if (!Buffer.from(expected.buffer, expected.byteOffset, length).equals(all[index] as Uint8Array)) {
        return false;
      }
    }
  }
  return true;
}

/**
 * Returns the one blobber whose pieces are wrong: leaving it out must make the others consistent,
 * with at least one spare piece to confirm it, and no other choice may do the same.
 */
function findWrongPiece(
  context: DownloadContext,
  layout: ShardLayout,
  range: BlockRange,
  pieces: ReadonlyMap<number, Uint8Array>,
): number | undefined {
  const candidates: number[] = [];
  for (const index of pieces.keys()) {
    const others = new Map(pieces);
    others.delete(index);
    if (others.size > context.codec.dataShards && piecesConsistent(context, layout, range, others)) {
      candidates.push(index);
    }
  }
  return candidates.length === 1 ? candidates[0] : undefined;
}

/** Rebuilds missing data pieces and lists the file bytes of the range in order, trimmed to the file size. */
function assembleRange(
  context: DownloadContext,
  layout: ShardLayout,
  range: BlockRange,
  pieces: ReadonlyMap<number, Uint8Array>,
): RangeOutput {
  const { codec } = context;
  const missing = Array.from({ length: codec.dataShards }, (_unused, index) => index).filter(
    (index) => !pieces.has(index),
  );
  // One buffer per range for the rebuilt pieces, so no row allocates.
  const rebuilt =
    missing.length === 0 ? undefined : new Uint8Array(missing.length * range.rows * BLOCK_SIZE_BYTES);
  const chunks: Uint8Array[] = [];
  const rowBytes = codec.dataShards * BLOCK_SIZE_BYTES;

  for (let row = range.firstRow; row < range.firstRow + range.rows; row += 1) {
    const length = pieceBytes(layout, row);
    const shards = rowPieces(context, layout, range, row, pieces);
    if (rebuilt !== undefined) {
      const targets: Array<Uint8Array | undefined> = new Array(codec.totalShards).fill(undefined);
      missing.forEach((index, slot) => {
        const offset = (slot * range.rows + (row - range.firstRow)) * BLOCK_SIZE_BYTES;
        targets[index] = rebuilt.subarray(offset, offset + length);
      });
      codec.reconstructData(shards, targets);
    }

    let remaining = Math.min(codec.dataShards * length, layout.fileSizeBytes - row * rowBytes);
    for (let index = 0; index < codec.dataShards && remaining > 0; index += 1) {
      const piece = shards[index] as Uint8Array;
      const take = Math.min(length, remaining);
      chunks.push(piece.subarray(0, take));
      remaining -= take;
    }
  }
  return { chunks, rowsRebuilt: rebuilt === undefined ? 0 : range.rows };
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) {
    throw signal.reason;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing the file
// ---------------------------------------------------------------------------------------------

/**
 * Downloads every range into `path` in order, at most `concurrency` ranges ahead of the writer,
 * and checks the content hash. Removes the file on any failure.
 */
async function writeFile(
  context: DownloadContext,
  layout: ShardLayout,
  meta: FileMeta,
  path: string,
): Promise<{ rowsRebuilt: number }> {
  const stop = new AbortController();
  const signal = context.signal === undefined ? stop.signal : AbortSignal.any([stop.signal, context.signal]);
  const hash = createHash(meta.hashAlgorithm);
  const pending: Array<Promise<RangeOutput>> = [];
  let handle: FileHandle | undefined;
  let rowsRebuilt = 0;

  try {
    handle = await open(path, 'wx', 0o600);
    const ranges = planRanges(layout, context.blocksPerRequest);
    let next = 0;
    const startNext = () => {
      const range = ranges[next] as BlockRange;
      next += 1;
      const download = downloadRange(context, layout, range, signal);
      // A range that fails while an earlier one is awaited is reported when its turn comes.
      download.catch(() => {});
      pending.push(download);
    };

    while (next < ranges.length && pending.length < context.concurrency) {
      startNext();
    }
    while (pending.length > 0) {
      const output = await (pending.shift() as Promise<RangeOutput>);
      if (next < ranges.length) {
        startNext();
      }
      await writeChunks(handle, hash, output.chunks);
      rowsRebuilt += output.rowsRebuilt;
    }
    await handle.close();
    handle = undefined;

    const computed = hash.digest('hex');
    if (computed !== meta.contentHash) {
      throw new TransientError(
        `share download from allocation ${context.allocation.id} failed: the ${meta.hashAlgorithm} of the downloaded ${quoteText(meta.name)} is ${computed}, but the owner-signed content hash is ${meta.contentHash}, so a blobber returned corrupt data`,
        { dependency: `blobbers:${context.allocation.id}` },
      );
    }
    return { rowsRebuilt };
  } catch (error) {
    stop.abort(error);
    await Promise.allSettled(pending);
    await handle?.close().catch(() => {});
    await rm(path, { force: true });
    throw error;
  }
}

/** Writes the chunks at the end of the file and adds them to the hash. */
async function writeChunks(handle: FileHandle, hash: Hash, chunks: Uint8Array[]): Promise<void> {
  for (const chunk of chunks) {
    hash.update(chunk);
  }
  let remaining = chunks;
  while (remaining.length > 0) {
    // writev takes at most IOV_MAX (1024 on Linux) buffers per call.
    const batch = remaining.slice(0, 1024);
    const total = batch.reduce((sum, chunk) => sum + chunk.length, 0);
    const { bytesWritten } = await handle.writev(batch);
    if (bytesWritten === total) {
      remaining = remaining.slice(batch.length);
      continue;
    }
    remaining = dropWritten(remaining, bytesWritten);
  }
}

/** Returns the chunks after the first `bytes` bytes, after a short write. */
function dropWritten(chunks: Uint8Array[], bytes: number): Uint8Array[] {
  let skip = bytes;
  const rest: Uint8Array[] = [];
  for (const chunk of chunks) {
    if (skip >= chunk.length) {
      skip -= chunk.length;
      continue;
    }
    rest.push(skip > 0 ? chunk.subarray(skip) : chunk);
    skip = 0;
  }
  return rest;
}
