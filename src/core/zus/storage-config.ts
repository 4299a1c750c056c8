import { z } from 'zod';
import { errorMessage, PermanentError } from '../errors.js';
import { type ExactDecimal, formatDecimal, parseDecimal, zcnToSas } from './amounts.js';
import { shortenBody } from './network.js';
import type { ShardersClient } from './sharders.js';

/** Address of the storage smart contract, the same on every Züs network. */
export const STORAGE_SC_ADDRESS = '6dba10422e368813802877a85039d3985d96760ed844092319743fb3a76712d7';

/** REST path of a storage smart-contract endpoint on a sharder, for example `storageScPath('allocation')`. */
export function storageScPath(endpoint: string): string {
  return `/v1/screst/${STORAGE_SC_ADDRESS}/${endpoint}`;
}

/**
 * The storage smart-contract settings the platform reads. Amounts are in SAS (the chain sends
 * ZCN), sizes in bytes, durations in seconds, ratios as exact decimal text in [0, 1].
 */
export interface StorageConfig {
  timeUnitSeconds: number;
  minAllocSizeBytes: bigint;
  maxBlobbersPerAllocation: number;
  maxReadPriceSas: bigint;
  maxWritePriceSas: bigint;
  minWritePriceSas: bigint;
  cancellationCharge: string;
  writePoolMinLockSas: bigint;
  maxTotalFreeAllocationSas: bigint;
  maxIndividualFreeAllocationSas: bigint;
  freeAllocationSizeBytes: bigint;
  freeAllocationDataShards: number;
  freeAllocationParityShards: number;
  freeReadPriceRangeMinSas: bigint;
  freeReadPriceRangeMaxSas: bigint;
  freeWritePriceRangeMinSas: bigint;
  freeWritePriceRangeMaxSas: bigint;
  /** Optional settings: present when the chain sends them. */
  ownerId?: string;
  readPoolMinLockSas?: bigint;
  maxFileSizeBytes?: bigint;
  healthCheckPeriodSeconds?: number;
  challengeEnabled?: boolean;
}

/**
 * Value kind of a setting, following the chain's `Settings` map in storagesc `config_settigns.go`.
 * Its `getConfigMap` writes currency as ZCN through a float64 and `%v` (so `2e+06` occurs),
 * int and int64 as plain digits, float64 with `%v` and time.Duration as Go text (`8760h0m0s`).
 */
export type FieldKind = 'zcn' | 'ratio' | 'bytes' | 'count' | 'duration' | 'boolean' | 'decimal' | 'key';

interface FieldSpec {
  kind: FieldKind;
  /** A missing required field makes the whole config invalid. */
  required?: boolean;
  /** The value must be greater than zero (sizes, shard counts, time unit). */
  positive?: boolean;
}

const FIELD_SPECS: Record<string, FieldSpec> = {
  time_unit: { kind: 'duration', required: true, positive: true },
  min_alloc_size: { kind: 'bytes', required: true, positive: true },
  max_blobbers_per_allocation: { kind: 'count', required: true, positive: true },
  max_read_price: { kind: 'zcn', required: true },
  max_write_price: { kind: 'zcn', required: true },
  min_write_price: { kind: 'zcn', required: true },
  cancellation_charge: { kind: 'ratio', required: true },
  'writepool.min_lock': { kind: 'zcn', required: true },
  max_total_free_allocation: { kind: 'zcn', required: true },
  max_individual_free_allocation: { kind: 'zcn', required: true },
  'free_allocation_settings.size': { kind: 'bytes', required: true, positive: true },
  'free_allocation_settings.data_shards': { kind: 'count', required: true, positive: true },
  'free_allocation_settings.parity_shards': { kind: 'count', required: true, positive: true },
  'free_allocation_settings.read_price_range.min': { kind: 'zcn', required: true },
  'free_allocation_settings.read_price_range.max': { kind: 'zcn', required: true },
  'free_allocation_settings.write_price_range.min': { kind: 'zcn', required: true },
  'free_allocation_settings.write_price_range.max': { kind: 'zcn', required: true },

  'free_allocation_settings.read_pool_fraction': { kind: 'ratio' },
  'free_allocation_settings.duration': { kind: 'duration' },
  'readpool.min_lock': { kind: 'zcn' },
  'stakepool.min_lock': { kind: 'zcn' },
  'stakepool.min_lock_period': { kind: 'duration' },
  'stakepool.kill_slash': { kind: 'ratio' },
  max_mint: { kind: 'zcn' },
  min_stake: { kind: 'zcn' },
  max_stake: { kind: 'zcn' },
  min_stake_per_delegate: { kind: 'zcn' },
  'block_reward.block_reward': { kind: 'zcn' },
  'block_reward.qualifying_stake': { kind: 'zcn' },
  blobber_slash: { kind: 'ratio' },
  max_charge: { kind: 'ratio' },
  validator_reward: { kind: 'ratio' },
  max_file_size: { kind: 'bytes', positive: true },
  min_blobber_capacity: { kind: 'bytes', positive: true },
  health_check_period: { kind: 'duration' },
  min_alloc_duration: { kind: 'duration' },
  max_challenge_completion_time: { kind: 'duration' },
  min_offer_duration: { kind: 'duration' },
  challenge_enabled: { kind: 'boolean' },
  max_delegates: { kind: 'count' },
  validators_per_challenge: { kind: 'count' },
  num_validators_rewarded: { kind: 'count' },
  max_blobber_select_for_challenge: { kind: 'count' },
  max_challenge_completion_rounds: { kind: 'count' },
  challenge_generation_gap: { kind: 'count' },
  failed_challenges_to_cancel: { kind: 'count' },
  failed_challenges_to_revoke_min_lock: { kind: 'count' },
  max_challenges_per_generation: { kind: 'count' },
  challenge_rate_per_mb_min: { kind: 'decimal' },
  // NOTE: a float64 on chain whose range is not checked here; it may be a ratio.
  min_lock_demand: { kind: 'decimal' },
  'block_reward.sharder_ratio': { kind: 'decimal' },
  'block_reward.miner_ratio': { kind: 'decimal' },
  'block_reward.blobber_ratio': { kind: 'decimal' },
  'block_reward.gamma.alpha': { kind: 'decimal' },
  'block_reward.gamma.a': { kind: 'decimal' },
  'block_reward.gamma.b': { kind: 'decimal' },
  'block_reward.zeta.i': { kind: 'decimal' },
  'block_reward.zeta.k': { kind: 'decimal' },
  'block_reward.zeta.mu': { kind: 'decimal' },
  owner_id: { kind: 'key' },
};

/** Every `cost.<function>` setting is an integer cost of that smart-contract function. */
const COST_SPEC: FieldSpec = { kind: 'count' };

type ParsedValue = bigint | number | string | boolean;

/** One reason why a config value was rejected. */
export interface StorageConfigProblem {
  field: string;
  /** The value as sent, or undefined when the field is missing. */
  value: string | undefined;
  problem: string;
}

/** Error raised when the chain's storage config fails validation. `problems` lists every field that is wrong. */
export class InvalidStorageConfigError extends PermanentError {
  override name = 'InvalidStorageConfigError';
  readonly problems: StorageConfigProblem[];

  constructor(problems: StorageConfigProblem[]) {
    const list = problems.map((item) => `${item.field}: ${item.problem}`).join('; ');
    super(`invalid storage smart-contract config (${problems.length} problems): ${list}`, {
      dependency: 'sharders',
    });
    this.problems = problems;
  }
}

const storageConfigResponseSchema = z.object({ fields: z.record(z.string(), z.unknown()) });

/**
 * Reads `GET /v1/screst/<storage SC>/storage-config` from the sharders and parses it.
 * Throws InvalidStorageConfigError when the response is not `{"fields": {...}}` or a value is wrong.
 */
export async function fetchStorageConfig(
  client: ShardersClient,
): Promise<{ config: StorageConfig; raw: Record<string, string> }> {
  const body = await client.getJson(storageScPath('storage-config'));
  const parsed = storageConfigResponseSchema.safeParse(body);
  if (!parsed.success) {
    const value = shortenBody(JSON.stringify(body) ?? '');
    throw new InvalidStorageConfigError([
      { field: 'fields', value, problem: `the response has no "fields" object: ${value}` },
    ]);
  }
  return parseStorageConfig(parsed.data.fields);
}

/**
 * Validates the storage-config `fields` map and converts it into typed settings. Unknown fields
 * are kept in `raw` only. Throws InvalidStorageConfigError listing every problem at once.
 */
export function parseStorageConfig(fields: Record<string, unknown>): {
  config: StorageConfig;
  raw: Record<string, string>;
} {
  const raw: Record<string, string> = {};
  const values = new Map<string, ParsedValue>();
  const problems: StorageConfigProblem[] = [];

  for (const [field, value] of Object.entries(fields)) {
    const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
    raw[field] = text;
    const spec = FIELD_SPECS[field] ?? (field.startsWith('cost.') ? COST_SPEC : undefined);
    if (spec === undefined) {
      continue;
    }
    if (typeof value !== 'string') {
      problems.push({ field, value: text, problem: `expected a string value, got ${text}` });
      continue;
    }
    try {
      values.set(field, parseField(spec, value));
    } catch (error) {
      problems.push({ field, value, problem: errorMessage(error) });
    }
  }

  problems.push(...findMissingFields(fields), ...checkRanges(values));
  if (problems.length > 0) {
    throw new InvalidStorageConfigError(problems);
  }
  return { config: buildConfig(values), raw };
}

function findMissingFields(fields: Record<string, unknown>): StorageConfigProblem[] {
  return Object.entries(FIELD_SPECS)
    .filter(([field, spec]) => spec.required === true && !Object.hasOwn(fields, field))
    .map(([field]) => ({ field, value: undefined, problem: 'missing: the platform needs this setting' }));
}

/** Cross-field checks: each minimum must not exceed its maximum. */
function checkRanges(values: Map<string, ParsedValue>): StorageConfigProblem[] {
  const pairs: Array<[string, string]> = [
    ['min_write_price', 'max_write_price'],
    ['free_allocation_settings.read_price_range.min', 'free_allocation_settings.read_price_range.max'],
    ['free_allocation_settings.write_price_range.min', 'free_allocation_settings.write_price_range.max'],
  ];
  const problems: StorageConfigProblem[] = [];
  for (const [minField, maxField] of pairs) {
    const min = values.get(minField);
    const max = values.get(maxField);
    if (typeof min === 'bigint' && typeof max === 'bigint' && min > max) {
      problems.push({
        field: minField,
        value: String(min),
        problem: `${min} SAS is above ${maxField} (${max} SAS)`,
      });
    }
  }
  return problems;
}

function parseField(spec: FieldSpec, text: string): ParsedValue {
  switch (spec.kind) {
    case 'zcn':
      // NOTE: the chain prints ZCN through a float64, so an amount above about 10^5 ZCN with
      // non-zero SAS digits may print with more than 10 decimals and is rejected here.
      return parseNonNegative(zcnToSas(text), text, 'amount');
    case 'ratio':
      return parseRatio(text);
    case 'bytes':
      return parseWholeNumber(text, spec.positive === true);
    case 'count':
      return toSafeNumber(parseWholeNumber(text, spec.positive === true), text);
    case 'duration':
      return parseDurationSeconds(text, spec.positive === true);
    case 'boolean':
      return parseGoBoolean(text);
    case 'decimal':
      return formatDecimal(parseDecimal(text));
    case 'key':
      return parseKey(text);
  }
}

function parseNonNegative(value: bigint, text: string, what: string): bigint {
  if (value < 0n) {
    throw new Error(`invalid ${what} "${text}": it must not be negative`);
  }
  return value;
}

/** Parses a decimal in [0, 1] and returns it as plain decimal text, so that no float rounds it. */
function parseRatio(text: string): string {
  const value: ExactDecimal = parseDecimal(text);
  const one = value.scale >= 0 ? 10n ** BigInt(value.scale) : 1n;
  const units = value.scale >= 0 ? value.units : value.units * 10n ** BigInt(-value.scale);
  if (units < 0n || units > one) {
    throw new Error(`invalid ratio "${text}": it must be between 0 and 1`);
  }
  return formatDecimal(value);
}

/** Parses a base-10 integer as Go's strconv.Atoi and ParseInt do, but rejects negative values. */
function parseWholeNumber(text: string, positive: boolean): bigint {
  if (!/^[+-]?\d+$/.test(text)) {
    throw new Error(`invalid integer "${text}": expected decimal digits only`);
  }
  const value = parseNonNegative(BigInt(text), text, 'integer');
  if (positive && value === 0n) {
    throw new Error(`invalid value "${text}": it must be greater than 0`);
  }
  return value;
}

function toSafeNumber(value: bigint, text: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Error(`invalid integer "${text}": it is too large`);
  }
  return Number(value);
}

/** Go's strconv.ParseBool spellings. */
function parseGoBoolean(text: string): boolean {
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(text)) {
    return true;
  }
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(text)) {
    return false;
  }
  throw new Error(`invalid boolean "${text}": expected true or false`);
}

function parseKey(text: string): string {
  if (!/^[0-9a-fA-F]{64}$/.test(text)) {
    throw new Error(`invalid id "${text}": expected 64 hexadecimal characters`);
  }
  return text.toLowerCase();
}

/** Nanoseconds per Go duration unit. */
const DURATION_UNITS_NS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n,
  μs: 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

const DURATION_PART = /(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/y;

/**
 * Parses Go duration text (`8760h0m0s`, `1h30m0s`, `1.5h`, `300ms`, `0`) into seconds, exactly
 * to the nanosecond as Go's time.ParseDuration does. Negative durations are rejected.
 */
export function parseDurationSeconds(text: string, positive = false): number {
  const nanoseconds = parseGoDurationNs(text);
  if (nanoseconds < 0n) {
    throw new Error(`invalid duration "${text}": it must not be negative`);
  }
  if (positive && nanoseconds === 0n) {
    throw new Error(`invalid duration "${text}": it must be greater than 0`);
  }
  return Number(nanoseconds) / 1e9;
}

function parseGoDurationNs(text: string): bigint {
  const invalid = () =>
    new Error(`invalid duration "${text}": expected Go duration text such as 720h0m0s or 90m`);
  const negative = text.startsWith('-');
  const body = text.startsWith('-') || text.startsWith('+') ? text.slice(1) : text;
  if (body === '0') {
    return 0n;
  }
  if (body === '') {
    throw invalid();
  }

  let total = 0n;
  DURATION_PART.lastIndex = 0;
  while (DURATION_PART.lastIndex < body.length) {
    const match = DURATION_PART.exec(body);
    const [, whole = '', fraction = '', unit = ''] = match ?? [];
    if (match === null || whole.length + fraction.length === 0) {
      throw invalid();
    }
    const unitNs = DURATION_UNITS_NS[unit] ?? 0n;
    const scale = 10n ** BigInt(fraction.length);
    total += (BigInt(`${whole}${fraction}` || '0') * unitNs) / scale;
  }
  return negative ? -total : total;
}

function buildConfig(values: Map<string, ParsedValue>): StorageConfig {
  const get = <T extends ParsedValue>(field: string, type: string): T => {
    const value = values.get(field);
    if (typeof value !== type) {
      throw new Error(`storage config field ${field} was not parsed as ${type}`);
    }
    return value as T;
  };
  const optional = <T extends ParsedValue>(field: string, type: string): T | undefined =>
    values.has(field) ? get<T>(field, type) : undefined;

  return {
    timeUnitSeconds: get('time_unit', 'number'),
    minAllocSizeBytes: get('min_alloc_size', 'bigint'),
    maxBlobbersPerAllocation: get('max_blobbers_per_allocation', 'number'),
    maxReadPriceSas: get('max_read_price', 'bigint'),
    maxWritePriceSas: get('max_write_price', 'bigint'),
    minWritePriceSas: get('min_write_price', 'bigint'),
    cancellationCharge: get('cancellation_charge', 'string'),
    writePoolMinLockSas: get('writepool.min_lock', 'bigint'),
    maxTotalFreeAllocationSas: get('max_total_free_allocation', 'bigint'),
    maxIndividualFreeAllocationSas: get('max_individual_free_allocation', 'bigint'),
    freeAllocationSizeBytes: get('free_allocation_settings.size', 'bigint'),
    freeAllocationDataShards: get('free_allocation_settings.data_shards', 'number'),
    freeAllocationParityShards: get('free_allocation_settings.parity_shards', 'number'),
    freeReadPriceRangeMinSas: get('free_allocation_settings.read_price_range.min', 'bigint'),
    freeReadPriceRangeMaxSas: get('free_allocation_settings.read_price_range.max', 'bigint'),
    freeWritePriceRangeMinSas: get('free_allocation_settings.write_price_range.min', 'bigint'),
    freeWritePriceRangeMaxSas: get('free_allocation_settings.write_price_range.max', 'bigint'),
    ownerId: optional('owner_id', 'string'),
    readPoolMinLockSas: optional('readpool.min_lock', 'bigint'),
    maxFileSizeBytes: optional('max_file_size', 'bigint'),
    healthCheckPeriodSeconds: optional('health_check_period', 'number'),
    challengeEnabled: optional('challenge_enabled', 'boolean'),
  };
}
