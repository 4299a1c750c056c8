/**
 * Loopback fake of the OpenAI Files and Batch APIs for the real `openai` client. It uploads, lists,
 * retrieves, reads and deletes files, and it creates, lists, retrieves and cancels batches. Errors
 * use OpenAI's envelope `{ error: { message, type, param, code } }`, so the SDK raises the same
 * error classes as against the real API.
 *
 * Where the real API checks a batch input file:
 * - At upload (purpose `batch`) it rejects a file that is not JSONL at all (wrong extension, empty,
 *   and, as published tests suggest, a first line that is not JSON) with 400 "Invalid file format
 *   for Batch API. Must be .jsonl".
 * - Line errors (bad JSON, missing `custom_id`/`method`/`url`/`body`, duplicate `custom_id`, a
 *   `url` other than the batch endpoint, several models, `stream: true`) do not fail the upload.
 *   `POST /batches` returns 200 `validating`, and the batch later turns `failed` with
 *   `errors.data[]` items `{ code, line, message, param }`.
 * The fake does both. Its default, `lineValidation: 'upload'`, additionally runs the line checks at
 * upload and rejects the first bad line with 400 and the same code, message, param and `line`, so
 * a malformed file fails at the upload that sent it. `lineValidation: 'batch'` keeps the real timing
 * only. A batch leaves `validating` on the first read after its creation.
 *
 * NOTE: the messages for a missing field, a wrong `url`, bad JSON, a missing model or messages,
 * `stream: true`, an unknown endpoint and a wrong metadata type are the ones OpenAI returned in
 * published integration tests (2025). The texts for a duplicate `custom_id`, a url or model
 * mismatch, an unsupported url, an empty file, too many requests and a wrong `method` are not
 * published and are written here.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Upload purposes the Files API accepts (openai-node 7.60 `FilePurpose`). */
const UPLOAD_PURPOSES = ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals'];

/** Endpoints a batch may target (openai-node 7.60 `BatchCreateParams.endpoint`). */
const BATCH_ENDPOINTS = [
  '/v1/responses',
  '/v1/chat/completions',
  '/v1/embeddings',
  '/v1/completions',
  '/v1/moderations',
  '/v1/images/generations',
  '/v1/images/edits',
  '/v1/videos',
];

const BATCH_STATUSES = [
  'validating',
  'failed',
  'in_progress',
  'finalizing',
  'completed',
  'expired',
  'cancelling',
  'cancelled',
] as const;

export type BatchStatus = (typeof BATCH_STATUSES)[number];

/** Limits of the real API that the fake enforces. */
const MAX_UPLOAD_BYTES = 512 * 1024 * 1024;
const MAX_BATCH_REQUESTS = 50_000;
const MAX_METADATA_PAIRS = 16;
const MAX_METADATA_KEY_LENGTH = 64;
const MAX_METADATA_VALUE_LENGTH = 512;
/** Input files with purpose `batch` expire 30 days after upload unless the upload sets `expires_after`. */
const BATCH_FILE_LIFETIME_SECONDS = 30 * 86_400;

/** An injected failure of whole requests. */
export type OpenAIFault =
  | { kind: 'insufficient_quota' }
  | { kind: 'rate_limit'; retryAfterSeconds?: number }
  | { kind: 'server_error'; status?: number };

/** Restricts a fault to requests with this method and a path starting with `path`. */
export interface FaultRoute {
  method?: string;
  path?: string;
}

/** One request received by the fake. The bearer token is not recorded. */
export interface OpenAIRequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  /** Scheme of the Authorization header, `Bearer` when present. */
  authScheme: string | undefined;
  /** `OpenAI-Organization` and `OpenAI-Project` headers, when sent. */
  organization: string | undefined;
  project: string | undefined;
  /** Status sent, or `dropped` when the fake closed the connection without a response. */
  status: number | 'dropped';
}

/** A file kept by the fake, with its content. */
export interface FakeFile {
  id: string;
  object: 'file';
  bytes: number;
  created_at: number;
  filename: string;
  purpose: string;
  status: 'processed';
  expires_at: number | null;
  status_details: null;
  content: Buffer;
}

export interface SeedFile {
  id?: string;
  filename: string;
  purpose: string;
  /** Unix time in seconds. */
  createdAt: number;
  content?: string | Buffer;
}

/** An item of a failed batch's `errors.data`. */
export interface BatchLineError {
  code: string;
  message: string;
  param: string | null;
  line: number | null;
}

export interface FakeBatch {
  id: string;
  object: 'batch';
  endpoint: string;
  errors: { object: 'list'; data: BatchLineError[] } | null;
  input_file_id: string;
  completion_window: string;
  status: BatchStatus;
  output_file_id: string | null;
  error_file_id: string | null;
  created_at: number;
  in_progress_at: number | null;
  expires_at: number;
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  expired_at: number | null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  request_counts: { total: number; completed: number; failed: number };
  metadata: Record<string, string> | null;
}

export interface OpenAIFakeOptions {
  /** When set, a bearer token other than this gets 401 `invalid_api_key`. */
  apiKey?: string;
  /** Stage that runs the line checks of a batch input (see the file comment); default `upload`. */
  lineValidation?: 'upload' | 'batch';
  /** Clock of the fake in Unix seconds; the wall clock by default. */
  now?: () => number;
}

export interface OpenAIFake {
  /** Base URL for the SDK's `baseURL`, ending in `/v1`. */
  url: string;
  readonly requests: readonly OpenAIRequestRecord[];
  /** Requests received with this method and path (for example `POST`, `/v1/files`). */
  countRequests(method: string, path: string): number;
  /** Makes the next `count` requests (of `route` when given) fail with `fault`. */
  failNextRequests(count: number, fault: OpenAIFault, route?: FaultRoute): void;
  /** Accepts the next request of this route, applies it, then closes the socket without a response. */
  dropNextResponse(route: 'POST /v1/files' | 'POST /v1/batches'): void;
  /** While on, list endpoints ignore `after` and serve the first page again. */
  repeatCursor(enabled: boolean): void;
  seedFile(file: SeedFile): FakeFile;
  /** Moves a batch to `status`, stamping the status's timestamp, and sets its file ids. */
  setBatchStatus(
    id: string,
    status: BatchStatus,
    files?: { output_file_id?: string | null; error_file_id?: string | null },
  ): void;
  /** Copies of the stored files, oldest first. */
  files(): FakeFile[];
  /** Content of a stored file as UTF-8 text. */
  fileContent(id: string): string | undefined;
  /** Copies of the batches, oldest first, without advancing their status. */
  batches(): FakeBatch[];
  close(): Promise<void>;
}

interface StoredFile extends FakeFile {
  sequence: number;
}

interface StoredBatch extends FakeBatch {
  sequence: number;
  /** Result of validation, applied on the first read after creation. */
  pendingValidation: { errors: BatchLineError[]; requests: number } | undefined;
}

interface QueuedFault {
  remaining: number;
  fault: OpenAIFault;
  route: FaultRoute | undefined;
}

interface FakeState {
  options: Required<Pick<OpenAIFakeOptions, 'lineValidation' | 'now'>> & Pick<OpenAIFakeOptions, 'apiKey'>;
  files: Map<string, StoredFile>;
  /** Sort keys of deleted files, so a cursor naming a deleted file keeps its place. */
  deletedFiles: Map<string, { created_at: number; sequence: number }>;
  batches: Map<string, StoredBatch>;
  faults: QueuedFault[];
  dropNext: Set<string>;
  repeatCursor: boolean;
  requests: OpenAIRequestRecord[];
  sequence: number;
}

interface ApiResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** Close the connection without a response, after the request took effect. */
  drop?: boolean;
}

interface ErrorFields {
  type?: string;
  param?: string | null;
  code?: string | null;
  line?: number;
}

function apiError(status: number, message: string, fields: ErrorFields = {}): ApiResponse {
  return {
    status,
    body: {
      error: {
        message,
        type: fields.type ?? 'invalid_request_error',
        param: fields.param ?? null,
        code: fields.code ?? null,
        ...(fields.line === undefined ? {} : { line: fields.line }),
      },
    },
  };
}

/** Starts the fake on 127.0.0.1 with an ephemeral port. */
export async function startOpenAIFake(options: OpenAIFakeOptions = {}): Promise<OpenAIFake> {
  const state: FakeState = {
    options: {
      lineValidation: options.lineValidation ?? 'upload',
      now: options.now ?? (() => Math.floor(Date.now() / 1000)),
      ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
    },
    files: new Map(),
    deletedFiles: new Map(),
    batches: new Map(),
    faults: [],
    dropNext: new Set(),
    repeatCursor: false,
    requests: [],
    sequence: 0,
  };
  const server = createServer((request, response) => {
    handleRequest(state, request, response).catch((error: unknown) => {
      send(response, { status: 500, body: { error: { message: String(error), type: 'server_error' } } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests: state.requests,
    countRequests: (method, path) =>
      state.requests.filter((r) => r.method === method && r.path === path).length,
    failNextRequests: (count, fault, route) => {
      state.faults.push({ remaining: count, fault, route });
    },
    dropNextResponse: (route) => {
      state.dropNext.add(route);
    },
    repeatCursor: (enabled) => {
      state.repeatCursor = enabled;
    },
    seedFile: (file) => publicFile(storeFile(state, file)),
    setBatchStatus: (id, status, files) => setBatchStatus(state, id, status, files),
    files: () => sortedFiles(state, 'asc').map(publicFile),
    fileContent: (id) => state.files.get(id)?.content.toString('utf8'),
    batches: () => [...state.batches.values()].sort((a, b) => a.sequence - b.sequence).map(publicBatch),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function publicFile(file: StoredFile): FakeFile {
  const { sequence: _sequence, ...rest } = file;
  return { ...rest, content: Buffer.from(file.content) };
}

function publicBatch(batch: StoredBatch): FakeBatch {
  const { sequence: _sequence, pendingValidation: _pending, ...rest } = batch;
  return structuredClone(rest);
}

function newId(prefix: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(22);
  let id = '';
  for (const byte of bytes) {
    id += alphabet[byte % alphabet.length];
  }
  return `${prefix}${id}`;
}

function storeFile(state: FakeState, file: SeedFile): StoredFile {
  const content = Buffer.isBuffer(file.content) ? file.content : Buffer.from(file.content ?? '');
  state.sequence += 1;
  const stored: StoredFile = {
    id: file.id ?? newId('file-'),
    object: 'file',
    bytes: content.length,
    created_at: file.createdAt,
    filename: file.filename,
    purpose: file.purpose,
    status: 'processed',
    expires_at: file.purpose === 'batch' ? file.createdAt + BATCH_FILE_LIFETIME_SECONDS : null,
    status_details: null,
    content,
    sequence: state.sequence,
  };
  state.files.set(stored.id, stored);
  return stored;
}

async function handleRequest(
  state: FakeState,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const url = new URL(request.url ?? '/', 'http://127.0.0.1');
  const method = request.method ?? 'GET';
  const authorization = request.headers.authorization;
  const record: OpenAIRequestRecord = {
    method,
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
    authScheme: authorization?.split(' ')[0],
    organization: headerText(request.headers['openai-organization']),
    project: headerText(request.headers['openai-project']),
    status: 500,
  };
  state.requests.push(record);

  const body = await readBody(request, MAX_UPLOAD_BYTES + 1024 * 1024);
  const result = route(state, method, url, request, body, authorization);
  const answer = result instanceof Promise ? await result : result;
  if (answer.drop === true) {
    record.status = 'dropped';
    request.socket.destroy();
    return;
  }
  record.status = answer.status;
  send(response, answer);
}

function route(
  state: FakeState,
  method: string,
  url: URL,
  request: IncomingMessage,
  body: Buffer | undefined,
  authorization: string | undefined,
): ApiResponse | Promise<ApiResponse> {
  const authProblem = checkAuthorization(state, authorization);
  if (authProblem !== undefined) {
    return authProblem;
  }
  const fault = takeFault(state, method, url.pathname);
  if (fault !== undefined) {
    return faultResponse(fault);
  }
  if (body === undefined) {
    return apiError(413, 'Request body is too large.', { code: 'request_too_large' });
  }

  const parts = url.pathname.split('/').filter((part) => part !== '');
  const [version, collection, id, action] = parts;
  if (version === 'v1' && collection === 'files') {
    if (parts.length === 2 && method === 'POST') {
      return uploadFile(state, request, body);
    }
    if (parts.length === 2 && method === 'GET') {
      return listFiles(state, url.searchParams);
    }
    if (parts.length === 3 && id !== undefined && method === 'GET') {
      const file = state.files.get(id);
      return file === undefined ? noSuchFile(id) : { status: 200, body: fileObject(file) };
    }
    if (parts.length === 3 && id !== undefined && method === 'DELETE') {
      return deleteFile(state, id);
    }
    if (parts.length === 4 && id !== undefined && action === 'content' && method === 'GET') {
      const file = state.files.get(id);
      return file === undefined ? noSuchFile(id) : { status: 200, body: file.content };
    }
  }
  if (version === 'v1' && collection === 'batches') {
    if (parts.length === 2 && method === 'POST') {
      return createBatch(state, body);
    }
    if (parts.length === 2 && method === 'GET') {
      return listBatches(state, url.searchParams);
    }
    if (parts.length === 3 && id !== undefined && method === 'GET') {
      const batch = state.batches.get(id);
      return batch === undefined ? noSuchBatch(id) : { status: 200, body: readBatch(state, batch) };
    }
    if (parts.length === 4 && id !== undefined && action === 'cancel' && method === 'POST') {
      return cancelBatch(state, id);
    }
  }
  return apiError(404, `Invalid URL (${method} ${url.pathname})`);
}

function checkAuthorization(state: FakeState, authorization: string | undefined): ApiResponse | undefined {
  const token = authorization?.startsWith('Bearer ') ? authorization.slice('Bearer '.length).trim() : '';
  if (token === '') {
    return apiError(
      401,
      "You didn't provide an API key. Send it in the Authorization header as Bearer auth.",
    );
  }
  if (state.options.apiKey !== undefined && token !== state.options.apiKey) {
    return apiError(401, `Incorrect API key provided: ${token.slice(0, 3)}***${token.slice(-4)}.`, {
      code: 'invalid_api_key',
    });
  }
  return undefined;
}

function takeFault(state: FakeState, method: string, path: string): OpenAIFault | undefined {
  const queued = state.faults.find(
    (entry) =>
      entry.remaining > 0 &&
      (entry.route?.method === undefined || entry.route.method === method) &&
      (entry.route?.path === undefined || path.startsWith(entry.route.path)),
  );
  if (queued === undefined) {
    return undefined;
  }
  queued.remaining -= 1;
  state.faults = state.faults.filter((entry) => entry.remaining > 0);
  return queued.fault;
}

function faultResponse(fault: OpenAIFault): ApiResponse {
  if (fault.kind === 'insufficient_quota') {
    return apiError(429, 'You exceeded your current quota, please check your plan and billing details.', {
      type: 'insufficient_quota',
      code: 'insufficient_quota',
    });
  }
  if (fault.kind === 'rate_limit') {
    const seconds = fault.retryAfterSeconds;
    const answer = apiError(429, 'Rate limit reached for requests. Try again later.', {
      type: 'requests',
      code: 'rate_limit_exceeded',
    });
    return seconds === undefined
      ? answer
      : {
          ...answer,
          headers: { 'retry-after': String(seconds), 'x-ratelimit-reset-requests': `${seconds}s` },
        };
  }
  return apiError(fault.status ?? 500, 'The server had an error while processing your request.', {
    type: 'server_error',
  });
}

function noSuchFile(id: string): ApiResponse {
  return apiError(404, `No such File object: ${id}`, { param: 'id' });
}

function noSuchBatch(id: string): ApiResponse {
  return apiError(404, `No batch found with id '${id}'.`, { param: 'id' });
}

function fileObject(file: StoredFile): Omit<FakeFile, 'content'> {
  const { sequence: _sequence, content: _content, ...rest } = file;
  return rest;
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

async function uploadFile(state: FakeState, request: IncomingMessage, body: Buffer): Promise<ApiResponse> {
  const contentType = request.headers['content-type'] ?? '';
  if (!contentType.startsWith('multipart/form-data')) {
    return apiError(400, 'The upload must be a multipart/form-data request.', {
      code: 'invalid_content_type',
    });
  }
  let form: FormData;
  try {
    form = await new Request('http://127.0.0.1/', {
      method: 'POST',
      headers: { 'content-type': contentType },
      body: new Uint8Array(body),
    }).formData();
  } catch {
    return apiError(400, 'Could not parse the multipart form data.', { code: 'invalid_multipart' });
  }
  const file = form.get('file');
  const purpose = form.get('purpose');
  if (!(file instanceof File)) {
    return missingParameter('file');
  }
  if (typeof purpose !== 'string' || purpose === '') {
    return missingParameter('purpose');
  }
  if (!UPLOAD_PURPOSES.includes(purpose)) {
    return invalidValue(purpose, UPLOAD_PURPOSES, 'purpose');
  }
  const content = Buffer.from(await file.arrayBuffer());
  if (content.length > MAX_UPLOAD_BYTES) {
    return apiError(400, 'File is too large.', { param: 'file' });
  }

  if (purpose === 'batch') {
    const problem = checkBatchUpload(state, file.name, content);
    if (problem !== undefined) {
      return problem;
    }
  }
  const stored = storeFile(state, { filename: file.name, purpose, createdAt: state.options.now(), content });
  return { status: 200, body: fileObject(stored), drop: state.dropNext.delete('POST /v1/files') };
}

/** Runs the upload-time checks of a batch input file (see the file comment). */
function checkBatchUpload(state: FakeState, filename: string, content: Buffer): ApiResponse | undefined {
  const invalidFormat = apiError(400, 'Invalid file format for Batch API. Must be .jsonl', { param: null });
  const text = content.toString('utf8');
  const firstLine = text.split('\n')[0] ?? '';
  if (!filename.endsWith('.jsonl') || text.trim() === '' || !isJsonObject(firstLine)) {
    return invalidFormat;
  }
  if (state.options.lineValidation === 'upload') {
    const first = validateBatchInput(text, undefined).errors[0];
    if (first !== undefined) {
      return apiError(400, first.message, {
        param: first.param,
        code: first.code,
        ...(first.line === null ? {} : { line: first.line }),
      });
    }
  }
  return undefined;
}

function isJsonObject(text: string): boolean {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value);
  } catch {
    return false;
  }
}

function sortedFiles(state: FakeState, order: 'asc' | 'desc'): StoredFile[] {
  const files = [...state.files.values()].sort(
    (a, b) => a.created_at - b.created_at || a.sequence - b.sequence,
  );
  return order === 'asc' ? files : files.reverse();
}

function listFiles(state: FakeState, query: URLSearchParams): ApiResponse {
  const order = query.get('order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc') {
    return invalidValue(order, ['asc', 'desc'], 'order');
  }
  const limit = parseLimit(query.get('limit'), 10_000, 10_000);
  if (typeof limit !== 'number') {
    return limit;
  }
  const purpose = query.get('purpose');
  const all = sortedFiles(state, order).filter((file) => purpose === null || file.purpose === purpose);

  let start = 0;
  const after = state.repeatCursor ? null : query.get('after');
  if (after !== null) {
    const position = state.files.get(after) ?? state.deletedFiles.get(after);
    if (position === undefined) {
      return apiError(400, `Invalid 'after': no file with id '${after}'.`, {
        param: 'after',
        code: 'invalid_value',
      });
    }
    // Files strictly beyond the cursor's place in the order, whether or not the cursor still exists.
    const beyond = (file: StoredFile) => {
      const delta = file.created_at - position.created_at || file.sequence - position.sequence;
      return order === 'asc' ? delta > 0 : delta < 0;
    };
    start = all.findIndex(beyond);
    if (start === -1) {
      start = all.length;
    }
  }
  const page = all.slice(start, start + limit);
  return {
    status: 200,
    body: {
      object: 'list',
      data: page.map(fileObject),
      first_id: page[0]?.id ?? null,
      last_id: page.at(-1)?.id ?? null,
      has_more: start + page.length < all.length,
    },
  };
}

function deleteFile(state: FakeState, id: string): ApiResponse {
  const file = state.files.get(id);
  if (file === undefined) {
    return noSuchFile(id);
  }
  state.files.delete(id);
  state.deletedFiles.set(id, { created_at: file.created_at, sequence: file.sequence });
  return { status: 200, body: { id, object: 'file', deleted: true } };
}

// ---------------------------------------------------------------------------------------------
// Batch input validation
// ---------------------------------------------------------------------------------------------

/**
 * Checks every line of a batch input file. `endpoint` is the batch's endpoint at creation; at
 * upload it is unknown, and then every line must use a supported endpoint and the first line's.
 */
export function validateBatchInput(
  text: string,
  endpoint: string | undefined,
): { errors: BatchLineError[]; requests: number } {
  const lines = text.split('\n');
  if (lines.at(-1) === '') {
    lines.pop();
  }
  if (lines.length === 0) {
    return {
      errors: [{ code: 'empty_file', message: 'The batch input file is empty.', param: null, line: null }],
      requests: 0,
    };
  }
  if (lines.length > MAX_BATCH_REQUESTS) {
    const message = `The batch input file has ${lines.length} requests; a batch may contain at most ${MAX_BATCH_REQUESTS}.`;
    return { errors: [{ code: 'too_many_tasks', message, param: null, line: null }], requests: lines.length };
  }

  const errors: BatchLineError[] = [];
  const customIds = new Map<string, number>();
  let firstUrl: { url: string; line: number } | undefined;
  let firstModel: { model: string; line: number } | undefined;
  lines.forEach((text, index) => {
    const line = index + 1;
    const add = (code: string, message: string, param: string | null) => {
      errors.push({ code, message, param, line });
    };
    let value: unknown;
    try {
      value = JSON.parse(text.replace(/\r$/, ''));
    } catch {
      value = undefined;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      add('invalid_json_line', 'This line is not parseable as valid JSON.', null);
      return;
    }
    const request = value as Record<string, unknown>;
    for (const field of ['custom_id', 'method', 'url', 'body']) {
      if (request[field] === undefined || request[field] === null || request[field] === '') {
        add('missing_required_parameter', `Missing required parameter: '${field}'.`, field);
      }
    }

    const customId = request.custom_id;
    if (customId !== undefined && customId !== null && typeof customId !== 'string') {
      add('invalid_type', invalidTypeMessage('custom_id', 'a string', customId), 'custom_id');
    } else if (typeof customId === 'string' && customId !== '') {
      const earlier = customIds.get(customId);
      if (earlier === undefined) {
        customIds.set(customId, line);
      } else {
        add(
          'duplicate_custom_id',
          `The custom_id '${customId}' is already used on line ${earlier}; each request needs a unique custom_id.`,
          'custom_id',
        );
      }
    }

    const method = request.method;
    if (method !== undefined && method !== null && method !== '' && method !== 'POST') {
      add(
        typeof method === 'string' ? 'invalid_value' : 'invalid_type',
        typeof method === 'string'
          ? `Invalid value: '${method}'. Supported values are: 'POST'.`
          : invalidTypeMessage('method', 'a string', method),
        'method',
      );
    }

    const url = request.url;
    if (url !== undefined && url !== null && url !== '') {
      checkLineUrl(url, endpoint, firstUrl, add);
      if (typeof url === 'string') {
        firstUrl ??= { url, line };
      }
    }

    const body = request.body;
    if (body !== undefined && body !== null && body !== '') {
      if (typeof body !== 'object' || Array.isArray(body)) {
        add('invalid_type', invalidTypeMessage('body', 'an object', body), 'body');
        return;
      }
      const model = checkLineBody(
        body as Record<string, unknown>,
        typeof url === 'string' ? url : '',
        firstModel,
        add,
      );
      if (model !== undefined) {
        firstModel ??= { model, line };
      }
    }
  });
  return { errors, requests: lines.length };
}

function checkLineUrl(
  url: unknown,
  endpoint: string | undefined,
  firstUrl: { url: string; line: number } | undefined,
  add: (code: string, message: string, param: string | null) => void,
): void {
  if (typeof url !== 'string') {
    add('invalid_type', invalidTypeMessage('url', 'a string', url), 'url');
    return;
  }
  if (endpoint !== undefined) {
    if (url !== endpoint) {
      add('invalid_url', 'The URL provided for this request does not match the batch endpoint.', 'url');
    }
    return;
  }
  if (!BATCH_ENDPOINTS.includes(url)) {
    add('invalid_url', `The URL '${url}' is not an endpoint the Batch API supports.`, 'url');
  } else if (firstUrl !== undefined && url !== firstUrl.url) {
    add(
      'url_mismatch',
      `The URL '${url}' differs from '${firstUrl.url}' on line ${firstUrl.line}; all requests of a batch use one URL.`,
      'url',
    );
  }
}

/** Checks a line's body and returns its model when it has one. */
function checkLineBody(
  body: Record<string, unknown>,
  url: string,
  firstModel: { model: string; line: number } | undefined,
  add: (code: string, message: string, param: string | null) => void,
): string | undefined {
  const model = body.model;
  let result: string | undefined;
  if (model === undefined || model === null || model === '') {
    add('invalid_request', 'Model parameter is required.', 'body.model');
  } else if (typeof model !== 'string') {
    add('invalid_type', invalidTypeMessage('body.model', 'a string', model), 'body.model');
  } else {
    result = model;
    if (firstModel !== undefined && model !== firstModel.model) {
      add(
        'model_mismatch',
        `The model '${model}' differs from '${firstModel.model}' on line ${firstModel.line}; a batch file may use one model.`,
        'body.model',
      );
    }
  }
  if (body.stream === true) {
    const api = url === '/v1/chat/completions' ? 'Chat Completions' : 'This endpoint';
    add('streaming_unsupported', `${api}: Streaming is not supported in the Batch API.`, 'body.stream');
  }
  if (url === '/v1/chat/completions') {
    checkMessages(body.messages, add);
  }
  return result;
}

/**
 * Checks the chat messages of a line: roles, and content as a string or as text and `image_url`
 * parts. NOTE: the texts of these errors are not published; the codes follow OpenAI's `invalid_*`.
 */
function checkMessages(
  messages: unknown,
  add: (code: string, message: string, param: string | null) => void,
): void {
  if (messages === undefined || messages === null) {
    add('invalid_request', 'Messages parameter is required.', 'body.messages');
    return;
  }
  if (!Array.isArray(messages) || messages.length === 0) {
    add('invalid_type', invalidTypeMessage('body.messages', 'a non-empty array', messages), 'body.messages');
    return;
  }
  messages.forEach((message: unknown, index) => {
    const param = `body.messages[${index}]`;
    if (message === null || typeof message !== 'object') {
      add('invalid_type', invalidTypeMessage(param, 'an object', message), param);
      return;
    }
    const { role, content } = message as Record<string, unknown>;
    if (!['system', 'developer', 'user', 'assistant', 'tool'].includes(String(role))) {
      add('invalid_value', `Invalid value for '${param}.role': '${String(role)}'.`, `${param}.role`);
    }
    if (typeof content === 'string') {
      return;
    }
    if (!Array.isArray(content)) {
      add(
        'invalid_type',
        invalidTypeMessage(`${param}.content`, 'a string or an array', content),
        `${param}.content`,
      );
      return;
    }
    content.forEach((part: unknown, partIndex) => {
      const partParam = `${param}.content[${partIndex}]`;
      const { type, text, image_url: imageUrl } = (part ?? {}) as Record<string, unknown>;
      if (type === 'text' && typeof text === 'string') {
        return;
      }
      if (type === 'image_url' && imageUrl !== null && typeof imageUrl === 'object') {
        const target = (imageUrl as Record<string, unknown>).url;
        if (typeof target === 'string' && /^(https?:\/\/|data:image\/)/.test(target)) {
          return;
        }
        add(
          'invalid_value',
          `Invalid image URL in '${partParam}.image_url.url'.`,
          `${partParam}.image_url.url`,
        );
        return;
      }
      add('invalid_value', `Invalid content part in '${partParam}': expected text or image_url.`, partParam);
    });
  });
}

function typeName(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  if (Array.isArray(value)) {
    return 'an array';
  }
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function invalidTypeMessage(param: string, expected: string, value: unknown): string {
  return `Invalid type for '${param}': expected ${expected}, but got ${typeName(value)} instead.`;
}

function missingParameter(param: string): ApiResponse {
  return apiError(400, `Missing required parameter: '${param}'.`, {
    param,
    code: 'missing_required_parameter',
  });
}

function invalidValue(value: string, supported: string[], param: string): ApiResponse {
  const quoted = supported.map((item) => `'${item}'`);
  const list =
    quoted.length > 1 ? `${quoted.slice(0, -1).join(', ')}, and ${quoted.at(-1)}` : (quoted[0] ?? '');
  return apiError(400, `Invalid value: '${value}'. Supported values are: ${list}.`, {
    param,
    code: 'invalid_value',
  });
}

function parseLimit(text: string | null, fallback: number, maximum: number): number | ApiResponse {
  if (text === null) {
    return fallback;
  }
  const limit = Number(text);
  if (!Number.isInteger(limit) || limit < 1 || limit > maximum) {
    return apiError(400, `Invalid 'limit': expected an integer from 1 to ${maximum}, got '${text}'.`, {
      param: 'limit',
      code: 'invalid_value',
    });
  }
  return limit;
}

// ---------------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------------

function createBatch(state: FakeState, body: Buffer): ApiResponse {
  let params: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new Error('not an object');
    }
    params = parsed as Record<string, unknown>;
  } catch {
    return apiError(400, 'We could not parse the JSON body of your request.');
  }
  for (const field of ['input_file_id', 'endpoint', 'completion_window']) {
    if (params[field] === undefined || params[field] === null || params[field] === '') {
      return missingParameter(field);
    }
  }
  const { input_file_id: inputFileId, endpoint, completion_window: window, metadata } = params;
  if (typeof inputFileId !== 'string') {
    return apiError(400, invalidTypeMessage('input_file_id', 'a string', inputFileId), {
      param: 'input_file_id',
      code: 'invalid_type',
    });
  }
  if (typeof endpoint !== 'string' || !BATCH_ENDPOINTS.includes(endpoint)) {
    return invalidValue(String(endpoint), BATCH_ENDPOINTS, 'endpoint');
  }
  if (window !== '24h') {
    return invalidValue(String(window), ['24h'], 'completion_window');
  }
  const metadataProblem = checkMetadata(metadata);
  if (metadataProblem !== undefined) {
    return metadataProblem;
  }

  const now = state.options.now();
  state.sequence += 1;
  const batch: StoredBatch = {
    id: newId('batch_'),
    object: 'batch',
    endpoint,
    errors: null,
    input_file_id: inputFileId,
    completion_window: '24h',
    status: 'validating',
    output_file_id: null,
    error_file_id: null,
    created_at: now,
    in_progress_at: null,
    expires_at: now + 86_400,
    finalizing_at: null,
    completed_at: null,
    failed_at: null,
    expired_at: null,
    cancelling_at: null,
    cancelled_at: null,
    request_counts: { total: 0, completed: 0, failed: 0 },
    metadata: (metadata as Record<string, string> | undefined) ?? null,
    sequence: state.sequence,
    pendingValidation: validateBatchFile(state, inputFileId, endpoint),
  };
  state.batches.set(batch.id, batch);
  return { status: 200, body: publicBatch(batch), drop: state.dropNext.delete('POST /v1/batches') };
}

function checkMetadata(metadata: unknown): ApiResponse | undefined {
  if (metadata === undefined || metadata === null) {
    return undefined;
  }
  if (typeof metadata !== 'object' || Array.isArray(metadata)) {
    return apiError(400, invalidTypeMessage('metadata', 'an object', metadata), {
      param: 'metadata',
      code: 'invalid_type',
    });
  }
  const entries = Object.entries(metadata as Record<string, unknown>);
  if (entries.length > MAX_METADATA_PAIRS) {
    return apiError(400, `Invalid 'metadata': too many properties. Expected at most ${MAX_METADATA_PAIRS}.`, {
      param: 'metadata',
      code: 'object_above_max_properties',
    });
  }
  for (const [key, value] of entries) {
    if (typeof value !== 'string') {
      return apiError(400, invalidTypeMessage(`metadata.${key}`, 'a string', value), {
        param: `metadata.${key}`,
        code: 'invalid_type',
      });
    }
    if (key.length > MAX_METADATA_KEY_LENGTH || value.length > MAX_METADATA_VALUE_LENGTH) {
      return apiError(
        400,
        `Invalid 'metadata.${key}': keys may have ${MAX_METADATA_KEY_LENGTH} and values ${MAX_METADATA_VALUE_LENGTH} characters at most.`,
        { param: `metadata.${key}`, code: 'string_above_max_length' },
      );
    }
  }
  return undefined;
}

/** Validation of a new batch's input, applied when the batch leaves `validating`. */
function validateBatchFile(
  state: FakeState,
  inputFileId: string,
  endpoint: string,
): { errors: BatchLineError[]; requests: number } {
  const file = state.files.get(inputFileId);
  if (file === undefined) {
    const message = `Cannot find file ${inputFileId}, or organization org-fake does not have access to it.`;
    return { errors: [{ code: 'invalid_request', message, param: 'file_id', line: null }], requests: 0 };
  }
  if (file.purpose !== 'batch') {
    // NOTE: OpenAI publishes no text for this case.
    const message = `File ${inputFileId} has purpose '${file.purpose}'; a batch reads files with purpose 'batch'.`;
    return { errors: [{ code: 'invalid_request', message, param: 'file_id', line: null }], requests: 0 };
  }
  return validateBatchInput(file.content.toString('utf8'), endpoint);
}

/** Returns a batch as the API shows it, first applying a pending validation result. */
function readBatch(state: FakeState, batch: StoredBatch): FakeBatch {
  const pending = batch.pendingValidation;
  if (batch.status === 'validating' && pending !== undefined) {
    batch.pendingValidation = undefined;
    const now = state.options.now();
    if (pending.errors.length > 0) {
      batch.status = 'failed';
      batch.failed_at = now;
      batch.errors = { object: 'list', data: pending.errors };
    } else {
      batch.status = 'in_progress';
      batch.in_progress_at = now;
      batch.request_counts = { total: pending.requests, completed: 0, failed: 0 };
    }
  }
  return publicBatch(batch);
}

function listBatches(state: FakeState, query: URLSearchParams): ApiResponse {
  const limit = parseLimit(query.get('limit'), 20, 100);
  if (typeof limit !== 'number') {
    return limit;
  }
  const all = [...state.batches.values()].sort(
    (a, b) => b.created_at - a.created_at || b.sequence - a.sequence,
  );
  let start = 0;
  const after = state.repeatCursor ? null : query.get('after');
  if (after !== null) {
    const index = all.findIndex((batch) => batch.id === after);
    if (index === -1) {
      return apiError(400, `Invalid 'after': no batch with id '${after}'.`, {
        param: 'after',
        code: 'invalid_value',
      });
    }
    start = index + 1;
  }
  const page = all.slice(start, start + limit);
  return {
    status: 200,
    body: {
      object: 'list',
      data: page.map((batch) => readBatch(state, batch)),
      first_id: page[0]?.id ?? null,
      last_id: page.at(-1)?.id ?? null,
      has_more: start + page.length < all.length,
    },
  };
}

function cancelBatch(state: FakeState, id: string): ApiResponse {
  const batch = state.batches.get(id);
  if (batch === undefined) {
    return noSuchBatch(id);
  }
  readBatch(state, batch);
  if (batch.status === 'completed' || batch.status === 'failed' || batch.status === 'expired') {
    return apiError(409, `Cannot cancel a batch with status '${batch.status}'.`);
  }
  setBatchStatus(state, id, 'cancelling');
  return { status: 200, body: publicBatch(batch) };
}

function setBatchStatus(
  state: FakeState,
  id: string,
  status: BatchStatus,
  files: { output_file_id?: string | null; error_file_id?: string | null } = {},
): void {
  const batch = state.batches.get(id);
  if (batch === undefined) {
    throw new Error(`the OpenAI fake has no batch ${id}`);
  }
  const now = state.options.now();
  batch.pendingValidation = undefined;
  batch.status = status;
  const stamps: Partial<Record<BatchStatus, keyof FakeBatch>> = {
    in_progress: 'in_progress_at',
    finalizing: 'finalizing_at',
    completed: 'completed_at',
    failed: 'failed_at',
    expired: 'expired_at',
    cancelling: 'cancelling_at',
    cancelled: 'cancelled_at',
  };
  const stamp = stamps[status];
  if (stamp !== undefined) {
    (batch as unknown as Record<string, unknown>)[stamp] = now;
  }
  if (files.output_file_id !== undefined) {
    batch.output_file_id = files.output_file_id;
  }
  if (files.error_file_id !== undefined) {
    batch.error_file_id = files.error_file_id;
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------------------------

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Reads the whole body, or returns undefined when it exceeds `limit` bytes (the rest is drained). */
async function readBody(request: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size <= limit) {
      chunks.push(chunk as Buffer);
    }
  }
  return size > limit ? undefined : Buffer.concat(chunks);
}

function send(response: ServerResponse, answer: ApiResponse): void {
  const headers: Record<string, string> = {
    'x-request-id': `req_${randomBytes(16).toString('hex')}`,
    ...answer.headers,
  };
  if (Buffer.isBuffer(answer.body)) {
    response.writeHead(answer.status, { ...headers, 'content-type': 'application/octet-stream' });
    response.end(answer.body);
    return;
  }
  response.writeHead(answer.status, { ...headers, 'content-type': 'application/json' });
  response.end(JSON.stringify(answer.body));
}
