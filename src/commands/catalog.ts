/**
 * The workers this binary has: their help line, suggested schedule and, for queue workers, the
 * table that holds their tasks. `status` and `requeue` read it; the CLI registers one command
 * per entry.
 */
export interface WorkerEntry {
  name: string;
  summary: string;
  schedule: string;
  /** Queue table with the engine's columns; undefined for singleton workers. */
  queueTable?: string;
}

export const WORKER_CATALOG: readonly WorkerEntry[] = [
  {
    name: 'create-allocation',
    summary: 'creates or upgrades the allocations users paid for through Stripe, paid by the team wallet',
    schedule: 'every 5 min',
    queueTable: 'stripe_allocation_tasks',
  },
  {
    name: 'authorized-blobbers',
    summary: 'obtains auth tickets from restricted blobbers for the clients that need them, with cooldown',
    schedule: 'every 10 min',
    queueTable: 'restricted_blobber_tickets',
  },
  {
    name: 'funding-zbox',
    summary: 'sends tokens from the team wallet to users for pending funding tasks, then notifies them',
    schedule: 'every 2 min',
    queueTable: 'funding_tasks',
  },
  {
    name: 'expiring-allocations',
    summary: 'writes one Elasticsearch notice per allocation expiring within a window (1, 3, 7 days)',
    schedule: 'hourly',
    queueTable: 'allocation_expiry_notices',
  },
  {
    name: 'delete-wallet-transactions',
    summary: 'deletes team-wallet spending rows older than the retention period',
    schedule: 'daily',
  },
  {
    name: 'free-storage',
    summary: "stores the storage smart contract's config (free allocation size and shards, prices, charges)",
    schedule: 'hourly',
  },
];

export function findWorker(name: string): WorkerEntry | undefined {
  return WORKER_CATALOG.find((entry) => entry.name === name);
}
