/**
 * Loopback fake of the Elasticsearch 9 REST API parts that the workers use: bulk with `create`,
 * `index` and `delete`, single-document create and get, refresh and the info page. It behaves
 * like the real server where the client notices: the product header, the compatibility media
 * types, 409 on a duplicate create, per-item errors in bulk responses and 400 on malformed NDJSON.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An injected item failure: the next `times` writes of one document id fail with this error. */
export interface ItemFault {
  /** HTTP status of the item, for example 429 or 400. */
  status: number;
  /** Error type (by default one that Elasticsearch uses for that status). */
  type?: string;
  reason?: string;
  /** How many writes of the id fail (default 1). */
  times?: number;
}

/** One request received by the fake. */
export interface EsRequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType: string | undefined;
  /** Scheme of the Authorization header (`ApiKey`, `Basic`). The credentials are not recorded. */
  authScheme: string | undefined;
}

export interface ElasticsearchFake {
  url: string;
  /** Number of requests received, including failed and retried ones. */
  readonly requestCount: number;
  readonly requests: readonly EsRequestRecord[];
  /** A copy of the stored documents of one index, by id. */
  documents(index: string): Map<string, Record<string, unknown>>;
  /** Makes the next write(s) of document `id` fail at item level (bulk) or as the whole response (single create). */
  failNextItem(id: string, fault: ItemFault): void;
  /** Makes the next `count` requests fail as a whole with `status` (default 503). */
  failNextRequests(count: number, status?: number): void;
  /** Turns the `x-elastic-product` header off or on, to show what the client does without it. */
  setProductHeader(enabled: boolean): void;
  close(): Promise<void>;
}

interface StoredDocument {
  source: Record<string, unknown>;
  version: number;
  seqNo: number;
}

interface FakeState {
  indices: Map<string, Map<string, StoredDocument>>;
  itemFaults: Map<string, ItemFault & { times: number }>;
  requestFaults: { count: number; status: number };
  requests: EsRequestRecord[];
  productHeader: boolean;
  seqNo: number;
}

/** A response to send: status and JSON body. */
interface EsResponse {
  status: number;
  body: unknown;
}

/** Largest request body accepted, as Elasticsearch's default `http.max_content_length` (100 MB). */
const MAX_BODY_BYTES = 100 * 1024 * 1024;

/** Maximum document id length that Elasticsearch accepts, in UTF-8 bytes. */
const MAX_ID_BYTES = 512;

const DEFAULT_ERROR_TYPES: Record<number, string> = {
  400: 'document_parsing_exception',
  429: 'es_rejected_execution_exception',
  503: 'unavailable_shards_exception',
};

/** Starts the fake on 127.0.0.1 with an ephemeral port. */
export async function startElasticsearchFake(): Promise<ElasticsearchFake> {
  const state: FakeState = {
    indices: new Map(),
    itemFaults: new Map(),
    requestFaults: { count: 0, status: 503 },
    requests: [],
    productHeader: true,
    seqNo: 0,
  };
  const server = createServer((request, response) => {
    handleRequest(state, request, response).catch((error: unknown) => {
      send(state, request, response, errorResponse(500, 'exception', String(error)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    get requestCount() {
      return state.requests.length;
    },
    requests: state.requests,
    documents: (index) =>
      new Map(
        [...(state.indices.get(index) ?? new Map<string, StoredDocument>())].map(([id, doc]) => [
          id,
          structuredClone(doc.source),
        ]),
      ),
    failNextItem: (id, fault) => {
      state.itemFaults.set(id, { ...fault, times: fault.times ?? 1 });
    },
    failNextRequests: (count, status = 503) => {
      state.requestFaults = { count, status };
    },
    setProductHeader: (enabled) => {
      state.productHeader = enabled;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function handleRequest(
  state: FakeState,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const url = new URL(request.url ?? '/', 'http://127.0.0.1');
  const contentType = request.headers['content-type'];
  state.requests.push({
    method: request.method ?? 'GET',
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
    contentType,
    authScheme: request.headers.authorization?.split(' ')[0],
  });

  const body = await readBody(request);
  if (body === undefined) {
    send(
      state,
      request,
      response,
      errorResponse(413, 'content_too_long_exception', 'request body is too large'),
    );
    return;
  }
  if (state.requestFaults.count > 0) {
    state.requestFaults.count -= 1;
    const status = state.requestFaults.status;
    send(
      state,
      request,
      response,
      errorResponse(status, DEFAULT_ERROR_TYPES[status] ?? 'exception', 'injected request failure'),
    );
    return;
  }

  const mediaProblem = body.length > 0 ? checkContentType(contentType) : undefined;
  send(state, request, response, mediaProblem ?? route(state, request.method ?? 'GET', url, body));
}

function route(state: FakeState, method: string, url: URL, body: string): EsResponse {
  const refreshProblem = checkRefresh(url.searchParams.get('refresh'));
  if (refreshProblem !== undefined) {
    return refreshProblem;
  }
  const parts = url.pathname
    .split('/')
    .filter((part) => part !== '')
    .map(decodeURIComponent);
  const [first, second, third] = parts;

  if (parts.length === 0 && (method === 'GET' || method === 'HEAD')) {
    return { status: 200, body: infoBody() };
  }
  if (
    (method === 'POST' || method === 'PUT') &&
    ((parts.length === 1 && first === '_bulk') || (parts.length === 2 && second === '_bulk'))
  ) {
    return bulk(state, parts.length === 2 ? first : undefined, body);
  }
  if (parts.length === 3 && first !== undefined && third !== undefined) {
    return documentRoute(state, method, url, { index: first, endpoint: second, id: third }, body);
  }
  if (parts.length === 2 && second === '_refresh' && (method === 'POST' || method === 'GET')) {
    return { status: 200, body: { _shards: { total: 1, successful: 1, failed: 0 } } };
  }
  return {
    status: 400,
    body: { error: `no handler found for uri [${url.pathname}] and method [${method}]` },
  };
}

function documentRoute(
  state: FakeState,
  method: string,
  url: URL,
  target: { index: string; endpoint: string | undefined; id: string },
  body: string,
): EsResponse {
  const writes = method === 'PUT' || method === 'POST';
  if (
    writes &&
    (target.endpoint === '_create' ||
      (target.endpoint === '_doc' && url.searchParams.get('op_type') === 'create'))
  ) {
    return singleWrite(state, 'create', target.index, target.id, body);
  }
  if (writes && target.endpoint === '_doc') {
    return singleWrite(state, 'index', target.index, target.id, body);
  }
  if (method === 'GET' && target.endpoint === '_doc') {
    const stored = state.indices.get(target.index)?.get(target.id);
    if (stored === undefined) {
      return { status: 404, body: { _index: target.index, _id: target.id, found: false } };
    }
    const meta = {
      _index: target.index,
      _id: target.id,
      _version: stored.version,
      _seq_no: stored.seqNo,
      _primary_term: 1,
    };
    return { status: 200, body: { ...meta, found: true, _source: stored.source } };
  }
  return {
    status: 405,
    body: errorBody(
      405,
      'method_not_allowed',
      `Incorrect HTTP method for uri [${url.pathname}] and method [${method}]`,
    ),
  };
}

/** Applies a single-document write and returns the item as the response, or the item's error as an error response. */
function singleWrite(
  state: FakeState,
  action: 'create' | 'index',
  index: string,
  id: string,
  body: string,
): EsResponse {
  const source = parseSource(body);
  if (source === undefined) {
    return errorResponse(
      400,
      'document_parsing_exception',
      '[1:1] failed to parse: the document is not a JSON object',
    );
  }
  const item = applyWrite(state, action, index, id, source);
  const { status, error, ...result } = item;
  if (error !== undefined) {
    return { status, body: { error: { root_cause: [error], ...error }, status } };
  }
  return { status, body: result };
}

interface BulkItem {
  status: number;
  error?: Record<string, unknown>;
  [key: string]: unknown;
}

const BULK_ACTIONS = new Set(['create', 'index', 'delete']);
const ACTION_PARAMETERS = new Set([
  '_index',
  '_id',
  'routing',
  'pipeline',
  'require_alias',
  'if_seq_no',
  'if_primary_term',
  'version',
  'version_type',
  'dynamic_templates',
]);

/** Parses the NDJSON body line by line, failing the whole request on a malformed line as Elasticsearch does. */
function bulk(state: FakeState, pathIndex: string | undefined, body: string): EsResponse {
  if (body.length === 0) {
    return errorResponse(400, 'parse_exception', 'request body is required');
  }
  if (!body.endsWith('\n')) {
    return errorResponse(
      400,
      'illegal_argument_exception',
      'The bulk request must be terminated by a newline [\\n]',
    );
  }
  const lines = body.slice(0, -1).split('\n');
  const operations: Array<{ action: string; meta: Record<string, unknown>; sourceLine: string | undefined }> =
    [];

  for (let lineIndex = 0; lineIndex < lines.length; lineIndex += 1) {
    const lineNumber = lineIndex + 1;
    const parsed = parseActionLine(lines[lineIndex] ?? '', lineNumber);
    if ('status' in parsed) {
      return parsed;
    }
    let sourceLine: string | undefined;
    if (parsed.action !== 'delete') {
      sourceLine = lines[lineIndex + 1];
      lineIndex += 1;
      if (sourceLine === undefined || sourceLine.trim() === '') {
        return errorResponse(
          400,
          'action_request_validation_exception',
          'Validation Failed: 1: source is missing;',
        );
      }
    }
    operations.push({ ...parsed, sourceLine });
  }

  const started = Date.now();
  const items = operations.map((operation) => ({
    [operation.action]: applyBulkOperation(state, pathIndex, operation),
  }));
  const errors = items.some((item) => Object.values(item).some((result) => result.error !== undefined));
  return { status: 200, body: { errors, took: Date.now() - started, items } };
}

function parseActionLine(
  line: string,
  lineNumber: number,
): { action: string; meta: Record<string, unknown> } | EsResponse {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (error) {
    // NOTE: the error type of a non-JSON action line was not checked against a real server.
    return errorResponse(400, 'x_content_parse_exception', `[${lineNumber}:1] ${String(error)}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    const found = Array.isArray(parsed) ? 'START_ARRAY' : 'VALUE_STRING';
    return errorResponse(
      400,
      'illegal_argument_exception',
      `Malformed action/metadata line [${lineNumber}], expected START_OBJECT but found [${found}]`,
    );
  }
  const [action, ...extra] = Object.keys(parsed);
  const meta = action === undefined ? undefined : (parsed as Record<string, unknown>)[action];
  if (action === undefined || extra.length > 0 || !BULK_ACTIONS.has(action)) {
    const found = action ?? 'END_OBJECT';
    return errorResponse(
      400,
      'illegal_argument_exception',
      `Malformed action/metadata line [${lineNumber}], expected field [create], [delete], [index] or [update] but found [${found}]`,
    );
  }
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) {
    return errorResponse(
      400,
      'illegal_argument_exception',
      `Malformed action/metadata line [${lineNumber}], expected START_OBJECT but found [VALUE_STRING]`,
    );
  }
  const unknown = Object.keys(meta).find((key) => !ACTION_PARAMETERS.has(key));
  if (unknown !== undefined) {
    return errorResponse(
      400,
      'illegal_argument_exception',
      `Action/metadata line [${lineNumber}] contains an unknown parameter [${unknown}]`,
    );
  }
  return { action, meta: meta as Record<string, unknown> };
}

function applyBulkOperation(
  state: FakeState,
  pathIndex: string | undefined,
  operation: { action: string; meta: Record<string, unknown>; sourceLine: string | undefined },
): BulkItem {
  const index = typeof operation.meta._index === 'string' ? operation.meta._index : pathIndex;
  const id = typeof operation.meta._id === 'string' ? operation.meta._id : undefined;
  if (index === undefined) {
    return {
      _index: null,
      _id: id ?? null,
      status: 400,
      error: errorCause('action_request_validation_exception', 'Validation Failed: 1: index is missing;'),
    };
  }
  if (operation.action === 'delete') {
    return applyDelete(state, index, id);
  }
  const source = parseSource(operation.sourceLine ?? '');
  if (source === undefined) {
    return {
      _index: index,
      _id: id ?? null,
      status: 400,
      error: errorCause(
        'document_parsing_exception',
        '[1:1] failed to parse: the document is not a JSON object',
        index,
      ),
    };
  }
  return applyWrite(
    state,
    operation.action as 'create' | 'index',
    index,
    id ?? randomUUID().replaceAll('-', ''),
    source,
  );
}

/** Applies one create or index: injected faults first, then index and id validation, then the version rules. */
function applyWrite(
  state: FakeState,
  action: 'create' | 'index',
  index: string,
  id: string,
  source: Record<string, unknown>,
): BulkItem {
  const fault = takeItemFault(state, id);
  if (fault !== undefined) {
    return {
      _index: index,
      _id: id,
      status: fault.status,
      error: errorCause(
        fault.type ?? DEFAULT_ERROR_TYPES[fault.status] ?? 'exception',
        fault.reason ?? 'injected item failure',
        index,
      ),
    };
  }
  const invalid = validateTarget(index, id);
  if (invalid !== undefined) {
    return { _index: index, _id: id, status: 400, error: invalid };
  }

  const documents = state.indices.get(index) ?? new Map<string, StoredDocument>();
  state.indices.set(index, documents);
  const existing = documents.get(id);
  if (existing !== undefined && action === 'create') {
    const reason = `[${id}]: version conflict, document already exists (current version [${existing.version}])`;
    return {
      _index: index,
      _id: id,
      status: 409,
      error: errorCause('version_conflict_engine_exception', reason, index),
    };
  }

  const stored: StoredDocument = { source, version: (existing?.version ?? 0) + 1, seqNo: state.seqNo };
  state.seqNo += 1;
  documents.set(id, stored);
  return {
    _index: index,
    _id: id,
    _version: stored.version,
    result: existing === undefined ? 'created' : 'updated',
    _shards: { total: 1, successful: 1, failed: 0 },
    _seq_no: stored.seqNo,
    _primary_term: 1,
    status: existing === undefined ? 201 : 200,
  };
}

function applyDelete(state: FakeState, index: string, id: string | undefined): BulkItem {
  if (id === undefined) {
    return {
      _index: index,
      _id: null,
      status: 400,
      error: errorCause('action_request_validation_exception', 'Validation Failed: 1: id is missing;', index),
    };
  }
  const documents = state.indices.get(index);
  const existing = documents?.get(id);
  documents?.delete(id);
  const result = existing === undefined ? 'not_found' : 'deleted';
  return {
    _index: index,
    _id: id,
    _version: (existing?.version ?? 0) + 1,
    result,
    _shards: { total: 1, successful: 1, failed: 0 },
    status: existing === undefined ? 404 : 200,
  };
}

function takeItemFault(state: FakeState, id: string): ItemFault | undefined {
  const fault = state.itemFaults.get(id);
  if (fault === undefined) {
    return undefined;
  }
  fault.times -= 1;
  if (fault.times <= 0) {
    state.itemFaults.delete(id);
  }
  return fault;
}

/** Elasticsearch's index-name rules (lowercase, no reserved characters or leading `_ - +`) and id length limit. */
function validateTarget(index: string, id: string): Record<string, unknown> | undefined {
  if (
    index !== index.toLowerCase() ||
    /[\\/*?"<>| ,#:]/.test(index) ||
    /^[-_+]/.test(index) ||
    index === '.' ||
    index === '..'
  ) {
    return errorCause('invalid_index_name_exception', `Invalid index name [${index}]`, index);
  }
  const idBytes = Buffer.byteLength(id);
  if (idBytes > MAX_ID_BYTES || idBytes === 0) {
    return errorCause(
      'illegal_argument_exception',
      `id [${id}] is too long or empty, must be 1 to ${MAX_ID_BYTES} bytes but was: ${idBytes}`,
      index,
    );
  }
  return undefined;
}

function parseSource(text: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks the Content-Type header. Elasticsearch accepts JSON and NDJSON, plain or as the versioned
 * vendor types that the v8 and v9 clients send (`application/vnd.elasticsearch+json; compatible-with=9`).
 * Returns the error response for any other type, or undefined when the type is accepted.
 */
function checkContentType(header: string | undefined): EsResponse | undefined {
  const [mediaType = '', ...parameters] = (header ?? '').split(';').map((part) => part.trim().toLowerCase());
  const plain = ['application/json', 'application/x-ndjson'];
  const vendor = ['application/vnd.elasticsearch+json', 'application/vnd.elasticsearch+x-ndjson'];
  if (plain.includes(mediaType)) {
    return undefined;
  }
  if (!vendor.includes(mediaType)) {
    return {
      status: 406,
      body: { error: `Content-Type header [${header ?? ''}] is not supported`, status: 406 },
    };
  }
  const version = parameters
    .find((item) => item.startsWith('compatible-with='))
    ?.slice('compatible-with='.length);
  if (version !== '8' && version !== '9') {
    return errorResponse(
      400,
      'media_type_header_exception',
      `Content-Type version must be either version 8 or 9, but found ${version ?? 'none'}`,
    );
  }
  return undefined;
}

function checkRefresh(value: string | null): EsResponse | undefined {
  if (value === null || ['', 'true', 'false', 'wait_for'].includes(value)) {
    return undefined;
  }
  return errorResponse(400, 'illegal_argument_exception', `Unknown value for refresh: [${value}].`);
}

function infoBody(): Record<string, unknown> {
  return {
    name: 'zbox-workers-fake',
    cluster_name: 'zbox-workers-fake',
    cluster_uuid: 'fake-cluster',
    version: { number: '9.1.0', build_flavor: 'default', build_type: 'fake', build_snapshot: false },
    tagline: 'You Know, for Search',
  };
}

function errorCause(type: string, reason: string, index?: string): Record<string, unknown> {
  return index === undefined ? { type, reason } : { type, reason, index };
}

function errorBody(status: number, type: string, reason: string): Record<string, unknown> {
  const cause = errorCause(type, reason);
  return { error: { root_cause: [cause], ...cause }, status };
}

function errorResponse(status: number, type: string, reason: string): EsResponse {
  return { status, body: errorBody(status, type, reason) };
}

/** Sends JSON with the product header. As on the real server, the media type follows the client's Accept header. */
function send(state: FakeState, request: IncomingMessage, response: ServerResponse, reply: EsResponse): void {
  const accept = request.headers.accept ?? '';
  const compatible = /compatible-with=(\d+)/.exec(accept)?.[1];
  const contentType =
    compatible === undefined
      ? 'application/json'
      : `application/vnd.elasticsearch+json;compatible-with=${compatible}`;
  const text = request.method === 'HEAD' ? '' : JSON.stringify(reply.body);
  const headers: Record<string, string | number> = {
    'content-type': contentType,
    'content-length': Buffer.byteLength(text),
  };
  if (state.productHeader) {
    headers['x-elastic-product'] = 'Elasticsearch';
  }
  response.writeHead(reply.status, headers);
  response.end(text);
}

/** Reads the whole body as UTF-8, or returns undefined when it exceeds MAX_BODY_BYTES. */
async function readBody(request: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) {
      return undefined;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
