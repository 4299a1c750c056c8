/**
 * OpenAI adapter for the batch workers: uploads a `.jsonl` batch input, finds or creates the batch
 * that reads it, lists and deletes files, and maps SDK errors to the CLI's taxonomy. It also builds
 * and writes `/v1/chat/completions` batch input lines. The `openai` package loads on the first
 * createOpenAIClient call, so workers that never call OpenAI do not pay for it.
 *
 * Facts about openai-node below were read in its 7.60 sources (`src/client.ts`,
 * `src/core/pagination.ts`, `src/core/error.ts`, `src/internal/uploads.ts`).
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { finished } from 'node:stream/promises';
import type OpenAI from 'openai';
import { ConfigError, HaltError, PermanentError, TransientError } from '../errors.js';
import type { Logger } from '../output/logger.js';

export type Batch = OpenAI.Batch;
export type BatchEndpoint = OpenAI.BatchCreateParams['endpoint'];
export type FileObject = OpenAI.FileObject;

/** Limits of a batch input file (OpenAI Batch API reference): requests per file and bytes per file. */
export const MAX_BATCH_REQUESTS = 50_000;
export const MAX_BATCH_FILE_BYTES = 200 * 1024 * 1024;

/** Image input limits of chat completions: images per request, bytes per image, image bytes per request. */
export const MAX_IMAGES_PER_REQUEST = 500;
export const MAX_IMAGE_BYTES = 20 * 1024 * 1024;
export const MAX_IMAGE_BYTES_PER_REQUEST = 50 * 1024 * 1024;

/**
 * Maximum length of a `custom_id` that this adapter writes.
 * NOTE: OpenAI documents no maximum; 64 ASCII characters is the limit other batch APIs document.
 */
export const MAX_CUSTOM_ID_LENGTH = 64;

/** Batch metadata limits: pairs per batch, key length and value length, in characters. */
const MAX_METADATA_PAIRS = 16;
const MAX_METADATA_KEY_LENGTH = 64;
const MAX_METADATA_VALUE_LENGTH = 512;

/** Batch statuses after which OpenAI no longer reads the batch's files. */
const TERMINAL_BATCH_STATUSES: ReadonlySet<Batch['status']> = new Set([
  'completed',
  'failed',
  'expired',
  'cancelled',
]);

/** Largest page of `GET /batches` (the API accepts 1 to 100). */
const BATCH_PAGE_SIZE = 100;

type OpenAISdk = typeof import('openai');

/** The SDK module once loaded; classifyOpenAIError uses its error classes. */
let sdkModule: OpenAISdk | undefined;

async function loadSdk(): Promise<OpenAISdk> {
  sdkModule ??= await import('openai');
  return sdkModule;
}

export interface OpenAIClientOptions {
  apiKey: string;
  /** API base URL including `/v1`; OpenAI's own when unset. Tests set a loopback fake here. */
  baseURL?: string;
  organization?: string;
  project?: string;
  /** Timeout of each request, in milliseconds. */
  timeoutMs: number;
  /**
   * SDK retries of idempotent calls (list, retrieve, delete) after a connection error, 408, 409,
   * 429 or 5xx; default 2. Uploads and batch creation never retry inside the SDK.
   */
  maxRetries?: number;
  logger: Logger;
}

/** A configured SDK client and the logger of the adapter. */
export interface OpenAIClient {
  readonly api: OpenAI;
  readonly logger: Logger;
}

/**
 * Creates the SDK client with every option explicit, so that no `OPENAI_*` environment variable
 * read by the SDK itself (base URL, organization, project, admin key) changes where requests go.
 */
export async function createOpenAIClient(options: OpenAIClientOptions): Promise<OpenAIClient> {
  if (options.apiKey.trim() === '') {
    throw new ConfigError(
      'the OpenAI API key is empty: set it to a key of the project that runs the batches',
    );
  }
  if (!(Number.isFinite(options.timeoutMs) && options.timeoutMs > 0)) {
    throw new ConfigError(
      `invalid OpenAI request timeout ${options.timeoutMs} ms: expected a positive number`,
    );
  }
  const maxRetries = options.maxRetries ?? 2;
  if (!(Number.isInteger(maxRetries) && maxRetries >= 0)) {
    throw new ConfigError(`invalid OpenAI retry count ${maxRetries}: expected a whole number, 0 or more`);
  }
  const baseURL = options.baseURL === undefined ? 'https://api.openai.com/v1' : checkBaseUrl(options.baseURL);

  const sdk = await loadSdk();
  const logger = options.logger.child({ dependency: 'openai' });
  const api = new sdk.OpenAI({
    apiKey: options.apiKey,
    adminAPIKey: null,
    baseURL,
    organization: options.organization ?? null,
    project: options.project ?? null,
    webhookSecret: null,
    timeout: options.timeoutMs,
    maxRetries,
    logLevel: 'warn',
    // Only the SDK's message reaches our log: its extra arguments may carry request details.
    logger: {
      error: (message: string) => logger.error(`openai: ${message}`),
      warn: (message: string) => logger.warn(`openai: ${message}`),
      info: (message: string) => logger.info(`openai: ${message}`),
      debug: (message: string) => logger.debug(`openai: ${message}`),
    },
  });
  return { api, logger };
}

function checkBaseUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(
      'invalid OpenAI base URL: expected an absolute http(s) URL such as https://api.openai.com/v1',
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`invalid OpenAI base URL ${url.origin}: the scheme must be http or https`);
  }
  if (url.username !== '' || url.password !== '') {
    // The URL is not quoted, because it contains credentials.
    throw new ConfigError('invalid OpenAI base URL: remove the credentials from the URL');
  }
  return url.href.replace(/\/$/, '');
}

// ---------------------------------------------------------------------------------------------
// Files and batches
// ---------------------------------------------------------------------------------------------

/**
 * Uploads a batch input file with purpose `batch`, streamed from disk. The SDK does not retry this
 * call (`maxRetries: 0`): it sends no idempotency key, so a retry after a lost response could
 * store the file twice. The caller stores the returned id at once and retries through the engine.
 */
export async function uploadBatchFile(client: OpenAIClient, filePath: string): Promise<FileObject> {
  const name = basename(filePath);
  if (!name.endsWith('.jsonl')) {
    throw new PermanentError(`batch input ${name} must be a .jsonl file: OpenAI rejects other file names`);
  }
  const size = (await stat(filePath)).size;
  if (size === 0 || size > MAX_BATCH_FILE_BYTES) {
    throw new PermanentError(
      `batch input ${name} has ${size} bytes: a batch file must have 1 to ${MAX_BATCH_FILE_BYTES} bytes; split the requests`,
    );
  }

  const sdk = await loadSdk();
  const stream = createReadStream(filePath);
  try {
    const file = await client.api.files.create(
      { file: sdk.toStreamingFile(stream, name), purpose: 'batch' },
      { maxRetries: 0 },
    );
    client.logger.info('OpenAI batch input uploaded', {
      file_id: file.id,
      bytes: file.bytes,
      filename: name,
    });
    return file;
  } catch (error) {
    throw classifyOpenAIError(error);
  } finally {
    stream.destroy();
  }
}

export interface CreateBatchParams {
  inputFileId: string;
  endpoint: BatchEndpoint;
  /** Up to 16 pairs; keys up to 64 characters, values up to 512. */
  metadata?: Record<string, string>;
}

/**
 * Creates a batch with the 24 h completion window, the only one OpenAI accepts. The SDK does not
 * retry this call (`maxRetries: 0`), because a retry after a lost response could create a second
 * batch: call findBatchByInputFile before creating again.
 */
export async function createBatch(client: OpenAIClient, params: CreateBatchParams): Promise<Batch> {
  checkMetadata(params.metadata ?? {});
  try {
    const batch = await client.api.batches.create(
      {
        input_file_id: params.inputFileId,
        endpoint: params.endpoint,
        completion_window: '24h',
        ...(params.metadata === undefined ? {} : { metadata: params.metadata }),
      },
      { maxRetries: 0 },
    );
    client.logger.info('OpenAI batch created', {
      batch_id: batch.id,
      input_file_id: params.inputFileId,
      status: batch.status,
    });
    return batch;
  } catch (error) {
    throw classifyOpenAIError(error);
  }
}

function checkMetadata(metadata: Record<string, string>): void {
  const entries = Object.entries(metadata);
  if (entries.length > MAX_METADATA_PAIRS) {
    throw new PermanentError(
      `batch metadata has ${entries.length} pairs: OpenAI accepts at most ${MAX_METADATA_PAIRS}`,
    );
  }
  for (const [key, value] of entries) {
    if (key.length === 0 || key.length > MAX_METADATA_KEY_LENGTH) {
      throw new PermanentError(
        `batch metadata key "${key.slice(0, 80)}" must have 1 to ${MAX_METADATA_KEY_LENGTH} characters`,
      );
    }
    if (typeof value !== 'string' || value.length > MAX_METADATA_VALUE_LENGTH) {
      throw new PermanentError(
        `batch metadata value of "${key}" must be a string of at most ${MAX_METADATA_VALUE_LENGTH} characters`,
      );
    }
  }
}

export interface BatchSearchOptions {
  /**
   * Stop after the first page that reaches a batch created before this Unix time (seconds).
   * NOTE: this relies on `GET /batches` listing the newest batch first, which OpenAI does but
   * does not document; leave it unset to scan every batch.
   */
  createdAfter?: number;
}

/**
 * Returns the batch that reads `inputFileId`, newest first, or undefined when no batch does.
 * Walks every page of `GET /batches` (100 per page) unless `createdAfter` stops it earlier.
 */
export async function findBatchByInputFile(
  client: OpenAIClient,
  inputFileId: string,
  options: BatchSearchOptions = {},
): Promise<Batch | undefined> {
  for await (const page of batchPages(client, options)) {
    const match = page.find((batch) => batch.input_file_id === inputFileId);
    if (match !== undefined) {
      return match;
    }
  }
  return undefined;
}

/**
 * Returns the ids of the input, output and error files of every batch that is not in a terminal
 * state (validating, in progress, finalizing, cancelling): OpenAI may still read or write them.
 */
export async function listActiveBatchInputs(
  client: OpenAIClient,
  options: BatchSearchOptions = {},
): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const page of batchPages(client, options)) {
    for (const batch of page) {
      if (TERMINAL_BATCH_STATUSES.has(batch.status)) {
        continue;
      }
      // A clean batch may carry an empty string instead of no error file id.
      for (const id of [batch.input_file_id, batch.output_file_id, batch.error_file_id]) {
        if (typeof id === 'string' && id !== '') {
          ids.add(id);
        }
      }
    }
  }
  return ids;
}

async function* batchPages(client: OpenAIClient, options: BatchSearchOptions): AsyncGenerator<Batch[]> {
  const pages = walkCursor('batch', async (after) => {
    const page = await client.api.batches.list({
      limit: BATCH_PAGE_SIZE,
      ...(after === undefined ? {} : { after }),
    });
    return { data: page.data, hasMore: page.has_more };
  });
  for await (const page of pages) {
    yield page;
    // Newest first, so once a page reaches a batch older than the bound, later pages are older still.
    const oldest = page.at(-1);
    if (
      options.createdAfter !== undefined &&
      oldest !== undefined &&
      oldest.created_at < options.createdAfter
    ) {
      return;
    }
  }
}

export interface ListFilesOptions {
  purpose?: string;
  /** `desc` (the API default) lists the newest file first. */
  order?: 'asc' | 'desc';
  /** Files per page, 1 to 10,000; the API default is 10,000. */
  limit?: number;
}

/**
 * Yields every file, page after page, following `after` (the id of the last file of the previous
 * page) until `has_more` is false. Throws a TransientError when the server returns a cursor it
 * returned before, which would otherwise loop forever.
 * NOTE: OpenAI does not document what `after` does when it names a deleted file. The loopback fake
 * keeps the cursor's place, and deleting while iterating is tested only against that fake.
 */
export async function* listFiles(
  client: OpenAIClient,
  options: ListFilesOptions = {},
): AsyncGenerator<FileObject> {
  const pages = walkCursor('file', async (after) => {
    const page = await client.api.files.list({
      ...(options.purpose === undefined ? {} : { purpose: options.purpose }),
      ...(options.order === undefined ? {} : { order: options.order }),
      ...(options.limit === undefined ? {} : { limit: options.limit }),
      ...(after === undefined ? {} : { after }),
    });
    return { data: page.data, hasMore: page.has_more };
  });
  for await (const page of pages) {
    yield* page;
  }
}

/**
 * Walks a cursor-paginated list the way openai-node's CursorPage does (next `after` = id of the
 * last item), but stops with an error when a cursor comes back a second time.
 */
async function* walkCursor<T extends { id: string }>(
  kind: string,
  fetchPage: (after: string | undefined) => Promise<{ data: T[]; hasMore: boolean }>,
): AsyncGenerator<T[]> {
  const usedCursors = new Set<string>();
  let after: string | undefined;
  for (;;) {
    let page: { data: T[]; hasMore: boolean };
    try {
      page = await fetchPage(after);
    } catch (error) {
      throw classifyOpenAIError(error);
    }
    yield page.data;

    const last = page.data.at(-1);
    if (!page.hasMore || last === undefined) {
      return;
    }
    if (usedCursors.has(last.id)) {
      throw new TransientError(
        `OpenAI ${kind} list returned cursor ${last.id} a second time after ${usedCursors.size} pages: stopping instead of looping; a later run lists again`,
        { dependency: 'openai' },
      );
    }
    usedCursors.add(last.id);
    after = last.id;
  }
}

/** Deletes a file. A 404 means an earlier run or OpenAI's own expiry removed it, so it counts as done. */
export async function deleteFile(client: OpenAIClient, fileId: string): Promise<'deleted' | 'not_found'> {
  if (fileId.trim() === '') {
    throw new PermanentError('cannot delete an OpenAI file with an empty id');
  }
  try {
    await client.api.files.delete(fileId);
    client.logger.debug('OpenAI file deleted', { file_id: fileId });
    return 'deleted';
  } catch (error) {
    if (isApiStatus(error, 404)) {
      client.logger.debug('OpenAI file already gone', { file_id: fileId });
      return 'not_found';
    }
    throw classifyOpenAIError(error);
  }
}

function isApiStatus(error: unknown, status: number): boolean {
  return sdkModule !== undefined && error instanceof sdkModule.APIError && error.status === status;
}

// ---------------------------------------------------------------------------------------------
// Error classification
// ---------------------------------------------------------------------------------------------

/** A 429 rate limit: retry later, no sooner than `retryAfterSeconds` when OpenAI sent it. */
export class OpenAIRateLimitError extends TransientError {
  override name = 'OpenAIRateLimitError';

  /** `retryAfterSeconds` comes from the `retry-after-ms` or `retry-after` response header. */
  constructor(message: string, retryAfterSeconds: number | undefined, cause: unknown) {
    super(message, {
      dependency: 'openai',
      cause,
      ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
    });
  }
}

/**
 * Maps an error of the `openai` SDK to the CLI's taxonomy:
 * - 429 with type or code `insufficient_quota` -> HaltError: billing stops every call, so no
 *   further task starts in this run;
 * - other 429 -> OpenAIRateLimitError (transient) with the server's retry delay;
 * - 401, 403 -> ConfigError: the key or its project lacks access;
 * - 408, 409, 5xx, connection errors and timeouts -> TransientError (dependency `openai`);
 * - other 4xx -> PermanentError with OpenAI's message.
 * Errors of the CLI's own kinds pass through, and anything else is returned unchanged.
 */
export function classifyOpenAIError(error: unknown): Error {
  if (
    error instanceof ConfigError ||
    error instanceof HaltError ||
    error instanceof TransientError ||
    error instanceof PermanentError
  ) {
    return error;
  }
  const sdk = sdkModule;
  if (sdk === undefined || !(error instanceof sdk.APIError)) {
    return error instanceof Error ? error : new Error(String(error));
  }
  // No status: the connection failed, timed out or was aborted before a response arrived.
  if (error.status === undefined) {
    return new TransientError(`OpenAI request failed: ${error.message}`, {
      dependency: 'openai',
      cause: error,
    });
  }

  const status = error.status;
  const body = (error.error ?? {}) as { message?: unknown; line?: unknown };
  const apiMessage = typeof body.message === 'string' ? body.message : error.message;
  const detail = describeApiError(status, error.type, error.code, error.param, body.line);

  if (status === 429 && (error.code === 'insufficient_quota' || error.type === 'insufficient_quota')) {
    return new HaltError(
      `OpenAI quota exhausted (${detail}): ${apiMessage} Add credit or raise the project's limit; the run starts no further task`,
      { cause: error },
    );
  }
  if (status === 429) {
    const retryAfterSeconds = retryAfterFrom(error.headers);
    const wait =
      retryAfterSeconds === undefined ? 'no retry delay given' : `retry after ${retryAfterSeconds} s`;
    return new OpenAIRateLimitError(
      `OpenAI rate limit reached (${detail}, ${wait}): ${apiMessage}`,
      retryAfterSeconds,
      error,
    );
  }
  if (status === 401 || status === 403) {
    return new ConfigError(
      `OpenAI rejected the credentials (${detail}): ${apiMessage} Check the API key, organization and project`,
      { cause: error },
    );
  }
  if (status === 408 || status === 409 || status >= 500) {
    return new TransientError(`OpenAI request failed (${detail}): ${apiMessage}`, {
      dependency: 'openai',
      cause: error,
    });
  }
  return new PermanentError(`OpenAI rejected the request (${detail}): ${apiMessage}`, {
    dependency: 'openai',
    cause: error,
  });
}

function describeApiError(
  status: number,
  type: string | undefined,
  code: string | null | undefined,
  param: string | null | undefined,
  line: unknown,
): string {
  const parts = [`HTTP ${status}`];
  if (typeof code === 'string' && code !== '') {
    parts.push(code);
  } else if (typeof type === 'string' && type !== '') {
    parts.push(type);
  }
  if (typeof param === 'string' && param !== '') {
    parts.push(`param ${param}`);
  }
  if (typeof line === 'number') {
    parts.push(`line ${line}`);
  }
  return parts.join(', ');
}

/** Seconds from `retry-after-ms`, or from `retry-after` as seconds or an HTTP date. */
function retryAfterFrom(headers: Headers | undefined): number | undefined {
  const milliseconds = Number.parseFloat(headers?.get('retry-after-ms') ?? '');
  if (Number.isFinite(milliseconds) && milliseconds >= 0) {
    return Math.ceil(milliseconds / 1000);
  }
  const text = headers?.get('retry-after');
  if (text === null || text === undefined || text.trim() === '') {
    return undefined;
  }
  const seconds = Number(text);
  if (Number.isFinite(seconds) && seconds >= 0) {
    return Math.ceil(seconds);
  }
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

// ---------------------------------------------------------------------------------------------
// Batch input lines for /v1/chat/completions
// ---------------------------------------------------------------------------------------------

/** An image of a chat message: an `https:` URL (a presigned S3 URL) or a base64 `data:` URL. */
export interface ChatImage {
  url: string;
  /** `low` is a 512x512 pass; `auto` (the API default) lets the model choose. */
  detail?: 'auto' | 'low' | 'high';
}

/** One chat completion request of a batch. */
export interface ChatBatchRequest {
  /** Id that joins the output line back to the task; unique within the file. */
  customId: string;
  model: string;
  /** System instructions, sent as a `system` message before the user's message. */
  instructions?: string;
  /** The user's prompt. */
  text: string;
  images?: ChatImage[];
  maxCompletionTokens?: number;
}

const DATA_URL = /^data:image\/(png|jpeg|webp|gif);base64,([A-Za-z0-9+/]*={0,2})$/;

/**
 * Builds one batch input line (without the newline): `custom_id`, `method` POST, `url`
 * `/v1/chat/completions` and the request body with text and `image_url` parts. Throws
 * PermanentError when the request breaks a limit of the API, naming the limit.
 */
export function buildChatCompletionLine(request: ChatBatchRequest): string {
  checkCustomId(request.customId);
  if (request.model.trim() === '' || /\s/.test(request.model)) {
    throw new PermanentError(
      `invalid model "${request.model}" for request ${request.customId}: expected a model id`,
    );
  }
  const images = request.images ?? [];
  if (request.text.trim() === '' && images.length === 0) {
    throw new PermanentError(`request ${request.customId} has neither text nor images`);
  }
  if (images.length > MAX_IMAGES_PER_REQUEST) {
    throw new PermanentError(
      `request ${request.customId} has ${images.length} images: a chat completion accepts at most ${MAX_IMAGES_PER_REQUEST}`,
    );
  }
  let inlineBytes = 0;
  for (const image of images) {
    inlineBytes += checkImageUrl(request.customId, image.url);
  }
  if (inlineBytes > MAX_IMAGE_BYTES_PER_REQUEST) {
    throw new PermanentError(
      `request ${request.customId} carries ${inlineBytes} bytes of inline images: the limit is ${MAX_IMAGE_BYTES_PER_REQUEST} per request; send large images as URLs`,
    );
  }
  const maxTokens = request.maxCompletionTokens;
  if (maxTokens !== undefined && !(Number.isInteger(maxTokens) && maxTokens >= 1)) {
    throw new PermanentError(`invalid max completion tokens ${maxTokens} for request ${request.customId}`);
  }

  const content: Array<Record<string, unknown>> = [];
  if (request.text.trim() !== '') {
    content.push({ type: 'text', text: request.text });
  }
  for (const image of images) {
    content.push({
      type: 'image_url',
      image_url: image.detail === undefined ? { url: image.url } : { url: image.url, detail: image.detail },
    });
  }
  const messages: Array<Record<string, unknown>> = [];
  if (request.instructions !== undefined && request.instructions.trim() !== '') {
    messages.push({ role: 'system', content: request.instructions });
  }
  messages.push({ role: 'user', content });

  return JSON.stringify({
    custom_id: request.customId,
    method: 'POST',
    url: '/v1/chat/completions',
    body: {
      model: request.model,
      messages,
      ...(maxTokens === undefined ? {} : { max_completion_tokens: maxTokens }),
    },
  });
}

function checkCustomId(customId: string): void {
  if (!/^[\x21-\x7e]+$/.test(customId) || customId.length > MAX_CUSTOM_ID_LENGTH) {
    throw new PermanentError(
      `invalid custom_id "${customId.slice(0, 80)}": use 1 to ${MAX_CUSTOM_ID_LENGTH} printable ASCII characters without spaces`,
    );
  }
}

/** Checks an image URL and returns the decoded size of a `data:` URL (0 for an https URL). */
function checkImageUrl(customId: string, url: string): number {
  if (url.startsWith('data:')) {
    const match = DATA_URL.exec(url);
    const base64 = match?.[2];
    if (base64 === undefined || base64.length % 4 !== 0) {
      throw new PermanentError(
        `invalid image data URL in request ${customId}: expected data:image/(png|jpeg|webp|gif);base64,<data>`,
      );
    }
    const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
    const bytes = (base64.length / 4) * 3 - padding;
    if (bytes > MAX_IMAGE_BYTES) {
      throw new PermanentError(
        `an image of request ${customId} has ${bytes} bytes: OpenAI accepts images up to ${MAX_IMAGE_BYTES} bytes`,
      );
    }
    return bytes;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new PermanentError(`invalid image URL in request ${customId}: expected an https: or data: URL`);
  }
  if (parsed.protocol !== 'https:') {
    throw new PermanentError(
      `invalid image URL scheme ${parsed.protocol} in request ${customId}: OpenAI fetches https: URLs; use a data: URL otherwise`,
    );
  }
  return 0;
}

export interface BatchInputSummary {
  lines: number;
  bytes: number;
  model: string;
}

/**
 * Writes a batch input file from requests, one line each, and checks the file-wide rules that
 * OpenAI checks: unique `custom_id`, one model, at most 50,000 requests and 200 MB. On a broken
 * rule it removes the partial file and throws PermanentError.
 */
export async function writeBatchInputFile(
  filePath: string,
  requests: Iterable<ChatBatchRequest> | AsyncIterable<ChatBatchRequest>,
): Promise<BatchInputSummary> {
  if (!filePath.endsWith('.jsonl')) {
    throw new PermanentError(`batch input path ${filePath} must end with .jsonl`);
  }
  const output = createWriteStream(filePath, { flags: 'w' });
  // finished() below reports a write error; this listener only keeps it from being unhandled.
  output.on('error', () => {});
  const seen = new Set<string>();
  let model: string | undefined;
  let bytes = 0;
  try {
    for await (const request of requests) {
      const line = `${buildChatCompletionLine(request)}\n`;
      if (seen.has(request.customId)) {
        throw new PermanentError(
          `custom_id ${request.customId} appears twice: it must be unique within a batch file`,
        );
      }
      seen.add(request.customId);
      model ??= request.model;
      if (request.model !== model) {
        throw new PermanentError(
          `request ${request.customId} uses model ${request.model} but the file uses ${model}: a batch file has one model`,
        );
      }
      if (seen.size > MAX_BATCH_REQUESTS) {
        throw new PermanentError(
          `a batch file contains at most ${MAX_BATCH_REQUESTS} requests: split the tasks`,
        );
      }
      bytes += Buffer.byteLength(line);
      if (bytes > MAX_BATCH_FILE_BYTES) {
        throw new PermanentError(
          `the batch file would exceed ${MAX_BATCH_FILE_BYTES} bytes: split the requests`,
        );
      }
      if (!output.write(line)) {
        await once(output, 'drain');
      }
    }
    if (model === undefined) {
      throw new PermanentError('a batch file needs at least one request');
    }
    output.end();
    await finished(output);
    return { lines: seen.size, bytes, model };
  } catch (error) {
    // The stream opens its file asynchronously: wait until it is closed, or the unlink below
    // could run before the open and leave the partial file behind.
    if (!output.closed) {
      const closed = once(output, 'close');
      output.destroy();
      await closed;
    }
    await rm(filePath, { force: true });
    throw error;
  }
}
