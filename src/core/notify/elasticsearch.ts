import type { Client, estypes } from '@elastic/elasticsearch';
import { ConfigError, errorMessage, TransientError } from '../errors.js';

type ElasticsearchErrors = typeof import('@elastic/elasticsearch').errors;

export interface ElasticsearchClientOptions {
  /** Base URL of one node, http(s), without credentials. */
  node: string;
  /** API key in the base64 `id:key` form, used instead of the username and password when set. */
  apiKey?: string;
  username?: string;
  password?: string;
  /** Timeout of each request, in milliseconds. It is required because the v9 client has no default timeout. */
  requestTimeoutMs: number;
  /** Retries of the transport after a connection error or HTTP 502/503/504 (client default 3). */
  maxRetries?: number;
}

/** The Elasticsearch calls the commands make. */
export interface ElasticsearchClient {
  bulk(params: estypes.BulkRequest): Promise<estypes.BulkResponse>;
  info(): Promise<estypes.InfoResponse>;
  close(): Promise<void>;
}

/**
 * Creates an Elasticsearch client. Credentials go only into the `@elastic/elasticsearch` client's
 * `auth` option, never into the URL, so they cannot appear in the client's errors or in our logs.
 * Throws ConfigError for an invalid URL or an incomplete set of credentials.
 *
 * The options are checked at once, but the package (with its transport and undici, over 200
 * modules) is imported and its client built only at the first call, so a cycle with nothing to
 * send does not load it. `close()` before any call resolves without loading anything.
 */
export function createElasticsearchClient(options: ElasticsearchClientOptions): ElasticsearchClient {
  const node = validateNodeUrl(options.node);
  if (!(Number.isFinite(options.requestTimeoutMs) && options.requestTimeoutMs > 0)) {
    throw new ConfigError(
      `invalid Elasticsearch request timeout ${options.requestTimeoutMs} ms: expected a positive number`,
    );
  }
  const auth = buildAuth(options);
  let loading: Promise<Client> | undefined;
  const load = (): Promise<Client> => {
    loading ??= import('@elastic/elasticsearch').then(
      ({ Client }) =>
        new Client({ node, auth, requestTimeout: options.requestTimeoutMs, maxRetries: options.maxRetries }),
    );
    return loading;
  };
  return {
    bulk: async (params) => (await load()).bulk(params),
    info: async () => (await load()).info(),
    close: async () => {
      if (loading !== undefined) {
        await (await loading).close();
      }
    },
  };
}

function validateNodeUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(
      'invalid Elasticsearch node URL: expected an absolute http(s) URL such as https://es.example:9200',
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`invalid Elasticsearch node URL ${url.origin}: the scheme must be http or https`);
  }
  if (url.username !== '' || url.password !== '') {
    // The URL is not quoted, because it contains the credentials.
    throw new ConfigError(
      'invalid Elasticsearch node URL: remove the credentials from the URL and set the API key or username and password instead',
    );
  }
  return url.href;
}

function buildAuth(
  options: ElasticsearchClientOptions,
): { apiKey: string } | { username: string; password: string } | undefined {
  if (options.apiKey !== undefined && options.apiKey !== '') {
    return { apiKey: options.apiKey };
  }
  const hasUsername = options.username !== undefined && options.username !== '';
  const hasPassword = options.password !== undefined && options.password !== '';
  if (hasUsername !== hasPassword) {
    throw new ConfigError(
      'incomplete Elasticsearch credentials: set both the username and the password, or an API key',
    );
  }
  return hasUsername ? { username: options.username ?? '', password: options.password ?? '' } : undefined;
}

/** Outcome of one document in a createDocuments call. */
export interface CreateOutcome {
  /**
   * `created`: written now. `exists`: a document with this id was already there, so an earlier
   * attempt wrote it. `retry`: rejected for now (429 or 5xx), a later attempt may succeed.
   * `rejected`: invalid (other 4xx), retrying the same document will not help.
   */
  outcome: 'created' | 'exists' | 'retry' | 'rejected';
  /** The item error's type and reason, for every outcome other than `created` and `exists`. */
  reason?: string;
}

export interface CreateDocumentsOptions {
  /** Passed to the bulk request: `wait_for` makes the documents searchable before it returns. */
  refresh?: boolean | 'wait_for';
}

/**
 * Writes documents with create-only semantics in one bulk request, so a repeated call never
 * overwrites or duplicates a document. Returns one outcome per document id.
 * Throws TransientError (dependency `elasticsearch`) when the whole request fails, and an Error
 * when two documents share an id, because the second would always come back as `exists`.
 */
export async function createDocuments(
  client: ElasticsearchClient,
  index: string,
  docs: Array<{ id: string; document: object }>,
  options: CreateDocumentsOptions = {},
): Promise<Map<string, CreateOutcome>> {
  const outcomes = new Map<string, CreateOutcome>();
  if (docs.length === 0) {
    return outcomes;
  }
  assertUniqueIds(docs);

  const operations = docs.flatMap((doc) => [{ create: { _index: index, _id: doc.id } }, doc.document]);
  let response: estypes.BulkResponse;
  try {
    response = await client.bulk(
      options.refresh === undefined ? { operations } : { operations, refresh: options.refresh },
    );
  } catch (error) {
    // The client has made a request, so the package is loaded and this import loads nothing new.
    const { errors } = await import('@elastic/elasticsearch');
    throw new TransientError(
      `Elasticsearch bulk create of ${docs.length} documents in ${index} failed: ${describeRequestError(error, errors)}`,
      {
        dependency: 'elasticsearch',
        cause: error,
      },
    );
  }

  docs.forEach((doc, position) => {
    outcomes.set(doc.id, classifyItem(response.items[position]?.create, doc.id));
  });
  return outcomes;
}

function assertUniqueIds(docs: Array<{ id: string }>): void {
  const seen = new Set<string>();
  for (const doc of docs) {
    if (seen.has(doc.id)) {
      throw new Error(
        `duplicate document id ${doc.id} in one createDocuments call: deduplicate the documents first`,
      );
    }
    seen.add(doc.id);
  }
}

/** Maps one bulk item to an outcome. Bulk items come back in request order. */
function classifyItem(item: estypes.BulkResponseItem | undefined, id: string): CreateOutcome {
  if (item === undefined || (item._id !== undefined && item._id !== id)) {
    return { outcome: 'retry', reason: `the bulk response has no create item for document ${id}` };
  }
  if (item.status === 200 || item.status === 201) {
    return { outcome: 'created' };
  }
  if (item.status === 409) {
    return { outcome: 'exists' };
  }
  const reason = `HTTP ${item.status} ${item.error?.type ?? 'error'}: ${item.error?.reason ?? 'no reason given'}`;
  if (item.status === 429 || item.status >= 500) {
    return { outcome: 'retry', reason };
  }
  return { outcome: 'rejected', reason };
}

function describeRequestError(error: unknown, errors: ElasticsearchErrors): string {
  if (error instanceof errors.ResponseError) {
    const cause = (error.body as { error?: { type?: string; reason?: string } } | undefined)?.error;
    const detail =
      typeof cause === 'object' && cause !== null ? ` ${cause.type ?? 'error'}: ${cause.reason ?? ''}` : '';
    return `HTTP ${error.statusCode ?? 'without status'}${detail}`.trim();
  }
  if (error instanceof errors.TimeoutError) {
    return 'the request timed out';
  }
  if (error instanceof errors.ProductNotSupportedError) {
    return 'the server did not identify itself as Elasticsearch (no x-elastic-product header)';
  }
  if (error instanceof errors.ConnectionError) {
    return `connection failed: ${error.message}`;
  }
  return errorMessage(error);
}
