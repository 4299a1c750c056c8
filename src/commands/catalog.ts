import type { VariableName } from '../core/config.js';

/**
 * The workers this binary has: their help line, suggested schedule, the variables they need and,
 * for queue workers, the table that contains their tasks. `status`, `requeue` and `doctor` read it;
 * the CLI registers one command per entry.
 */
export interface WorkerEntry {
  name: string;
  summary: string;
  schedule: string;
  /** Queue table with the engine's columns; undefined for singleton workers. */
  queueTable?: string;
  /** Variables the worker cannot run without; an inner list is satisfied by any one of its names. */
  requires: ReadonlyArray<readonly VariableName[]>;
}

const CHAIN: readonly VariableName[] = ['ZUS_SHARDERS', 'ZUS_BLOCK_WORKER'];

export const WORKER_CATALOG: readonly WorkerEntry[] = [
  {
    name: 'create-allocation',
    summary: 'creates or upgrades the allocations users paid for through Stripe, paid by the team wallet',
    schedule: 'every 5 min',
    queueTable: 'stripe_allocation_tasks',
    requires: [CHAIN, ['ZBOX_TEAM_WALLET'], ['ZBOX_OPERATOR_WALLET']],
  },
  {
    name: 'authorized-blobbers',
    summary: 'obtains auth tickets from restricted blobbers for the clients that need them, with cooldown',
    schedule: 'every 10 min',
    queueTable: 'restricted_blobber_tickets',
    requires: [CHAIN, ['ZBOX_OPERATOR_WALLET']],
  },
  {
    name: 'funding-zbox',
    summary: 'sends tokens from the team wallet to users for pending funding tasks, then notifies them',
    schedule: 'every 2 min',
    queueTable: 'funding_tasks',
    requires: [CHAIN, ['ZBOX_TEAM_WALLET'], ['ZBOX_FIREBASE_CREDENTIALS']],
  },
  {
    name: 'expiring-allocations',
    summary: 'writes one Elasticsearch notice per allocation expiring within a window (1, 3, 7 days)',
    schedule: 'hourly',
    queueTable: 'allocation_expiry_notices',
    requires: [CHAIN, ['ELASTICSEARCH_URL']],
  },
  {
    name: 'openai-batch-request',
    summary: 'turns batch tasks (a prompt and shared files) into OpenAI Batches',
    schedule: 'every 5 min',
    queueTable: 'openai_batch_tasks',
    requires: [CHAIN, ['OPENAI_API_KEY'], ['ZBOX_OPERATOR_WALLET']],
  },
  {
    name: 'delete-openai-files',
    summary: 'deletes OpenAI files older than 24 h whose purpose is not protected, and expired batch images',
    schedule: 'hourly',
    requires: [['OPENAI_API_KEY']],
  },
  {
    name: 'delete-wallet-transactions',
    summary: 'deletes team-wallet spending rows older than the retention period',
    schedule: 'daily',
    requires: [],
  },
  {
    name: 'free-storage',
    summary: "stores the storage smart contract's config (free allocation size and shards, prices, charges)",
    schedule: 'hourly',
    requires: [CHAIN],
  },
];

export function findWorker(name: string): WorkerEntry | undefined {
  return WORKER_CATALOG.find((entry) => entry.name === name);
}
