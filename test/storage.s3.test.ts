/**
 * The S3 adapter with the real AWS SDK v3 against s3rver on loopback, path style, static test
 * credentials. s3rver 3.7 stores objects and enforces `X-Amz-Expires` (at most 7 days, not past),
 * but it does not verify SigV4 signatures, accepts more than 1,000 keys in one DeleteObjects
 * request and never fails a single key. A small front server in this file adds those three rules
 * of real S3 before forwarding each request to s3rver.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { mapWithConcurrency } from '../src/core/concurrency.js';
import { ConfigError, PermanentError, TransientError } from '../src/core/errors.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import {
  classifyS3Error,
  createS3,
  MAX_PRESIGN_SECONDS,
  presignLifetime,
  type S3Credentials,
  type S3Storage,
} from '../src/core/storage/s3.js';

const BUCKET = 'zbox-batch-images';
const REGION = 'us-east-1';
/** The account s3rver creates by default; these are test values, not secrets. */
const ACCESS_KEY_ID = 'S3RVER';
const SECRET_ACCESS_KEY = 'S3RVER';

interface FrontRequest {
  method: string;
  path: string;
  query: string[];
}

interface S3Front {
  url: string;
  requests: FrontRequest[];
  /** Number of keys in each DeleteObjects request received. */
  deleteGroupSizes: number[];
  /** Keys that DeleteObjects reports as AccessDenied and leaves in place. */
  deniedKeys: Set<string>;
  /** Number of upcoming DeleteObjects requests that get 503 SlowDown. */
  failDeletes: number;
  /** Presigned requests whose signature matched. */
  verifiedPresigns: number;
  close(): Promise<void>;
}

/** RFC 3986 encoding that SigV4 uses for query names and values. */
function encodeRfc3986(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** Orders encoded query pairs by name, then by value, in code-point order as SigV4 requires. */
function compareQueryPairs(a: readonly [string, string], b: readonly [string, string]): number {
  const [nameA, valueA] = a;
  const [nameB, valueB] = b;
  if (nameA !== nameB) {
    return nameA < nameB ? -1 : 1;
  }
  if (valueA === valueB) {
    return 0;
  }
  return valueA < valueB ? -1 : 1;
}

/**
 * Recomputes the SigV4 query signature of a presigned request as S3 does. Returns the reason of a
 * mismatch, or undefined when the signature is valid.
 */
function checkPresignedSignature(
  request: IncomingMessage,
  rawPath: string,
  query: URLSearchParams,
): string | undefined {
  const credential = (query.get('X-Amz-Credential') ?? '').split('/');
  const [accessKeyId, date = '', region = '', service = '', terminator] = credential;
  if (credential.length !== 5 || terminator !== 'aws4_request' || accessKeyId !== ACCESS_KEY_ID) {
    return 'malformed credential scope';
  }

  const signedHeaders = query.get('X-Amz-SignedHeaders') ?? '';
  const canonicalQuery = [...query.entries()]
    .filter(([name]) => name !== 'X-Amz-Signature')
    .map(([name, value]) => [encodeRfc3986(name), encodeRfc3986(value)] as const)
    .sort(compareQueryPairs)
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
  const canonicalHeaders = signedHeaders
    .split(';')
    .map((name) => `${name}:${String(request.headers[name] ?? '').trim()}\n`)
    .join('');
  const canonicalRequest = [
    request.method,
    rawPath,
    canonicalQuery,
    canonicalHeaders,
    signedHeaders,
    'UNSIGNED-PAYLOAD',
  ].join('\n');

  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = [
    'AWS4-HMAC-SHA256',
    query.get('X-Amz-Date'),
    scope,
    createHash('sha256').update(canonicalRequest).digest('hex'),
  ].join('\n');
  const dateKey = hmac(`AWS4${SECRET_ACCESS_KEY}`, date);
  const signingKey = hmac(hmac(hmac(dateKey, region), service), 'aws4_request');
  const expected = hmac(signingKey, stringToSign).toString('hex');
  return expected === query.get('X-Amz-Signature') ? undefined : 'signature does not match';
}

function xmlError(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
}

function unescapeXml(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

async function readAll(stream: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Sends one request to s3rver and returns its status, headers and body. */
function forward(
  target: AddressInfo,
  method: string,
  path: string,
  headers: IncomingMessage['headers'],
  body: Buffer,
): Promise<{ status: number; headers: IncomingMessage['headers']; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      {
        host: '127.0.0.1',
        port: target.port,
        method,
        path,
        headers: { ...headers, 'content-length': body.length },
      },
      (response) => {
        readAll(response).then(
          (data) => resolve({ status: response.statusCode ?? 502, headers: response.headers, body: data }),
          reject,
        );
      },
    );
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

/** Runs one DeleteObjects request with the front's rules: 1,000 keys at most, denied keys, 503s. */
async function handleDelete(
  front: S3Front,
  target: AddressInfo,
  request: IncomingMessage,
  path: string,
  body: Buffer,
): Promise<{ status: number; body: string }> {
  const keys = [...body.toString('utf8').matchAll(/<Key>([^<]*)<\/Key>/g)].map((match) =>
    unescapeXml(match[1] ?? ''),
  );
  front.deleteGroupSizes.push(keys.length);
  if (keys.length > 1_000) {
    return {
      status: 400,
      body: xmlError(
        'MalformedXML',
        'The XML you provided was not well-formed or did not validate against our published schema',
      ),
    };
  }
  if (front.failDeletes > 0) {
    front.failDeletes -= 1;
    return { status: 503, body: xmlError('SlowDown', 'Please reduce your request rate.') };
  }

  const denied = keys.filter((key) => front.deniedKeys.has(key));
  const allowed = keys.filter((key) => !front.deniedKeys.has(key));
  const objects = allowed.map((key) => `<Object><Key>${escapeXml(key)}</Key></Object>`).join('');
  const rewritten = Buffer.from(
    `<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${objects}</Delete>`,
  );
  // The body changed, so its checksum headers no longer apply; s3rver does not require them.
  const headers = { ...request.headers };
  for (const name of Object.keys(headers)) {
    if (
      name.startsWith('x-amz-checksum-') ||
      name === 'x-amz-sdk-checksum-algorithm' ||
      name === 'content-md5'
    ) {
      delete headers[name];
    }
  }
  let resultXml = '<?xml version="1.0" encoding="UTF-8"?><DeleteResult></DeleteResult>';
  if (allowed.length > 0) {
    const response = await forward(target, 'POST', path, headers, rewritten);
    if (response.status !== 200) {
      return { status: response.status, body: response.body.toString('utf8') };
    }
    resultXml = response.body.toString('utf8');
  }
  const errors = denied
    .map(
      (key) =>
        `<Error><Key>${escapeXml(key)}</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`,
    )
    .join('');
  return { status: 200, body: resultXml.replace('</DeleteResult>', `${errors}</DeleteResult>`) };
}

async function startFront(target: AddressInfo): Promise<S3Front> {
  const front: S3Front = {
    url: '',
    requests: [],
    deleteGroupSizes: [],
    deniedKeys: new Set(),
    failDeletes: 0,
    verifiedPresigns: 0,
    close: async () => {},
  };
  const server: Server = createServer((request, response) => {
    const handle = async () => {
      const rawUrl = request.url ?? '/';
      const queryStart = rawUrl.indexOf('?');
      const rawPath = queryStart === -1 ? rawUrl : rawUrl.slice(0, queryStart);
      const query = new URLSearchParams(queryStart === -1 ? '' : rawUrl.slice(queryStart + 1));
      front.requests.push({ method: request.method ?? 'GET', path: rawPath, query: [...query.keys()] });
      const body = await readAll(request);

      if (query.has('X-Amz-Signature')) {
        const problem = checkPresignedSignature(request, rawPath, query);
        if (problem !== undefined) {
          response.writeHead(403, { 'content-type': 'application/xml' });
          response.end(xmlError('SignatureDoesNotMatch', problem));
          return;
        }
        front.verifiedPresigns += 1;
      }
      if (request.method === 'POST' && query.has('delete')) {
        const result = await handleDelete(front, target, request, rawUrl, body);
        response.writeHead(result.status, { 'content-type': 'application/xml' });
        response.end(result.body);
        return;
      }
      const forwarded = await forward(target, request.method ?? 'GET', rawUrl, request.headers, body);
      response.writeHead(forwarded.status, forwarded.headers);
      response.end(forwarded.body);
    };
    handle().catch((error: unknown) => {
      response.writeHead(500, { 'content-type': 'application/xml' });
      response.end(xmlError('InternalError', String(error)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  front.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  front.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return front;
}

/** Deterministic bytes, so a corrupted round trip cannot match by chance. */
function patternBytes(size: number, seed: number): Buffer {
  const buffer = Buffer.alloc(size);
  let state = seed;
  for (let i = 0; i < size; i += 1) {
    state = (state * 1_103_515_245 + 12_345) >>> 0;
    buffer[i] = state >>> 24;
  }
  return buffer;
}

/** Streams data in chunks with no known length, as a blobber download does. */
function chunkedStream(data: Buffer, chunkSize = 64 * 1024): Readable {
  async function* chunks() {
    for (let offset = 0; offset < data.length; offset += chunkSize) {
      yield data.subarray(offset, offset + chunkSize);
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('S3 adapter against s3rver', () => {
  let directory: string;
  let s3rver: S3rver;
  let s3rverUrl: string;
  let front: S3Front;
  let storage: S3Storage;
  const openedAdapters: S3Storage[] = [];
  const logger = createMemoryLogger();

  async function adapter(
    options: { credentials?: S3Credentials; bucket?: string; maxAttempts?: number } = {},
  ) {
    const created = await createS3({
      bucket: options.bucket ?? BUCKET,
      region: REGION,
      endpoint: front.url,
      forcePathStyle: true,
      credentials: options.credentials ?? { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY },
      ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }),
      logger,
    });
    openedAdapters.push(created);
    return created;
  }

  /**
   * Stores objects straight in s3rver with unsigned requests, which it accepts: seeding through
   * the SDK and the front takes several times longer and is not what the tests check.
   */
  async function seedObjects(keys: string[]): Promise<void> {
    await mapWithConcurrency(keys, 32, async (key) => {
      const response = await fetch(`${s3rverUrl}/${BUCKET}/${key}`, { method: 'PUT', body: key });
      await response.arrayBuffer();
      assert.equal(response.status, 200, `seeding ${key}`);
    });
  }

  before(async () => {
    directory = mkdtempSync(join(tmpdir(), 'zbox-s3rver-'));
    s3rver = new S3rver({
      address: '127.0.0.1',
      port: 0,
      silent: true,
      directory,
      configureBuckets: [{ name: BUCKET, configs: [] }],
    });
    const address = await s3rver.run();
    s3rverUrl = `http://127.0.0.1:${address.port}`;
    front = await startFront(address);
    storage = await adapter();
  });

  after(async () => {
    for (const opened of openedAdapters) {
      opened.close();
    }
    await front.close();
    await s3rver.close();
    rmSync(directory, { recursive: true, force: true });
  });

  test('uploads a 12 MiB stream in parts', async () => {
    const data = patternBytes(12 * 1024 * 1024, 7);
    const firstRequest = front.requests.length;

    const result = await storage.uploadStream('batch/task-1/photo.png', chunkedStream(data), 'image/png');

    assert.equal(result.bytes, data.length);
    assert.equal(result.key, 'batch/task-1/photo.png');
    assert.match(result.etag ?? '', /^"[0-9a-f]{32}(-3)?"$/);
    const sent = front.requests.slice(firstRequest);
    assert.equal(sent.filter((r) => r.method === 'PUT' && r.query.includes('partNumber')).length, 3);
    assert.equal(sent.filter((r) => r.method === 'POST' && r.query.includes('uploadId')).length, 1);
  });

  test('uploads a small stream with one PutObject', async () => {
    const data = patternBytes(100 * 1024, 11);
    const firstRequest = front.requests.length;

    const result = await storage.uploadStream(
      'batch/task-2/small.jpg',
      chunkedStream(data, 4096),
      'image/jpeg',
    );

    assert.equal(result.bytes, data.length);
    const sent = front.requests.slice(firstRequest);
    assert.deepEqual(
      sent.map((r) => r.method),
      ['PUT'],
    );
    assert.equal(sent[0]?.query.includes('uploadId'), false);
  });

  test('presigned GET returns the uploaded bytes', async () => {
    const data = patternBytes(6 * 1024 * 1024 + 123, 13);
    await storage.uploadStream('batch/task-3/scan.webp', chunkedStream(data), 'image/webp');
    const verifiedBefore = front.verifiedPresigns;

    const presigned = await storage.presignGet('batch/task-3/scan.webp', 3_600);
    const response = await fetch(presigned.url);
    const body = Buffer.from(await response.arrayBuffer());

    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'image/webp');
    assert.equal(body.length, data.length);
    assert.equal(sha256(body), sha256(data));
    assert.equal(front.verifiedPresigns, verifiedBefore + 1);
    assert.equal(presigned.expiresInSeconds, 3_600);
    assert.equal(presigned.capped, false);
    assert.equal(presigned.cappedBy, undefined);
    assert.equal(new URL(presigned.url).searchParams.get('X-Amz-Expires'), '3600');
  });

  test('presigned GET with a tampered key is rejected', async () => {
    await storage.uploadStream('batch/task-4/a.png', chunkedStream(patternBytes(1024, 17)), 'image/png');
    await storage.uploadStream('batch/task-4/b.png', chunkedStream(patternBytes(1024, 19)), 'image/png');
    const presigned = await storage.presignGet('batch/task-4/a.png', 600);

    const response = await fetch(presigned.url.replace('/a.png?', '/b.png?'));

    assert.equal(response.status, 403);
    assert.match(await response.text(), /SignatureDoesNotMatch/);
  });

  test('presign lifetime is capped at seven days', async () => {
    await storage.uploadStream('batch/task-5/long.png', chunkedStream(patternBytes(2048, 23)), 'image/png');
    const before = Date.now();

    const presigned = await storage.presignGet('batch/task-5/long.png', 30 * 86_400);
    const response = await fetch(presigned.url);

    assert.equal(presigned.expiresInSeconds, MAX_PRESIGN_SECONDS);
    assert.equal(presigned.capped, true);
    assert.equal(presigned.cappedBy, 'max-presign-lifetime');
    assert.equal(new URL(presigned.url).searchParams.get('X-Amz-Expires'), String(MAX_PRESIGN_SECONDS));
    const expected = before + MAX_PRESIGN_SECONDS * 1000;
    assert.ok(Math.abs(presigned.expiresAt.getTime() - expected) < 5_000, presigned.expiresAt.toISOString());
    assert.equal(response.status, 200);
    await response.arrayBuffer();
  });

  test('presign lifetime is capped at credentials expiry', async () => {
    const expiration = new Date(Date.now() + 2 * 3_600_000);
    const temporary = await adapter({
      credentials: {
        accessKeyId: ACCESS_KEY_ID,
        secretAccessKey: SECRET_ACCESS_KEY,
        sessionToken: 'test-session-token',
        expiration,
      },
    });
    await storage.uploadStream(
      'batch/task-6/session.png',
      chunkedStream(patternBytes(2048, 29)),
      'image/png',
    );

    const presigned = await temporary.presignGet('batch/task-6/session.png', 86_400);
    const response = await fetch(presigned.url);

    assert.equal(presigned.capped, true);
    assert.equal(presigned.cappedBy, 'credentials-expiry');
    assert.ok(presigned.expiresInSeconds <= 7_200, String(presigned.expiresInSeconds));
    assert.ok(presigned.expiresInSeconds >= 7_190, String(presigned.expiresInSeconds));
    assert.ok(presigned.expiresAt.getTime() <= expiration.getTime());
    const query = new URL(presigned.url).searchParams;
    assert.equal(query.get('X-Amz-Expires'), String(presigned.expiresInSeconds));
    assert.equal(query.get('X-Amz-Security-Token'), 'test-session-token');
    assert.equal(response.status, 200);
    await response.arrayBuffer();
  });

  test('URL capped by credentials stops working after expiry', async () => {
    const temporary = await adapter({
      credentials: {
        accessKeyId: ACCESS_KEY_ID,
        secretAccessKey: SECRET_ACCESS_KEY,
        sessionToken: 'short-session-token',
        expiration: new Date(Date.now() + 3_000),
      },
    });
    await storage.uploadStream('batch/task-7/short.png', chunkedStream(patternBytes(512, 31)), 'image/png');

    const presigned = await temporary.presignGet('batch/task-7/short.png', 86_400);
    const early = await fetch(presigned.url);
    await early.arrayBuffer();
    await delay(presigned.expiresAt.getTime() - Date.now() + 1_500);
    const late = await fetch(presigned.url);

    assert.equal(presigned.cappedBy, 'credentials-expiry');
    assert.ok(presigned.expiresInSeconds <= 3, String(presigned.expiresInSeconds));
    assert.equal(early.status, 200);
    assert.equal(late.status, 403);
    assert.match(await late.text(), /Request has expired/);
  });

  test('presign with expired credentials is rejected', async () => {
    const expired = await adapter({
      credentials: {
        accessKeyId: ACCESS_KEY_ID,
        secretAccessKey: SECRET_ACCESS_KEY,
        sessionToken: 'old-session-token',
        expiration: new Date(Date.now() - 60_000),
      },
    });

    await assert.rejects(expired.presignGet('batch/any.png', 3_600), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /credentials expired at/);
      return true;
    });
  });

  test('presignLifetime rejects and rounds', () => {
    const now = new Date('2026-01-01T00:00:00Z');

    assert.throws(() => presignLifetime(0, now, undefined), ConfigError);
    assert.throws(() => presignLifetime(Number.NaN, now, undefined), ConfigError);
    assert.throws(() => presignLifetime(-5, now, undefined), ConfigError);
    assert.deepEqual(presignLifetime(90.9, now, undefined), {
      expiresInSeconds: 90,
      capped: false,
      cappedBy: undefined,
    });
    assert.deepEqual(presignLifetime(MAX_PRESIGN_SECONDS, now, undefined), {
      expiresInSeconds: MAX_PRESIGN_SECONDS,
      capped: false,
      cappedBy: undefined,
    });
    assert.deepEqual(presignLifetime(MAX_PRESIGN_SECONDS, now, new Date('2026-01-01T00:10:00.900Z')), {
      expiresInSeconds: 600,
      capped: true,
      cappedBy: 'credentials-expiry',
    });
  });

  test('deleteObjects splits 2,500 keys and reports denied ones', async () => {
    const keys = Array.from({ length: 2_500 }, (_, i) => `cleanup/batch-${Math.floor(i / 100)}/img-${i}.png`);
    // One object stays in each folder: s3rver 3.7.1 returns 500 when one DeleteObjects request
    // empties a folder, because its parallel deletes race to remove the empty directory.
    const sentinelKeys = Array.from({ length: 25 }, (_, i) => `cleanup/batch-${i}/kept.txt`);
    await seedObjects([...keys, ...sentinelKeys]);
    const denied = [keys[10], keys[1_500], keys[2_499]].filter((key): key is string => key !== undefined);
    for (const key of denied) {
      front.deniedKeys.add(key);
    }
    front.deleteGroupSizes.length = 0;

    // A duplicate and a key that never existed: S3 reports a missing key as deleted.
    const result = await storage.deleteObjects([...keys, keys[0] ?? '', 'cleanup/never-uploaded.png']);

    front.deniedKeys.clear();
    assert.equal(result.requests, 3);
    assert.deepEqual(
      [...front.deleteGroupSizes].sort((a, b) => a - b),
      [501, 1_000, 1_000],
    );
    assert.ok(front.deleteGroupSizes.every((size) => size <= 1_000));
    assert.deepEqual(result.errors.map((error) => error.key).sort(), [...denied].sort());
    for (const error of result.errors) {
      assert.equal(error.code, 'AccessDenied');
      assert.equal(error.transient, false);
    }
    assert.equal(result.deleted.length, 2_501 - denied.length);
    assert.ok(result.deleted.includes('cleanup/never-uploaded.png'));
    const listed = await storage.client.send(
      new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'cleanup/' }),
    );
    assert.deepEqual(
      (listed.Contents ?? []).map((object) => object.Key).sort(),
      [...denied, ...sentinelKeys].sort(),
    );
  });

  test('deleteObjects reports a failed request per key', async () => {
    const oneAttempt = await adapter({ maxAttempts: 1 });
    const keys = ['failing/a.png', 'failing/b.png'];
    await seedObjects(keys);
    front.failDeletes = 1;

    const result = await oneAttempt.deleteObjects(keys);

    assert.equal(result.requests, 1);
    assert.deepEqual(result.deleted, []);
    assert.deepEqual(
      result.errors.map((error) => [error.key, error.code, error.transient]),
      [
        ['failing/a.png', 'SlowDown', true],
        ['failing/b.png', 'SlowDown', true],
      ],
    );
    assert.ok(logger.lines.some((line) => line.msg === 'S3 DeleteObjects request failed'));
  });

  test('deleteObjects with no keys sends nothing', async () => {
    const firstRequest = front.requests.length;

    const result = await storage.deleteObjects([]);

    assert.deepEqual(result, { deleted: [], errors: [], requests: 0 });
    assert.equal(front.requests.length, firstRequest);
  });

  test('headBucket accepts the bucket', async () => {
    await storage.headBucket();
  });

  test('headBucket reports a missing bucket', async () => {
    const missing = await adapter({ bucket: 'no-such-bucket' });

    await assert.rejects(missing.headBucket(), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /bucket does not exist/);
      return true;
    });
  });

  test('unreachable endpoint is a transient error', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const unreachable = await createS3({
      bucket: BUCKET,
      region: REGION,
      endpoint: `http://127.0.0.1:${port}`,
      forcePathStyle: true,
      credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY },
      maxAttempts: 1,
      logger,
    });
    openedAdapters.push(unreachable);

    await assert.rejects(unreachable.headBucket(), (error: unknown) => {
      assert.ok(error instanceof TransientError);
      assert.equal(error.dependency, 's3');
      return true;
    });
  });

  test('createS3 rejects invalid options', async () => {
    const base = {
      bucket: BUCKET,
      region: REGION,
      credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY },
      logger,
    };

    await assert.rejects(createS3({ ...base, bucket: 'Bad_Bucket' }), ConfigError);
    await assert.rejects(createS3({ ...base, region: ' ' }), ConfigError);
    await assert.rejects(createS3({ ...base, endpoint: 'not a url' }), ConfigError);
    await assert.rejects(createS3({ ...base, endpoint: 'ftp://127.0.0.1:21' }), ConfigError);
    await assert.rejects(
      createS3({ ...base, endpoint: 'http://user:pass@127.0.0.1:9000' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.doesNotMatch(error.message, /pass@/);
        return true;
      },
    );
  });

  test('uploadStream passes a source error through', async () => {
    const broken = new Error('blobber download broke off');
    async function* failingChunks() {
      yield patternBytes(6 * 1024 * 1024, 37);
      throw broken;
    }

    const error = await storage
      .uploadStream(
        'batch/task-8/broken.png',
        Readable.from(failingChunks(), { objectMode: false }),
        'image/png',
      )
      .then(
        () => assert.fail('the upload succeeded'),
        (rejection: unknown) => rejection,
      );
    const head = await fetch(`${s3rverUrl}/${BUCKET}/batch/task-8/broken.png`, { method: 'HEAD' });

    assert.equal(error, broken);
    assert.equal(head.status, 404);
  });

  test('uploadStream rejects an empty key', async () => {
    await assert.rejects(
      storage.uploadStream('', chunkedStream(Buffer.from('x')), 'image/png'),
      PermanentError,
    );
  });

  test('classifyS3Error maps statuses', () => {
    const sdkError = (name: string, status: number | undefined) =>
      Object.assign(new Error(`${name} happened`), { name, $metadata: { httpStatusCode: status } });

    assert.ok(classifyS3Error(sdkError('AccessDenied', 403), 'GetObject') instanceof ConfigError);
    assert.ok(classifyS3Error(sdkError('NoSuchBucket', 404), 'PutObject') instanceof ConfigError);
    assert.ok(classifyS3Error(sdkError('SlowDown', 503), 'PutObject') instanceof TransientError);
    assert.ok(classifyS3Error(sdkError('InternalError', 500), 'PutObject') instanceof TransientError);
    assert.ok(classifyS3Error(sdkError('TimeoutError', undefined), 'PutObject') instanceof TransientError);
    assert.ok(classifyS3Error(sdkError('EntityTooLarge', 400), 'PutObject') instanceof PermanentError);
  });

  test('classifyS3Error rejected certificate is config', () => {
    const tlsError = Object.assign(new Error('self-signed certificate'), {
      code: 'DEPTH_ZERO_SELF_SIGNED_CERT',
    });
    const wrapped = new Error('request failed', { cause: tlsError });
    const classified = classifyS3Error(wrapped, 'upload of batch-images/task-1/share-1');
    assert.ok(classified instanceof ConfigError);
    assert.match(classified.message, /DEPTH_ZERO_SELF_SIGNED_CERT/);
    assert.match(classified.message, /NODE_EXTRA_CA_CERTS/);
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    assert.ok(
      classifyS3Error(reset, 'PutObject') instanceof TransientError,
      'other network errors stay transient',
    );
  });
});
