/**
 * S3 adapter for batch images: streamed uploads under keys the caller chooses, presigned GET URLs
 * that OpenAI fetches while it runs a batch, bulk deletes and a bucket check for `doctor`. The AWS
 * SDK v3 packages load on the first call of createS3, so workers that never touch S3 do not pay for
 * them.
 */
import { Readable } from 'node:stream';
import type { DeleteObjectsCommandOutput, S3Client } from '@aws-sdk/client-s3';
import { mapWithConcurrency } from '../concurrency.js';
import { ConfigError, errorMessage, PermanentError, TransientError } from '../errors.js';
import type { Logger } from '../output/logger.js';

/** Maximum lifetime of a SigV4 presigned URL: 7 days, the `MAX_PRESIGNED_TTL` of @smithy/signature-v4. */
export const MAX_PRESIGN_SECONDS = 604_800;

/** Maximum number of keys in one DeleteObjects request (S3 API limit). */
export const MAX_KEYS_PER_DELETE = 1_000;

/** Maximum object key length that S3 accepts, in UTF-8 bytes. */
const MAX_KEY_BYTES = 1_024;

/** Static credentials. `expiration` is set for temporary (session) credentials. */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

export interface S3Options {
  bucket: string;
  /** Signing region, for example `eu-central-1`; S3-compatible servers usually accept `us-east-1`. */
  region: string;
  /** Base URL of an S3-compatible server (MinIO, a loopback fake); AWS's own endpoint when unset. */
  endpoint?: string;
  /** Put the bucket in the path (`/bucket/key`) instead of the host name; most S3-compatible servers need it. */
  forcePathStyle?: boolean;
  /**
   * Credentials, or a provider of them. When unset, the SDK's default chain applies (environment,
   * web identity, shared files, container and instance metadata), which is what a pod with an IAM
   * role needs. Tests must always pass static credentials.
   */
  credentials?: S3Credentials | (() => Promise<S3Credentials>);
  /** Attempts per request, including the first, for throttling, 5xx and network errors (SDK default 3). */
  maxAttempts?: number;
  /** DeleteObjects requests in flight at once (default 4). */
  deleteConcurrency?: number;
  logger: Logger;
}

export interface UploadResult {
  bucket: string;
  key: string;
  /** ETag as S3 returns it, with its quotes. */
  etag: string | undefined;
  /** Bytes read from the stream. */
  bytes: number;
}

export interface PresignedUrl {
  url: string;
  /** Moment the URL stops working, from the local clock that signed it. */
  expiresAt: Date;
  /** Lifetime written into the URL (`X-Amz-Expires`), in whole seconds. */
  expiresInSeconds: number;
  /** True when the URL lives shorter than requested. */
  capped: boolean;
  /** Cause of the cap: the 7-day SigV4 maximum or the expiry of the signing credentials. */
  cappedBy: 'max-presign-lifetime' | 'credentials-expiry' | undefined;
}

export interface DeleteKeyError {
  key: string;
  /** S3 error code (`AccessDenied`, `InternalError`), or the SDK error name when the whole request failed. */
  code: string;
  message: string;
  /** True when a later attempt may succeed (throttling, 5xx, network). */
  transient: boolean;
}

export interface DeleteResult {
  deleted: string[];
  errors: DeleteKeyError[];
  /** DeleteObjects requests sent. */
  requests: number;
}

export interface S3Storage {
  readonly bucket: string;
  /** The underlying SDK client, for tests and for calls this adapter does not wrap. */
  readonly client: S3Client;
  /**
   * Uploads a stream of unknown length under `key` with lib-storage `Upload`: one PutObject when the
   * body fits in one 5 MiB part, a multipart upload otherwise. The same key overwrites, so a retry
   * of a task with a deterministic key leaves one object. An error of the source stream is thrown
   * as it is, and S3 errors are classified.
   */
  uploadStream(key: string, stream: Readable, contentType: string): Promise<UploadResult>;
  /** Signs a GET URL locally (no request is sent); see {@link PresignedUrl} for the caps. */
  presignGet(key: string, expiresInSeconds: number): Promise<PresignedUrl>;
  /**
   * Deletes keys in requests of at most 1,000 keys. S3 failures, including a failed request, are
   * returned per key. Only an invalid key (empty or over 1,024 bytes) throws.
   */
  deleteObjects(keys: readonly string[]): Promise<DeleteResult>;
  /** Checks that the bucket exists and the credentials may use it; throws a classified error otherwise. */
  headBucket(): Promise<void>;
  close(): void;
}

type S3Sdk = typeof import('@aws-sdk/client-s3');

/** Creates the adapter, importing the AWS SDK packages on first use. */
export async function createS3(options: S3Options): Promise<S3Storage> {
  validateOptions(options);
  const sdk = await import('@aws-sdk/client-s3');
  const { Upload } = await import('@aws-sdk/lib-storage');
  const { getSignedUrl } = await import('@aws-sdk/s3-request-presigner');

  const client = new sdk.S3Client({
    region: options.region,
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
    forcePathStyle: options.forcePathStyle ?? false,
    ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }),
  });
  const { bucket } = options;
  const logger = options.logger.child({ s3_bucket: bucket });
  const deleteConcurrency = options.deleteConcurrency ?? 4;

  return {
    bucket,
    client,

    uploadStream: async (key, stream, contentType) => {
      checkKey(key);
      const counted = countBytes(stream);
      const upload = new Upload({
        client,
        params: { Bucket: bucket, Key: key, Body: counted.body, ContentType: contentType },
      });
      try {
        const result = await upload.done();
        logger.debug('S3 object uploaded', { s3_key: key, bytes: counted.bytes() });
        return { bucket, key, etag: result.ETag, bytes: counted.bytes() };
      } catch (error) {
        // A failed source (a download that broke off) is the source's error, not an S3 failure.
        const sourceError = counted.sourceError();
        if (sourceError !== undefined) {
          throw sourceError;
        }
        throw classifyS3Error(error, `upload of ${key}`);
      }
    },

    presignGet: async (key, expiresInSeconds) => {
      checkKey(key);
      const signingDate = new Date();
      const credentials = await client.config.credentials();
      const lifetime = presignLifetime(expiresInSeconds, signingDate, credentials.expiration);
      const command = new sdk.GetObjectCommand({ Bucket: bucket, Key: key });
      const url = await getSignedUrl(client, command, {
        expiresIn: lifetime.expiresInSeconds,
        signingDate,
      });
      return {
        url,
        expiresAt: new Date(signingDate.getTime() + lifetime.expiresInSeconds * 1000),
        ...lifetime,
      };
    },

    deleteObjects: (keys) => deleteInGroups(sdk, client, bucket, keys, deleteConcurrency, logger),

    headBucket: async () => {
      try {
        await client.send(new sdk.HeadBucketCommand({ Bucket: bucket }));
      } catch (error) {
        throw classifyS3Error(error, `HeadBucket of ${bucket}`);
      }
    },

    close: () => client.destroy(),
  };
}

function validateOptions(options: S3Options): void {
  // Bucket naming rules of S3: 3 to 63 characters, lower case letters, digits, dots and hyphens.
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(options.bucket)) {
    throw new ConfigError(
      `invalid S3 bucket name "${options.bucket}": use 3 to 63 lower-case letters, digits, dots or hyphens`,
    );
  }
  if (options.region.trim() === '') {
    throw new ConfigError('the S3 region is empty: set it, for example to us-east-1');
  }
  if (options.endpoint !== undefined) {
    let url: URL;
    try {
      url = new URL(options.endpoint);
    } catch {
      throw new ConfigError(
        'invalid S3 endpoint: expected an absolute http(s) URL such as http://127.0.0.1:9000',
      );
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new ConfigError(`invalid S3 endpoint ${url.origin}: the scheme must be http or https`);
    }
    if (url.username !== '' || url.password !== '') {
      // The URL is not quoted, because it contains credentials.
      throw new ConfigError(
        'invalid S3 endpoint: remove the credentials from the URL and pass them as credentials',
      );
    }
  }
  const concurrency = options.deleteConcurrency;
  if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency >= 1)) {
    throw new ConfigError(`S3 delete concurrency must be a positive integer, got ${concurrency}`);
  }
}

interface CountedStream {
  body: Readable;
  bytes: () => number;
  /** Error of the source stream, when reading it failed (not S3). */
  sourceError: () => unknown;
}

/** Wraps a stream so the bytes read from it are counted, without switching it to flowing mode. */
function countBytes(stream: Readable): CountedStream {
  let total = 0;
  let failure: unknown;
  async function* passThrough(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of stream) {
        const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
        total += buffer.length;
        yield buffer;
      }
    } catch (error) {
      failure = error;
      throw error;
    }
  }
  return {
    body: Readable.from(passThrough(), { objectMode: false }),
    bytes: () => total,
    sourceError: () => failure,
  };
}

function checkKey(key: string): void {
  const bytes = Buffer.byteLength(key);
  if (bytes === 0 || bytes > MAX_KEY_BYTES) {
    throw new PermanentError(
      `invalid S3 key "${key.slice(0, 80)}": it must have 1 to ${MAX_KEY_BYTES} UTF-8 bytes`,
    );
  }
}

/**
 * Computes the lifetime to sign: the requested seconds, capped at the SigV4 maximum and at the
 * seconds left before the signing credentials expire, because S3 rejects a URL whose session has
 * ended, whatever its `X-Amz-Expires` value.
 */
export function presignLifetime(
  requestedSeconds: number,
  signingDate: Date,
  credentialsExpiration: Date | undefined,
): Pick<PresignedUrl, 'expiresInSeconds' | 'capped' | 'cappedBy'> {
  if (!(Number.isFinite(requestedSeconds) && requestedSeconds >= 1)) {
    throw new ConfigError(`invalid presigned URL lifetime ${requestedSeconds} s: expected at least 1 second`);
  }
  const requested = Math.floor(requestedSeconds);
  let expiresInSeconds = requested;
  let cappedBy: PresignedUrl['cappedBy'];
  if (expiresInSeconds > MAX_PRESIGN_SECONDS) {
    expiresInSeconds = MAX_PRESIGN_SECONDS;
    cappedBy = 'max-presign-lifetime';
  }
  if (credentialsExpiration !== undefined) {
    const secondsLeft = Math.floor((credentialsExpiration.getTime() - signingDate.getTime()) / 1000);
    if (secondsLeft < 1) {
      throw new ConfigError(
        `the S3 credentials expired at ${credentialsExpiration.toISOString()}: a URL signed with them would not work; renew the credentials`,
      );
    }
    if (secondsLeft < expiresInSeconds) {
      expiresInSeconds = secondsLeft;
      cappedBy = 'credentials-expiry';
    }
  }
  return { expiresInSeconds, capped: expiresInSeconds < requested, cappedBy };
}

async function deleteInGroups(
  sdk: S3Sdk,
  client: S3Client,
  bucket: string,
  keys: readonly string[],
  concurrency: number,
  logger: Logger,
): Promise<DeleteResult> {
  const unique = [...new Set(keys)];
  for (const key of unique) {
    checkKey(key);
  }
  const groups: string[][] = [];
  for (let start = 0; start < unique.length; start += MAX_KEYS_PER_DELETE) {
    groups.push(unique.slice(start, start + MAX_KEYS_PER_DELETE));
  }

  const results = await mapWithConcurrency(groups, concurrency, (group) =>
    deleteGroup(sdk, client, bucket, group, logger),
  );
  const result: DeleteResult = { deleted: [], errors: [], requests: groups.length };
  for (const part of results) {
    result.deleted.push(...part.deleted);
    result.errors.push(...part.errors);
  }
  return result;
}

/** Sends one DeleteObjects request and accounts for every key of the group in the result. */
async function deleteGroup(
  sdk: S3Sdk,
  client: S3Client,
  bucket: string,
  group: string[],
  logger: Logger,
): Promise<Omit<DeleteResult, 'requests'>> {
  let output: DeleteObjectsCommandOutput;
  try {
    output = await client.send(
      new sdk.DeleteObjectsCommand({
        Bucket: bucket,
        Delete: { Objects: group.map((Key) => ({ Key })), Quiet: false },
      }),
    );
  } catch (error) {
    const classified = classifyS3Error(error, `DeleteObjects of ${group.length} keys`);
    logger.warn('S3 DeleteObjects request failed', { keys: group.length, error: classified.message });
    const code = error instanceof Error ? error.name : 'RequestFailed';
    const transient = classified instanceof TransientError;
    return {
      deleted: [],
      errors: group.map((key) => ({ key, code, message: classified.message, transient })),
    };
  }

  const deleted = new Set(
    (output.Deleted ?? []).flatMap((entry) => (entry.Key === undefined ? [] : [entry.Key])),
  );
  const failed = new Map<string, DeleteKeyError>();
  for (const entry of output.Errors ?? []) {
    if (entry.Key === undefined) {
      continue;
    }
    const code = entry.Code ?? 'UnknownError';
    failed.set(entry.Key, {
      key: entry.Key,
      code,
      message: entry.Message ?? code,
      transient: code === 'InternalError' || code === 'SlowDown' || code === 'ServiceUnavailable',
    });
  }

  const result: Omit<DeleteResult, 'requests'> = { deleted: [], errors: [] };
  for (const key of group) {
    const error = failed.get(key);
    if (error !== undefined) {
      result.errors.push(error);
    } else if (deleted.has(key)) {
      result.deleted.push(key);
    } else {
      // Verbose mode lists every key, so a missing one means the server left it unaccounted for.
      result.errors.push({
        key,
        code: 'NotReported',
        message: 'the DeleteObjects response listed this key neither as deleted nor as failed',
        transient: true,
      });
    }
  }
  if (result.errors.length > 0) {
    logger.warn('S3 DeleteObjects reported failed keys', {
      keys: group.length,
      failed: result.errors.length,
      first_key: result.errors[0]?.key,
      first_code: result.errors[0]?.code,
    });
  }
  return result;
}

/** HTTP status and retry hint of an SDK error, read without importing the SDK's classes. */
interface SdkErrorShape {
  name: string;
  message: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
  $fault?: 'client' | 'server';
}

const CREDENTIAL_ERRORS = new Set([
  'AccessDenied',
  'Forbidden',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'CredentialsProviderError',
]);

/** Node's codes for a server certificate that failed verification. */
const CERTIFICATE_ERROR_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Returns the certificate error code of an error or of one of its causes, if any. */
function certificateErrorCode(error: unknown): string | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && CERTIFICATE_ERROR_CODES.has(code)) {
      return code;
    }
    current = current.cause;
  }
  return undefined;
}

/**
 * Maps an AWS SDK error to the CLI's taxonomy: credentials, a missing bucket or a
 * server certificate that fails verification -> ConfigError,
 * throttling, 5xx and network failures -> TransientError (dependency `s3`), other 4xx ->
 * PermanentError. `action` names the call in the message.
 */
export function classifyS3Error(error: unknown, action: string): Error {
  if (error instanceof ConfigError || error instanceof TransientError || error instanceof PermanentError) {
    return error;
  }
  if (!(error instanceof Error)) {
    return new TransientError(`S3 ${action} failed: ${String(error)}`, { dependency: 's3' });
  }
  const certificateCode = certificateErrorCode(error);
  if (certificateCode !== undefined) {
    return new ConfigError(
      `S3 ${action} failed: the endpoint's TLS certificate was not accepted (${certificateCode}: ${errorMessage(error)}). ` +
        'A retry cannot fix this: when the endpoint uses a private CA, give its certificate to Node with NODE_EXTRA_CA_CERTS; otherwise fix the certificate or the endpoint',
      { cause: error },
    );
  }
  const shaped = error as SdkErrorShape;
  const status = shaped.$metadata?.httpStatusCode;
  const detail = `${shaped.name}${status === undefined ? '' : ` (HTTP ${status})`}: ${errorMessage(error)}`;

  if (CREDENTIAL_ERRORS.has(shaped.name) || status === 401 || status === 403) {
    return new ConfigError(
      `S3 ${action} was denied, ${detail}. Check the S3 credentials and that they may use the bucket`,
      { cause: error },
    );
  }
  if (shaped.name === 'NoSuchBucket' || (shaped.name === 'NotFound' && action.startsWith('HeadBucket'))) {
    return new ConfigError(
      `S3 ${action} failed, the bucket does not exist: ${detail}. Create it or fix the bucket name`,
      {
        cause: error,
      },
    );
  }
  if (status === undefined || status >= 500 || status === 429 || status === 408 || shaped.$retryable) {
    return new TransientError(`S3 ${action} failed, ${detail}`, { dependency: 's3', cause: error });
  }
  return new PermanentError(`S3 ${action} was rejected, ${detail}`, { dependency: 's3', cause: error });
}
