/**
 * Loopback fakes of the blobbers of one allocation that serve erasure-coded files to holders of an
 * auth ticket, as 0chain/blobber does on the two endpoints a shared-file download uses:
 *
 * - `POST /v1/file/meta/<allocation tx>` (handler/storage_handler.go `GetFileMeta`): form values
 *   `path_hash` and `auth_token` (the ticket JSON); returns the file's listing without `path`.
 * - `GET /v1/file/download/<allocation tx>` (handler/object_operation_handler.go `DownloadFile`):
 *   headers `X-Path-Hash`, `X-Block-Num`, `X-Num-Blocks` (at most 500) and `X-Auth-Token` (base64
 *   of the ticket JSON). It returns the raw bytes of this blobber's shard from block
 *   `X-Block-Num` × 64 KiB.
 *
 * Both require `X-App-Client-ID`, `X-App-Client-Key` and `ALLOCATION-ID`, check the ticket as
 * readmarker/authticket.go `Verify` does (allocation, owner, recipient, expiry, the owner's
 * signature over the gosdk sprint-1.18 field list) and the registered share, and send errors as
 * the blobber's handler adapters do (core/common/handler.go: `Respond` for metadata, `ToByteStream`
 * with `X-App-Error-Code` for downloads). A blobber with a read price above 0 serves blocks only
 * against a redeemed read marker, which this fake never has, so it rejects them.
 *
 * Files are encoded with ../core/blobber/erasure.ts, or given as raw shards (for example the Go
 * encoder's from a test vector). Every blobber listens on 127.0.0.1 with an ephemeral port.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  BLOCK_SIZE_BYTES,
  encodeBlobberShards,
  pieceBytes,
  ReedSolomon,
  type ShardLayout,
  shardLayout,
} from '../core/blobber/erasure.js';
import type { SignatureScheme } from '../core/zus/signature.js';
import { verifyBytes } from './blobbers.js';

/** Most blocks a request may ask for (`block_limit_request` in the blobber's config). */
const BLOCK_LIMIT_REQUEST = 500;
/** Largest request body the fake reads; file metadata requests are a few hundred bytes. */
const MAX_REQUEST_BODY_BYTES = 64 * 1024;

/** The allocation owner: signs tickets and content hashes as the Go SDK does. */
export interface FakeStorageOwner {
  clientId: string;
  publicKey: string;
  scheme: SignatureScheme;
  /** Signs raw bytes and returns the signature in hex (`createSandboxOperator` gives one). */
  signMessage(message: Uint8Array): string;
}

/**
 * Behaviour of one fake blobber:
 * - `ok`: responds as the real blobber does;
 * - `down`: stops listening, so connections are refused;
 * - `slow`: responds correctly after `slowMs`, on every endpoint;
 * - `slow-download`: like `slow`, for block downloads only;
 * - `corrupt`: serves block downloads with altered bytes (metadata stays correct);
 * - `download-error`: responds to block downloads with HTTP 500;
 * - `forged-meta`: its metadata names another content hash, with the original signature.
 */
export type StorageBlobberBehaviour =
  | 'ok'
  | 'down'
  | 'slow'
  | 'slow-download'
  | 'corrupt'
  | 'download-error'
  | 'forged-meta';

export interface FakeBlobberStorageOptions {
  allocationId: string;
  /** Transaction hash in the URLs (default: the allocation id, as for a never-updated allocation). */
  allocationTx?: string;
  dataShards: number;
  parityShards: number;
  owner: FakeStorageOwner;
  /** Delay of the slow behaviours in milliseconds (default 30 000). */
  slowMs?: number;
  /** The blobbers' clock in unix seconds (default: the system clock). */
  now?: () => number;
}

/** One request a fake blobber responded to. No header value is kept except the block numbers. */
export interface FakeStorageRequest {
  blobberIndex: number;
  method: string;
  endpoint: 'meta' | 'download' | 'other';
  status: number;
  /** `X-Block-Num` and `X-Num-Blocks` as received, or null when absent. */
  blockNum: string | null;
  numBlocks: string | null;
  bodyBytes: number;
}

export interface FakeStorageBlobber {
  index: number;
  id: string;
  /** Base URL, `http://127.0.0.1:<port>`. */
  url: string;
  readonly behaviour: StorageBlobberBehaviour;
  readonly readPriceSas: bigint;
}

export interface AddFileInput {
  /** Absolute remote path, such as `/docs/a.pdf`; the lookup hash is computed from it. */
  path: string;
  content: Uint8Array;
  mimeType?: string;
  /** Marks the file as encrypted at upload (sets `encrypted_key`); its bytes are served as given. */
  encrypted?: boolean;
}

export interface AddShardsInput {
  path: string;
  /** One shard file per blobber, in shard order. */
  shards: readonly Uint8Array[];
  actualSizeBytes: number;
  /** Hex content hash the owner signs (MD5 for current uploads). */
  actualFileHash: string;
  mimeType?: string;
}

export interface AddGeneratedFileInput {
  path: string;
  sizeBytes: number;
  /** Selects the content; the same seed and size give the same bytes (`generatedContent`). */
  seed: number;
  mimeType?: string;
}

/** Summary of a stored file. */
export interface StoredFileInfo {
  lookupHash: string;
  name: string;
  actualFileHash: string;
  sizeBytes: number;
}

export interface ShareFileOptions {
  /** Recipient client id; empty (default) for a public share. */
  clientId?: string;
  /** Unix seconds; 0 (default) for no expiry. */
  expiration?: number;
  /** Unix seconds when the ticket is issued (default: the blobbers' clock). */
  timestamp?: number;
  encrypted?: boolean;
  referenceType?: 'f' | 'd';
  /** Whether the owner registers the share on the blobbers (default true). */
  register?: boolean;
}

export interface FakeBlobberStorage {
  allocationId: string;
  allocationTx: string;
  blobbers: readonly FakeStorageBlobber[];
  readonly requests: readonly FakeStorageRequest[];
  /** Encodes `content` as the Go SDK uploads it and stores shard k on blobber k. */
  addFile(input: AddFileInput): StoredFileInfo;
  /** Stores shards given as bytes, shard k on blobber k. */
  addShards(input: AddShardsInput): StoredFileInfo;
  /**
   * Stores a file whose content is computed from a seed, and encodes each requested block when it
   * is served, so a large file needs no memory.
   */
  addGeneratedFile(input: AddGeneratedFileInput): StoredFileInfo;
  /** Issues an auth ticket for a stored file, signed by the owner, and returns its base64 form. */
  shareFile(lookupHash: string, options?: ShareFileOptions): string;
  revokeShare(lookupHash: string, clientId?: string): void;
  setBehaviour(index: number, behaviour: StorageBlobberBehaviour): Promise<void>;
  setReadPrice(index: number, readPriceSas: bigint): void;
  /** The allocation as `GET /allocation` returns it, for the fake Züs network. */
  allocationBody(): Record<string, unknown> & { id: string };
  /** The allocation in the shape `fetchAllocationBlobbers` returns. */
  allocationView(): {
    id: string;
    tx: string;
    ownerId: string;
    ownerPublicKey: string;
    ownerSigningPublicKey: string;
    dataShards: number;
    parityShards: number;
    blobbers: Array<{ id: string; url: string; readPriceSas: bigint }>;
  };
  close(): Promise<void>;
}

interface StoredFile {
  lookupHash: string;
  name: string;
  mimeType: string;
  actualSizeBytes: number;
  actualFileHash: string;
  actualFileHashSignature: string;
  encryptedKey: string;
  /** Shard files by blobber, or the seed of generated content. */
  source: { shards: readonly Uint8Array[] } | { seed: number };
  createdAt: string;
}

interface ShareInfo {
  clientId: string;
  lookupHash: string;
  revoked: boolean;
}

interface BlobberState {
  blobber: FakeStorageBlobber & { behaviour: StorageBlobberBehaviour; readPriceSas: bigint };
  server: Server;
  port: number;
  listening: boolean;
}

interface StorageState {
  options: FakeBlobberStorageOptions;
  allocationTx: string;
  files: Map<string, StoredFile>;
  shares: Map<string, ShareInfo>;
  requests: FakeStorageRequest[];
  timers: Set<NodeJS.Timeout>;
  now: () => number;
  slowMs: number;
  /** Owner signature results by ticket JSON. */
  verifiedTickets: Map<string, boolean>;
  codec: ReedSolomon;
}

/** Starts data + parity fake blobbers on 127.0.0.1, each on its own port. */
export async function startFakeBlobberStorage(
  options: FakeBlobberStorageOptions,
): Promise<FakeBlobberStorage> {
  const total = options.dataShards + options.parityShards;
  if (
    !Number.isInteger(options.dataShards) ||
    options.dataShards < 1 ||
    !Number.isInteger(total) ||
    total > 256
  ) {
    throw new RangeError(`invalid shard counts ${options.dataShards}+${options.parityShards}`);
  }
  const state: StorageState = {
    options,
    allocationTx: options.allocationTx ?? options.allocationId,
    files: new Map(),
    shares: new Map(),
    requests: [],
    timers: new Set(),
    now: options.now ?? (() => Math.floor(Date.now() / 1000)),
    slowMs: options.slowMs ?? 30_000,
    verifiedTickets: new Map(),
    codec: new ReedSolomon(options.dataShards, options.parityShards),
  };

  const states: BlobberState[] = [];
  for (let index = 0; index < total; index += 1) {
    const blobberState: BlobberState = {
      blobber: {
        index,
        id: createHash('sha3-256').update(randomBytes(32)).digest('hex'),
        url: '',
        behaviour: 'ok',
        readPriceSas: 0n,
      },
      server: createServer(),
      port: 0,
      listening: false,
    };
    blobberState.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      handleRequest(state, blobberState, request, response).catch((error: unknown) => {
        response.destroy(error instanceof Error ? error : new Error(String(error)));
      });
    });
    await listen(blobberState);
    blobberState.blobber.url = `http://127.0.0.1:${blobberState.port}`;
    states.push(blobberState);
  }

  const stateAt = (index: number): BlobberState => {
    const found = states[index];
    if (found === undefined) {
      throw new RangeError(`no fake blobber at index ${index} (there are ${states.length})`);
    }
    return found;
  };
  const blobbers = states.map((item) => item.blobber);

  return {
    allocationId: options.allocationId,
    allocationTx: state.allocationTx,
    blobbers,
    requests: state.requests,
    addFile: (input) =>
      storeFile(state, input.path, {
        source: { shards: encodeBlobberShards(input.content, options.dataShards, options.parityShards) },
        actualSizeBytes: input.content.length,
        actualFileHash: createHash('md5').update(input.content).digest('hex'),
        mimeType: input.mimeType ?? 'application/octet-stream',
        encrypted: input.encrypted === true,
      }),
    addShards: (input) => {
      if (input.shards.length !== total) {
        throw new RangeError(`expected ${total} shards, got ${input.shards.length}`);
      }
      return storeFile(state, input.path, {
        source: { shards: input.shards },
        actualSizeBytes: input.actualSizeBytes,
        actualFileHash: input.actualFileHash,
        mimeType: input.mimeType ?? 'application/octet-stream',
        encrypted: false,
      });
    },
    addGeneratedFile: (input) => {
      const hash = createHash('md5');
      const chunk = new Uint8Array(1024 * 1024);
      for (let offset = 0; offset < input.sizeBytes; offset += chunk.length) {
        const part = chunk.subarray(0, Math.min(chunk.length, input.sizeBytes - offset));
        generatedContent(input.seed, offset, part);
        hash.update(part);
      }
      return storeFile(state, input.path, {
        source: { seed: input.seed },
        actualSizeBytes: input.sizeBytes,
        actualFileHash: hash.digest('hex'),
        mimeType: input.mimeType ?? 'application/octet-stream',
        encrypted: false,
      });
    },
    shareFile: (lookupHash, shareOptions = {}) => shareFile(state, lookupHash, shareOptions),
    revokeShare: (lookupHash, clientId = '') => {
      const share = state.shares.get(shareKey(clientId, lookupHash));
      if (share !== undefined) {
        share.revoked = true;
      }
    },
    async setBehaviour(index, behaviour) {
      const target = stateAt(index);
      target.blobber.behaviour = behaviour;
      if (behaviour === 'down' && target.listening) {
        await stopListening(target);
      } else if (behaviour !== 'down' && !target.listening) {
        await listen(target);
      }
    },
    setReadPrice(index, readPriceSas) {
      stateAt(index).blobber.readPriceSas = readPriceSas;
    },
    allocationBody: () => allocationBody(state, blobbers),
    allocationView: () => ({
      id: options.allocationId,
      tx: state.allocationTx,
      ownerId: options.owner.clientId,
      ownerPublicKey: options.owner.publicKey,
      ownerSigningPublicKey: '',
      dataShards: options.dataShards,
      parityShards: options.parityShards,
      blobbers: blobbers.map((blobber) => ({
        id: blobber.id,
        url: blobber.url,
        readPriceSas: blobber.readPriceSas,
      })),
    }),
    async close() {
      for (const timer of state.timers) {
        clearTimeout(timer);
      }
      state.timers.clear();
      await Promise.all(states.map(stopListening));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Files and shares
// ---------------------------------------------------------------------------------------------

function storeFile(
  state: StorageState,
  path: string,
  file: {
    source: StoredFile['source'];
    actualSizeBytes: number;
    actualFileHash: string;
    mimeType: string;
    encrypted: boolean;
  },
): StoredFileInfo {
  const lookupHash = createHash('sha3-256').update(`${state.options.allocationId}:${path}`).digest('hex');
  const name = path.slice(path.lastIndexOf('/') + 1);
  // gosdk signs the content hash with client.Sign, which hex-decodes it and signs the bytes.
  const signature = state.options.owner.signMessage(new Uint8Array(Buffer.from(file.actualFileHash, 'hex')));
  state.files.set(lookupHash, {
    lookupHash,
    name,
    mimeType: file.mimeType,
    actualSizeBytes: file.actualSizeBytes,
    actualFileHash: file.actualFileHash,
    actualFileHashSignature: signature,
    encryptedKey: file.encrypted ? randomBytes(32).toString('base64') : '',
    source: file.source,
    createdAt: new Date().toISOString(),
  });
  return { lookupHash, name, actualFileHash: file.actualFileHash, sizeBytes: file.actualSizeBytes };
}

function shareKey(clientId: string, lookupHash: string): string {
  return `${clientId}:${lookupHash}`;
}

/** Returns the ticket text the blobber's `Verify` checks (readmarker/authticket.go, sprint-1.18). */
function ticketSignedText(ticket: Record<string, unknown>): string {
  return [
    ticket.allocation_id,
    ticket.client_id,
    ticket.owner_id,
    ticket.file_path_hash,
    ticket.file_name,
    ticket.reference_type,
    ticket.re_encryption_key ?? '',
    ticket.expiration,
    ticket.timestamp,
    ticket.actual_file_hash,
    ticket.encrypted,
  ].join(':');
}

function shareFile(state: StorageState, lookupHash: string, options: ShareFileOptions): string {
  const file = state.files.get(lookupHash);
  const clientId = options.clientId ?? '';
  // Keys in the order of gosdk's AuthTicket struct; re_encryption_key is omitted when empty.
  const ticket: Record<string, unknown> = {
    client_id: clientId,
    owner_id: state.options.owner.clientId,
    allocation_id: state.options.allocationId,
    file_path_hash: lookupHash,
    actual_file_hash: file?.actualFileHash ?? '',
    file_name: file?.name ?? '',
    reference_type: options.referenceType ?? 'f',
    expiration: options.expiration ?? 0,
    timestamp: options.timestamp ?? state.now(),
    encrypted: options.encrypted ?? false,
  };
  const hash = createHash('sha3-256').update(ticketSignedText(ticket)).digest();
  ticket.signature = state.options.owner.signMessage(new Uint8Array(hash));
  if (options.register ?? true) {
    state.shares.set(shareKey(clientId, lookupHash), { clientId, lookupHash, revoked: false });
  }
  return Buffer.from(JSON.stringify(ticket), 'utf8').toString('base64');
}

function allocationBody(
  state: StorageState,
  blobbers: readonly FakeStorageBlobber[],
): Record<string, unknown> & { id: string } {
  const { options } = state;
  const expiration = state.now() + 365 * 24 * 3600;
  return {
    id: options.allocationId,
    tx: state.allocationTx,
    data_shards: options.dataShards,
    parity_shards: options.parityShards,
    size: 2 * 1024 ** 3,
    expiration_date: expiration,
    owner_id: options.owner.clientId,
    owner_public_key: options.owner.publicKey,
    blobbers: blobbers.map((blobber) => ({ id: blobber.id, url: blobber.url })),
    blobber_details: blobbers.map((blobber) => ({
      blobber_id: blobber.id,
      allocation_id: options.allocationId,
      size: Math.ceil((2 * 1024 ** 3) / options.dataShards),
      terms: { read_price: Number(blobber.readPriceSas), write_price: 100_000_000 },
    })),
    read_price_range: { min: 0, max: 1_000_000_000 },
    write_price_range: { min: 0, max: 1_000_000_000 },
    finalized: false,
    canceled: false,
    third_party_extendable: false,
    file_options: 63,
    start_time: expiration - 365 * 24 * 3600,
    time_unit: 8760 * 3600 * 1_000_000_000,
  };
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/** An error as the blobber's `common.Error`: its text is `<code>: <message>`. */
class BlobberError extends Error {
  constructor(
    readonly code: string,
    readonly detail: string,
  ) {
    super(`${code}: ${detail}`);
  }
}

async function handleRequest(
  state: StorageState,
  blobberState: BlobberState,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const url = new URL(request.url ?? '/', 'http://blobber');
  const metaPrefix = '/v1/file/meta/';
  const downloadPrefix = '/v1/file/download/';
  let endpoint: FakeStorageRequest['endpoint'] = 'other';
  if (url.pathname.startsWith(metaPrefix)) {
    endpoint = 'meta';
  } else if (url.pathname.startsWith(downloadPrefix)) {
    endpoint = 'download';
  }

  const behaviour = blobberState.blobber.behaviour;
  if (behaviour === 'slow' || (behaviour === 'slow-download' && endpoint === 'download')) {
    await delay(state, state.slowMs);
  }

  let status: number;
  let bodyBytes = 0;
  if (endpoint === 'meta') {
    status = await answerFileMeta(
      state,
      blobberState,
      request,
      url,
      url.pathname.slice(metaPrefix.length),
      response,
    );
  } else if (endpoint === 'download') {
    ({ status, bodyBytes } = await answerDownload(
      state,
      blobberState,
      request,
      url.pathname.slice(downloadPrefix.length),
      response,
    ));
  } else {
    status = sendText(response, 404, '404 page not found\n');
  }
  state.requests.push({
    blobberIndex: blobberState.blobber.index,
    method: request.method ?? '',
    endpoint,
    status,
    blockNum: headerValue(request, 'x-block-num'),
    numBlocks: headerValue(request, 'x-num-blocks'),
    bodyBytes,
  });
}

/** Responds to a file metadata request as `GetFileMeta` behind `common.Respond` does. */
async function answerFileMeta(
  state: StorageState,
  blobberState: BlobberState,
  request: IncomingMessage,
  url: URL,
  tx: string,
  response: ServerResponse,
): Promise<number> {
  const body = await readBody(request);
  try {
    if (request.method === 'GET') {
      throw new BlobberError('invalid_method', 'Invalid method used. Use POST instead');
    }
    const clientId = checkClient(state, request, tx, 'invalid_parameters');
    const form = await formValues(request, url, body);
    const lookupHash = form.get('path_hash') ?? '';
    if (lookupHash === '') {
      throw new BlobberError('invalid_parameters', 'Invalid path');
    }
    const file = state.files.get(lookupHash);
    if (file === undefined) {
      throw new BlobberError('invalid_parameters', 'Invalid file path. record not found');
    }
    if (clientId === state.options.owner.clientId) {
      // The owner's requests need X-App-Client-Signature, which this fake does not model.
      throw new BlobberError('invalid_signature', 'Invalid signature');
    }
    const ticketJson = form.get('auth_token') ?? '';
    const ticketError =
      (await verifyTicket(state, ticketJson, file, clientId)) ?? shareError(state, ticketJson);
    if (ticketError !== undefined) {
      throw new BlobberError('file_meta', `cannot verify auth ticket: ${ticketError}`);
    }
    return sendJson(response, 200, fileListing(state, blobberState, file));
  } catch (error) {
    if (!(error instanceof BlobberError)) {
      throw error;
    }
    return sendGoError(response, `${JSON.stringify({ code: error.code, error: error.message })}\n`);
  }
}

/** Responds to a block download as `DownloadFile` behind `common.ToByteStream` does. */
async function answerDownload(
  state: StorageState,
  blobberState: BlobberState,
  request: IncomingMessage,
  tx: string,
  response: ServerResponse,
): Promise<{ status: number; bodyBytes: number }> {
  request.resume();
  const { blobber } = blobberState;
  try {
    const clientId = checkClient(state, request, tx, 'download_file');
    const lookupHash = headerValue(request, 'x-path-hash') ?? '';
    if (lookupHash === '') {
      throw new BlobberError('invalid_parameters', 'X-Path');
    }
    const blockNum = integerHeader(request, 'x-block-num');
    if (blockNum < 0) {
      throw new BlobberError('invalid_parameters', `X-Block-Num: ${blockNum}`);
    }
    const numBlocks = integerHeader(request, 'x-num-blocks');
    if (numBlocks > BLOCK_LIMIT_REQUEST) {
      throw new BlobberError(
        'download_file',
        `too many blocks requested: ${numBlocks}, max limit is ${BLOCK_LIMIT_REQUEST}`,
      );
    }
    const file = state.files.get(lookupHash);
    if (file === undefined) {
      throw new BlobberError('download_file', 'invalid file path: record not found');
    }
    if (clientId !== state.options.owner.clientId) {
      await checkDownloadTicket(state, request, file, clientId);
    }
    if (blobber.readPriceSas > 0n) {
      const connectionId = headerValue(request, 'x-connection-id') ?? '';
      throw new BlobberError('download_file', `no download quota for ${connectionId}`);
    }
    if (blobber.behaviour === 'download-error') {
      return { status: sendText(response, 500, 'Internal Server Error\n'), bodyBytes: 0 };
    }
    const bytes = readBlocks(state, file, blobber.index, blockNum, numBlocks);
    const served = blobber.behaviour === 'corrupt' ? corrupt(bytes) : bytes;
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': served.length });
    response.end(served);
    return { status: 200, bodyBytes: served.length };
  } catch (error) {
    if (!(error instanceof BlobberError)) {
      throw error;
    }
    response.setHeader('X-App-Error-Code', error.code);
    return { status: sendGoError(response, error.message), bodyBytes: 0 };
  }
}

/**
 * Checks the client and allocation headers and the allocation in the path, and returns the
 * client id. `code` is the error code the endpoint reports them with.
 */
function checkClient(state: StorageState, request: IncomingMessage, tx: string, code: string): string {
  const clientId = headerValue(request, 'x-app-client-id') ?? '';
  const clientKey = headerValue(request, 'x-app-client-key') ?? '';
  if (clientId === '' || clientKey === '') {
    throw new BlobberError(code, 'invalid client');
  }
  const allocationId = headerValue(request, 'allocation-id') ?? '';
  if (allocationId !== state.options.allocationId || tx !== state.allocationTx) {
    throw new BlobberError(
      code,
      `invalid allocation id passed: allocation ${allocationId} with transaction ${tx} not found`,
    );
  }
  return clientId;
}

async function checkDownloadTicket(
  state: StorageState,
  request: IncomingMessage,
  file: StoredFile,
  clientId: string,
): Promise<void> {
  const token = headerValue(request, 'x-auth-token') ?? '';
  if (token === '') {
    throw new BlobberError('invalid_authticket', 'authticket is required');
  }
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(token)) {
    throw new BlobberError('invalid_authticket', 'illegal base64 data');
  }
  const json = Buffer.from(token, 'base64').toString('utf8');
  const error = await verifyTicket(state, json, file, clientId);
  if (error !== undefined) {
    throw new BlobberError('invalid_authticket', `cannot verify auth ticket: ${error}`);
  }
  const ticket = JSON.parse(json) as { client_id: string; file_path_hash: string };
  const share = state.shares.get(shareKey(ticket.client_id, ticket.file_path_hash));
  if (share === undefined) {
    throw new BlobberError(
      'invalid_share',
      'client does not have permission to download the file. share does not exist',
    );
  }
  if (share.revoked) {
    throw new BlobberError(
      'invalid_share',
      'client does not have permission to download the file. share revoked',
    );
  }
}

/**
 * Checks a ticket's fields and the owner's signature. Returns the error text, or undefined when
 * the ticket is valid. Signature results are cached by ticket text, so repeated block requests do
 * not repeat the pairing.
 */
async function verifyTicket(
  state: StorageState,
  json: string,
  file: StoredFile,
  clientId: string,
): Promise<string | undefined> {
  const fieldError = ticketFieldError(state, json, file, clientId);
  if (fieldError !== undefined) {
    return fieldError;
  }
  const ticket = JSON.parse(json) as Record<string, unknown>;
  let valid = state.verifiedTickets.get(json);
  if (valid === undefined) {
    const hash = createHash('sha3-256').update(ticketSignedText(ticket)).digest();
    const { scheme, publicKey } = state.options.owner;
    valid = await verifyBytes(scheme, publicKey, String(ticket.signature ?? ''), new Uint8Array(hash));
    state.verifiedTickets.set(json, valid);
  }
  if (!valid) {
    return 'invalid_parameters: Invalid auth ticket. Signature verification failed';
  }
  return undefined;
}

/** Returns why the ticket's share is not usable, or undefined when it is registered and not revoked. */
function shareError(state: StorageState, json: string): string | undefined {
  const ticket = JSON.parse(json) as { client_id: string; file_path_hash: string };
  const share = state.shares.get(shareKey(ticket.client_id, ticket.file_path_hash));
  if (share === undefined) {
    return 'invalid_share: share does not exist';
  }
  return share.revoked ? 'invalid_share: share revoked' : undefined;
}

/** Runs the field checks of readmarker/authticket.go `Verify` and of the requested file, and returns the first error text. */
function ticketFieldError(
  state: StorageState,
  json: string,
  file: StoredFile,
  clientId: string,
): string | undefined {
  if (json === '') {
    return 'invalid_parameters: Auth ticket is required';
  }
  let ticket: Record<string, unknown>;
  try {
    ticket = JSON.parse(json) as Record<string, unknown>;
  } catch (error) {
    return `invalid_parameters: Error parsing the auth ticket for download.${String(error)}`;
  }
  if (ticket === null || typeof ticket !== 'object') {
    return 'invalid_parameters: Error parsing the auth ticket for download. not an object';
  }

  const now = state.now();
  const expiration = Number(ticket.expiration ?? 0);
  const timestamp = Number(ticket.timestamp ?? 0);

  if (ticket.allocation_id !== state.options.allocationId) {
    return 'invalid_parameters: Invalid auth ticket. Allocation id mismatch';
  }
  if (ticket.client_id !== '' && ticket.client_id !== clientId) {
    return 'invalid_parameters: Invalid auth ticket. Client ID mismatch';
  }
  if (expiration > 0 && (expiration < timestamp || expiration < now)) {
    return 'invalid_parameters: Invalid auth ticket. Expired ticket';
  }
  if (ticket.owner_id !== state.options.owner.clientId) {
    return 'invalid_parameters: Invalid auth ticket. Owner ID mismatch';
  }
  if (timestamp > now + 2) {
    return 'invalid_parameters: Invalid auth ticket. Timestamp in future';
  }
  if (ticket.file_path_hash !== file.lookupHash) {
    return 'invalid_parameters: Auth ticket is not valid for the resource being requested';
  }
  return undefined;
}

/** Builds the file's listing as `GetListingData` does, without `path` (removed for non-owners). */
function fileListing(
  state: StorageState,
  blobberState: BlobberState,
  file: StoredFile,
): Record<string, unknown> {
  const layout = shardLayout(file.actualSizeBytes, state.options.dataShards);
  const index = blobberState.blobber.index;
  const forged = blobberState.blobber.behaviour === 'forged-meta';
  // Placeholders: the validation and challenge roots are not checked by a non-verifying download.
  const root = (kind: string) =>
    createHash('sha256').update(`${kind}:${file.lookupHash}:${index}`).digest('hex');
  return {
    type: 'f',
    name: file.name,
    lookup_hash: file.lookupHash,
    allocation_id: state.options.allocationId,
    size: shardLength(file, layout, index),
    actual_file_size: file.actualSizeBytes,
    actual_file_hash: forged ? createHash('md5').update('forged').digest('hex') : file.actualFileHash,
    actual_file_hash_signature: file.actualFileHashSignature,
    chunk_size: BLOCK_SIZE_BYTES,
    num_of_blocks: layout.rows,
    mimetype: file.mimeType,
    encrypted_key: file.encryptedKey,
    encrypted_key_point: '',
    validation_root: root('validation'),
    fixed_merkle_root: root('fixed'),
    thumbnail_size: 0,
    thumbnail_hash: '',
    actual_thumbnail_size: 0,
    actual_thumbnail_hash: '',
    hash: createHash('sha3-256').update(`${file.lookupHash}:${file.actualFileHash}`).digest('hex'),
    path_hash: file.lookupHash,
    custom_meta: '',
    is_precommit: false,
    created_at: file.createdAt,
    updated_at: file.createdAt,
  };
}

function shardLength(file: StoredFile, layout: ShardLayout, index: number): number {
  return 'shards' in file.source ? (file.source.shards[index]?.length ?? 0) : layout.shardSizeBytes;
}

/** Reads blocks as filestore `GetFileBlock` does: from block × 64 KiB, cut at the shard's end. */
function readBlocks(
  state: StorageState,
  file: StoredFile,
  index: number,
  blockNum: number,
  numBlocks: number,
): Uint8Array {
  const layout = shardLayout(file.actualSizeBytes, state.options.dataShards);
  const length = shardLength(file, layout, index);
  const start = blockNum * BLOCK_SIZE_BYTES;
  if (numBlocks === 0) {
    return new Uint8Array(0);
  }
  if (start >= length) {
    throw new BlobberError('download_file', `couldn't get file block: invalid block number ${blockNum}`);
  }
  const end = Math.min(start + numBlocks * BLOCK_SIZE_BYTES, length);
  if ('shards' in file.source) {
    return (file.source.shards[index] ?? new Uint8Array(0)).subarray(start, end);
  }
  return generatedBlocks(state, layout, file.source.seed, index, blockNum, end - start);
}

/** Encodes blobber `index`'s bytes of generated content, from row `firstRow` on, as the upload would have. */
function generatedBlocks(
  state: StorageState,
  layout: ShardLayout,
  seed: number,
  index: number,
  firstRow: number,
  length: number,
): Uint8Array {
  const { dataShards } = state.options;
  const out = new Uint8Array(length);
  const pieces = Array.from({ length: dataShards }, () => new Uint8Array(BLOCK_SIZE_BYTES));
  for (let row = firstRow, offset = 0; offset < length; row += 1, offset += BLOCK_SIZE_BYTES) {
    const pieceLength = pieceBytes(layout, row);
    const rowStart = row * dataShards * BLOCK_SIZE_BYTES;
    const data = pieces.map((piece, j) => {
      const view = piece.subarray(0, pieceLength);
      if (index < dataShards && j !== index) {
        return view;
      }
      const start = rowStart + j * pieceLength;
      const available = Math.max(0, Math.min(pieceLength, layout.fileSizeBytes - start));
      generatedContent(seed, start, view.subarray(0, available));
      view.fill(0, available);
      return view;
    });
    state.codec.computeShard(index, data, out.subarray(offset, offset + pieceLength));
  }
  return out;
}

/** Fills `out` with the generated content at `offset` of the file with `seed`. */
export function generatedContent(seed: number, offset: number, out: Uint8Array): void {
  for (let j = 0; j < out.length; j += 1) {
    out[j] = Math.imul((offset + j) ^ seed, 2654435761) >>> 24;
  }
}

/** Returns a copy with every 4096th byte flipped, so the bytes differ and the length stays. */
function corrupt(bytes: Uint8Array): Uint8Array {
  const copy = Uint8Array.from(bytes);
  for (let index = 0; index < copy.length; index += 4096) {
    copy[index] = (copy[index] as number) ^ 0xff;
  }
  return copy;
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------

function headerValue(request: IncomingMessage, name: string): string | null {
  const value = request.headers[name];
  if (value === undefined) {
    return null;
  }
  return Array.isArray(value) ? (value[0] ?? null) : value;
}

/** Reads an integer header as Go's `strconv.ParseInt` with a default of 0 does. */
function integerHeader(request: IncomingMessage, name: string): number {
  const value = headerValue(request, name) ?? '';
  return /^[+-]?\d+$/.test(value) ? Number.parseInt(value, 10) : 0;
}

/** Form values as Go's `r.FormValue` reads them: the body (multipart or URL-encoded), then the query. */
async function formValues(request: IncomingMessage, url: URL, body: Buffer): Promise<Map<string, string>> {
  const values = new Map<string, string>();
  const contentType = headerValue(request, 'content-type') ?? '';
  if (
    contentType.startsWith('multipart/form-data') ||
    contentType.startsWith('application/x-www-form-urlencoded')
  ) {
    try {
      const form = await new Response(new Uint8Array(body), {
        headers: { 'content-type': contentType },
      }).formData();
      for (const [key, value] of form) {
        if (typeof value === 'string' && !values.has(key)) {
          values.set(key, value);
        }
      }
    } catch {
      // Go ignores a body it cannot parse here and falls back to the query.
    }
  }
  for (const [key, value] of url.searchParams) {
    if (!values.has(key)) {
      values.set(key, value);
    }
  }
  return values;
}

function readBody(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_REQUEST_BODY_BYTES) {
        chunks.push(chunk);
      }
    });
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

function sendJson(response: ServerResponse, status: number, body: unknown): number {
  const text = `${JSON.stringify(body)}\n`;
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
  return status;
}

function sendText(response: ServerResponse, status: number, text: string): number {
  response.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'x-content-type-options': 'nosniff',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
  return status;
}

/** Go's `http.Error(w, text, 400)`: plain text with a newline, as both handler adapters send errors. */
function sendGoError(response: ServerResponse, text: string): number {
  return sendText(response, 400, `${text}\n`);
}

function delay(state: StorageState, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      state.timers.delete(timer);
      resolve();
    }, ms);
    state.timers.add(timer);
  });
}

function listen(blobberState: BlobberState): Promise<void> {
  return new Promise((resolve, reject) => {
    blobberState.server.once('error', reject);
    blobberState.server.listen(blobberState.port, '127.0.0.1', () => {
      blobberState.server.off('error', reject);
      blobberState.port = (blobberState.server.address() as AddressInfo).port;
      blobberState.listening = true;
      resolve();
    });
  });
}

function stopListening(blobberState: BlobberState): Promise<void> {
  if (!blobberState.listening) {
    return Promise.resolve();
  }
  blobberState.listening = false;
  return new Promise((resolve) => {
    blobberState.server.close(() => resolve());
    blobberState.server.closeAllConnections();
  });
}
