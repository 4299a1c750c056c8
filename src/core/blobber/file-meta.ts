/**
 * File metadata of a share: `POST /v1/file/meta` to every blobber, the owner signature check of
 * the content hash, and the consensus of at least d + 1 agreeing blobbers (d without parity).
 */
import { z } from 'zod';
import { PermanentError } from '../errors.js';
import type { ContentHashAlgorithm, ShareBlobber } from './download.js';
import {
  clientHeaders,
  type DownloadContext,
  describeErrorResponse,
  type Exclusion,
  notEnoughBlobbers,
  requestFailure,
} from './download-context.js';
import { BLOCK_SIZE_BYTES, shardLayout } from './erasure.js';
import { verifyBytesSignature } from './share.js';
import { type GuardedResponse, quoteText } from './url-guard.js';

const MAX_META_RESPONSE_BYTES = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// File metadata and consensus
// ---------------------------------------------------------------------------------------------

/** The agreed metadata of the file. */
export interface FileMeta {
  name: string;
  mimeType: string;
  sizeBytes: number;
  contentHash: string;
  hashAlgorithm: ContentHashAlgorithm;
  signatureVerified: boolean;
  /** Shard indices of the blobbers that agreed. */
  agreeing: number[];
}

/** The keys of the blobber's file listing used here (blobber reference/ref.go, `filelist` tags). */
const metaSchema = z.object({
  type: z.string(),
  name: z.string().default(''),
  lookup_hash: z.string().default(''),
  size: z.number().int().nonnegative().default(0),
  actual_file_size: z.number().int().nonnegative(),
  actual_file_hash: z.string(),
  actual_file_hash_signature: z.string().default(''),
  chunk_size: z.number().int().nonnegative().default(0),
  mimetype: z.string().default(''),
  encrypted_key: z.string().default(''),
});

type BlobberMeta = z.infer<typeof metaSchema>;

type MetaOutcome =
  | { kind: 'meta'; index: number; meta: BlobberMeta }
  | { kind: 'failed'; index: number; exclusion: Exclusion };

/**
 * Reads the file metadata from every blobber and returns what enough of them agree on. Blobbers
 * that failed or disagreed are dropped from the pool.
 */
export async function readFileMeta(context: DownloadContext): Promise<FileMeta> {
  const outcomes = await Promise.all(
    context.blobbers.map((_blobber, index) => requestFileMeta(context, index)),
  );
  if (context.signal?.aborted === true) {
    throw context.signal.reason;
  }
  const answers: Array<{ index: number; meta: BlobberMeta }> = [];
  for (const outcome of outcomes) {
    if (outcome.kind === 'failed') {
      context.pool.exclude(outcome.index, outcome.exclusion);
    } else if (outcome.meta.lookup_hash !== '' && outcome.meta.lookup_hash !== context.lookupHash) {
      context.pool.exclude(outcome.index, {
        reason: `returned the metadata of lookup hash ${outcome.meta.lookup_hash} instead`,
        permanent: false,
      });
    } else {
      answers.push({ index: outcome.index, meta: outcome.meta });
    }
  }

  const signed = await keepSignedAnswers(context, answers);
  const { dataShards, parityShards } = context.allocation;
  const threshold = parityShards > 0 ? dataShards + 1 : dataShards;
  const groups = groupAnswers(signed.answers);
  const winner = groups[0];
  if (winner === undefined || winner.length < threshold) {
    throw notEnoughBlobbers(
      context,
      `${winner?.length ?? 0} of ${context.blobbers.length} blobbers returned matching metadata for the shared file, but ${threshold} must agree`,
    );
  }
  for (const group of groups.slice(1)) {
    for (const answer of group) {
      context.pool.exclude(answer.index, {
        reason: `its metadata (content hash ${answer.meta.actual_file_hash}, ${answer.meta.actual_file_size} bytes) differs from the agreeing blobbers'`,
        permanent: false,
      });
    }
  }
  const agreed = (winner[0] as { meta: BlobberMeta }).meta;
  return toFileMeta(
    context,
    agreed,
    winner.map((answer) => answer.index),
    signed.verified,
  );
}

async function requestFileMeta(context: DownloadContext, index: number): Promise<MetaOutcome> {
  const blobber = context.blobbers[index] as ShareBlobber;
  // The blobber reads `path_hash` and `auth_token` (the ticket JSON, not base64) as form values.
  const form = new FormData();
  form.set('path_hash', context.lookupHash);
  form.set('auth_token', context.ticket.json);
  const encoded = new Request('http://form.invalid/', { method: 'POST', body: form });
  const body = new Uint8Array(await encoded.arrayBuffer());

  let response: GuardedResponse;
  try {
    response = await context.fetch(`${blobber.url}/v1/file/meta/${context.allocation.tx}`, {
      method: 'POST',
      headers: {
        ...clientHeaders(context),
        'Content-Type': encoded.headers.get('content-type') ?? 'multipart/form-data',
      },
      body,
      dependency: blobber.id,
      timeoutMs: context.timeoutMs,
      maxResponseBytes: MAX_META_RESPONSE_BYTES,
      redact: [context.ticket.json, context.authToken],
      ...(context.signal === undefined ? {} : { signal: context.signal }),
    });
  } catch (error) {
    return { kind: 'failed', index, exclusion: requestFailure('file metadata', error) };
  }

  if (response.status !== 200) {
    return { kind: 'failed', index, exclusion: describeErrorResponse('file metadata', response, context) };
  }
  let json: unknown;
  try {
    json = JSON.parse(response.text());
  } catch {
    return {
      kind: 'failed',
      index,
      exclusion: { reason: `file metadata is not JSON: ${quoteText(response.text())}`, permanent: false },
    };
  }
  const parsed = metaSchema.safeParse(json);
  if (!parsed.success) {
    return {
      kind: 'failed',
      index,
      exclusion: { reason: `file metadata has the wrong shape: ${parsed.error.message}`, permanent: false },
    };
  }
  return { kind: 'meta', index, meta: parsed.data };
}

/**
 * Drops the metadata responses whose content hash signature does not verify with an owner key, as
 * the Go SDK does. Without any owner key, every response is kept and `verified` is false.
 */
async function keepSignedAnswers(
  context: DownloadContext,
  answers: Array<{ index: number; meta: BlobberMeta }>,
): Promise<{ answers: Array<{ index: number; meta: BlobberMeta }>; verified: boolean }> {
  const ownerKey = context.allocation.ownerPublicKey ?? '';
  const signingKey = context.allocation.ownerSigningPublicKey ?? '';
  if (ownerKey === '' && signingKey === '') {
    context.logger.warn('owner keys unknown, so the content hash signature is not checked');
    return { answers, verified: false };
  }

  const results = new Map<string, Promise<boolean>>();
  const verify = (meta: BlobberMeta) => {
    const key = `${meta.actual_file_hash}:${meta.actual_file_hash_signature}`;
    let result = results.get(key);
    if (result === undefined) {
      result = verifyContentHashSignature(context, meta, ownerKey, signingKey);
      results.set(key, result);
    }
    return result;
  };

  const signedAnswers: Array<{ index: number; meta: BlobberMeta }> = [];
  for (const answer of answers) {
    if (await verify(answer.meta)) {
      signedAnswers.push(answer);
    } else {
      context.pool.exclude(answer.index, {
        reason: `its content hash signature does not verify with the owner's key`,
        permanent: false,
      });
    }
  }
  return { answers: signedAnswers, verified: true };
}

/**
 * Checks `actual_file_hash_signature`: the owner's signature over the raw bytes of the hex hash,
 * by the wallet key, or by the Ed25519 signing key of newer SDK versions
 * (gosdk chunked_upload_form_builder.go).
 */
async function verifyContentHashSignature(
  context: DownloadContext,
  meta: BlobberMeta,
  ownerKey: string,
  signingKey: string,
): Promise<boolean> {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(meta.actual_file_hash)) {
    return false;
  }
  const message = new Uint8Array(Buffer.from(meta.actual_file_hash, 'hex'));
  const signature = meta.actual_file_hash_signature;
  if (
    ownerKey !== '' &&
    (await verifyBytesSignature(context.operator.scheme, ownerKey, message, signature))
  ) {
    return true;
  }
  return signingKey !== '' && verifyBytesSignature('ed25519', signingKey, message, signature);
}

/** Groups metadata responses that agree on what identifies the content, largest group first. */
function groupAnswers(
  answers: Array<{ index: number; meta: BlobberMeta }>,
): Array<Array<{ index: number; meta: BlobberMeta }>> {
  const groups = new Map<string, Array<{ index: number; meta: BlobberMeta }>>();
  for (const answer of answers) {
    const { meta } = answer;
    const key = JSON.stringify([
      meta.type,
      meta.actual_file_hash,
      meta.actual_file_hash_signature,
      meta.actual_file_size,
      meta.chunk_size,
      meta.encrypted_key !== '',
    ]);
    const group = groups.get(key) ?? [];
    group.push(answer);
    groups.set(key, group);
  }
  return [...groups.values()].sort((a, b) => b.length - a.length);
}

/** Checks the agreed metadata describes a file this downloader can fetch, and returns it. */
function toFileMeta(
  context: DownloadContext,
  meta: BlobberMeta,
  agreeing: number[],
  signatureVerified: boolean,
): FileMeta {
  const name = meta.name === '' ? context.ticket.fileName : meta.name;
  if (meta.type !== 'f') {
    throw new PermanentError(
      `lookup hash ${context.lookupHash} is ${meta.type === 'd' ? 'a directory' : `of reference type ${quoteText(meta.type)}`} (${quoteText(name)}), not a file`,
    );
  }
  if (meta.encrypted_key !== '') {
    throw new PermanentError(
      `shared file ${quoteText(name)} is encrypted: encrypted shares are not supported yet`,
    );
  }
  if (meta.chunk_size !== 0 && meta.chunk_size !== BLOCK_SIZE_BYTES) {
    throw new PermanentError(
      `shared file ${quoteText(name)} was uploaded with a chunk size of ${meta.chunk_size} bytes, but blobbers serve ${BLOCK_SIZE_BYTES}-byte blocks, so only that chunk size is supported`,
    );
  }
  const contentHash = meta.actual_file_hash.toLowerCase();
  const hashAlgorithm = contentHashAlgorithm(contentHash);
  if (hashAlgorithm === undefined) {
    throw new PermanentError(
      `shared file ${quoteText(name)} has the content hash ${quoteText(contentHash)}, which is neither MD5 nor SHA3-256 hex`,
    );
  }
  if (context.ticket.actualFileHash !== '' && context.ticket.actualFileHash !== contentHash) {
    context.logger.info('file changed since it was shared', {
      ticket_hash: context.ticket.actualFileHash,
      content_hash: contentHash,
    });
  }
  const expectedShardBytes = shardLayout(meta.actual_file_size, context.allocation.dataShards).shardSizeBytes;
  if (meta.size !== expectedShardBytes) {
    context.logger.debug('blobber shard size differs from the layout', {
      shard_size_bytes: meta.size,
      expected_bytes: expectedShardBytes,
    });
  }
  return {
    name,
    mimeType: meta.mimetype === '' ? 'application/octet-stream' : meta.mimetype,
    sizeBytes: meta.actual_file_size,
    contentHash,
    hashAlgorithm,
    signatureVerified,
    agreeing,
  };
}

/**
 * Returns the hash function of a content hash: uploads by the Go SDK store an MD5 of the file
 * (gosdk zboxcore/sdk/chunked_upload_hasher.go).
 */
function contentHashAlgorithm(hash: string): ContentHashAlgorithm | undefined {
  if (/^[0-9a-f]{32}$/.test(hash)) {
    return 'md5';
  }
  // NOTE: older gosdk downloaders compared the file's SHA3-256 with actual_file_hash, so
  // 64-character hashes are tried as SHA3-256. No such upload was available to test against.
  if (/^[0-9a-f]{64}$/.test(hash)) {
    return 'sha3-256';
  }
  return undefined;
}
