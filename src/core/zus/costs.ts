/**
 * Allocation costs in SAS, as bigint. "GB" in every chain price is 2^30 bytes, and a write
 * price is SAS per GB per time unit; an allocation is paid for one time unit when created.
 */

const GIB = 1n << 30n;

/** Bytes each blobber stores: ceil(size / data shards). */
export function blobberSizeBytes(sizeBytes: bigint, dataShards: number): bigint {
  if (dataShards < 1) {
    throw new Error(`data shards must be at least 1, got ${dataShards}`);
  }
  const shards = BigInt(dataShards);
  return (sizeBytes + shards - 1n) / shards;
}

/**
 * The chain's own cost of a new allocation (storagesc `checkFunding`): over the data + parity
 * blobbers the allocation uses, Σ floor(min(write price, max write price) × blobber size / 2^30).
 * A lock of exactly this passes the chain's check; one SAS less fails it.
 */
export function allocationCostSas(
  sizeBytes: bigint,
  dataShards: number,
  writePricesSas: readonly bigint[],
  maxWritePriceSas: bigint,
): bigint {
  const size = blobberSizeBytes(sizeBytes, dataShards);
  return writePricesSas.reduce((sum, price) => {
    const capped = price < maxWritePriceSas ? price : maxWritePriceSas;
    return sum + (capped * size) / GIB;
  }, 0n);
}

/**
 * The Go SDK's estimate (`GetAllocationMinLock`): ceil(size / data) × (data + parity) / 2^30 ×
 * the maximum of the write price range, floored. It prices every blobber at the range's top, so
 * it is at least the chain cost whenever the chosen blobbers price within the range.
 */
export function allocationLockEstimateSas(
  sizeBytes: bigint,
  dataShards: number,
  parityShards: number,
  writePriceRangeMaxSas: bigint,
): bigint {
  const size = blobberSizeBytes(sizeBytes, dataShards);
  return (size * BigInt(dataShards + parityShards) * writePriceRangeMaxSas) / GIB;
}

/**
 * The lock a worker sends for a new allocation: the chain cost over the blobbers it selected,
 * at their current terms. The estimate would lock more of the team wallet's tokens into an
 * allocation the user owns; the chain cost is the least that the chain accepts.
 */
export function allocationLockSas(
  sizeBytes: bigint,
  dataShards: number,
  writePricesSas: readonly bigint[],
  maxWritePriceSas: bigint,
): bigint {
  return allocationCostSas(sizeBytes, dataShards, writePricesSas, maxWritePriceSas);
}
