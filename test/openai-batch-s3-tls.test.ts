/**
 * openai-batch-request end to end with batch images in S3 over HTTPS. The compiled CLI runs in a
 * child process against the fake Züs network and blobbers, the fake OpenAI, and s3rver's request
 * handler behind an HTTPS server on 127.0.0.1 that records each request. That server has a
 * throw-away self-signed certificate. The worker keeps certificate verification on, so it trusts
 * the certificate only through NODE_EXTRA_CA_CERTS, which Node reads at process start. The test
 * itself trusts it only through an agent whose `ca` is that certificate alone. Run
 * `npm run build` first.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Agent, createServer as createHttpsServer, get as httpsGet, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { MAX_PRESIGN_SECONDS } from '../src/core/storage/s3.js';
import { type OpenAIFake, startOpenAIFake } from '../src/sandbox/openai.js';
import { generateSelfSignedCertificate, type SelfSignedCertificate } from '../src/sandbox/tls.js';
import type { ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { type BatchShareFixture, startBatchShareFixture } from './support/batch-shares.js';
import { type CliResult, runCli } from './support/cli.js';
import type { TestDatabase } from './support/database.js';

const API_KEY = 'sk-test-batch-s3-tls';
const ALLOCATION_ID = 'cd'.repeat(32);
const BUCKET = 'zbox-batch-images';
/** The account s3rver creates by default. These are test values, not secrets. */
const ACCESS_KEY_ID = 'S3RVER';
const SECRET_ACCESS_KEY = 'S3RVER';
/** OpenAI's batch completion window, which every presigned image URL must outlive. */
const COMPLETION_WINDOW_SECONDS = 24 * 3600;
/** Margin passed to the worker. It differs from the default (24) to show that the worker reads it. */
const URL_MARGIN_HOURS = 36;
/** The worker keeps an uploaded image for one hour after its URL expires. */
const DELETE_AFTER_URL_EXPIRY_SECONDS = 3600;
/** Part size of lib-storage's `Upload` (its default). A larger body goes up as a multipart upload. */
const UPLOAD_PART_BYTES = 5 * 1024 * 1024;

// Only the first bytes decide the type, so a signature followed by random bytes is a valid image
// for the worker. The large PNG is above UPLOAD_PART_BYTES.
const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  randomBytes(2_000),
]);
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(3_000)]);
const LARGE_PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  randomBytes(6 * 1024 * 1024),
]);

const IMAGES: ReadonlyArray<{ path: string; content: Buffer; mime: string }> = [
  { path: '/pictures/small.png', content: PNG, mime: 'image/png' },
  { path: '/pictures/photo.jpg', content: JPEG, mime: 'image/jpeg' },
  { path: '/pictures/large.png', content: LARGE_PNG, mime: 'image/png' },
];

let database: TestDatabase;
let pool: DatabasePool;
let network: ZusNetworkFake;
let openai: OpenAIFake;
let s3rver: S3rver;
/** HTTPS server in front of s3rver's request handler, so every request to S3 is recorded. */
let s3Server: Server;
let s3Url: string;
/** Requests that reached the S3 server, in arrival order. */
const s3Requests: Array<{ method: string; path: string; query: string[] }> = [];
let s3: S3Client;
let tls: SelfSignedCertificate;
/** File holding the certificate, for NODE_EXTRA_CA_CERTS of the CLI. */
let certificatePath: string;
/** Agent that trusts the test certificate and nothing else. */
let trustingAgent: Agent;
let folder: string;
let operatorFile: string;
let shares: Map<string, bigint>;

let fixture: BatchShareFixture;

before(async () => {
  fixture = await startBatchShareFixture(
    'openai_batch_s3_tls',
    ALLOCATION_ID,
    IMAGES.map((image) => [image.path, image.content] as const),
  );
  ({ database, pool, network, folder, operatorFile, shares } = fixture);

  tls = await generateSelfSignedCertificate();
  certificatePath = join(folder, 'certificate.pem');
  writeFileSync(certificatePath, tls.certificate);
  trustingAgent = new Agent({ ca: tls.certificate, keepAlive: false });
  s3rver = new S3rver({
    silent: true,
    directory: join(folder, 's3rver'),
    configureBuckets: [{ name: BUCKET, configs: [] }],
  });
  await s3rver.configureBuckets();
  const handleS3Request = s3rver.callback();
  s3Server = createHttpsServer({ key: tls.key, cert: tls.certificate }, (request, response) => {
    const url = new URL(request.url ?? '/', 'https://127.0.0.1');
    s3Requests.push({
      method: request.method ?? '',
      path: decodeURIComponent(url.pathname),
      query: [...url.searchParams.keys()].sort(),
    });
    handleS3Request(request, response);
  });
  await new Promise<void>((resolve) => s3Server.listen(0, '127.0.0.1', resolve));
  s3Url = `https://127.0.0.1:${(s3Server.address() as AddressInfo).port}`;
  s3 = new S3Client({
    region: 'us-east-1',
    endpoint: s3Url,
    forcePathStyle: true,
    credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY },
    requestHandler: { httpsAgent: trustingAgent },
  });
});

beforeEach(async () => {
  await openai?.close();
  openai = await startOpenAIFake({ apiKey: API_KEY });
});

after(async () => {
  s3?.destroy();
  trustingAgent?.destroy();
  s3Server?.closeAllConnections();
  await Promise.all([
    openai?.close(),
    new Promise((resolve) => (s3Server ? s3Server.close(resolve) : resolve(undefined))),
  ]);
  await fixture?.close();
});

/** Builds the worker's environment. The test certificate is trusted unless `trustCertificate` is false. */
function env(options: { trustCertificate: boolean; extra?: Record<string, string> }) {
  return {
    DATABASE_URL: database.url,
    ZUS_SHARDERS: network.sharderUrls.join(','),
    ZBOX_OPERATOR_WALLET: operatorFile,
    ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES: 'true',
    OPENAI_API_KEY: API_KEY,
    OPENAI_BASE_URL: openai.url,
    ZBOX_TMP_DIR: folder,
    ZBOX_BATCH_IMAGES: 's3',
    ZBOX_BATCH_URL_MARGIN_HOURS: String(URL_MARGIN_HOURS),
    ZBOX_S3_BUCKET: BUCKET,
    ZBOX_S3_REGION: 'us-east-1',
    ZBOX_S3_ENDPOINT: s3Url,
    ZBOX_S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: SECRET_ACCESS_KEY,
    ...(options.trustCertificate ? { NODE_EXTRA_CA_CERTS: certificatePath } : {}),
    ...options.extra,
  };
}

async function addTask(paths: readonly string[]): Promise<bigint> {
  const ids = paths.map((path) => {
    const id = shares.get(path);
    assert.ok(id !== undefined, `no share for ${path}`);
    return id;
  });
  return pool.oneFirst(sql.type(z.object({ id: z.bigint() }))`
    INSERT INTO openai_batch_tasks (user_id, prompt, model, share_info_ids)
    VALUES ('user-1', 'Describe this picture.', 'gpt-4o-mini', ${sql.array(ids, 'int8')})
    RETURNING id`);
}

const taskRow = z.object({
  status: z.string(),
  input_file_id: z.string().nullable(),
  batch_id: z.string().nullable(),
  file_reasons: z.record(z.string(), z.string()),
  last_error: z.string().nullable(),
  attempts: z.number(),
});

async function readTask(id: bigint) {
  return pool.one(sql.type(taskRow)`
    SELECT status, input_file_id, batch_id, file_reasons, last_error, attempts
    FROM openai_batch_tasks WHERE id = ${id}`);
}

const uploadRow = z.object({
  share_info_id: z.bigint(),
  s3_key: z.string(),
  /** delete_after in milliseconds since the Unix epoch, at the database's full precision. */
  delete_after_ms: z.number(),
  deleted_at: z.number().nullable(),
});

async function readUploads(taskId: bigint) {
  return pool.any(sql.type(uploadRow)`
    SELECT share_info_id, s3_key,
      (extract(epoch FROM delete_after) * 1000)::float8 AS delete_after_ms,
      (extract(epoch FROM deleted_at) * 1000)::float8 AS deleted_at
    FROM batch_image_uploads WHERE task_id = ${taskId} ORDER BY share_info_id`);
}

function imageKey(taskId: bigint, shareId: bigint): string {
  return `batch-images/task-${taskId}/share-${shareId}`;
}

/** Lists the requests other than GET that reached the S3 server for a key, as `METHOD query-names`. */
function writeRequestsFor(key: string): string[] {
  return s3Requests
    .filter((request) => request.path === `/${BUCKET}/${key}` && request.method !== 'GET')
    .map((request) => `${request.method} ${request.query.join('&')}`);
}

/** Counts the requests of any kind that reached the S3 server for the task's keys. */
function requestsForTask(taskId: bigint): number {
  const prefix = `/${BUCKET}/batch-images/task-${taskId}/`;
  return s3Requests.filter((request) => request.path.startsWith(prefix)).length;
}

/** Lists, over TLS, the keys stored in the bucket under the task's prefix. */
async function storedKeys(taskId: bigint): Promise<string[]> {
  const listed = await s3.send(
    new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `batch-images/task-${taskId}/` }),
  );
  return (listed.Contents ?? []).map((object) => String(object.Key)).sort();
}

/** GETs a URL over HTTPS with certificate verification on, trusting only the test certificate. */
function fetchTrusted(url: string): Promise<{ status: number; contentType: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const request = httpsGet(url, { agent: trustingAgent }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          contentType: String(response.headers['content-type']),
          body: Buffer.concat(chunks),
        }),
      );
    });
    request.on('error', reject);
  });
}

/** Extracts the image URLs of each line of an uploaded `.jsonl`, keyed by custom_id. */
function imageUrlsOfInput(inputFileId: string): Map<string, string[]> {
  const content = openai.fileContent(inputFileId);
  assert.ok(content !== undefined, `the fake OpenAI has no file ${inputFileId}`);
  const urls = new Map<string, string[]>();
  for (const text of content.trim().split('\n')) {
    const line = JSON.parse(text) as {
      custom_id: string;
      body: { messages: Array<{ content: string | Array<{ type: string; image_url?: { url: string } }> }> };
    };
    const parts = line.body.messages.flatMap((message) =>
      typeof message.content === 'string' ? [] : message.content,
    );
    urls.set(
      line.custom_id,
      parts.flatMap((part) => (part.type === 'image_url' && part.image_url ? [part.image_url.url] : [])),
    );
  }
  return urls;
}

/** Parses `X-Amz-Date` (`yyyyMMddTHHmmssZ`) into milliseconds since the Unix epoch. */
function amzDateMs(value: string): number {
  const pattern = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
  assert.match(value, pattern, 'X-Amz-Date is in the yyyyMMddTHHmmssZ form');
  return Date.parse(value.replace(pattern, '$1-$2-$3T$4:$5:$6Z'));
}

function cliOutput(result: CliResult): string {
  return `${result.stdout.slice(-3000)}\n${result.stderr.slice(-2000)}`;
}

/**
 * Checks what a successful run leaves behind for `taskId`. Each image has one `.jsonl` line with a
 * presigned https URL on the TLS server under the deterministic key and with the lifetime of the
 * product's rule. The URL returns the original bytes, and one upload row records its delete-after
 * time.
 */
async function assertImagesServedOverTls(taskId: bigint, inputFileId: string) {
  const expectedLifetimeSeconds = Math.min(
    COMPLETION_WINDOW_SECONDS + URL_MARGIN_HOURS * 3600,
    MAX_PRESIGN_SECONDS,
  );
  const urlsByCustomId = imageUrlsOfInput(inputFileId);
  assert.deepEqual(
    [...urlsByCustomId.keys()].sort(),
    IMAGES.map((image) => `task-${taskId}-share-${shares.get(image.path)}`).sort(),
    'one .jsonl line per image',
  );

  const uploads = await readUploads(taskId);
  assert.equal(uploads.length, IMAGES.length, 'one upload row per image');

  for (const image of IMAGES) {
    const shareId = shares.get(image.path) ?? -1n;
    const urls = urlsByCustomId.get(`task-${taskId}-share-${shareId}`) ?? [];
    assert.equal(urls.length, 1, `one image URL in the line of ${image.path}`);
    const url = new URL(String(urls[0]));
    assert.equal(url.protocol, 'https:', `URL scheme of ${image.path}`);
    assert.equal(url.origin, s3Url, `URL of ${image.path} points to the TLS server`);
    assert.equal(
      decodeURIComponent(url.pathname),
      `/${BUCKET}/${imageKey(taskId, shareId)}`,
      `path-style URL of ${image.path} names the bucket and the deterministic key`,
    );
    assert.equal(url.searchParams.get('X-Amz-Algorithm'), 'AWS4-HMAC-SHA256');
    assert.match(String(url.searchParams.get('X-Amz-Credential')), new RegExp(`^${ACCESS_KEY_ID}/`));
    assert.match(String(url.searchParams.get('X-Amz-Signature')), /^[0-9a-f]{64}$/);
    assert.equal(
      url.searchParams.get('X-Amz-Expires'),
      String(expectedLifetimeSeconds),
      `URL lifetime of ${image.path} is the completion window plus the margin`,
    );

    const expectedWrites =
      image.content.length > UPLOAD_PART_BYTES
        ? ['POST uploads', 'PUT partNumber&uploadId&x-id', 'PUT partNumber&uploadId&x-id', 'POST uploadId']
        : ['PUT x-id'];
    assert.deepEqual(
      writeRequestsFor(imageKey(taskId, shareId)),
      expectedWrites,
      `${image.path} went up as ${expectedWrites.length === 1 ? 'one PutObject' : 'a multipart upload of two parts'}`,
    );

    const fetched = await fetchTrusted(url.href);
    assert.equal(fetched.status, 200, `GET of the presigned URL of ${image.path}`);
    assert.equal(fetched.contentType, image.mime, `Content-Type of ${image.path}`);
    assert.equal(fetched.body.length, image.content.length, `size of ${image.path}`);
    assert.ok(fetched.body.equals(image.content), `bytes of ${image.path} match the original`);

    const upload = uploads.find((row) => row.share_info_id === shareId);
    assert.ok(upload !== undefined, `upload row of ${image.path}`);
    assert.equal(upload.s3_key, imageKey(taskId, shareId));
    assert.equal(upload.deleted_at, null, `${image.path} is not marked deleted`);
    // The URL is signed at whole seconds of X-Amz-Date, and the worker adds the lifetime and one
    // hour to the signing time in milliseconds, so delete_after is that sum plus under a second.
    const urlExpiryMs =
      amzDateMs(String(url.searchParams.get('X-Amz-Date'))) + expectedLifetimeSeconds * 1000;
    const slackMs = upload.delete_after_ms - (urlExpiryMs + DELETE_AFTER_URL_EXPIRY_SECONDS * 1000);
    assert.ok(slackMs >= 0, `delete_after of ${image.path} is ${-slackMs} ms early`);
    assert.ok(slackMs < 1000, `delete_after of ${image.path} is ${slackMs} ms late`);
  }

  assert.deepEqual(
    await storedKeys(taskId),
    IMAGES.map((image) => imageKey(taskId, shares.get(image.path) ?? -1n)).sort(),
    'the bucket holds exactly one object per image under the task prefix',
  );
}

test('presigned TLS image URLs reach OpenAI', async () => {
  const id = await addTask(IMAGES.map((image) => image.path));

  const result = await runCli(['openai-batch-request', '--json'], env({ trustCertificate: true }));

  assert.equal(result.code, 0, cliOutput(result));
  const row = await readTask(id);
  assert.equal(row.status, 'succeeded', String(row.last_error));
  assert.deepEqual(row.file_reasons, {});
  assert.ok(row.input_file_id !== null, 'the input file id is stored');
  assert.equal(openai.batches().length, 1);
  assert.equal(openai.batches()[0]?.id, row.batch_id);
  assert.equal(openai.batches()[0]?.input_file_id, row.input_file_id);
  await assertImagesServedOverTls(id, row.input_file_id);
});

test('untrusted certificate stops run unspent', async () => {
  const id = await addTask(IMAGES.map((image) => image.path));

  const rejected = await runCli(['openai-batch-request', '--json'], env({ trustCertificate: false }));

  assert.equal(rejected.code, 2, `a certificate problem is a configuration error\n${cliOutput(rejected)}`);
  const output = `${rejected.stdout}\n${rejected.stderr}`;
  assert.match(output, /TLS certificate was not accepted \(DEPTH_ZERO_SELF_SIGNED_CERT/);
  assert.match(output, /NODE_EXTRA_CA_CERTS/, 'the message says how to trust a private CA');
  let row = await readTask(id);
  assert.equal(row.status, 'pending', 'the task is given back');
  assert.equal(row.attempts, 0, 'the attempt is not spent');
  assert.equal(row.input_file_id, null, 'no .jsonl was uploaded');
  assert.equal(openai.files().length, 0, 'OpenAI received no file');
  assert.equal(openai.batches().length, 0, 'OpenAI received no batch');
  assert.deepEqual(await readUploads(id), [], 'no upload is recorded');
  assert.equal(requestsForTask(id), 0, 'the TLS handshake failed before any S3 request');
  assert.deepEqual(await storedKeys(id), [], 'no object reached the bucket');

  // The operator adds the CA through NODE_EXTRA_CA_CERTS and the next run succeeds at once.
  const trusted = await runCli(['openai-batch-request', '--json'], env({ trustCertificate: true }));

  assert.equal(trusted.code, 0, cliOutput(trusted));
  row = await readTask(id);
  assert.equal(row.status, 'succeeded', String(row.last_error));
  assert.equal(row.attempts, 1);
  assert.ok(row.input_file_id !== null, 'the input file id is stored');
  await assertImagesServedOverTls(id, row.input_file_id);
});

test('untrusted certificate keeps attempt budget', async () => {
  const id = await addTask(['/pictures/small.png']);

  const result = await runCli(
    ['openai-batch-request', '--json'],
    env({ trustCertificate: false, extra: { ZBOX_OPENAI_BATCH_MAX_ATTEMPTS: '1' } }),
  );

  assert.equal(result.code, 2, cliOutput(result));
  const row = await readTask(id);
  assert.equal(row.status, 'pending', 'not dead: the task did nothing wrong');
  assert.equal(row.attempts, 0);
  assert.equal(row.last_error, null);
  assert.equal(openai.files().length, 0, 'OpenAI received no file');
  assert.equal(requestsForTask(id), 0, 'the TLS handshake failed before any S3 request');
  assert.deepEqual(await storedKeys(id), [], 'no object reached the bucket');
});

test('retry presigns images uploaded before', async () => {
  const id = await addTask(IMAGES.map((image) => image.path));
  openai.failNextRequests(1, { kind: 'server_error', status: 500 }, { method: 'POST', path: '/v1/files' });

  // --id keeps tasks that earlier tests left pending out of this run.
  const failed = await runCli(
    ['openai-batch-request', '--json', '--id', String(id)],
    env({ trustCertificate: true }),
  );

  assert.equal(failed.code, 0, `a retry within the attempt budget is not an error\n${cliOutput(failed)}`);
  let row = await readTask(id);
  assert.equal(row.status, 'pending', String(row.last_error));
  assert.equal(row.input_file_id, null, 'the .jsonl upload failed');
  assert.equal((await readUploads(id)).length, IMAGES.length, 'the images reached S3 before the failure');

  await pool.query(sql.unsafe`UPDATE openai_batch_tasks SET next_attempt_at = now() WHERE id = ${id}`);
  const retried = await runCli(
    ['openai-batch-request', '--json', '--id', String(id)],
    env({ trustCertificate: true }),
  );

  assert.equal(retried.code, 0, cliOutput(retried));
  assert.match(retried.stderr + retried.stdout, /"images_from_earlier_attempts":3\b/);
  row = await readTask(id);
  assert.equal(row.status, 'succeeded', String(row.last_error));
  assert.equal(row.attempts, 2);
  assert.ok(row.input_file_id !== null, 'the input file id is stored');
  // The check includes exactly one upload per image across both runs.
  await assertImagesServedOverTls(id, row.input_file_id);
});
