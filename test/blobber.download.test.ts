import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import {
  type DownloadedShare,
  type DownloadShareOptions,
  downloadShare,
} from '../src/core/blobber/download.js';
import { BLOCK_SIZE_BYTES, shardLayout } from '../src/core/blobber/erasure.js';
import {
  checkTicketForAllocation,
  decodeShareTicket,
  lookupHashOf,
  parseShareTicket,
  type ShareTicket,
} from '../src/core/blobber/share.js';
import { createGuardedFetch, type GuardedFetch } from '../src/core/blobber/url-guard.js';
import { PermanentError, TransientError } from '../src/core/errors.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { fetchAllocationBlobbers, parseAllocationBlobbers } from '../src/core/zus/allocation-blobbers.js';
import { ShardersClient } from '../src/core/zus/sharders.js';
import type { Wallet } from '../src/core/zus/wallet.js';
import {
  type FakeBlobberStorage,
  type StorageBlobberBehaviour,
  startFakeBlobberStorage,
} from '../src/sandbox/blobber-storage.js';
import { createSandboxOperator, type SandboxOperator } from '../src/sandbox/blobbers.js';
import { startZusNetwork } from '../src/sandbox/zus-network.js';
import { freshWallet } from './support/zus.js';

const ALLOCATION_ID = createHash('sha3-256').update('share download test allocation').digest('hex');

let owner: SandboxOperator;
let operator: Wallet;

before(async () => {
  owner = await createSandboxOperator();
  operator = await freshWallet();
});

/** Fake blobbers of one allocation, a guarded client and a temporary folder for one test. */
interface Scenario {
  storage: FakeBlobberStorage;
  fetch: GuardedFetch;
  tempDir: string;
  logger: ReturnType<typeof createMemoryLogger>;
  download(ticket: string | ShareTicket, options?: Partial<DownloadShareOptions>): Promise<DownloadedShare>;
  /** Counts the download requests the fakes responded to, by blobber index. */
  downloadRequestsBy(): Map<number, number>;
  close(): Promise<void>;
}

async function startScenario(
  shape: { dataShards: number; parityShards: number; slowMs?: number },
  allowPrivateAddresses = true,
): Promise<Scenario> {
  const storage = await startFakeBlobberStorage({
    allocationId: ALLOCATION_ID,
    dataShards: shape.dataShards,
    parityShards: shape.parityShards,
    owner,
    ...(shape.slowMs === undefined ? {} : { slowMs: shape.slowMs }),
  });
  const tempDir = await mkdtemp(join(tmpdir(), 'zbox-share-test-'));
  const fetch = createGuardedFetch({ allowPrivateAddresses });
  const logger = createMemoryLogger();
  return {
    storage,
    fetch,
    tempDir,
    logger,
    download: (ticket, options = {}) => {
      const view = storage.allocationView();
      return downloadShare({
        ticket: typeof ticket === 'string' ? parseShareTicket(ticket) : ticket,
        allocation: view,
        blobbers: view.blobbers,
        fetch,
        operator,
        tempDir,
        logger,
        timeoutMs: 5_000,
        ...options,
      });
    },
    downloadRequestsBy: () => {
      const counts = new Map<number, number>();
      for (const request of storage.requests.filter((item) => item.endpoint === 'download')) {
        counts.set(request.blobberIndex, (counts.get(request.blobberIndex) ?? 0) + 1);
      }
      return counts;
    },
    close: async () => {
      fetch.close();
      await storage.close();
      await rm(tempDir, { recursive: true, force: true });
    },
  };
}

async function withScenario(
  shape: { dataShards: number; parityShards: number; slowMs?: number },
  run: (scenario: Scenario) => Promise<void>,
  allowPrivateAddresses = true,
): Promise<void> {
  const scenario = await startScenario(shape, allowPrivateAddresses);
  try {
    await run(scenario);
  } finally {
    await scenario.close();
  }
}

async function setBehaviours(
  storage: FakeBlobberStorage,
  indices: number[],
  behaviour: StorageBlobberBehaviour,
) {
  for (const index of indices) {
    await storage.setBehaviour(index, behaviour);
  }
}

/** Asserts the downloaded file has exactly `content`, then deletes it as a caller would. */
async function assertContent(result: DownloadedShare, content: Uint8Array): Promise<void> {
  const bytes = await readFile(result.path);
  assert.equal(result.sizeBytes, content.length);
  assert.ok(bytes.equals(content), 'downloaded bytes equal the shared file');
  assert.equal(result.contentHash, createHash('md5').update(content).digest('hex'));
  await rm(result.path);
}

async function assertTempDirEmpty(tempDir: string): Promise<void> {
  assert.deepEqual(await readdir(tempDir), [], 'no temporary file is left behind');
}

/** Six rows for two data shards, the last one partial. */
const SIX_ROWS = 5 * 2 * BLOCK_SIZE_BYTES + 777;

describe('downloadShare', () => {
  test('all data blobbers up', async () => {
    await withScenario(
      { dataShards: 2, parityShards: 2 },
      async ({ storage, download, downloadRequestsBy }) => {
        const content = randomBytes(SIX_ROWS);
        const file = storage.addFile({ path: '/docs/report.pdf', content, mimeType: 'application/pdf' });

        const result = await download(storage.shareFile(file.lookupHash), { blocksPerRequest: 2 });

        assert.equal(result.name, 'report.pdf');
        assert.equal(result.mimeType, 'application/pdf');
        assert.equal(result.contentHashAlgorithm, 'md5');
        assert.equal(result.rowsRebuilt, 0);
        assert.deepEqual(result.verified, {
          ticketSignature: true,
          contentHashSignature: true,
          agreeingBlobbers: 4,
        });
        await assertContent(result, content);
        // Data shards 0 and 1 serve the rows, and parity shard 2 checks them. Shard 3 gets no request.
        assert.deepEqual([...downloadRequestsBy().entries()].sort(), [
          [0, 3],
          [1, 3],
          [2, 3],
        ]);
        const downloads = storage.requests.filter((request) => request.endpoint === 'download');
        assert.ok(downloads.every((request) => request.status === 200));
        assert.deepEqual(
          downloads
            .filter((request) => request.blobberIndex === 0)
            .map((request) => [request.blockNum, request.numBlocks]),
          [
            ['0', '2'],
            ['2', '2'],
            ['4', '2'],
          ],
        );
        assert.equal(storage.requests.filter((request) => request.endpoint === 'meta').length, 4);
      },
    );
  });

  test('one data blobber down', async () => {
    await withScenario(
      { dataShards: 2, parityShards: 2 },
      async ({ storage, download, downloadRequestsBy }) => {
        const content = randomBytes(SIX_ROWS);
        const file = storage.addFile({ path: '/a.bin', content });
        await storage.setBehaviour(0, 'down');

        const result = await download(storage.shareFile(file.lookupHash), { blocksPerRequest: 4 });

        assert.equal(result.rowsRebuilt, 6);
        assert.equal(result.verified.agreeingBlobbers, 3);
        await assertContent(result, content);
        assert.deepEqual([...downloadRequestsBy().keys()].sort(), [1, 2, 3]);
      },
    );
  });

  test('two data blobbers down', async () => {
    await withScenario(
      { dataShards: 3, parityShards: 3 },
      async ({ storage, download, downloadRequestsBy }) => {
        const content = randomBytes(4 * 3 * BLOCK_SIZE_BYTES + 5);
        const file = storage.addFile({ path: '/b.bin', content });
        await setBehaviours(storage, [0, 2], 'down');

        const result = await download(storage.shareFile(file.lookupHash));

        assert.equal(result.rowsRebuilt, 5);
        await assertContent(result, content);
        assert.deepEqual([...downloadRequestsBy().keys()].sort(), [1, 3, 4, 5]);
      },
    );
  });

  test('more blobbers down than parity covers', async () => {
    await withScenario({ dataShards: 2, parityShards: 2 }, async ({ storage, download, tempDir }) => {
      const file = storage.addFile({ path: '/c.bin', content: randomBytes(1000) });
      const ticket = storage.shareFile(file.lookupHash);
      await setBehaviours(storage, [0, 1, 2], 'down');

      await assert.rejects(download(ticket), (error: unknown) => {
        assert.ok(error instanceof TransientError);
        assert.match(error.message, /1 of 4 blobbers returned matching metadata .*, but 3 must agree/);
        assert.match(error.message, /shard 0 .*could not be reached/);
        assert.equal(error.dependency, `blobbers:${ALLOCATION_ID}`);
        return true;
      });
      await assertTempDirEmpty(tempDir);
    });
  });

  test('block downloads fail on too many blobbers', async () => {
    await withScenario({ dataShards: 2, parityShards: 2 }, async ({ storage, download, tempDir }) => {
      const file = storage.addFile({ path: '/d.bin', content: randomBytes(SIX_ROWS) });
      await setBehaviours(storage, [0, 2, 3], 'download-error');

      await assert.rejects(download(storage.shareFile(file.lookupHash)), (error: unknown) => {
        assert.ok(error instanceof TransientError);
        assert.match(error.message, /1 of 4 blobbers returned rows 0-5, but 2 are needed/);
        assert.match(error.message, /HTTP 500/);
        return true;
      });
      await assertTempDirEmpty(tempDir);
    });
  });

  test('slow data blobber times out', async () => {
    await withScenario({ dataShards: 2, parityShards: 2, slowMs: 20_000 }, async (scenario) => {
      const { storage, download, logger } = scenario;
      const content = randomBytes(SIX_ROWS);
      const file = storage.addFile({ path: '/e.bin', content });
      await storage.setBehaviour(1, 'slow-download');

      const result = await download(storage.shareFile(file.lookupHash), { timeoutMs: 400 });

      await assertContent(result, content);
      assert.equal(result.rowsRebuilt, 6);
      const dropped = logger.lines.find((line) => line.msg === 'blobber dropped for this file');
      assert.equal(dropped?.shard, 1);
      assert.match(String(dropped?.reason), /timed out after 400 ms/);
    });
  });

  test('corrupt blobber found with two parity shards', async () => {
    await withScenario({ dataShards: 2, parityShards: 2 }, async ({ storage, download, logger }) => {
      const content = randomBytes(SIX_ROWS);
      const file = storage.addFile({ path: '/f.bin', content });
      await storage.setBehaviour(1, 'corrupt');

      const result = await download(storage.shareFile(file.lookupHash), { blocksPerRequest: 3 });

      await assertContent(result, content);
      const dropped = logger.lines.filter((line) => line.msg === 'blobber dropped for this file');
      assert.deepEqual(
        dropped.map((line) => line.shard),
        [1],
      );
      assert.match(String(dropped[0]?.reason), /disagree with the other shards \(corrupt data\)/);
    });
  });

  test('corrupt blobber with one parity shard', async () => {
    await withScenario({ dataShards: 2, parityShards: 1 }, async ({ storage, download, tempDir }) => {
      const file = storage.addFile({ path: '/g.bin', content: randomBytes(SIX_ROWS) });
      await storage.setBehaviour(0, 'corrupt');

      await assert.rejects(download(storage.shareFile(file.lookupHash)), (error: unknown) => {
        assert.ok(error instanceof TransientError);
        assert.match(
          error.message,
          /inconsistent pieces for rows 0-5, and 3 pieces are too few to tell which is wrong/,
        );
        return true;
      });
      await assertTempDirEmpty(tempDir);
    });
  });

  test('hash mismatch removes the temp file', async () => {
    await withScenario({ dataShards: 2, parityShards: 0 }, async ({ storage, download, tempDir }) => {
      const content = randomBytes(SIX_ROWS);
      const file = storage.addFile({ path: '/h.bin', content });
      await storage.setBehaviour(1, 'corrupt');

      await assert.rejects(
        download(storage.shareFile(file.lookupHash), { blocksPerRequest: 1 }),
        (error: unknown) => {
          assert.ok(error instanceof TransientError);
          assert.match(
            error.message,
            /the md5 of the downloaded "h.bin" is [0-9a-f]{32}, but the owner-signed content hash is/,
          );
          assert.match(error.message, new RegExp(file.actualFileHash));
          return true;
        },
      );
      await assertTempDirEmpty(tempDir);
    });
  });

  test('partial last rows and empty files', async () => {
    await withScenario({ dataShards: 3, parityShards: 1 }, async ({ storage, download }) => {
      const row = 3 * BLOCK_SIZE_BYTES;
      for (const size of [1, 2, 3, 4, BLOCK_SIZE_BYTES - 1, row - 1, row, row + 1, 2 * row + 4]) {
        const content = randomBytes(size);
        const file = storage.addFile({ path: `/sizes/${size}.bin`, content });
        const layout = shardLayout(size, 3);

        const result = await download(storage.shareFile(file.lookupHash), { blocksPerRequest: 1 });

        assert.equal(result.rowsRebuilt, 0, `${size} bytes`);
        assert.equal(layout.lastRowBytes, size - (layout.rows - 1) * row);
        await assertContent(result, content);
      }

      const empty = storage.addFile({
        path: '/sizes/empty.txt',
        content: new Uint8Array(0),
        mimeType: 'text/plain',
      });
      const result = await download(storage.shareFile(empty.lookupHash));
      assert.equal(result.contentHash, 'd41d8cd98f00b204e9800998ecf8427e');
      await assertContent(result, new Uint8Array(0));
    });
  });

  test('expired ticket', async () => {
    await withScenario({ dataShards: 2, parityShards: 1 }, async ({ storage, download }) => {
      const file = storage.addFile({ path: '/old.bin', content: randomBytes(10) });
      const now = Math.floor(Date.now() / 1000);
      const expiration = now - 3600;
      const ticket = storage.shareFile(file.lookupHash, { timestamp: now - 7200, expiration });
      const expiry = new Date(expiration * 1000).toISOString();

      assert.throws(
        () => decodeShareTicket(ticket),
        (error: unknown) => {
          assert.ok(error instanceof PermanentError);
          assert.equal(
            error.message,
            `auth ticket expired at ${expiry} (expiration ${expiration}); ask the owner to share "old.bin" again`,
          );
          return true;
        },
      );
      await assert.rejects(download(ticket), PermanentError);
      assert.equal(storage.requests.length, 0);
    });
  });

  test('encrypted share', async () => {
    await withScenario({ dataShards: 2, parityShards: 1 }, async ({ storage, download }) => {
      const file = storage.addFile({ path: '/secret.bin', content: randomBytes(10), encrypted: true });

      const privateTicket = storage.shareFile(file.lookupHash, { encrypted: true });
      assert.throws(() => decodeShareTicket(privateTicket), /encrypted shares are not supported yet/);

      // A public ticket for a file encrypted at upload is rejected once the metadata shows the key.
      await assert.rejects(download(storage.shareFile(file.lookupHash)), (error: unknown) => {
        assert.ok(error instanceof PermanentError);
        assert.equal(
          error.message,
          'shared file "secret.bin" is encrypted: encrypted shares are not supported yet',
        );
        return true;
      });
      assert.equal(storage.requests.filter((request) => request.endpoint === 'download').length, 0);
    });
  });

  test('blobber with a read price is skipped', async () => {
    await withScenario(
      { dataShards: 2, parityShards: 2 },
      async ({ storage, download, downloadRequestsBy }) => {
        const content = randomBytes(SIX_ROWS);
        const file = storage.addFile({ path: '/paid.bin', content });
        storage.setReadPrice(0, 10_000_000n);

        const result = await download(storage.shareFile(file.lookupHash));

        await assertContent(result, content);
        assert.equal(downloadRequestsBy().has(0), false, 'no blocks requested from the paid blobber');
      },
    );
  });

  test('too many blobbers with a read price', async () => {
    await withScenario({ dataShards: 2, parityShards: 2 }, async ({ storage, download, tempDir }) => {
      const file = storage.addFile({ path: '/paid.bin', content: randomBytes(1000) });
      for (const index of [0, 1, 3]) {
        storage.setReadPrice(index, 10_000_000n);
      }

      await assert.rejects(download(storage.shareFile(file.lookupHash)), (error: unknown) => {
        assert.ok(error instanceof PermanentError);
        assert.match(
          error.message,
          /1 of 4 blobbers can serve the file before the download, but 2 are needed/,
        );
        assert.match(
          error.message,
          /shard 0 .*: read price 10000000 SAS per GiB is above 0, and paid read markers are not supported/,
        );
        return true;
      });
      assert.equal(storage.requests.filter((request) => request.endpoint === 'download').length, 0);
      await assertTempDirEmpty(tempDir);
    });
  });

  test('URL guard rejects private addresses', async () => {
    await withScenario(
      { dataShards: 2, parityShards: 1 },
      async ({ storage, download }) => {
        const file = storage.addFile({ path: '/i.bin', content: randomBytes(10) });

        await assert.rejects(download(storage.shareFile(file.lookupHash)), (error: unknown) => {
          assert.ok(error instanceof PermanentError);
          assert.match(error.message, /resolves to a loopback address 127\.0\.0\.1/);
          assert.match(error.message, /ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES=true/);
          return true;
        });
        assert.equal(storage.requests.length, 0, 'no request reached a blobber');
      },
      false,
    );
  });

  test('forged metadata is dropped', async () => {
    await withScenario({ dataShards: 2, parityShards: 2 }, async ({ storage, download, logger }) => {
      const content = randomBytes(SIX_ROWS);
      const file = storage.addFile({ path: '/j.bin', content });
      await storage.setBehaviour(0, 'forged-meta');

      const result = await download(storage.shareFile(file.lookupHash));

      await assertContent(result, content);
      assert.equal(result.verified.agreeingBlobbers, 3);
      const dropped = logger.lines.find((line) => line.msg === 'blobber dropped for this file');
      assert.match(String(dropped?.reason), /content hash signature does not verify/);
    });
  });

  test('revoked share', async () => {
    await withScenario({ dataShards: 2, parityShards: 1 }, async ({ storage, download }) => {
      const file = storage.addFile({ path: '/k.bin', content: randomBytes(10) });
      const ticket = storage.shareFile(file.lookupHash);
      storage.revokeShare(file.lookupHash);

      await assert.rejects(download(ticket), (error: unknown) => {
        assert.ok(error instanceof PermanentError);
        assert.match(error.message, /HTTP 400 \(file_meta\).*share revoked/);
        return true;
      });
    });
  });

  test('altered ticket', async () => {
    await withScenario({ dataShards: 2, parityShards: 1 }, async ({ storage, download }) => {
      const file = storage.addFile({ path: '/l.bin', content: randomBytes(10) });
      const json = JSON.parse(Buffer.from(storage.shareFile(file.lookupHash), 'base64').toString('utf8'));
      json.file_name = 'other.bin';
      const altered = Buffer.from(JSON.stringify(json)).toString('base64');

      await assert.rejects(
        download(altered),
        /auth ticket signature does not verify with the public key of allocation owner/,
      );
      assert.equal(storage.requests.length, 0);
    });
  });

  test('requests ask for at most 500 blocks', async () => {
    await withScenario({ dataShards: 1, parityShards: 0 }, async ({ storage, download }) => {
      const content = randomBytes(501 * BLOCK_SIZE_BYTES + 10);
      const file = storage.addFile({ path: '/m.bin', content });
      const ticket = storage.shareFile(file.lookupHash);

      await assert.rejects(download(ticket, { blocksPerRequest: 501 }), /from 1 to 500/);
      const result = await download(ticket, { blocksPerRequest: 500 });

      await assertContent(result, content);
      const downloads = storage.requests.filter((request) => request.endpoint === 'download');
      assert.deepEqual(
        downloads.map((request) => [request.blockNum, request.numBlocks]),
        [
          ['0', '500'],
          ['500', '2'],
        ],
      );
    });
  });

  test('abort removes the temp file', async () => {
    await withScenario(
      { dataShards: 2, parityShards: 1, slowMs: 20_000 },
      async ({ storage, download, tempDir }) => {
        const file = storage.addFile({ path: '/n.bin', content: randomBytes(SIX_ROWS) });
        await setBehaviours(storage, [0, 1, 2], 'slow-download');
        const controller = new AbortController();
        setTimeout(() => controller.abort(new Error('run is stopping')), 300);

        await assert.rejects(
          download(storage.shareFile(file.lookupHash), { signal: controller.signal }),
          /run is stopping/,
        );
        await assertTempDirEmpty(tempDir);
      },
    );
  });

  test('Go encoder shards download', async (t) => {
    const folder = process.env.ZUS_REFERENCE_DATA;
    if (folder === undefined || folder === '') {
      t.skip('ZUS_REFERENCE_DATA is not set: it names the folder of Züs reference vectors (.ci/run sets it)');
      return;
    }
    // Shards made by klauspost/reedsolomon (rs-vectors.json), served as the blobbers would store them.
    const vectors = JSON.parse(readFileSync(join(folder, 'rs-vectors.json'), 'utf8')) as {
      cases: Array<{ name: string; input_len: number; input_hex?: string; shards: Array<{ hex?: string }> }>;
    };
    const vector = vectors.cases.find((item) => item.name === 'small-4+2-len23');
    assert.ok(vector?.input_hex !== undefined, 'rs-vectors.json has the small 4+2 case');
    const input = Buffer.from(vector.input_hex, 'hex');

    await withScenario({ dataShards: 4, parityShards: 2 }, async ({ storage, download }) => {
      const file = storage.addShards({
        path: '/vector.bin',
        shards: vector.shards.map((shard) => new Uint8Array(Buffer.from(shard.hex ?? '', 'hex'))),
        actualSizeBytes: vector.input_len,
        actualFileHash: createHash('md5').update(input).digest('hex'),
      });
      await storage.setBehaviour(0, 'down');

      const result = await download(storage.shareFile(file.lookupHash));

      assert.equal(result.rowsRebuilt, 1);
      await assertContent(result, input);
    });
  });

  test('memory stays bounded', async (t) => {
    await withScenario({ dataShards: 4, parityShards: 2 }, async ({ storage, tempDir }) => {
      const medium = storage.addGeneratedFile({ path: '/64MiB.bin', sizeBytes: 64 * 1024 * 1024, seed: 1 });
      const large = storage.addGeneratedFile({
        path: '/256MiB.bin',
        sizeBytes: 256 * 1024 * 1024 + 3,
        seed: 2,
      });
      const view = storage.allocationView();
      const setup = {
        tickets: [storage.shareFile(medium.lookupHash), storage.shareFile(large.lookupHash)],
        allocation: {
          ...view,
          blobbers: view.blobbers.map((blobber) => ({ ...blobber, readPriceSas: '0' })),
        },
        tempDir,
      };

      // The download runs in a fresh process without the fakes, so the growth is the download's
      // own, and memory that earlier tests freed but the allocator kept does not hide it.
      const child = spawn(
        process.execPath,
        ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', MEMORY_PROBE],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, MEMORY_PROBE_SETUP: JSON.stringify(setup) },
        },
      );
      let output = '';
      child.stdout.setEncoding('utf8').on('data', (text: string) => {
        output += text;
      });
      child.stderr.setEncoding('utf8').on('data', (text: string) => {
        output += text;
      });
      const [exitCode] = (await once(child, 'exit')) as [number | null];
      assert.equal(exitCode, 0, output);
      const figures = JSON.parse(output.trim().split('\n').at(-1) ?? '{}') as {
        collectedGrowth: number;
        naturalGrowth: number;
        sizes: number[];
      };
      t.diagnostic(
        `RSS growth with a collection every 10 ms, 64 MiB file: ${mebibytes(figures.collectedGrowth)}`,
      );
      t.diagnostic(
        `RSS growth without forced collections, 256 MiB file: ${mebibytes(figures.naturalGrowth)}`,
      );

      assert.deepEqual(figures.sizes, [64 * 1024 * 1024, 256 * 1024 * 1024 + 3]);
      // Live memory: about (2 + 1) ranges × 5 shards × 8 blocks × 64 KiB = 7.5 MiB, plus the
      // response being received.
      assert.ok(
        figures.collectedGrowth < 32 * 1024 * 1024,
        `RSS grew ${mebibytes(figures.collectedGrowth)} for 64 MiB`,
      );
      // V8 frees Buffer memory only when it collects garbage, which it starts after tens of MiB of
      // Buffer allocations, so without forced collections growth stays near that level, whatever
      // the file size.
      assert.ok(
        figures.naturalGrowth < 128 * 1024 * 1024,
        `RSS grew ${mebibytes(figures.naturalGrowth)} for 256 MiB`,
      );
    });
  });
});

function mebibytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * Downloads the two files named in MEMORY_PROBE_SETUP, the first with a garbage collection every
 * 10 ms and the second without, and prints the peak RSS growth of each as JSON.
 */
const MEMORY_PROBE = `
import { downloadShare } from ${JSON.stringify(new URL('../src/core/blobber/download.ts', import.meta.url).href)};
import { decodeShareTicket } from ${JSON.stringify(new URL('../src/core/blobber/share.ts', import.meta.url).href)};
import { createGuardedFetch } from ${JSON.stringify(new URL('../src/core/blobber/url-guard.ts', import.meta.url).href)};
import { createMemoryLogger } from ${JSON.stringify(new URL('../src/core/output/logger.ts', import.meta.url).href)};
import { createSandboxOperator } from ${JSON.stringify(new URL('../src/sandbox/blobbers.ts', import.meta.url).href)};

const setup = JSON.parse(process.env.MEMORY_PROBE_SETUP);
const allocation = {
  ...setup.allocation,
  blobbers: setup.allocation.blobbers.map((blobber) => ({ ...blobber, readPriceSas: BigInt(blobber.readPriceSas) })),
};
const operator = await createSandboxOperator();
const fetch = createGuardedFetch({ allowPrivateAddresses: true });

async function measure(encodedTicket, collect) {
  const ticket = decodeShareTicket(encodedTicket);
  globalThis.gc();
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const timer = setInterval(() => {
    if (collect) globalThis.gc();
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 10);
  const result = await downloadShare({
    ticket, allocation, blobbers: allocation.blobbers, fetch, operator, tempDir: setup.tempDir,
    logger: createMemoryLogger(), concurrency: 2, blocksPerRequest: 8, timeoutMs: 30000,
  });
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage.rss());
  const { rm } = await import('node:fs/promises');
  await rm(result.path);
  return { growth: peak - baseline, size: result.sizeBytes };
}

const collected = await measure(setup.tickets[0], true);
const natural = await measure(setup.tickets[1], false);
fetch.close();
console.log(JSON.stringify({
  collectedGrowth: collected.growth,
  naturalGrowth: natural.growth,
  sizes: [collected.size, natural.size],
}));
`;

describe('share tickets', () => {
  const OWNER = 'b'.repeat(64);
  const base = {
    client_id: '',
    owner_id: OWNER,
    allocation_id: ALLOCATION_ID,
    file_path_hash: lookupHashOf(ALLOCATION_ID, '/docs/a.pdf'),
    actual_file_hash: 'd41d8cd98f00b204e9800998ecf8427e',
    file_name: 'a.pdf',
    reference_type: 'f',
    expiration: 0,
    timestamp: 1_700_000_000,
    encrypted: false,
    signature: 'ab'.repeat(32),
  };
  const encode = (fields: Record<string, unknown>) =>
    Buffer.from(JSON.stringify({ ...base, ...fields })).toString('base64');

  test('decodes standard and URL-safe base64', () => {
    const text = encode({ file_name: 'ü?>.pdf' });
    const urlSafe = text.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    assert.equal(decodeShareTicket(text).fileName, 'ü?>.pdf');
    assert.equal(decodeShareTicket(urlSafe).fileName, 'ü?>.pdf');
    assert.equal(decodeShareTicket(` ${text}\n`).filePathHash, base.file_path_hash);
  });

  test('rejects malformed tickets', () => {
    assert.throws(() => parseShareTicket(''), /auth ticket is empty/);
    assert.throws(() => parseShareTicket('not base64!'), /auth ticket is not base64$/);
    assert.throws(() => parseShareTicket(JSON.stringify(base)), /it looks like JSON/);
    assert.throws(() => parseShareTicket(Buffer.from('{').toString('base64')), /base64 but not of JSON/);
    assert.throws(() => parseShareTicket(encode({ owner_id: 'x' })), /owner_id: expected 64 lowercase hex/);
    assert.throws(() => parseShareTicket(encode({ reference_type: 'x' })), /reference_type/);
    assert.throws(() => parseShareTicket('A'.repeat(20_000)), /over the limit of 16384/);
  });

  test('rejects shares it cannot download', () => {
    assert.throws(() => decodeShareTicket(encode({ reference_type: 'd' })), /only file shares are supported/);
    assert.throws(
      () => decodeShareTicket(encode({ expiration: base.timestamp - 1 })),
      /expires at 2023-11-14T22:13:19.000Z, before it was issued/,
    );
    const now = new Date((base.timestamp + 10) * 1000);
    assert.throws(
      () => decodeShareTicket(encode({ available_after: base.timestamp + 60 }), { now }),
      (error: unknown) =>
        error instanceof TransientError && /not available before 2023-11-14T22:14:20/.test(error.message),
    );
    assert.doesNotThrow(() => decodeShareTicket(encode({ expiration: base.timestamp + 60 }), { now }));
  });

  test('checks allocation, owner and recipient', () => {
    const ticket = decodeShareTicket(encode({}));
    const allocation = { id: ALLOCATION_ID, ownerId: OWNER };
    assert.doesNotThrow(() =>
      checkTicketForAllocation(ticket, allocation, 'c'.repeat(64), base.file_path_hash),
    );
    assert.throws(
      () => checkTicketForAllocation(ticket, { ...allocation, id: 'e'.repeat(64) }, 'c'.repeat(64)),
      /not for allocation/,
    );
    assert.throws(
      () => checkTicketForAllocation(ticket, { ...allocation, ownerId: 'f'.repeat(64) }, 'c'.repeat(64)),
      /belongs to/,
    );
    assert.throws(
      () =>
        checkTicketForAllocation(ticket, allocation, 'c'.repeat(64), lookupHashOf(ALLOCATION_ID, '/other')),
      /a file ticket opens only its own file/,
    );
    const privateTicket = decodeShareTicket(encode({ client_id: 'd'.repeat(64) }));
    assert.throws(
      () => checkTicketForAllocation(privateTicket, allocation, 'c'.repeat(64)),
      /private share for client d{64}/,
    );
  });
});

describe('fetchAllocationBlobbers', () => {
  test('feeds a download through the sharders', async () => {
    await withScenario({ dataShards: 2, parityShards: 2 }, async ({ storage, fetch, tempDir, logger }) => {
      storage.setReadPrice(3, 5n);
      const network = await startZusNetwork({ sharders: 2, allocations: [storage.allocationBody()] });
      try {
        const sharders = new ShardersClient({
          sharders: network.sharderUrls,
          timeoutMs: 2_000,
          consensusShare: 1,
          logger,
        });
        const allocation = await fetchAllocationBlobbers(sharders, ALLOCATION_ID);
        assert.deepEqual(
          allocation.blobbers.map((blobber) => [blobber.id, blobber.readPriceSas]),
          storage.blobbers.map((blobber, index) => [blobber.id, index === 3 ? 5n : 0n]),
        );

        const content = randomBytes(SIX_ROWS);
        const file = storage.addFile({ path: '/chain.bin', content });
        const result = await downloadShare({
          ticket: decodeShareTicket(storage.shareFile(file.lookupHash)),
          allocation,
          blobbers: allocation.blobbers,
          fetch,
          operator,
          tempDir,
          logger,
        });
        await assertContent(result, content);
      } finally {
        await network.close();
      }
    });
  });

  test('rejects an allocation id that is not hex', async () => {
    const sharders = new ShardersClient({
      sharders: ['http://127.0.0.1:9'],
      timeoutMs: 100,
      consensusShare: 1,
      logger: createMemoryLogger(),
    });
    await assert.rejects(fetchAllocationBlobbers(sharders, 'not-an-id'), PermanentError);
  });

  test('blobber count must match the shards', () => {
    assert.throws(
      () =>
        parseAllocationBlobbers({
          id: 'a'.repeat(64),
          tx: 'a'.repeat(64),
          owner_id: 'b'.repeat(64),
          data_shards: 2,
          parity_shards: 1,
          blobbers: [{ id: 'c'.repeat(64), url: 'http://127.0.0.1:1' }],
        }),
      /lists 1 blobbers, but has 2 data \+ 1 parity shards/,
    );
  });

  test('reads the recorded allocation in shard order', async (t) => {
    const folder = process.env.ZUS_REFERENCE_DATA;
    if (folder === undefined || folder === '') {
      t.skip('ZUS_REFERENCE_DATA is not set: point it at the folder that holds allocation.json');
      return;
    }
    // A 2021 allocation response from gosdk's sdk_test.go; its blobber_details are in another order.
    const body = JSON.parse(readFileSync(join(folder, 'allocation.json'), 'utf8')) as {
      blobbers: Array<{ id: string; url: string }>;
    };
    const allocation = parseAllocationBlobbers(body);
    assert.equal(allocation.dataShards + allocation.parityShards, 4);
    assert.deepEqual(
      allocation.blobbers.map((blobber) => blobber.id),
      body.blobbers.map((blobber) => blobber.id),
    );
    assert.ok(allocation.blobbers.every((blobber) => blobber.readPriceSas === 100_000_000n));
    assert.notEqual(allocation.ownerPublicKey, '');
  });
});
