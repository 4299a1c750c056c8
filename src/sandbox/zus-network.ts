/**
 * Loopback fake of the read side of a Züs network: one block worker and N sharders serving
 * the real paths and response shapes. Tests pass every fixture in, because this module reads no files.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Storage smart-contract address, written out here rather than imported from the client, so a
 * wrong address in the client makes its requests miss these routes.
 */
const STORAGE_SC = '6dba10422e368813802877a85039d3985d96760ed844092319743fb3a76712d7';
const STORAGE_SC_PREFIX = `/v1/screst/${STORAGE_SC}`;

/**
 * Behaviour of one sharder: `down` refuses connections, `slow` delays every response by
 * `slowMs`, `http503` returns 503 like an overloaded proxy, and `{ status, body }` returns that JSON
 * body on every path (a sharder that disagrees).
 */
export type SharderBehaviour = 'ok' | 'down' | 'slow' | 'http503' | { status?: number; body: unknown };

/** Allocation response body as a sharder returns it. Only `id` is required. */
export type FakeAllocationBody = Record<string, unknown> & { id: string };

export interface ZusNetworkOptions {
  sharders: number;
  /** The storage-config `fields` map, with string values as on the chain. */
  storageConfigFields?: Record<string, string>;
  allocations?: FakeAllocationBody[];
  /** Miner URLs that the block worker lists. This fake serves no miner. */
  minerUrls?: string[];
  /** Delay of each response from a `slow` sharder, in milliseconds (default 60 s). */
  slowMs?: number;
}

/** One request received by the fake. */
export interface ZusRequestRecord {
  node: 'block-worker' | 'sharder';
  /** Index of the sharder in `sharderUrls`, or undefined for the block worker. */
  sharder: number | undefined;
  method: string;
  path: string;
  query: Record<string, string>;
}

export interface ZusNetworkFake {
  blockWorkerUrl: string;
  sharderUrls: string[];
  /** Every request in arrival order. */
  readonly requests: readonly ZusRequestRecord[];
  setStorageConfigFields(fields: Record<string, string>): void;
  upsertAllocation(allocation: FakeAllocationBody): void;
  removeAllocation(id: string): void;
  /** Changes one sharder's behaviour and resolves once a `down` sharder has stopped or restarted listening. */
  setSharderBehaviour(index: number, behaviour: SharderBehaviour): Promise<void>;
  close(): Promise<void>;
}

interface FakeState {
  storageConfigFields: Record<string, string>;
  allocations: Map<string, FakeAllocationBody>;
  requests: ZusRequestRecord[];
  slowMs: number;
  closing: boolean;
}

interface FakeSharder {
  server: Server;
  port: number;
  behaviour: SharderBehaviour;
  listening: boolean;
}

/** Starts the block worker and `options.sharders` sharders on 127.0.0.1 with ephemeral ports. */
export async function startZusNetwork(options: ZusNetworkOptions): Promise<ZusNetworkFake> {
  if (!Number.isInteger(options.sharders) || options.sharders < 1) {
    throw new Error(`invalid sharder count ${options.sharders}: expected an integer of at least 1`);
  }
  const state: FakeState = {
    storageConfigFields: { ...(options.storageConfigFields ?? {}) },
    allocations: new Map((options.allocations ?? []).map((item) => [item.id, item])),
    requests: [],
    slowMs: options.slowMs ?? 60_000,
    closing: false,
  };

  const sharders: FakeSharder[] = [];
  for (let index = 0; index < options.sharders; index += 1) {
    const sharder: FakeSharder = { server: createServer(), port: 0, behaviour: 'ok', listening: false };
    sharder.server.on('request', (request, response) =>
      handleSharderRequest(state, sharder, index, request, response),
    );
    sharder.port = await listen(sharder.server, 0);
    sharder.listening = true;
    sharders.push(sharder);
  }
  const sharderUrls = sharders.map((sharder) => `http://127.0.0.1:${sharder.port}`);

  const blockWorker = createServer((request, response) =>
    handleBlockWorkerRequest(
      state,
      { miners: options.minerUrls ?? [], sharders: sharderUrls },
      request,
      response,
    ),
  );
  const blockWorkerPort = await listen(blockWorker, 0);

  return {
    blockWorkerUrl: `http://127.0.0.1:${blockWorkerPort}/dns`,
    sharderUrls,
    requests: state.requests,
    setStorageConfigFields: (fields) => {
      state.storageConfigFields = { ...fields };
    },
    upsertAllocation: (allocation) => {
      state.allocations.set(allocation.id, allocation);
    },
    removeAllocation: (id) => {
      state.allocations.delete(id);
    },
    setSharderBehaviour: (index, behaviour) => changeBehaviour(sharders, index, behaviour),
    close: async () => {
      state.closing = true;
      await Promise.all([
        ...sharders.filter((sharder) => sharder.listening).map((sharder) => stop(sharder.server)),
        stop(blockWorker),
      ]);
    },
  };
}

/**
 * Builds an allocation response in today's shape (storageAllocationBlobbers) with plausible
 * defaults: 2 data and 2 parity shards, 2 GiB, one year from now, no blobbers.
 */
export function fakeAllocationBody(input: {
  id: string;
  ownerId: string;
  dataShards?: number;
  parityShards?: number;
  sizeBytes?: number;
  expiresAt?: Date;
  finalized?: boolean;
  canceled?: boolean;
  thirdPartyExtendable?: boolean;
}): FakeAllocationBody {
  const expiresAt = input.expiresAt ?? new Date(Date.now() + 365 * 24 * 3600 * 1000);
  const expirationSeconds = Math.floor(expiresAt.getTime() / 1000);
  return {
    id: input.id,
    tx: input.id,
    data_shards: input.dataShards ?? 2,
    parity_shards: input.parityShards ?? 2,
    size: input.sizeBytes ?? 2 * 1024 ** 3,
    expiration_date: expirationSeconds,
    owner_id: input.ownerId,
    owner_public_key: '',
    stats: { used_size: 0, num_of_writes: 0, num_of_reads: 0, total_challenges: 0, num_open_challenges: 0 },
    blobber_details: [],
    blobbers: [],
    third_party_extendable: input.thirdPartyExtendable ?? false,
    file_options: 63,
    write_pool: 0,
    read_price_range: { min: 0, max: 0 },
    write_price_range: { min: 0, max: 250_000_000 },
    start_time: expirationSeconds - 365 * 24 * 3600,
    finalized: input.finalized ?? false,
    canceled: input.canceled ?? false,
    // Go encodes time.Duration as integer nanoseconds: 8760 h.
    time_unit: 8760 * 3600 * 1_000_000_000,
  };
}

function handleBlockWorkerRequest(
  state: FakeState,
  network: { miners: string[]; sharders: string[] },
  request: IncomingMessage,
  response: ServerResponse,
): void {
  const url = recordRequest(state, request, 'block-worker', undefined);
  if (url.pathname !== '/dns/network') {
    sendGoNotFound(response);
    return;
  }
  if (request.method !== 'GET') {
    sendText(response, 405, 'Method Not Allowed\n');
    return;
  }
  sendJson(response, 200, network);
}

function handleSharderRequest(
  state: FakeState,
  sharder: FakeSharder,
  index: number,
  request: IncomingMessage,
  response: ServerResponse,
): void {
  const url = recordRequest(state, request, 'sharder', index);
  const behaviour = sharder.behaviour;
  if (behaviour === 'slow') {
    const timer = setTimeout(() => serveSharderRequest(state, url, request, response), state.slowMs);
    response.on('close', () => clearTimeout(timer));
    return;
  }
  if (behaviour === 'http503') {
    sendText(
      response,
      503,
      '<html><head><title>503 Service Temporarily Unavailable</title></head></html>\n',
      'text/html',
    );
    return;
  }
  if (typeof behaviour === 'object') {
    sendJson(response, behaviour.status ?? 200, behaviour.body);
    return;
  }
  serveSharderRequest(state, url, request, response);
}

function serveSharderRequest(
  state: FakeState,
  url: URL,
  request: IncomingMessage,
  response: ServerResponse,
): void {
  if (state.closing) {
    response.destroy();
    return;
  }
  if (url.pathname === `${STORAGE_SC_PREFIX}/storage-config` && request.method === 'GET') {
    sendJson(response, 200, { fields: state.storageConfigFields });
    return;
  }
  if (url.pathname === `${STORAGE_SC_PREFIX}/allocation` && request.method === 'GET') {
    serveAllocation(state, url.searchParams.get('allocation') ?? '', response);
    return;
  }
  sendGoNotFound(response);
}

/**
 * Serves one allocation. A real sharder reads it from its event database, and its storage SC REST
 * handler wraps a missing row as HTTP 500 with code `internal_error`.
 */
function serveAllocation(state: FakeState, id: string, response: ServerResponse): void {
  const allocation = state.allocations.get(id);
  if (allocation !== undefined) {
    sendJson(response, 200, allocation);
    return;
  }
  sendJson(response, 500, {
    code: 'internal_error',
    error: `internal_error: can't get allocation: error retrieving allocation: ${id}, error: record not found`,
  });
}

function recordRequest(
  state: FakeState,
  request: IncomingMessage,
  node: ZusRequestRecord['node'],
  sharder: number | undefined,
): URL {
  const url = new URL(request.url ?? '/', 'http://127.0.0.1');
  state.requests.push({
    node,
    sharder,
    method: request.method ?? 'GET',
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
  });
  request.resume();
  return url;
}

async function changeBehaviour(
  sharders: FakeSharder[],
  index: number,
  behaviour: SharderBehaviour,
): Promise<void> {
  const sharder = sharders[index];
  if (sharder === undefined) {
    throw new Error(`no sharder ${index}: the fake has ${sharders.length} sharders`);
  }
  sharder.behaviour = behaviour;
  if (behaviour === 'down' && sharder.listening) {
    sharder.listening = false;
    await stop(sharder.server);
  } else if (behaviour !== 'down' && !sharder.listening) {
    // The same port again, so the sharder URL stays valid.
    await listen(sharder.server, sharder.port);
    sharder.listening = true;
  }
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  // Go's json.Encoder ends the document with a newline.
  const text = `${JSON.stringify(body)}\n`;
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

function sendText(
  response: ServerResponse,
  status: number,
  text: string,
  type = 'text/plain; charset=utf-8',
): void {
  response.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

/** Go's http.NotFound response for a path no route matches. */
function sendGoNotFound(response: ServerResponse): void {
  sendText(response, 404, '404 page not found\n');
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function stop(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
