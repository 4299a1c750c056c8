import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Returns a storage-config `fields` map written for these tests: every value a string, as the chain
 * sends it, with amounts in ZCN. The values are this project's own, chosen to exercise each kind.
 */
export function ownStorageConfigFields(): Record<string, string> {
  return {
    time_unit: '720h0m0s',
    min_alloc_size: '1048576',
    max_blobbers_per_allocation: '20',
    max_read_price: '0',
    max_write_price: '0.05',
    min_write_price: '0.002',
    cancellation_charge: '0.25',
    max_file_size: '1099511627776',
    health_check_period: '45m0s',
    'readpool.min_lock': '0',
    'writepool.min_lock': '0.2',
    'stakepool.min_lock_period': '0s',
    'stakepool.kill_slash': '0.4',
    max_total_free_allocation: '5e+06',
    max_individual_free_allocation: '2',
    'free_allocation_settings.data_shards': '3',
    'free_allocation_settings.parity_shards': '1',
    'free_allocation_settings.size': '1073741824',
    'free_allocation_settings.read_price_range.min': '0',
    'free_allocation_settings.read_price_range.max': '0',
    'free_allocation_settings.write_price_range.min': '0',
    'free_allocation_settings.write_price_range.max': '0.05',
    'free_allocation_settings.read_pool_fraction': '0',
    challenge_enabled: 'true',
    min_stake: '2',
    max_stake: '1e+06',
    owner_id: 'a'.repeat(64),
  };
}

/**
 * Reads the real storage-config response in the reference-data folder named by ZUS_REFERENCE_DATA, or a
 * reason to skip when the variable is unset.
 */
export function referenceStorageConfig(): { fields: Record<string, string> } | { skip: string } {
  const folder = process.env.ZUS_REFERENCE_DATA;
  if (folder === undefined || folder === '') {
    return {
      skip: 'ZUS_REFERENCE_DATA is not set: it names the folder of real chain answers (.ci/run sets it)',
    };
  }
  const body = JSON.parse(readFileSync(join(folder, 'storage-config.json'), 'utf8')) as {
    fields: Record<string, string>;
  };
  return { fields: body.fields };
}
