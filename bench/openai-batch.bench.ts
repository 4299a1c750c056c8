/**
 * openai-batch-request building one batch over 2,000 shared PNG images totalling 1 GiB, run by the
 * CLI as in production against loopback fakes. The CLI downloads erasure-coded shares from fake
 * blobbers and reads the allocation from fake sharders. It uploads every image to s3rver (HTTPS,
 * path style) through the product's S3 adapter and the `.jsonl` of presigned URLs to the OpenAI
 * fake. The figures are the CLI's peak resident set size and wall time, beside a plain stream
 * copy of the same bytes over HTTP into temporary files.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32, deflateSync } from 'node:zlib';
import { generateMnemonic } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import pg from 'pg';
import S3rver from 's3rver';
import { encodeBlobberShards } from '../src/core/blobber/erasure.js';
import { migrate } from '../src/core/db/migrate.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { type FakeBlobberStorage, startFakeBlobberStorage } from '../src/sandbox/blobber-storage.js';
import { createSandboxOperator } from '../src/sandbox/blobbers.js';
import { startOpenAIFake } from '../src/sandbox/openai.js';
import { generateSelfSignedCertificate } from '../src/sandbox/tls.js';
import { startZusNetwork } from '../src/sandbox/zus-network.js';
import { createBenchDatabase } from './support/database.js';
import {
  benchDatabaseUrl,
  loadAverage,
  printHeader,
  readMachineInfo,
  waitForQuietMachine,
} from './support/environment.js';
import { median, round, summaryOf, timeProcess } from './support/measure.js';
import { writeResultRows } from './support/results.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const BIN = fileURLToPath(new URL('../bin/zbox-workers', import.meta.url));
const RSS_PRELOAD = new URL('./support/rss-report.mjs', import.meta.url).href;
const PLAIN_COPY_SCRIPT = fileURLToPath(new URL('./support/plain-copy.mjs', import.meta.url));

const FILES = 2_000;
const TOTAL_BYTES = 1024 ** 3;
/** Images of the smaller batch run once, to tell memory that grows with the data from a fixed cost. */
const SMALL_FILES = 100;
/** Distinct images; file i is image i mod this, so the fakes hold a few MiB instead of 1.5 GiB of shards. */
const DISTINCT_IMAGES = 8;
/** The free-allocation shard counts of the demo's storage config (src/commands/demo.ts). */
const DATA_SHARDS = 4;
const PARITY_SHARDS = 2;
const SHARDERS = 3;
/** Shares the worker downloads at once within one task (the command's SHARE_CONCURRENCY). */
const SHARE_CONCURRENCY = 2;
const MAX_PAIRS = 3;
/** No further pair starts once this much time has passed, so the benchmark stays within about ten minutes. */
const TIME_BUDGET_SECONDS = 420;
const DEFAULT_DEADLINE_SECONDS = 240;
const DEFAULT_GRACE_SECONDS = 30;
const ALLOCATION_ID = 'b5'.repeat(32);
const BUCKET = 'zbox-batch-images';
/** s3rver's built-in account; a loopback test value, not a secret. */
const S3RVER_KEY = 'S3RVER';
const OPENAI_KEY = 'sk-bench-openai-batch-loopback';
const MIB = 1024 * 1024;

interface RssReport {
  maxRssBytes: number;
  userCpuMs: number;
  systemCpuMs: number;
  /** [ms since start, RSS, V8 heap used, external], sizes in bytes. */
  samples: Array<[number, number, number, number]>;
}

interface ProductRun {
  wallMs: number;
  durationMs: number;
  rss: RssReport;
  /** CPU time of the CLI process, user plus system. */
  cpuMs: number;
  lines: number;
  jsonlBytes: number;
  s3Objects: number;
  s3Bytes: number;
  blobberBytes: number;
  /** CPU time of this process (the fakes and s3rver) during the run. */
  fakesCpuMs: number;
}

interface BaselineRun {
  wallMs: number;
  rss: RssReport;
}

interface Fixture {
  databaseUrl: string;
  folder: string;
  certPath: string;
  keyPath: string;
  operatorPath: string;
  sharderUrls: string[];
  storage: FakeBlobberStorage;
  shareIds: bigint[];
  /** Size of each file in bytes, by share position. */
  fileSizes: number[];
  plainUrl: string;
}

async function main(): Promise<void> {
  const serverUrl = benchDatabaseUrl();
  const quiet = await waitForQuietMachine();
  const machine = await readMachineInfo(serverUrl);
  printHeader('openai-batch: one batch of 2,000 images (1 GiB) from fake blobbers', machine, quiet, [
    `one openai_batch_tasks row naming ${FILES} shares: one task becomes one batch, and the command sets no limit`,
    `  on shares per task; ${FILES} PNG images of 536,870 or 536,871 bytes, 1 GiB in all: ${DISTINCT_IMAGES} distinct images of`,
    `  random pixels, each under ${FILES / DISTINCT_IMAGES} paths, erasure-coded on ${DATA_SHARDS} + ${PARITY_SHARDS} fake blobbers as the Go SDK`,
    `  uploads them; ${SHARDERS} fake sharders serve the allocation`,
    'images, not text: text is embedded in the .jsonl, and 1 GiB of text would break the 200 MB input-file limit;',
    '  each image goes to s3rver 3.7 over HTTPS (self-signed certificate trusted via NODE_EXTRA_CA_CERTS,',
    '  path style) through the product S3 adapter, and its line carries a presigned https URL',
    'subject: node bin/zbox-workers openai-batch-request --json with ZBOX_BATCH_IMAGES=s3 and the defaults',
    `  otherwise (task concurrency 8, ${SHARE_CONCURRENCY} shares downloaded at once per task),`,
    `  except ZBOX_RUN_DEADLINE_SECONDS=900, so a slow run still finishes; whether it fits the default`,
    `  ${DEFAULT_DEADLINE_SECONDS} s deadline + ${DEFAULT_GRACE_SECONDS} s grace is printed`,
    `baseline: a plain stream copy, a node process that GETs the same ${FILES} files whole from a plain HTTP`,
    `  server in this process, ${SHARE_CONCURRENCY} at a time over one keep-alive agent, streams each into a`,
    '  temporary file with stream.pipeline, then deletes them; it does no erasure decoding, MD5, signature',
    '  checks, database writes or S3 upload, so the ratio shows what the product adds to moving the bytes once',
    'peak RSS: a --import preload in each child reports getrusage ru_maxrss at exit and samples RSS, V8 heap',
    '  and external memory every 250 ms; wall time: spawn to exit; the fakes, s3rver and this process share',
    '  the 2 cores with the child',
    `memory bound: one extra run over the first ${SMALL_FILES} images before the pairs; if the product held files in`,
    '  memory, its peak RSS would grow with the data from that run to the full one',
    `up to ${MAX_PAIRS} pairs of the full batch and the plain copy (alternating which goes first) while they fit in`,
    `  ${TIME_BUDGET_SECONDS} s; medians reported, the wall-time ratio as the median of per-pair ratios`,
  ]);

  const folder = mkdtempSync(join(tmpdir(), 'zbox-bench-batch-'));
  const cleanup: Array<() => Promise<void> | void> = [() => rmSync(folder, { recursive: true, force: true })];
  // An interrupted benchmark still removes its folder (about 1 GiB of s3rver objects) and its database.
  const onSignal = (signal: NodeJS.Signals) => {
    console.error(`${signal}: cleaning up`);
    void runCleanup(cleanup).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const database = await createBenchDatabase(serverUrl, 'openai_batch');
    cleanup.push(() => database.drop());
    await migrate(database.url, createMemoryLogger());

    const { certPath, keyPath } = await writeCertificate(folder);
    const operatorPath = join(folder, 'operator.json');
    writeFileSync(operatorPath, JSON.stringify({ mnemonics: generateMnemonic(wordlist, 256) }), {
      mode: 0o600,
    });

    const setupStarted = performance.now();
    const images = buildImages();
    const owner = await createSandboxOperator();
    const storage = await startFakeBlobberStorage({
      allocationId: ALLOCATION_ID,
      dataShards: DATA_SHARDS,
      parityShards: PARITY_SHARDS,
      owner,
    });
    cleanup.push(() => storage.close());
    const network = await startZusNetwork({ sharders: SHARDERS, allocations: [storage.allocationBody()] });
    cleanup.push(() => network.close());
    const plain = await startPlainServer(images);
    cleanup.push(() => closeServer(plain.server));
    const shareIds = await storeShares(database.url, storage, images);
    console.log(
      `setup: ${FILES} shares stored and ticketed in ${round((performance.now() - setupStarted) / 1000, 1)} s`,
    );

    const fixture: Fixture = {
      databaseUrl: database.url,
      folder,
      certPath,
      keyPath,
      operatorPath,
      sharderUrls: network.sharderUrls,
      storage,
      shareIds,
      fileSizes: images.map((image) => image.bytes.length),
      plainUrl: plain.url,
    };

    const small = await runProduct(fixture, 'small', SMALL_FILES);
    console.log(
      `small batch: ${SMALL_FILES} of the images (${mib(small.s3Bytes)} MiB), product ${round(small.wallMs / 1000, 1)} s, ` +
        `peak RSS ${mib(small.rss.maxRssBytes)} MiB`,
    );
    const { products, baselines, ratios } = await measurePairs(fixture);
    writeResultRows([summarise(small, products, baselines, ratios)], machine, quiet, loadAverage());
  } finally {
    await runCleanup(cleanup);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Runs the cleanup steps, last added first, each once, reporting a failed step and going on. */
async function runCleanup(steps: Array<() => Promise<void> | void>): Promise<void> {
  for (let step = steps.pop(); step !== undefined; step = steps.pop()) {
    try {
      await step();
    } catch (error) {
      console.error(`cleanup failed: ${String(error)}`);
    }
  }
}

/**
 * Runs up to MAX_PAIRS pairs of the full batch and the plain copy, alternating which goes first,
 * while another pair fits in TIME_BUDGET_SECONDS.
 */
async function measurePairs(fixture: Fixture) {
  const products: ProductRun[] = [];
  const baselines: BaselineRun[] = [];
  const ratios: number[] = [];
  const started = performance.now();
  for (let pair = 1; pair <= MAX_PAIRS; pair += 1) {
    const elapsedSeconds = (performance.now() - started) / 1000;
    const pairSeconds = pair === 1 ? 0 : elapsedSeconds / (pair - 1);
    if (pair > 1 && elapsedSeconds + pairSeconds > TIME_BUDGET_SECONDS) {
      console.log(
        `pair ${pair} skipped: another ${Math.round(pairSeconds)} s pair would exceed the ${TIME_BUDGET_SECONDS} s budget`,
      );
      break;
    }
    let product: ProductRun;
    let baseline: BaselineRun;
    if (pair % 2 === 1) {
      product = await runProduct(fixture, `pair-${pair}`, FILES);
      baseline = await runBaseline(fixture, pair);
    } else {
      baseline = await runBaseline(fixture, pair);
      product = await runProduct(fixture, `pair-${pair}`, FILES);
    }
    products.push(product);
    baselines.push(baseline);
    ratios.push(product.wallMs / baseline.wallMs);
    console.log(
      `pair ${pair}: product ${round(product.wallMs / 1000, 1)} s (run summary ${round(product.durationMs / 1000, 1)} s), ` +
        `peak RSS ${mib(product.rss.maxRssBytes)} MiB, CPU ${round(product.cpuMs / 1000, 1)} s ` +
        `(fakes and s3rver in this process ${round(product.fakesCpuMs / 1000, 1)} s); ` +
        `plain copy ${round(baseline.wallMs / 1000, 1)} s, peak RSS ${mib(baseline.rss.maxRssBytes)} MiB; ` +
        `ratio ${round(product.wallMs / baseline.wallMs, 2)}`,
    );
    console.log(
      `  product by quarter of the run, peak MiB: RSS ${describeQuarters(product.rss, 1)}, ` +
        `V8 heap used ${describeQuarters(product.rss, 2)}, external ${describeQuarters(product.rss, 3)}`,
    );
    console.log(
      `  .jsonl ${product.lines} lines, ${product.jsonlBytes} bytes; S3 ${product.s3Objects} objects, ${product.s3Bytes} bytes; ` +
        `${product.blobberBytes} bytes downloaded from the blobbers (${round(product.blobberBytes / TOTAL_BYTES, 3)} × the files)`,
    );
  }
  return { products, baselines, ratios };
}

/** Prints the medians and returns the RESULTS.md row. */
function summarise(small: ProductRun, products: ProductRun[], baselines: BaselineRun[], ratios: number[]) {
  const productWall = median(products.map((run) => run.wallMs));
  const productRss = median(products.map((run) => run.rss.maxRssBytes));
  const baselineWall = median(baselines.map((run) => run.wallMs));
  const baselineRss = median(baselines.map((run) => run.rss.maxRssBytes));
  const ratio = median(ratios);
  const largestRss = Math.max(...products.map((run) => run.rss.maxRssBytes));
  const inRunGrowth = median(
    products.map((run) => {
      const peaks = quarterPeaks(run.rss, 1);
      return (peaks[3] ?? 0) - (peaks[0] ?? 0);
    }),
  );
  const slowestMs = Math.max(...products.map((run) => run.durationMs));
  const fitsDeadline = slowestMs <= (DEFAULT_DEADLINE_SECONDS + DEFAULT_GRACE_SECONDS) * 1000;
  const deadline = `${fitsDeadline ? 'within' : 'beyond'} the default ${DEFAULT_DEADLINE_SECONDS} s deadline + ${DEFAULT_GRACE_SECONDS} s grace`;
  console.log(
    `median: product ${round(productWall / 1000, 1)} s, peak RSS ${mib(productRss)} MiB (largest ${mib(largestRss)} MiB); ` +
      `plain copy ${round(baselineWall / 1000, 1)} s, peak RSS ${mib(baselineRss)} MiB; wall-time ratio ${round(ratio, 2)} ` +
      `(${describeCount(products.length)})`,
  );
  console.log(
    `RSS growth from the first to the last quarter of a run ${mib(inRunGrowth)} MiB (median); ` +
      `slowest run summary ${round(slowestMs / 1000, 1)} s, ${deadline}`,
  );

  // Memory that held files would grow with the data: the images the full batch adds to the small
  // one may add under a tenth of their bytes to the peak RSS.
  const addedDataBytes = TOTAL_BYTES - small.s3Bytes;
  const addedRss = largestRss - small.rss.maxRssBytes;
  const bounded = addedRss < addedDataBytes / 10;
  return {
    benchmark: 'openai-batch: 2,000 images, 1 GiB',
    figures:
      `product peak RSS ${mib(productRss)} MiB, wall ${round(productWall / 1000, 1)} s; ` +
      `plain stream copy peak RSS ${mib(baselineRss)} MiB, wall ${round(baselineWall / 1000, 1)} s; ` +
      `wall-time ratio ${round(ratio, 2)} (${describeCount(products.length)}); ` +
      `${SMALL_FILES} images (${mib(small.s3Bytes)} MiB): peak RSS ${mib(small.rss.maxRssBytes)} MiB; ` +
      `RSS growth first to last quarter of a run ${mib(inRunGrowth)} MiB; one task, ${DATA_SHARDS}+${PARITY_SHARDS} blobbers, ` +
      `images to s3rver over HTTPS, .jsonl ${products[0]?.jsonlBytes ?? 0} bytes; slowest run ${round(slowestMs / 1000, 1)} s (${deadline})`,
    goal:
      `peak RSS bounded (streams, never a whole file in memory): from ${SMALL_FILES} to ${FILES} images it grows by ` +
      'under a tenth of the added data; wall time beside a plain copy (no target)',
    met:
      `${bounded ? 'yes' : 'no'}: peak RSS ${mib(largestRss)} MiB for ${mib(TOTAL_BYTES)} MiB of images ` +
      `(${round((100 * largestRss) / TOTAL_BYTES, 0)}%); ` +
      `${mib(addedRss)} MiB more than for ${SMALL_FILES} images, ${bounded ? '<' : '≥'} ${mib(addedDataBytes / 10)} MiB; ` +
      `wall time ${round(ratio, 2)}× the plain copy`,
  };
}

// ---------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------

/** Runs the CLI over one task naming the first `files` shares, checks the batch and S3, and returns the figures. */
async function runProduct(fixture: Fixture, label: string, files: number): Promise<ProductRun> {
  await resetTask(fixture, fixture.shareIds.slice(0, files));
  const runFolder = join(fixture.folder, `product-${label}`);
  const s3Folder = join(runFolder, 's3rver');
  const tempFolder = join(runFolder, 'tmp');
  const reportPath = join(runFolder, 'rss.json');
  mkdirSync(s3Folder, { recursive: true });
  mkdirSync(tempFolder, { recursive: true });

  const s3 = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: s3Folder,
    key: readFileSync(fixture.keyPath),
    cert: readFileSync(fixture.certPath),
    configureBuckets: [{ name: BUCKET, configs: [] }],
  });
  const s3Address = await s3.run();
  const openai = await startOpenAIFake({ apiKey: OPENAI_KEY });
  const blobberRequestsBefore = fixture.storage.requests.length;
  const fakesCpuBefore = process.cpuUsage();
  try {
    const env = {
      BENCH_RSS_REPORT: reportPath,
      NODE_EXTRA_CA_CERTS: fixture.certPath,
      DATABASE_URL: fixture.databaseUrl,
      ZUS_SHARDERS: fixture.sharderUrls.join(','),
      ZBOX_OPERATOR_WALLET: fixture.operatorPath,
      ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES: 'true',
      OPENAI_API_KEY: OPENAI_KEY,
      OPENAI_BASE_URL: openai.url,
      ZBOX_BATCH_IMAGES: 's3',
      ZBOX_S3_BUCKET: BUCKET,
      ZBOX_S3_ENDPOINT: `https://127.0.0.1:${s3Address.port}`,
      ZBOX_S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: S3RVER_KEY,
      AWS_SECRET_ACCESS_KEY: S3RVER_KEY,
      ZBOX_TMP_DIR: tempFolder,
      // The measured run must finish even when it is slower than the default deadline allows.
      ZBOX_RUN_DEADLINE_SECONDS: '900',
    };
    const run = await timeProcess(
      process.execPath,
      ['--import', RSS_PRELOAD, BIN, 'openai-batch-request', '--json'],
      { cwd: REPO_ROOT, env },
    );
    const fakesCpu = process.cpuUsage(fakesCpuBefore);
    const summary = summaryOf(run);
    const status = await taskStatus(fixture.databaseUrl);
    if (run.code !== 0 || status.status !== 'succeeded' || status.inputFileId === null) {
      throw new Error(
        `openai-batch-request exited ${run.code} with the task ${status.status} (${status.lastError ?? 'no error'}); ` +
          `expected 0 and succeeded; stderr:\n${run.stderr.slice(0, 2000)}`,
      );
    }

    const jsonl = openai.fileContent(status.inputFileId) ?? '';
    const expectedBytes = fixture.fileSizes.slice(0, files).reduce((sum, size) => sum + size, 0);
    const batch = checkBatch(jsonl, s3Folder, files, expectedBytes);
    const rss = readRssReport(reportPath);
    const blobberBytes = fixture.storage.requests
      .slice(blobberRequestsBefore)
      .filter((request) => request.endpoint === 'download')
      .reduce((sum, request) => sum + request.bodyBytes, 0);
    return {
      wallMs: run.wallMs,
      durationMs: Number(summary.duration_ms),
      rss,
      cpuMs: rss.userCpuMs + rss.systemCpuMs,
      lines: batch.lines,
      jsonlBytes: Buffer.byteLength(jsonl),
      s3Objects: batch.s3Objects,
      s3Bytes: batch.s3Bytes,
      blobberBytes,
      fakesCpuMs: Math.round((fakesCpu.user + fakesCpu.system) / 1000),
    };
  } finally {
    await openai.close();
    await s3.close();
    rmSync(runFolder, { recursive: true, force: true });
  }
}

/**
 * Checks that the uploaded `.jsonl` has one line with an https image URL per file and that s3rver
 * stored one object per file with all the bytes. Throws otherwise.
 */
function checkBatch(jsonl: string, s3Folder: string, files: number, expectedBytes: number) {
  const lines = jsonl.trimEnd().split('\n');
  const httpsImages = lines.filter((line) => line.includes('"url":"https://127.0.0.1:')).length;
  const objects = s3Objects(s3Folder);
  const complete =
    lines.length === files &&
    httpsImages === files &&
    objects.count === files &&
    objects.bytes === expectedBytes;
  if (!complete) {
    throw new Error(
      `the batch has ${lines.length} lines (${httpsImages} with an https image URL) and S3 ${objects.count} objects of ` +
        `${objects.bytes} bytes; expected ${files} of each and ${expectedBytes} bytes`,
    );
  }
  return { lines: lines.length, s3Objects: objects.count, s3Bytes: objects.bytes };
}

async function runBaseline(fixture: Fixture, pair: number): Promise<BaselineRun> {
  const runFolder = join(fixture.folder, `baseline-${pair}`);
  const copyFolder = join(runFolder, 'copy');
  mkdirSync(copyFolder, { recursive: true });
  const reportPath = join(runFolder, 'rss.json');
  try {
    const run = await timeProcess(
      process.execPath,
      [
        '--import',
        RSS_PRELOAD,
        PLAIN_COPY_SCRIPT,
        fixture.plainUrl,
        String(FILES),
        String(SHARE_CONCURRENCY),
        copyFolder,
      ],
      { cwd: REPO_ROOT, env: { BENCH_RSS_REPORT: reportPath } },
    );
    const result =
      run.code === 0 ? (JSON.parse(run.stdout.trim()) as { files: number; bytes: number }) : undefined;
    if (result?.files !== FILES || result.bytes !== TOTAL_BYTES || existsSync(copyFolder)) {
      throw new Error(
        `the plain copy exited ${run.code} with ${run.stdout.trim()}; expected ${FILES} files of ${TOTAL_BYTES} bytes ` +
          `and its folder removed; stderr:\n${run.stderr.slice(0, 2000)}`,
      );
    }
    return { wallMs: run.wallMs, rss: readRssReport(reportPath) };
  } finally {
    rmSync(runFolder, { recursive: true, force: true });
  }
}

function readRssReport(path: string): RssReport {
  if (!existsSync(path)) {
    throw new Error(`missing RSS report ${path}: the child process crashed or was killed before writing it`);
  }
  return JSON.parse(readFileSync(path, 'utf8')) as RssReport;
}

/** Peak of one sampled figure (1 RSS, 2 heap used, 3 external) in each quarter of the run's duration, in bytes. */
function quarterPeaks(report: RssReport, figure: 1 | 2 | 3 = 1): number[] {
  const end = report.samples.at(-1)?.[0] ?? 1;
  const peaks = [0, 0, 0, 0];
  for (const sample of report.samples) {
    const quarter = Math.min(3, Math.floor((sample[0] / end) * 4));
    peaks[quarter] = Math.max(peaks[quarter] ?? 0, sample[figure]);
  }
  return peaks;
}

function describeQuarters(report: RssReport, figure: 1 | 2 | 3 = 1): string {
  return quarterPeaks(report, figure)
    .map((bytes) => mib(bytes))
    .join(' / ');
}

function describeCount(pairs: number): string {
  if (pairs === 1) {
    return `1 pair: a second would not fit the ${TIME_BUDGET_SECONDS} s budget`;
  }
  return `median of ${pairs} pairs`;
}

function mib(bytes: number): number {
  return round(bytes / MIB, 1);
}

// ---------------------------------------------------------------------------------------------
// Fixture: images, shares, servers
// ---------------------------------------------------------------------------------------------

interface ImageFile {
  bytes: Buffer;
  shards: Uint8Array[];
  md5: string;
}

/**
 * Returns the content of each of the FILES files: valid PNGs of random pixels, DISTINCT_IMAGES of
 * them, padded with a tEXt chunk to exactly their size. The sizes differ by at most one byte and
 * add up to exactly TOTAL_BYTES.
 */
function buildImages(): ImageFile[] {
  const baseSize = Math.floor(TOTAL_BYTES / FILES);
  const largerFiles = TOTAL_BYTES - baseSize * FILES;
  const variants = new Map<string, ImageFile>();
  const pixelSets = Array.from({ length: DISTINCT_IMAGES }, () => randomPixels(418, 418));
  return Array.from({ length: FILES }, (_, index) => {
    const size = index < largerFiles ? baseSize + 1 : baseSize;
    const image = index % DISTINCT_IMAGES;
    const key = `${image}:${size}`;
    let variant = variants.get(key);
    if (variant === undefined) {
      const bytes = pngOfSize(pixelSets[image] as Buffer, 418, 418, size);
      variant = {
        bytes,
        shards: encodeBlobberShards(bytes, DATA_SHARDS, PARITY_SHARDS),
        md5: createHash('md5').update(bytes).digest('hex'),
      };
      variants.set(key, variant);
    }
    return variant;
  });
}

/** Scanlines of an 8-bit RGB image, each with filter byte 0, of random pixels. */
function randomPixels(width: number, height: number): Buffer {
  const rows = Buffer.alloc(height * (1 + 3 * width));
  for (let row = 0; row < height; row += 1) {
    randomBytes(3 * width).copy(rows, row * (1 + 3 * width) + 1);
  }
  return rows;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(data.length, 0);
  header.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(data, crc32(header.subarray(4))), 0);
  return Buffer.concat([header, data, crc]);
}

function pngOfSize(scanlines: Buffer, width: number, height: number, sizeBytes: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit depth, RGB colour, deflate, adaptive filtering, no interlace
  const head = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(scanlines, { level: 0 })),
  ]);
  const end = pngChunk('IEND', Buffer.alloc(0));
  const keyword = Buffer.from('Comment\0', 'latin1');
  const padding = sizeBytes - head.length - end.length - 12 - keyword.length;
  if (padding < 0) {
    throw new RangeError(`a ${width}×${height} PNG does not fit in ${sizeBytes} bytes`);
  }
  const text = pngChunk('tEXt', Buffer.concat([keyword, Buffer.alloc(padding, 'x')]));
  return Buffer.concat([head, text, end]);
}

/** Stores every file on the fake blobbers, shares it, and inserts its share_infos row; returns the share ids. */
async function storeShares(url: string, storage: FakeBlobberStorage, images: ImageFile[]): Promise<bigint[]> {
  const tickets: string[] = [];
  const lookupHashes: string[] = [];
  const names: string[] = [];
  images.forEach((image, index) => {
    const path = `/pictures/batch/image-${String(index).padStart(4, '0')}.png`;
    const stored = storage.addShards({
      path,
      shards: image.shards,
      actualSizeBytes: image.bytes.length,
      actualFileHash: image.md5,
      mimeType: 'image/png',
    });
    tickets.push(storage.shareFile(stored.lookupHash));
    lookupHashes.push(stored.lookupHash);
    names.push(path);
  });
  return withClient(url, async (client) => {
    const result = await client.query<{ id: string }>(
      `INSERT INTO share_infos (user_id, auth_ticket, lookup_hash, file_name)
       SELECT 'bench-user', ticket, lookup_hash, name
       FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS s(ticket, lookup_hash, name, position)
       ORDER BY position
       RETURNING id`,
      [tickets, lookupHashes, names],
    );
    return result.rows.map((row) => BigInt(row.id));
  });
}

async function resetTask(fixture: Fixture, shareIds: bigint[]): Promise<void> {
  await withClient(fixture.databaseUrl, async (client) => {
    await client.query('TRUNCATE openai_batch_tasks, batch_image_uploads, zbox_runs CASCADE');
    await client.query(
      `INSERT INTO openai_batch_tasks (user_id, prompt, system_prompt, model, share_info_ids)
       VALUES ('bench-user', 'Describe this picture.', 'Answer in one sentence.', 'gpt-4o-mini', $1::bigint[])`,
      [shareIds.map(String)],
    );
  });
}

async function taskStatus(url: string) {
  return withClient(url, async (client) => {
    const result = await client.query<{
      status: string;
      input_file_id: string | null;
      last_error: string | null;
    }>('SELECT status, input_file_id, last_error FROM openai_batch_tasks');
    const row = result.rows[0];
    return {
      status: row?.status ?? 'missing',
      inputFileId: row?.input_file_id ?? null,
      lastError: row?.last_error ?? null,
    };
  });
}

/** Counts the objects s3rver stored (`<key>._S3rver_object` files) and their bytes. */
function s3Objects(directory: string): { count: number; bytes: number } {
  let count = 0;
  let bytes = 0;
  for (const entry of readdirSync(directory, { recursive: true, withFileTypes: true })) {
    if (entry.isFile() && entry.name.endsWith('._S3rver_object')) {
      count += 1;
      bytes += statSync(join(entry.parentPath, entry.name)).size;
    }
  }
  return { count, bytes };
}

/** Writes a self-signed certificate for 127.0.0.1 and its key to `folder`. */
async function writeCertificate(folder: string): Promise<{ certPath: string; keyPath: string }> {
  const { key, certificate } = await generateSelfSignedCertificate();
  const certPath = join(folder, 's3-cert.pem');
  const keyPath = join(folder, 's3-key.pem');
  writeFileSync(certPath, certificate);
  writeFileSync(keyPath, key, { mode: 0o600 });
  return { certPath, keyPath };
}

/** Serves file i whole on `GET /files/<i>`, for the plain copy. */
async function startPlainServer(images: ImageFile[]): Promise<{ server: Server; url: string }> {
  const server = createServer((request, response) => {
    const match = /^\/files\/(\d+)$/.exec(request.url ?? '');
    const image = match === null ? undefined : images[Number(match[1])];
    if (image === undefined) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': 'image/png', 'content-length': image.bytes.length });
    response.end(image.bytes);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

await main();
