import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateMnemonic } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { migrate } from '../../src/core/db/migrate.js';
import { openPool } from '../../src/core/db/pool.js';
import { createMemoryLogger } from '../../src/core/output/logger.js';
import { type FakeBlobberStorage, startFakeBlobberStorage } from '../../src/sandbox/blobber-storage.js';
import { createSandboxOperator } from '../../src/sandbox/blobbers.js';
import { startZusNetwork, type ZusNetworkFake } from '../../src/sandbox/zus-network.js';
import { createTestDatabase, type TestDatabase } from './database.js';

/** What openai-batch-request tests share: a migrated database and files shared from fake blobbers. */
export interface BatchShareFixture {
  database: TestDatabase;
  pool: DatabasePool;
  /** One allocation of 2 data and 1 parity shards on fake blobbers. */
  storage: FakeBlobberStorage;
  network: ZusNetworkFake;
  /** Temporary folder of the test, for ZBOX_TMP_DIR and other files. */
  folder: string;
  /** Operator wallet file for ZBOX_OPERATOR_WALLET. */
  operatorFile: string;
  /** share_infos id of each stored file, by path. */
  shares: Map<string, bigint>;
  close(): Promise<void>;
}

/** Starts the fakes, stores `files` in the allocation and records one share of each for user-1. */
export async function startBatchShareFixture(
  name: string,
  allocationId: string,
  files: ReadonlyArray<readonly [string, Uint8Array]>,
): Promise<BatchShareFixture> {
  const database = await createTestDatabase(name);
  await migrate(database.url, createMemoryLogger());
  const pool = await openPool(database.url, { maximumPoolSize: 2 });
  const owner = await createSandboxOperator();
  const storage = await startFakeBlobberStorage({ allocationId, dataShards: 2, parityShards: 1, owner });
  const network = await startZusNetwork({ sharders: 2, allocations: [storage.allocationBody()] });
  const folder = mkdtempSync(join(tmpdir(), `zbox-${name}-`));
  const operatorFile = join(folder, 'operator.json');
  writeFileSync(operatorFile, JSON.stringify({ mnemonics: generateMnemonic(wordlist, 256) }));

  const shares = new Map<string, bigint>();
  for (const [path, content] of files) {
    const stored = storage.addFile({ path, content });
    const ticket = storage.shareFile(stored.lookupHash);
    const id = await pool.oneFirst(sql.type(z.object({ id: z.bigint() }))`
      INSERT INTO share_infos (user_id, auth_ticket, lookup_hash, file_name)
      VALUES ('user-1', ${ticket}, ${stored.lookupHash}, ${path}) RETURNING id`);
    shares.set(path, id);
  }

  return {
    database,
    pool,
    storage,
    network,
    folder,
    operatorFile,
    shares,
    close: async () => {
      await Promise.all([network.close(), storage.close()]);
      await pool.end();
      await database.drop();
      rmSync(folder, { recursive: true, force: true });
    },
  };
}
