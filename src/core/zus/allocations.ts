import { z } from 'zod';
import { PermanentError, TransientError } from '../errors.js';
import { shortenBody } from './network.js';
import type { ShardersClient } from './sharders.js';
import { storageScPath } from './storage-config.js';

/** The allocation fields the workers use, from `GET /v1/screst/<storage SC>/allocation`. */
export interface AllocationInfo {
  id: string;
  ownerId: string;
  dataShards: number;
  parityShards: number;
  sizeBytes: bigint;
  /** The chain sends `expiration_date` in unix seconds. */
  expiresAt: Date;
  finalized: boolean;
  canceled: boolean;
  thirdPartyExtendable: boolean;
}

const ALLOCATION_ID = /^[0-9a-f]{64}$/;

/** Responses from before these flags existed omit them, so a missing flag means false. */
const allocationResponseSchema = z.object({
  id: z.string(),
  owner_id: z.string(),
  data_shards: z.number().int().min(1),
  parity_shards: z.number().int().min(0),
  size: z.number().int().min(0),
  expiration_date: z.number().int(),
  finalized: z.boolean().default(false),
  canceled: z.boolean().default(false),
  third_party_extendable: z.boolean().default(false),
});

/**
 * Reads one allocation from the sharders. Consensus compares only the fields above, because
 * statistics (used size, challenges, rewards) differ between sharders at different rounds.
 * Throws PermanentError for an id that is not 64 lowercase hex characters,
 * NotFoundOnChainError when the share of sharders does not know the allocation, and
 * TransientError when they disagree or return a response of the wrong shape.
 */
export async function fetchAllocation(client: ShardersClient, id: string): Promise<AllocationInfo> {
  if (!ALLOCATION_ID.test(id)) {
    throw new PermanentError(`invalid allocation id "${id}": expected 64 lowercase hexadecimal characters`);
  }

  const body = await client.getJson(
    storageScPath('allocation'),
    { allocation: id },
    { compareBy: compareAllocation, notFound: isAllocationNotFound },
  );

  const parsed = allocationResponseSchema.safeParse(body);
  if (!parsed.success) {
    const sample = shortenBody(JSON.stringify(body) ?? '');
    throw new TransientError(
      `sharders returned an invalid allocation ${id}: ${parsed.error.message} in ${sample}`,
      {
        dependency: 'sharders',
      },
    );
  }
  if (parsed.data.id !== id) {
    throw new TransientError(`sharders returned allocation ${parsed.data.id} when asked for ${id}`, {
      dependency: 'sharders',
    });
  }
  return toAllocationInfo(parsed.data);
}

function toAllocationInfo(data: z.infer<typeof allocationResponseSchema>): AllocationInfo {
  return {
    id: data.id,
    ownerId: data.owner_id,
    dataShards: data.data_shards,
    parityShards: data.parity_shards,
    sizeBytes: BigInt(data.size),
    expiresAt: new Date(data.expiration_date * 1000),
    finalized: data.finalized,
    canceled: data.canceled,
    thirdPartyExtendable: data.third_party_extendable,
  };
}

/** The part of an allocation response that every sharder must agree on. */
function compareAllocation(body: unknown): unknown {
  const allocation = (body ?? {}) as Record<string, unknown>;
  return {
    id: allocation.id,
    owner_id: allocation.owner_id,
    data_shards: allocation.data_shards,
    parity_shards: allocation.parity_shards,
    size: allocation.size,
    expiration_date: allocation.expiration_date,
    finalized: allocation.finalized ?? false,
    canceled: allocation.canceled ?? false,
    third_party_extendable: allocation.third_party_extendable ?? false,
  };
}

/**
 * Returns whether a sharder's response means that it has no such allocation. The handler reads
 * the sharder's event database and reports a missing row as HTTP 500 with code `internal_error`
 * and an error text ending in "record not found". Older nodes reported "value not present".
 */
export function isAllocationNotFound(status: number, body: unknown): boolean {
  if (status < 400 || body === null || typeof body !== 'object') {
    return false;
  }
  const error = (body as { error?: unknown }).error;
  const code = (body as { code?: unknown }).code;
  if (code === 'resource_not_found') {
    return true;
  }
  return (
    typeof error === 'string' && (error.includes('record not found') || error.includes('value not present'))
  );
}

/** The chain returns at most this many allocations per page of `allocations?client=`. */
const OWNER_PAGE = 20;

/** Reads every allocation an owner has, page by page until a short page, as the Go SDK does. */
export async function fetchAllocationsByOwner(
  client: ShardersClient,
  ownerId: string,
): Promise<AllocationInfo[]> {
  const allocations: AllocationInfo[] = [];
  for (let offset = 0; ; offset += OWNER_PAGE) {
    const body = await client.getJson(
      storageScPath('allocations'),
      { client: ownerId, limit: String(OWNER_PAGE), offset: String(offset) },
      { compareBy: (answer) => (Array.isArray(answer) ? answer.map(compareAllocation) : answer) },
    );
    const page = z.array(allocationResponseSchema).safeParse(body ?? []);
    if (!page.success) {
      throw new TransientError(
        `sharders returned an invalid allocation list for owner ${ownerId}: ${shortenBody(JSON.stringify(body) ?? '')}`,
        { dependency: 'sharders' },
      );
    }
    allocations.push(...page.data.map(toAllocationInfo));
    if (page.data.length < OWNER_PAGE) {
      return allocations;
    }
  }
}
