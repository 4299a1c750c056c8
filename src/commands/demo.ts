import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { generateMnemonic } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import pg from 'pg';
import { type Environment, readVariable } from '../core/config.js';
import { openEmbeddedDatabase } from '../core/db/embedded.js';
import { migrate } from '../core/db/migrate.js';
import { openPool } from '../core/db/pool.js';
import { type RuntimeIo, runWorker, type WorkerSpec } from '../core/engine/runtime.js';
import { EXIT } from '../core/exit-codes.js';
import { createPushSender } from '../core/notify/fcm.js';
import { createLogger, type Logger } from '../core/output/logger.js';
import { walletFromMnemonic } from '../core/zus/wallet.js';
import { startFakeBlobberStorage } from '../sandbox/blobber-storage.js';
import { createSandboxOperator, startFakeBlobbers } from '../sandbox/blobbers.js';
import { startElasticsearchFake } from '../sandbox/elasticsearch.js';
import { createFcmFake, FAKE_PROJECT_ID, fakeCredential, fakeHttpAgent } from '../sandbox/fcm.js';
import { startOpenAIFake } from '../sandbox/openai.js';
import { startZusNetwork } from '../sandbox/zus-network.js';
import { seedDemoBatch, seedDemoData } from './demo-seed.js';
import { formatStatus, readStatus } from './status.js';

/**
 * demo: runs every worker once against loopback simulators of the Züs network, restricted
 * blobbers, blobbers serving shared files, Elasticsearch, FCM and OpenAI from src/sandbox, on the embedded PostgreSQL with realistic
 * sample data. Each worker runs first as a dry run, then for real, and the final status is
 * printed. Nothing leaves the machine, because every simulator listens on 127.0.0.1.
 */

const DEMO_DATABASE = 'zbox_demo';
const DEMO_OPENAI_KEY = 'sk-zbox-demo-loopback-only';
const DEMO_SHARE_ALLOCATION = 'de'.repeat(32);
const ZCN = 10_000_000_000n;

export async function runDemo(options: { json: boolean }, io: RuntimeIo): Promise<number> {
  const logger = createLogger(
    { json: options.json, level: 'info', write: (line) => io.writeOut(`${line}\n`) },
    { worker: 'demo' },
  );
  const cleanup: Array<() => Promise<void> | void> = [];
  try {
    const env = await startSimulators(io.env, logger, cleanup);
    for (const step of await workerSteps(cleanup)) {
      banner(io, options.json, `${step.title}: dry run`);
      // The dry run's plan lines are the point of this step, so its info lines are shown.
      await runWorker(
        step.spec,
        { ...workerOptions(options.json), dryRun: true, quiet: false },
        { ...io, env },
      );
      banner(io, options.json, `${step.title}: real run`);
      await runWorker(step.spec, workerOptions(options.json), { ...io, env });
      await step.after?.(env);
    }
    banner(io, options.json, 'status');
    const pool = await openPool(env.DATABASE_URL as string, { maximumPoolSize: 2 });
    try {
      const statuses = await readStatus(pool);
      io.writeOut(
        options.json
          ? `${JSON.stringify({ msg: 'status', workers: statuses }, bigintText)}\n`
          : `${formatStatus(statuses)}\n`,
      );
    } finally {
      await pool.end();
    }
    return EXIT.ok;
  } finally {
    for (const step of cleanup.reverse()) {
      await step();
    }
  }
}

function bigintText(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

function workerOptions(json: boolean) {
  return { dryRun: false, json, verbose: false, quiet: !json, embedded: false };
}

function banner(io: RuntimeIo, json: boolean, title: string): void {
  if (!json) {
    io.writeOut(`\n=== ${title} ===\n`);
  }
}

/**
 * Starts the embedded database (a fresh demo database on it) and the simulators, writes the
 * demo wallets, seeds the data, and returns the environment the workers run with.
 */
async function startSimulators(
  base: Environment,
  logger: Logger,
  cleanup: Array<() => Promise<void> | void>,
) {
  const dataDir = resolve(readVariable(base, 'ZBOX_DATA_DIR') ?? '.zbox-data');
  const embedded = await openEmbeddedDatabase({ dataDir, logger });
  cleanup.push(() => embedded.release());
  const url = await recreateDatabase(embedded.url, DEMO_DATABASE);
  await migrate(url, logger);

  const folder = mkdtempSync(join(tmpdir(), 'zbox-demo-'));
  cleanup.push(() => rmSync(folder, { recursive: true, force: true }));
  const team = await demoWallet(folder, 'team');
  const operator = await demoWallet(folder, 'operator');

  const blobbers = await startFakeBlobbers({
    count: 2,
    operatorPublicKey: operator.publicKey,
    roundBound: true,
  });
  cleanup.push(() => blobbers.close());
  const network = await startZusNetwork({
    sharders: 3,
    miners: 3,
    storageConfigFields: demoStorageConfig(),
    startRound: 120_000,
  });
  cleanup.push(() => network.close());
  const elasticsearch = await startElasticsearchFake();
  cleanup.push(() => elasticsearch.close());
  network.setBalance(team.clientId, 5_000n * ZCN);
  const shareOwner = await createSandboxOperator();
  const storage = await startFakeBlobberStorage({
    allocationId: DEMO_SHARE_ALLOCATION,
    dataShards: 2,
    parityShards: 1,
    owner: shareOwner,
  });
  cleanup.push(() => storage.close());
  network.upsertAllocation(storage.allocationBody());
  const openai = await startOpenAIFake({ apiKey: DEMO_OPENAI_KEY });
  cleanup.push(() => openai.close());

  const pool = await openPool(url, { maximumPoolSize: 2 });
  try {
    await seedDemoData({ pool, network, blobbers, team: team.clientId });
    await seedDemoBatch({ pool, storage, openai });
  } finally {
    await pool.end();
  }
  logger.info('simulators started on 127.0.0.1 and sample data seeded', {
    sharders: network.sharderUrls.length,
    miners: network.minerUrls.length,
    restricted_blobbers: blobbers.blobbers.length,
  });
  return {
    ...base,
    DATABASE_URL: url,
    ZUS_SHARDERS: network.sharderUrls.join(','),
    ZUS_MINERS: network.minerUrls.join(','),
    ZUS_CHAIN_ID: network.chainId,
    ZBOX_TEAM_WALLET: team.path,
    ZBOX_OPERATOR_WALLET: operator.path,
    ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES: 'true',
    ELASTICSEARCH_URL: elasticsearch.url,
    OPENAI_API_KEY: DEMO_OPENAI_KEY,
    OPENAI_BASE_URL: openai.url,
    // The demo has no S3 simulator in the production image, so images go inline as data: URLs.
    ZBOX_BATCH_IMAGES: 'inline',
    ZUS_CONFIRMATION_POLL_MS: '200',
    ZBOX_AUTH_TICKET_HORIZON_ROUNDS: '20000',
    ZBOX_AUTH_TICKET_EPOCH_ROUNDS: '10000',
    ZBOX_AUTH_TICKET_REFRESH_ROUNDS: '5000',
  } satisfies Environment;
}

async function workerSteps(cleanup: Array<() => Promise<void> | void>) {
  const { freeStorage } = await import('./free-storage.js');
  const { authorizedBlobbers } = await import('./authorized-blobbers.js');
  const { createAllocation } = await import('./create-allocation.js');
  const { fundingZbox } = await import('./funding-zbox.js');
  const { expiringAllocations } = await import('./expiring-allocations.js');
  const { deleteWalletTransactions } = await import('./delete-wallet-transactions.js');
  const { openAIBatchRequest } = await import('./openai-batch-request.js');
  const { deleteOpenAIFiles } = await import('./delete-openai-files.js');
  const fcm = await createFcmFake();
  cleanup.push(() => fcm.close());
  const funding = fundingZbox({
    openPush: (ctx) =>
      createPushSender({
        credential: fakeCredential(),
        projectId: FAKE_PROJECT_ID,
        httpAgent: fakeHttpAgent(fcm),
        concurrency: 4,
        logger: ctx.logger,
      }),
  });
  const steps: Array<{ title: string; spec: WorkerSpec; after?: (env: Environment) => Promise<void> }> = [
    { title: 'free-storage', spec: freeStorage() },
    { title: 'authorized-blobbers', spec: authorizedBlobbers() },
    { title: 'create-allocation', spec: createAllocation() },
    { title: 'funding-zbox', spec: funding },
    { title: 'expiring-allocations', spec: expiringAllocations() },
    { title: 'delete-wallet-transactions', spec: deleteWalletTransactions({}) },
    { title: 'openai-batch-request', spec: openAIBatchRequest() },
    { title: 'delete-openai-files', spec: deleteOpenAIFiles() },
  ];
  return steps;
}

async function recreateDatabase(serverUrl: string, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function demoWallet(folder: string, name: string) {
  const mnemonic = generateMnemonic(wordlist, 256);
  const wallet = await walletFromMnemonic(mnemonic, 'bls0chain');
  const path = join(folder, `${name}.json`);
  writeFileSync(path, JSON.stringify({ mnemonics: mnemonic }), { mode: 0o600 });
  return { clientId: wallet.clientId, publicKey: wallet.publicKey, path };
}

/** Returns a storage config in the chain's string format with demo values (0.05 ZCN max write price, 1 GiB free allocations). */
function demoStorageConfig(): Record<string, string> {
  return {
    time_unit: '720h0m0s',
    min_alloc_size: '1048576',
    max_blobbers_per_allocation: '20',
    max_read_price: '0',
    max_write_price: '0.05',
    min_write_price: '0.001',
    cancellation_charge: '0.2',
    max_file_size: '1099511627776',
    health_check_period: '1h0m0s',
    'readpool.min_lock': '0',
    'writepool.min_lock': '0.1',
    max_total_free_allocation: '1e+07',
    max_individual_free_allocation: '1',
    'free_allocation_settings.data_shards': '4',
    'free_allocation_settings.parity_shards': '2',
    'free_allocation_settings.size': '1073741824',
    'free_allocation_settings.read_price_range.min': '0',
    'free_allocation_settings.read_price_range.max': '0',
    'free_allocation_settings.write_price_range.min': '0',
    'free_allocation_settings.write_price_range.max': '0.05',
    'free_allocation_settings.read_pool_fraction': '0',
    owner_id: 'b'.repeat(64),
  };
}
