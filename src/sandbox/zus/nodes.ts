/**
 * The fake's HTTP nodes: the block worker, the miners and the sharders, each with a behaviour that
 * tests switch (down, slow, HTTP 503, a fixed response), and the routes they serve.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Chain } from './chain.js';
import { STORAGE_SC_ADDRESS } from './config.js';
import {
  ChainError,
  invalidRequest,
  listen,
  readBody,
  sendChainError,
  sendGoHttpError,
  sendGoNotFound,
  sendJson,
  sendText,
  stop,
} from './http.js';
import { sortedMap } from './json.js';
import {
  allocationBlobbers,
  allocationResponseJson,
  allocationUpdateMinLock,
  blobberJson,
  type StorageContract,
} from './storage.js';

const STORAGE_SC_PREFIX = `/v1/screst/${STORAGE_SC_ADDRESS}`;

/** Largest request body a miner reads, in bytes. Larger bodies are refused before decoding. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

/**
 * Behaviour of one sharder: `down` refuses connections, `slow` delays every response by
 * `slowMs`, `http503` returns 503 like an overloaded proxy, and `{ status, body }` returns that JSON
 * body on every path (a sharder that disagrees).
 */
export type SharderBehaviour = 'ok' | 'down' | 'slow' | 'http503' | { status?: number; body: unknown };

/**
 * Behaviour of one miner: `down`, `slow` (the transaction is handled after `slowMs`) and `http503`
 * as for sharders, or `{ error, code?, status? }` to reject every request with that chain error
 * (HTTP 400 unless `status` is given) without accepting the transaction.
 */
export type MinerBehaviour =
  | 'ok'
  | 'down'
  | 'slow'
  | 'http503'
  | { error: string; code?: string; status?: number };

/** Allocation response body as a sharder returns it. Only `id` is required. */
export type FakeAllocationBody = Record<string, unknown> & { id: string };

/** One request received by the fake. */
export interface ZusRequestRecord {
  node: 'block-worker' | 'sharder' | 'miner';
  /** Index of the sharder in `sharderUrls`, or undefined for another node. */
  sharder: number | undefined;
  /** Index of the miner in `minerUrls`, or undefined for another node. */
  miner: number | undefined;
  method: string;
  path: string;
  query: Record<string, string>;
}

/** State the nodes share. */
export interface NodesState {
  chain: Chain;
  storage: StorageContract;
  storageConfigFields: Record<string, string>;
  rawAllocations: Map<string, FakeAllocationBody>;
  requests: ZusRequestRecord[];
  slowMs: number;
  closing: boolean;
  /** Number of coming put requests whose connection is closed instead of sending the response. */
  dropPutResponses: number;
  timers: Set<NodeJS.Timeout>;
}

export interface FakeNode<B> {
  server: Server;
  port: number;
  behaviour: B;
  listening: boolean;
}

export async function startNode<B>(
  behaviour: B,
  handle: (node: FakeNode<B>, request: IncomingMessage, response: ServerResponse) => void,
): Promise<FakeNode<B>> {
  const node: FakeNode<B> = { server: createServer(), port: 0, behaviour, listening: false };
  node.server.on('request', (request, response) => handle(node, request, response));
  node.port = await listen(node.server, 0);
  node.listening = true;
  return node;
}

/** Changes one node's behaviour and resolves once a `down` node has stopped or restarted listening. */
export async function changeBehaviour<B>(
  kind: string,
  nodes: FakeNode<B>[],
  index: number,
  behaviour: B,
): Promise<void> {
  const node = nodes[index];
  if (node === undefined) {
    throw new Error(`no ${kind} ${index}: the fake has ${nodes.length} ${kind}s`);
  }
  node.behaviour = behaviour;
  if (behaviour === 'down' && node.listening) {
    node.listening = false;
    await stop(node.server);
  } else if (behaviour !== 'down' && !node.listening) {
    // The same port again, so the node URL stays valid.
    await listen(node.server, node.port);
    node.listening = true;
  }
}

function recordRequest(
  state: NodesState,
  request: IncomingMessage,
  node: ZusRequestRecord['node'],
  index: number | undefined,
): URL {
  const url = new URL(request.url ?? '/', 'http://127.0.0.1');
  state.requests.push({
    node,
    sharder: node === 'sharder' ? index : undefined,
    miner: node === 'miner' ? index : undefined,
    method: request.method ?? 'GET',
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
  });
  return url;
}

function sendServiceUnavailable(response: ServerResponse): void {
  sendText(
    response,
    503,
    '<html><head><title>503 Service Temporarily Unavailable</title></head></html>\n',
    'text/html',
  );
}

/** Runs `serve` now, or after `slowMs` for a slow node; the timer is cleared when the fake closes. */
function afterBehaviourDelay(state: NodesState, slow: boolean, serve: () => void): void {
  if (!slow) {
    serve();
    return;
  }
  const timer = setTimeout(() => {
    state.timers.delete(timer);
    serve();
  }, state.slowMs);
  state.timers.add(timer);
}

// --- block worker ---

export function handleBlockWorkerRequest(
  state: NodesState,
  network: () => { miners: string[]; sharders: string[] },
  request: IncomingMessage,
  response: ServerResponse,
): void {
  const url = recordRequest(state, request, 'block-worker', undefined);
  request.resume();
  if (url.pathname !== '/dns/network') {
    sendGoNotFound(response);
    return;
  }
  if (request.method !== 'GET') {
    sendText(response, 405, 'Method Not Allowed\n');
    return;
  }
  sendJson(response, 200, network());
}

// --- miners ---

export function handleMinerRequest(
  state: NodesState,
  node: FakeNode<MinerBehaviour>,
  index: number,
  minerId: string,
  request: IncomingMessage,
  response: ServerResponse,
): void {
  const url = recordRequest(state, request, 'miner', index);
  const behaviour = node.behaviour;
  if (behaviour === 'http503') {
    request.resume();
    sendServiceUnavailable(response);
    return;
  }
  if (typeof behaviour === 'object') {
    request.resume();
    const error = new ChainError(behaviour.error, behaviour.code);
    if (behaviour.status === undefined) {
      sendChainError(response, error);
    } else {
      const body =
        error.code === undefined ? { error: error.message } : { code: error.code, error: error.message };
      sendJson(response, behaviour.status, body);
    }
    return;
  }
  const bodyPromise = readBody(request, MAX_BODY_BYTES);
  afterBehaviourDelay(state, behaviour === 'slow', () => {
    void serveMinerRequest(state, url, minerId, request, response, bodyPromise).catch((error: unknown) => {
      if (!response.headersSent) {
        sendJson(response, 500, { code: 'internal_error', error: `internal_error: ${String(error)}` });
      }
    });
  });
}

async function serveMinerRequest(
  state: NodesState,
  url: URL,
  minerId: string,
  request: IncomingMessage,
  response: ServerResponse,
  bodyPromise: Promise<Buffer | undefined>,
): Promise<void> {
  const body = await bodyPromise;
  if (state.closing) {
    response.destroy();
    return;
  }
  if (url.pathname === '/v1/transaction/put') {
    if (body === undefined) {
      sendGoHttpError(response, 400, 'Error decoding json');
      return;
    }
    const result = await state.chain.submit(request.headers['content-type'], body, minerId);
    if (state.dropPutResponses > 0) {
      state.dropPutResponses -= 1;
      response.destroy();
      return;
    }
    if (result.kind === 'http-error') {
      sendGoHttpError(response, result.status, result.text);
    } else if (result.kind === 'chain-error') {
      sendChainError(response, result.error);
    } else {
      sendJson(response, 200, { async: true, entity: result.entity });
    }
    return;
  }
  if (url.pathname === '/v1/fees_table' && request.method === 'GET') {
    const table = state.chain.feeTable();
    sendJson(
      response,
      200,
      sortedMap(Object.entries(table).map(([sc, fees]) => [sc, sortedMap(Object.entries(fees))])),
    );
    return;
  }
  if (url.pathname === '/v1/estimate_txn_fee') {
    const fee = state.chain.estimateFeeRequest(body ?? Buffer.alloc(0));
    if (fee instanceof ChainError) {
      sendChainError(response, fee);
    } else {
      sendJson(response, 200, { fee });
    }
    return;
  }
  if (url.pathname === '/v1/block/get/latest_finalized' && request.method === 'GET') {
    sendJson(response, 200, state.chain.latestFinalizedBlock());
    return;
  }
  sendGoNotFound(response);
}

// --- sharders ---

export function handleSharderRequest(
  state: NodesState,
  node: FakeNode<SharderBehaviour>,
  index: number,
  request: IncomingMessage,
  response: ServerResponse,
): void {
  const url = recordRequest(state, request, 'sharder', index);
  request.resume();
  const behaviour = node.behaviour;
  if (behaviour === 'http503') {
    sendServiceUnavailable(response);
    return;
  }
  if (typeof behaviour === 'object') {
    sendJson(response, behaviour.status ?? 200, behaviour.body);
    return;
  }
  afterBehaviourDelay(state, behaviour === 'slow', () => serveSharderRequest(state, url, request, response));
}

function serveSharderRequest(
  state: NodesState,
  url: URL,
  request: IncomingMessage,
  response: ServerResponse,
): void {
  if (state.closing) {
    response.destroy();
    return;
  }
  if (request.method !== 'GET') {
    sendGoNotFound(response);
    return;
  }
  const query = url.searchParams;
  const chain = state.chain;
  switch (url.pathname) {
    case '/v1/transaction/get/confirmation':
      serveConfirmation(state, query.get('hash') ?? '', query.get('content') ?? '', response);
      return;
    case '/v1/client/get/balance': {
      const balance = chain.balanceResponse(query.get('client_id') ?? '');
      if (balance === undefined) {
        sendChainError(response, new ChainError('value not present'));
      } else {
        sendJson(response, 200, balance);
      }
      return;
    }
    case '/v1/current-round':
      sendJson(response, 200, chain.currentRound());
      return;
    case '/v1/block/get/latest_finalized':
      sendJson(response, 200, chain.latestFinalizedBlock());
      return;
  }
  if (url.pathname.startsWith(`${STORAGE_SC_PREFIX}/`)) {
    serveStorageRead(state, url.pathname.slice(STORAGE_SC_PREFIX.length + 1), query, response);
    return;
  }
  sendGoNotFound(response);
}

/**
 * sharder `TransactionConfirmationHandler`: with `content` empty or `confirmation` the bare
 * confirmation (or the error), otherwise `{confirmation | error, latest_finalized_block}` with HTTP 200.
 */
function serveConfirmation(state: NodesState, hash: string, content: string, response: ServerResponse): void {
  if (hash === '') {
    sendChainError(response, invalidRequest('transaction hash (parameter hash) is required'));
    return;
  }
  const confirmation = state.chain.confirmation(hash);
  const notFound = new ChainError(`txn_summary not found with id = ${hash}`, 'entity_not_found');
  if (content === '' || content === 'confirmation') {
    if (confirmation === undefined) {
      sendChainError(response, notFound);
    } else {
      sendJson(response, 200, confirmation);
    }
    return;
  }
  const body =
    confirmation === undefined
      ? {
          error: { code: notFound.code, msg: notFound.msg },
          latest_finalized_block: state.chain.latestFinalizedBlock(),
        }
      : { confirmation, latest_finalized_block: state.chain.latestFinalizedBlock() };
  sendJson(response, 200, body);
}

/** Parses `offset` and `limit` (default 20, at most 50) as the storage REST handlers page their lists. */
function pagination(query: URLSearchParams): { offset: number; limit: number } | ChainError {
  const offsetText = query.get('offset') ?? '';
  const limitText = query.get('limit') ?? '';
  const offset = offsetText === '' ? 0 : Number(offsetText);
  const limit = limitText === '' ? 20 : Number(limitText);
  if (!Number.isInteger(offset) || offset < 0) {
    return new ChainError(`offset value was not valid: ${offsetText}`, 'invalid_request');
  }
  if (!Number.isInteger(limit) || limit < 0) {
    return new ChainError(`limit value was not valid: ${limitText}`, 'invalid_request');
  }
  return { offset, limit: Math.min(limit, 50) };
}

function serveStorageRead(
  state: NodesState,
  endpoint: string,
  query: URLSearchParams,
  response: ServerResponse,
): void {
  const storage = state.storage;
  const now = state.chain.now();
  switch (endpoint) {
    case 'storage-config':
      sendJson(response, 200, { fields: state.storageConfigFields });
      return;
    case 'allocation':
      serveAllocation(state, query.get('allocation') ?? '', response);
      return;
    case 'allocations': {
      const page = pagination(query);
      if (page instanceof ChainError) {
        sendChainError(response, page);
        return;
      }
      const client = query.get('client') ?? '';
      const owned = [
        ...[...storage.allocations.values()]
          .filter((allocation) => allocation.owner === client)
          .map((allocation) => allocationResponseJson(allocation, storage.blobbers, now)),
        ...[...state.rawAllocations.values()].filter((body) => body.owner_id === client),
      ];
      sendJson(response, 200, owned.slice(page.offset, page.offset + page.limit));
      return;
    }
    case 'getblobbers': {
      serveBlobbers(state, query, response);
      return;
    }
    case 'getBlobber': {
      const id = query.get('blobber_id') ?? '';
      if (id === '') {
        sendChainError(
          response,
          new ChainError("missing 'blobber_id' URL query parameter", 'invalid_request'),
        );
        return;
      }
      const blobber = storage.blobbers.get(id);
      if (blobber === undefined) {
        sendChainError(
          response,
          new ChainError(`error retrieving blobber ${id}, error record not found`, 'internal_error'),
        );
        return;
      }
      sendJson(response, 200, blobberJson(blobber, now));
      return;
    }
    case 'alloc_blobbers': {
      const page = pagination(query);
      if (page instanceof ChainError) {
        sendChainError(response, page);
        return;
      }
      const ids = allocationBlobbers(storage, {
        data: query.get('allocation_data') ?? '',
        force: query.get('force') === 'true',
        limit: page.limit,
        offset: page.offset,
        now,
      });
      if (ids instanceof ChainError) {
        sendChainError(response, ids);
      } else {
        sendJson(response, 200, ids);
      }
      return;
    }
    case 'allocation-update-min-lock': {
      const minLock = allocationUpdateMinLock(storage, query.get('data') ?? '', now);
      if (minLock instanceof ChainError) {
        sendChainError(response, minLock);
      } else {
        sendJson(response, 200, { min_lock_demand: minLock });
      }
      return;
    }
  }
  sendGoNotFound(response);
}

/**
 * Serves one allocation. A real sharder reads it from its event database, and its storage SC REST
 * handler wraps a missing row as HTTP 500 with code `internal_error`.
 */
function serveAllocation(state: NodesState, id: string, response: ServerResponse): void {
  const ledger = state.storage.allocations.get(id);
  if (ledger !== undefined) {
    sendJson(response, 200, allocationResponseJson(ledger, state.storage.blobbers, state.chain.now()));
    return;
  }
  const allocation = state.rawAllocations.get(id);
  if (allocation !== undefined) {
    sendJson(response, 200, allocation);
    return;
  }
  sendJson(response, 500, {
    code: 'internal_error',
    error: `internal_error: can't get allocation: error retrieving allocation: ${id}, error: record not found`,
  });
}

/**
 * storagesc handler.go `getBlobbers`: `{"Nodes": [...]}`, filtered by `blobber_ids` (a JSON array),
 * `active=true` (healthy within health_check_period, not killed or shut down) or `stakable=true`.
 */
function serveBlobbers(state: NodesState, query: URLSearchParams, response: ServerResponse): void {
  const page = pagination(query);
  if (page instanceof ChainError) {
    sendChainError(response, page);
    return;
  }
  const now = state.chain.now();
  const period = state.storage.settings().healthCheckPeriodSeconds;
  let blobbers = [...state.storage.blobbers.values()];
  const idsText = query.get('blobber_ids');
  if (idsText !== null && idsText !== '') {
    let ids: unknown;
    try {
      ids = JSON.parse(idsText);
    } catch {
      ids = undefined;
    }
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) {
      sendChainError(response, new ChainError('blobber_ids list is malformed', 'invalid_request'));
      return;
    }
    blobbers = blobbers.filter((blobber) => ids.includes(blobber.id));
  } else if (query.get('active') === 'true') {
    blobbers = blobbers.filter(
      (blobber) =>
        (blobber.lastHealthCheck ?? now) > now - period && !blobber.isKilled && !blobber.isShutdown,
    );
  } else if (query.get('stakable') === 'true') {
    blobbers = blobbers.filter((blobber) => !blobber.isKilled && !blobber.isShutdown);
  }
  if (query.get('sort') === 'desc') {
    blobbers.reverse();
  }
  const nodes = blobbers
    .slice(page.offset, page.offset + page.limit)
    .map((blobber) => blobberJson(blobber, now));
  sendJson(response, 200, { Nodes: nodes });
}

export async function stopNode<B>(node: FakeNode<B>): Promise<void> {
  if (node.listening) {
    node.listening = false;
    await stop(node.server);
  }
}
