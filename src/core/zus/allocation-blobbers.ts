/**
 * The parts of an allocation that a download from its blobbers needs and `fetchAllocation` does not
 * return: the current transaction hash (blobber URLs carry it), the owner's public keys, and the
 * blobbers in shard order with their read prices.
 *
 * Shard order is the order of the `blobbers` array of `GET /v1/screst/<storage SC>/allocation`:
 * the Go SDK uploads fragment k to `allocation.Blobbers[k]` and puts blobber k's bytes in shard
 * slot k when it downloads (0chain/gosdk zboxcore/sdk/chunked_upload.go, downloadworker.go). The
 * `blobber_details` array may be in another order, so read prices are matched by blobber id.
 */
import { z } from 'zod';
import { PermanentError, TransientError } from '../errors.js';
import { isAllocationNotFound } from './allocations.js';
import { shortenBody } from './network.js';
import type { ShardersClient } from './sharders.js';
import { storageScPath } from './storage-config.js';

/** One blobber of an allocation, at its shard position. */
export interface AllocationBlobber {
  id: string;
  /** Base URL as registered on the chain, without a trailing slash. Not checked here: the URL guard checks it per request. */
  url: string;
  /** The blobber's read price for this allocation in SAS per GiB (`blobber_details[].terms.read_price`). */
  readPriceSas: bigint;
}

/** Allocation fields a download needs. */
export interface AllocationForDownload {
  id: string;
  /** Hash of the allocation's latest transaction. Blobber URLs carry it; it changes on every update. */
  tx: string;
  ownerId: string;
  /** The owner's wallet public key (hex). Empty when the chain has none. */
  ownerPublicKey: string;
  /** The owner's Ed25519 signing key, used by newer SDK versions for file hash signatures. Empty when unset. */
  ownerSigningPublicKey: string;
  dataShards: number;
  parityShards: number;
  /** Exactly `dataShards + parityShards` blobbers: data shards first, then parity. */
  blobbers: AllocationBlobber[];
}

const HEX_64 = /^[0-9a-f]{64}$/;

const sasAmount = z.union([z.number().int().nonnegative(), z.string().regex(/^\d+$/)]).transform(BigInt);

const allocationSchema = z.object({
  id: z.string(),
  tx: z.string(),
  owner_id: z.string(),
  owner_public_key: z.string().default(''),
  owner_signing_public_key: z.string().default(''),
  data_shards: z.number().int().min(1),
  parity_shards: z.number().int().min(0),
  blobbers: z.array(
    z.object({
      id: z.string(),
      url: z.string(),
      terms: z.object({ read_price: sasAmount.optional() }).optional(),
    }),
  ),
  blobber_details: z
    .array(
      z.object({
        blobber_id: z.string(),
        terms: z.object({ read_price: sasAmount.default(0n) }).optional(),
      }),
    )
    .default([]),
});

/**
 * Reads an allocation's blobbers in shard order from the sharders.
 * Throws PermanentError for an id that is not 64 lowercase hex characters,
 * NotFoundOnChainError when the sharders do not know the allocation, and TransientError when they
 * disagree or return an allocation of the wrong shape.
 */
export async function fetchAllocationBlobbers(
  client: ShardersClient,
  id: string,
): Promise<AllocationForDownload> {
  if (!HEX_64.test(id)) {
    throw new PermanentError(`invalid allocation id "${id}": expected 64 lowercase hexadecimal characters`);
  }
  const body = await client.getJson(
    storageScPath('allocation'),
    { allocation: id },
    { compareBy: compareForDownload, notFound: isAllocationNotFound },
  );
  const allocation = parseAllocationBlobbers(body);
  if (allocation.id !== id) {
    throw new TransientError(`sharders returned allocation ${allocation.id} when asked for ${id}`, {
      dependency: 'sharders',
    });
  }
  return allocation;
}

/**
 * Reads an allocation response into the download view. Throws TransientError (dependency
 * `sharders`) when the body has the wrong shape or its blobber count differs from data + parity
 * shards, which a sharder still indexing an update can return.
 */
export function parseAllocationBlobbers(body: unknown): AllocationForDownload {
  const parsed = allocationSchema.safeParse(body);
  if (!parsed.success) {
    throw new TransientError(
      `sharders returned an invalid allocation: ${parsed.error.message} in ${shortenBody(JSON.stringify(body) ?? '')}`,
      { dependency: 'sharders' },
    );
  }
  const data = parsed.data;
  const expected = data.data_shards + data.parity_shards;
  if (data.blobbers.length !== expected) {
    throw new TransientError(
      `allocation ${data.id} lists ${data.blobbers.length} blobbers, but has ${data.data_shards} data + ${data.parity_shards} parity shards`,
      { dependency: 'sharders' },
    );
  }

  const readPrices = new Map(
    data.blobber_details.map((detail) => [detail.blobber_id, detail.terms?.read_price ?? 0n]),
  );
  return {
    id: data.id,
    tx: data.tx,
    ownerId: data.owner_id,
    ownerPublicKey: data.owner_public_key,
    ownerSigningPublicKey: data.owner_signing_public_key,
    dataShards: data.data_shards,
    parityShards: data.parity_shards,
    blobbers: data.blobbers.map((blobber) => ({
      id: blobber.id,
      url: blobber.url.replace(/\/+$/, ''),
      readPriceSas: readPrices.get(blobber.id) ?? blobber.terms?.read_price ?? 0n,
    })),
  };
}

/** The part of an allocation response that sharders must agree on before a download uses it. */
function compareForDownload(body: unknown): unknown {
  const allocation = (body ?? {}) as Record<string, unknown>;
  const blobbers = Array.isArray(allocation.blobbers) ? (allocation.blobbers as unknown[]) : [];
  const details = Array.isArray(allocation.blobber_details) ? (allocation.blobber_details as unknown[]) : [];
  return {
    id: allocation.id,
    tx: allocation.tx,
    owner_id: allocation.owner_id,
    owner_public_key: allocation.owner_public_key ?? '',
    owner_signing_public_key: allocation.owner_signing_public_key ?? '',
    data_shards: allocation.data_shards,
    parity_shards: allocation.parity_shards,
    blobbers: blobbers.map((item) => {
      const blobber = (item ?? {}) as Record<string, unknown>;
      return { id: blobber.id, url: blobber.url };
    }),
    read_prices: details.map((item) => {
      const detail = (item ?? {}) as { blobber_id?: unknown; terms?: { read_price?: unknown } };
      return [detail.blobber_id, detail.terms?.read_price ?? 0];
    }),
  };
}
