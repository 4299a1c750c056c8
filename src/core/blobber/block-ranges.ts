/**
 * Block ranges of a share: planning the ranges, fetching each from enough blobbers, checking the
 * pieces against parity, rebuilding missing data pieces with Reed–Solomon and assembling the bytes.
 */
import { TransientError } from '../errors.js';
import type { ShareBlobber } from './download.js';
import {
  clientHeaders,
  type DownloadContext,
  describeErrorResponse,
  notEnoughBlobbers,
  requestFailure,
} from './download-context.js';
import { BLOCK_SIZE_BYTES, pieceBytes, type ShardLayout } from './erasure.js';
import type { GuardedResponse } from './url-guard.js';

/** Body cap of a block request that fails: room for the blobber's error text. */
const MIN_BLOCK_RESPONSE_CAP_BYTES = 16 * 1024;

// ---------------------------------------------------------------------------------------------
// Block ranges
// ---------------------------------------------------------------------------------------------

/** Consecutive rows fetched with one request per blobber. */
export interface BlockRange {
  firstRow: number;
  rows: number;
}

/** Bytes of a range ready to write in order, and how many of its rows needed rebuilding. */
export interface RangeOutput {
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

export function planRanges(layout: ShardLayout, blocksPerRequest: number): BlockRange[] {
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
export async function downloadRange(
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
