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
 *
 * This module contains the public API, the ticket signature check and the ordered file writer of
 * step 3. Step 1 is in file-meta.ts, step 2 in block-ranges.ts, and the context with its blobber
 * pool in download-context.ts.
 */
import { createHash, type Hash, randomUUID } from 'node:crypto';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PermanentError, TransientError } from '../errors.js';
import type { Logger } from '../output/logger.js';
import type { SignatureScheme } from '../zus/signature.js';
import { type BlockRange, downloadRange, planRanges, type RangeOutput } from './block-ranges.js';
import {
  createContext,
  type DownloadContext,
  excludePaidBlobbers,
  requireEnoughBlobbers,
} from './download-context.js';
import { type ShardLayout, shardLayout } from './erasure.js';
import { type FileMeta, readFileMeta } from './file-meta.js';
import {
  checkShareTicket,
  checkTicketForAllocation,
  type ShareTicket,
  verifyTicketSignature,
} from './share.js';
import { type BlobberFetch, quoteText } from './url-guard.js';

export { MAX_BLOCKS_PER_REQUEST } from './download-context.js';

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
