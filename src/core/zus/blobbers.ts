import { z } from 'zod';
import { PermanentError, TransientError } from '../errors.js';
import { isAllocationNotFound } from './allocations.js';
import { shortenBody } from './network.js';
import type { ShardersClient } from './sharders.js';
import { storageScPath } from './storage-config.js';
import { jsonWithBigints } from './transaction.js';

/**
 * Storage smart-contract reads about blobbers, allocation selection and costs: `getblobbers`,
 * `getBlobber`, `alloc_blobbers`, `allocations` by owner, `allocation-update-min-lock`, and
 * the current round.
 */

export interface BlobberInfo {
  id: string;
  url: string;
  readPriceSas: bigint;
  writePriceSas: bigint;
  isRestricted: boolean;
  isEnterprise: boolean;
  isKilled: boolean;
  isShutdown: boolean;
  notAvailable: boolean;
}

const amount = z
  .union([z.number().int().nonnegative(), z.string().regex(/^\d+$/)])
  .transform((value) => BigInt(value));

/** Responses from before these flags existed omit them, so a missing flag means false. */
const blobberSchema = z.object({
  id: z.string().regex(/^[0-9a-f]{64}$/),
  url: z.string(),
  terms: z.object({ read_price: amount, write_price: amount }),
  is_restricted: z.boolean().default(false),
  is_enterprise: z.boolean().default(false),
  is_killed: z.boolean().default(false),
  is_shutdown: z.boolean().default(false),
  not_available: z.boolean().default(false),
});

function toBlobberInfo(data: z.infer<typeof blobberSchema>): BlobberInfo {
  return {
    id: data.id,
    url: data.url,
    readPriceSas: data.terms.read_price,
    writePriceSas: data.terms.write_price,
    isRestricted: data.is_restricted,
    isEnterprise: data.is_enterprise,
    isKilled: data.is_killed,
    isShutdown: data.is_shutdown,
    notAvailable: data.not_available,
  };
}

/** The fields sharders must agree on; health-check times and statistics differ between rounds. */
function compareBlobber(body: unknown): unknown {
  const blobber = blobberSchema.parse(body);
  return {
    ...toBlobberInfo(blobber),
    readPriceSas: String(blobber.terms.read_price),
    writePriceSas: String(blobber.terms.write_price),
  };
}

function parseOrThrow<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    throw new TransientError(
      `sharders returned an invalid ${what}: ${shortenBody(JSON.stringify(body) ?? '')}`,
      {
        dependency: 'sharders',
      },
    );
  }
  return parsed.data;
}

/** Reads one blobber. Throws NotFoundOnChainError when the chain does not know it. */
export async function fetchBlobber(sharders: ShardersClient, id: string): Promise<BlobberInfo> {
  if (!/^[0-9a-f]{64}$/.test(id)) {
    throw new PermanentError(`invalid blobber id "${id}": expected 64 lowercase hexadecimal characters`);
  }
  const body = await sharders.getJson(
    storageScPath('getBlobber'),
    { blobber_id: id },
    { compareBy: compareBlobber, notFound: isAllocationNotFound },
  );
  return toBlobberInfo(parseOrThrow(blobberSchema, body, `blobber ${id}`));
}

/** The chain returns at most this many blobbers per `getblobbers` page. */
const BLOBBER_PAGE = 50;

const blobberPageSchema = z.object({ Nodes: z.array(blobberSchema).nullable() });

/** Reads several blobbers by id, 50 per request; ids the chain does not know are absent from the result. */
export async function fetchBlobbers(
  sharders: ShardersClient,
  ids: readonly string[],
): Promise<Map<string, BlobberInfo>> {
  const result = new Map<string, BlobberInfo>();
  for (let start = 0; start < ids.length; start += BLOBBER_PAGE) {
    const chunk = ids.slice(start, start + BLOBBER_PAGE);
    const body = await sharders.getJson(
      storageScPath('getblobbers'),
      { blobber_ids: JSON.stringify(chunk), limit: String(BLOBBER_PAGE) },
      {
        compareBy: (answer) => {
          const nodes = z.object({ Nodes: z.array(z.unknown()).nullable() }).parse(answer).Nodes ?? [];
          return nodes
            .map(compareBlobber)
            .sort((a, b) => String((a as BlobberInfo).id).localeCompare(String((b as BlobberInfo).id)));
        },
      },
    );
    for (const node of parseOrThrow(blobberPageSchema, body, 'blobber list').Nodes ?? []) {
      result.set(node.id, toBlobberInfo(node));
    }
  }
  return result;
}

export interface AllocationRequestShape {
  dataShards: number;
  parityShards: number;
  sizeBytes: bigint;
  readPriceRangeSas: { min: bigint; max: bigint };
  writePriceRangeSas: { min: bigint; max: bigint };
}

/**
 * Asks the chain which blobbers can hold a new allocation (`alloc_blobbers`), unrestricted ones
 * only (`is_restricted: 2`), as the Go SDK does when no blobber is preferred.
 */
export async function selectAllocationBlobbers(
  sharders: ShardersClient,
  request: AllocationRequestShape,
): Promise<string[]> {
  const allocationData = jsonWithBigints({
    data_shards: request.dataShards,
    parity_shards: request.parityShards,
    size: request.sizeBytes,
    read_price_range: request.readPriceRangeSas,
    write_price_range: request.writePriceRangeSas,
    is_restricted: 2,
    storage_version: 1,
  });
  const body = await sharders.getJson(storageScPath('alloc_blobbers'), { allocation_data: allocationData });
  return parseOrThrow(z.array(z.string().regex(/^[0-9a-f]{64}$/)), body, 'blobber selection');
}

export interface UpdateMinLockRequest {
  ownerId: string;
  allocationId: string;
  sizeBytes: bigint;
  extend: boolean;
  addBlobberId?: string;
  removeBlobberId?: string;
}

/** Reads the lock in SAS the chain requires for an allocation update (`allocation-update-min-lock`). */
export async function fetchUpdateMinLock(
  sharders: ShardersClient,
  request: UpdateMinLockRequest,
): Promise<bigint> {
  const data = jsonWithBigints({
    owner_id: request.ownerId,
    owner_public_key: '',
    id: request.allocationId,
    size: request.sizeBytes,
    extend: request.extend,
    add_blobber_id: request.addBlobberId ?? '',
    remove_blobber_id: request.removeBlobberId ?? '',
  });
  const body = await sharders.getJson(storageScPath('allocation-update-min-lock'), { data });
  return parseOrThrow(z.object({ min_lock_demand: amount }), body, 'update min lock').min_lock_demand;
}

/**
 * The chain's current round (`/v1/current-round`). Sharders differ by a few rounds, so this is
 * the highest round that at least the consensus share of sharders has reached.
 */
export async function fetchCurrentRound(sharders: ShardersClient): Promise<number> {
  const answers = await sharders.getFromEach('/v1/current-round');
  const rounds = answers
    .map(({ body }) => body)
    .filter((body): body is number => Number.isSafeInteger(body) && (body as number) >= 0)
    .sort((a, b) => b - a);
  const round = rounds[sharders.required - 1];
  if (round === undefined) {
    throw new TransientError(
      `current round: only ${rounds.length} of ${sharders.sharders.length} sharders returned one, ${sharders.required} needed`,
      { dependency: 'sharders' },
    );
  }
  return round;
}
