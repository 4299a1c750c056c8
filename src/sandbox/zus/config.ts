/**
 * Settings the fake chain reads from its storage-config `fields` map (string values, amounts in
 * ZCN, durations as Go duration text) and the fee table it derives from them.
 */

export const SAS_PER_ZCN = 10_000_000_000n;

/** Bytes in the chain's "GB" (storagesc `GB = 1024 * MB`). */
export const GIB = 1_073_741_824;

/** Smart-contract addresses, written out here rather than imported from the client. */
export const STORAGE_SC_ADDRESS = '6dba10422e368813802877a85039d3985d96760ed844092319743fb3a76712d7';
export const MINER_SC_ADDRESS = '6dba10422e368813802877a85039d3985d96760ed844092319743fb3a76712d9';

/** Returns the smaller of two bigints (Math.min takes numbers only). */
export function minBigInt(left: bigint, right: bigint): bigint {
  return left < right ? left : right;
}

/** Returns the larger of two bigints (Math.max takes numbers only). */
export function maxBigInt(left: bigint, right: bigint): bigint {
  return left > right ? left : right;
}

/** The storage smart-contract settings that its transactions and REST handlers use. */
export interface StorageSettings {
  timeUnitSeconds: number;
  minAllocSize: bigint;
  maxBlobbersPerAllocation: number;
  maxWritePrice: bigint;
  maxReadPrice: bigint;
  /** Fraction of an allocation's cost charged when a blobber is removed. */
  cancellationCharge: number;
  healthCheckPeriodSeconds: number;
}

/**
 * Values used for settings missing from the storage-config fields: the 0chain repository's local
 * network config (docker.local sc.yaml), so tests that set no config still get a working contract.
 */
const DEFAULT_SETTINGS: StorageSettings = {
  timeUnitSeconds: 720 * 3600,
  minAllocSize: 1_048_576n,
  maxBlobbersPerAllocation: 40,
  maxWritePrice: 7n * SAS_PER_ZCN,
  maxReadPrice: 7n * SAS_PER_ZCN,
  cancellationCharge: 0.2,
  healthCheckPeriodSeconds: 90 * 60,
};

/** Reads the settings, falling back to DEFAULT_SETTINGS for each missing or unreadable field. */
export function readStorageSettings(fields: Record<string, string>): StorageSettings {
  const duration = (key: string, fallback: number) => {
    const text = fields[key];
    const seconds = text === undefined ? undefined : parseGoDuration(text);
    return seconds ?? fallback;
  };
  const zcn = (key: string, fallback: bigint) => {
    const text = fields[key];
    const sas = text === undefined ? undefined : zcnToSas(text);
    return sas ?? fallback;
  };
  const integer = (key: string, fallback: bigint) => {
    const text = fields[key];
    return text !== undefined && /^\d+$/.test(text) ? BigInt(text) : fallback;
  };
  const ratio = Number(fields.cancellation_charge);
  return {
    timeUnitSeconds: duration('time_unit', DEFAULT_SETTINGS.timeUnitSeconds),
    minAllocSize: integer('min_alloc_size', DEFAULT_SETTINGS.minAllocSize),
    maxBlobbersPerAllocation: Number(
      integer('max_blobbers_per_allocation', BigInt(DEFAULT_SETTINGS.maxBlobbersPerAllocation)),
    ),
    maxWritePrice: zcn('max_write_price', DEFAULT_SETTINGS.maxWritePrice),
    maxReadPrice: zcn('max_read_price', DEFAULT_SETTINGS.maxReadPrice),
    cancellationCharge:
      fields.cancellation_charge !== undefined && Number.isFinite(ratio)
        ? ratio
        : DEFAULT_SETTINGS.cancellationCharge,
    healthCheckPeriodSeconds: duration('health_check_period', DEFAULT_SETTINGS.healthCheckPeriodSeconds),
  };
}

/**
 * Converts ZCN decimal text as the chain formats it (`0.025`, `7`, `2e+06`) to SAS exactly.
 * Returns undefined for text that is not a finite non-negative number or has digits below 1 SAS.
 */
export function zcnToSas(text: string): bigint | undefined {
  const match = /^\+?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d{1,4}))?$/.exec(text.trim());
  if (match === null) {
    return undefined;
  }
  const [, integerDigits = '', fractionDigits = '', exponentText = '0'] = match;
  if (integerDigits.length + fractionDigits.length === 0) {
    return undefined;
  }
  // value = digits × 10^(exponent − fraction length); SAS = value × 10^10.
  const digits = BigInt(`${integerDigits}${fractionDigits}` || '0');
  const shift = Number(exponentText) - fractionDigits.length + 10;
  if (shift >= 0) {
    return digits * 10n ** BigInt(shift);
  }
  const divisor = 10n ** BigInt(-shift);
  return digits % divisor === 0n ? digits / divisor : undefined;
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-9,
  us: 1e-6,
  µs: 1e-6,
  ms: 1e-3,
  s: 1,
  m: 60,
  h: 3600,
};

/** Parses Go duration text such as `720h0m0s` or `1h30m0s` into seconds, or undefined. */
export function parseGoDuration(text: string): number | undefined {
  if (text === '0') {
    return 0;
  }
  const pattern = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  let seconds = 0;
  let consumed = 0;
  for (const match of text.matchAll(pattern)) {
    seconds += Number(match[1]) * (DURATION_UNITS[match[2] ?? ''] ?? Number.NaN);
    consumed += match[0].length;
  }
  return consumed === text.length && consumed > 0 && Number.isFinite(seconds) ? seconds : undefined;
}

/** Chain fee settings, in the units of the chain's `0chain.yaml` (`transaction.*`). */
export interface FeeSettings {
  /** Cost units of a token transfer (`transfer_cost`, 10 in the repository config). */
  transferCost: number;
  /** Divisor from cost units to ZCN (`cost_fee_coeff`, 1000 in the repository config). */
  costFeeCoefficient: number;
  /** Upper bound of a fee in SAS (`max_fee`, 1 ZCN in the repository config). */
  maxFee: bigint;
}

export const DEFAULT_FEE_SETTINGS: FeeSettings = {
  transferCost: 10,
  costFeeCoefficient: 1000,
  maxFee: SAS_PER_ZCN,
};

/** Storage-SC cost units used when the storage config has no `cost.<function>` field (sc.yaml values). */
const DEFAULT_STORAGE_COSTS: Record<string, number> = {
  new_allocation_request: 1919,
  update_allocation_request: 2692,
};

/**
 * Builds the miners' fee table as `GET /v1/fees_table` returns it: SAS per function, each
 * `cost / cost_fee_coeff` ZCN capped at `max_fee` (chain `GetTransactionCostFeeTable`).
 */
export function buildFeeTable(
  fields: Record<string, string>,
  settings: FeeSettings,
): Record<string, Record<string, bigint>> {
  const costs: Record<string, number> = { ...DEFAULT_STORAGE_COSTS };
  for (const [key, value] of Object.entries(fields)) {
    if (key.startsWith('cost.') && /^\d+$/.test(value)) {
      costs[key.slice('cost.'.length)] = Number(value);
    }
  }
  const fee = (cost: number) => {
    const sas = (BigInt(cost) * SAS_PER_ZCN) / BigInt(settings.costFeeCoefficient);
    return settings.maxFee > 0n && sas > settings.maxFee ? settings.maxFee : sas;
  };
  const storage = Object.fromEntries(Object.entries(costs).map(([name, cost]) => [name, fee(cost)]));
  return { [STORAGE_SC_ADDRESS]: storage, transfer: { transfer: fee(settings.transferCost) } };
}
