/**
 * The state of one share download: its options, the Reed–Solomon codec and the pool of blobbers
 * that may still serve the file, with the helpers that drop blobbers and describe failed requests.
 */
import { randomUUID } from 'node:crypto';
import { errorMessage, PermanentError, TransientError } from '../errors.js';
import type { Logger } from '../output/logger.js';
import type { DownloadClient, DownloadShareOptions, ShareAllocation, ShareBlobber } from './download.js';
import { ReedSolomon } from './erasure.js';
import { authTokenHeader, type ShareTicket } from './share.js';
import { type BlobberFetch, type GuardedResponse, quoteText } from './url-guard.js';

/** Most blocks one download request may ask for: the blobber's `block_limit_request` (0chain/blobber config). */
export const MAX_BLOCKS_PER_REQUEST = 500;

const DEFAULT_CONCURRENCY = 4;
/** 2 MiB per blobber per request. A guess that keeps memory small, where the Go SDK requests 100 blocks. */
const DEFAULT_BLOCKS_PER_REQUEST = 32;
/** Limit of one blobber request. A guess: it allows 2 MiB at about 70 KB/s. */
const DEFAULT_TIMEOUT_MS = 30_000;

// ---------------------------------------------------------------------------------------------
// Context and the blobber pool
// ---------------------------------------------------------------------------------------------

export interface DownloadContext {
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

export function createContext(options: DownloadShareOptions): DownloadContext {
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
export interface Exclusion {
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

export function excludePaidBlobbers(context: DownloadContext): void {
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
export function requireEnoughBlobbers(context: DownloadContext, stage: string): void {
  const usable = context.pool.usable().length;
  const needed = context.allocation.dataShards;
  if (usable < needed) {
    throw notEnoughBlobbers(
      context,
      `${usable} of ${context.blobbers.length} blobbers can serve the file ${stage}, but ${needed} are needed`,
    );
  }
}

export function notEnoughBlobbers(context: DownloadContext, summary: string): Error {
  const message = `share download from allocation ${context.allocation.id} failed: ${summary}: ${context.pool.describeExclusions()}`;
  if (context.pool.allExclusionsPermanent()) {
    return new PermanentError(message);
  }
  return new TransientError(message, { dependency: `blobbers:${context.allocation.id}` });
}

/** Returns the headers of every blobber request: the requesting client and the allocation. */
export function clientHeaders(context: DownloadContext): Record<string, string> {
  return {
    'X-App-Client-ID': context.operator.clientId,
    'X-App-Client-Key': context.operator.publicKey,
    'ALLOCATION-ID': context.allocation.id,
  };
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
export function describeErrorResponse(
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
export function requestFailure(operation: string, error: unknown): Exclusion {
  return {
    reason: `${operation} request failed: ${errorMessage(error)}`,
    permanent: error instanceof PermanentError,
  };
}
