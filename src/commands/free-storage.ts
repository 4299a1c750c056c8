import { type DatabaseTransactionConnection, sql } from 'slonik';
import { z } from 'zod';
import type { RunContext } from '../core/engine/context.js';
import type { WorkerSpec } from '../core/engine/runtime.js';
import { errorMessage, PermanentError, TransientError } from '../core/errors.js';
import { connectSharders } from '../core/zus/connect.js';
import { fetchStorageConfig, type StorageConfig } from '../core/zus/storage-config.js';

/**
 * free-storage (singleton): reads the storage smart contract's config from the sharders (the
 * response a majority agrees on), validates every field, and stores the typed fields the platform
 * reads plus every field raw, with a history row of what changed. An invalid, disagreeing or
 * unreachable answer keeps the stored config and marks the run as needing attention (exit 4).
 */

export function freeStorage(): WorkerSpec {
  return { name: 'free-storage', singleton: true, body: run };
}

type Changes = Record<string, { from: string | null; to: string | null }>;

async function run(ctx: RunContext): Promise<void> {
  const sharders = await connectSharders(ctx.env, ctx.logger);

  const fetched = await fetchConfig(ctx, sharders);
  if (fetched === undefined) {
    return;
  }

  const storedRaw = await readStoredRaw(ctx);
  const changes = diffFields(storedRaw, fetched.raw);
  ctx.details.changed_fields = Object.keys(changes).length;

  if (ctx.dryRun) {
    ctx.plan.push({
      task: 'storage config',
      action:
        storedRaw === undefined
          ? 'store the config for the first time'
          : `update ${Object.keys(changes).length} changed field(s)`,
      fields: { changes, ...platformFields(fetched.config) },
    });
    return;
  }

  await ctx.pool.transaction(async (tx) => {
    await upsertConfig(tx, fetched.config, fetched.raw);
    if (Object.keys(changes).length > 0) {
      await insertHistory(tx, changes, fetched.raw);
    }
  });
  ctx.counters.succeeded += 1;
  ctx.logger.info(Object.keys(changes).length > 0 ? 'storage config updated' : 'storage config unchanged', {
    changed: Object.keys(changes),
  });
}

/** Fetches and parses the config; on failure records why the stored one is kept and returns undefined. */
async function fetchConfig(ctx: RunContext, sharders: Awaited<ReturnType<typeof connectSharders>>) {
  try {
    return await fetchStorageConfig(sharders);
  } catch (error) {
    if (!(error instanceof PermanentError || error instanceof TransientError)) {
      throw error;
    }
    const reason = `storage config not updated, the stored one is kept: ${errorMessage(error)}`;
    ctx.logger.error('storage config rejected', { reason: errorMessage(error) });
    ctx.attention.push(reason);
    return undefined;
  }
}

/** Returns the figures the platform reads, for dry-run output. */
function platformFields(config: StorageConfig) {
  return {
    free_allocation_size_bytes: config.freeAllocationSizeBytes,
    free_allocation_data_shards: config.freeAllocationDataShards,
    free_allocation_parity_shards: config.freeAllocationParityShards,
    max_write_price_sas: config.maxWritePriceSas,
    cancellation_charge: config.cancellationCharge,
  };
}

async function readStoredRaw(ctx: RunContext): Promise<Record<string, string> | undefined> {
  const raw = await ctx.pool.maybeOneFirst(
    sql.type(
      z.object({ raw_fields: z.record(z.string(), z.string()) }),
    )`SELECT raw_fields FROM storage_config`,
  );
  return raw ?? undefined;
}

function diffFields(before: Record<string, string> | undefined, after: Record<string, string>): Changes {
  const changes: Changes = {};
  const names = new Set([...Object.keys(before ?? {}), ...Object.keys(after)]);
  for (const name of [...names].sort()) {
    const from = before?.[name] ?? null;
    const to = after[name] ?? null;
    if (from !== to) {
      changes[name] = { from, to };
    }
  }
  return changes;
}

async function upsertConfig(
  tx: DatabaseTransactionConnection,
  config: StorageConfig,
  raw: Record<string, string>,
) {
  await tx.query(sql.unsafe`
    INSERT INTO storage_config (
      singleton, free_allocation_size_bytes, free_allocation_data_shards, free_allocation_parity_shards,
      max_write_price_sas, min_write_price_sas, max_read_price_sas, cancellation_charge,
      min_alloc_size_bytes, max_blobbers_per_allocation, time_unit_seconds, raw_fields, fetched_at, updated_at)
    VALUES (
      true, ${config.freeAllocationSizeBytes}, ${config.freeAllocationDataShards}, ${config.freeAllocationParityShards},
      ${config.maxWritePriceSas}, ${config.minWritePriceSas}, ${config.maxReadPriceSas}, ${config.cancellationCharge},
      ${config.minAllocSizeBytes}, ${config.maxBlobbersPerAllocation}, ${config.timeUnitSeconds},
      ${sql.jsonb(raw)}, now(), now())
    ON CONFLICT (singleton) DO UPDATE SET
      free_allocation_size_bytes = EXCLUDED.free_allocation_size_bytes,
      free_allocation_data_shards = EXCLUDED.free_allocation_data_shards,
      free_allocation_parity_shards = EXCLUDED.free_allocation_parity_shards,
      max_write_price_sas = EXCLUDED.max_write_price_sas,
      min_write_price_sas = EXCLUDED.min_write_price_sas,
      max_read_price_sas = EXCLUDED.max_read_price_sas,
      cancellation_charge = EXCLUDED.cancellation_charge,
      min_alloc_size_bytes = EXCLUDED.min_alloc_size_bytes,
      max_blobbers_per_allocation = EXCLUDED.max_blobbers_per_allocation,
      time_unit_seconds = EXCLUDED.time_unit_seconds,
      raw_fields = EXCLUDED.raw_fields,
      fetched_at = now(),
      updated_at = CASE WHEN storage_config.raw_fields = EXCLUDED.raw_fields
        THEN storage_config.updated_at ELSE now() END`);
}

async function insertHistory(
  tx: DatabaseTransactionConnection,
  changes: Changes,
  raw: Record<string, string>,
) {
  await tx.query(sql.unsafe`
    INSERT INTO storage_config_history (changes, raw_fields) VALUES (${sql.jsonb(changes)}, ${sql.jsonb(raw)})`);
}
