import http from 'node:http';
import https from 'node:https';
import { urlToHttpOptions } from 'node:url';
import { ConfigError, errorMessage, PermanentError, TransientError } from '../errors.js';
import type { Logger } from '../output/logger.js';
import { describeFetchError, normaliseNodeUrl, shortenBody } from './network.js';

export interface ShardersClientOptions {
  sharders: string[];
  /** Timeout of each sharder request, in milliseconds. */
  timeoutMs: number;
  /** Share of the sharders that must return the same response, in (0, 1]. */
  consensusShare: number;
  /**
   * Time after which a read without agreement sends a request to one more sharder, in
   * milliseconds. The default is a quarter of the timeout, at most one second.
   */
  hedgeDelayMs?: number;
  logger: Logger;
}

export interface GetJsonOptions {
  /** Projection of a 2xx body that sharders must agree on (by default the whole body). */
  compareBy?: (body: unknown) => unknown;
  /**
   * Whether a response means that the entity does not exist on chain. `body` is the parsed JSON,
   * or the text when an error response is not JSON. By default no response counts as not found,
   * because a 404 also means an unknown path.
   */
  notFound?: (status: number, body: unknown) => boolean;
}

/**
 * Error raised when the required share of sharders agree that the requested entity does not
 * exist. It extends PermanentError, so a caller that does not expect it fails the task with this
 * reason. Callers for which "not yet" is normal (confirmations, fresh allocations) catch it.
 */
export class NotFoundOnChainError extends PermanentError {
  override name = 'NotFoundOnChainError';
  /** Path and query that were requested. */
  readonly resource: string;
  /** Body of one of the agreeing not-found responses. */
  readonly body: unknown;

  constructor(message: string, resource: string, body: unknown) {
    super(message, { dependency: 'sharders' });
    this.resource = resource;
    this.body = body;
  }
}

/** Result of one sharder request, reduced to the parts that consensus needs. */
type SharderOutcome =
  | { kind: 'response'; sharder: string; key: string; body: unknown }
  | { kind: 'not_found'; sharder: string; body: unknown }
  | { kind: 'failed'; sharder: string; reason: string };

type AgreeableOutcome = Extract<SharderOutcome, { kind: 'response' | 'not_found' }>;

const NOT_FOUND_KEY = 'not found';

/**
 * Upper bound of the default hedge delay, in milliseconds.
 * NOTE: an estimate of when a sharder's REST read counts as slow, not a measured latency.
 */
const MAX_DEFAULT_HEDGE_DELAY_MS = 1_000;
/** Time a sharder that failed or returned a minority response comes after the others in a read, in milliseconds. */
const DEMOTION_MS = 30_000;

/**
 * Reads REST endpoints from the sharders and returns the response that a configured share of them
 * agree on, so one faulty or lagging sharder can neither fail nor fool a read.
 *
 * A read first sends requests to only as many sharders as the share requires. It sends one more
 * request for each sharder that fails or disagrees, and one more after each hedge delay without
 * agreement. Successive reads start at successive sharders, so the load is spread over all of
 * them, and a sharder that failed or disagreed within the last DEMOTION_MS comes after the others.
 * Requests go through keep-alive agents of node:http and node:https: on Node 24 over loopback
 * (2-core AMD EPYC), one request cost about 75 µs of CPU this way and about 165 µs through `fetch`.
 */
export class ShardersClient {
  readonly sharders: readonly string[];
  readonly required: number;
  private readonly timeoutMs: number;
  private readonly hedgeDelayMs: number;
  private readonly logger: Logger;
  private readonly httpAgent = new http.Agent({ keepAlive: true });
  private readonly httpsAgent = new https.Agent({ keepAlive: true });
  /** Request options of each sharder, parsed once because parsing a URL per request costs CPU. */
  private readonly targets = new Map<string, RequestTarget>();
  /** Sharders already reported at warn level. Later failures of the same node are logged at debug level. */
  private readonly warnedSharders = new Set<string>();
  /** When each sharder last failed or returned a minority response (epoch milliseconds). */
  private readonly demotedAt = new Map<string, number>();
  /** Index of the sharder the next read starts at. */
  private nextStart = 0;

  constructor(options: ShardersClientOptions) {
    if (options.sharders.length === 0) {
      throw new ConfigError('the sharder list is empty: configure at least one sharder URL');
    }
    if (!(options.consensusShare > 0 && options.consensusShare <= 1)) {
      throw new ConfigError(
        `invalid sharder consensus share ${options.consensusShare}: expected a number in (0, 1]`,
      );
    }
    if (!(Number.isFinite(options.timeoutMs) && options.timeoutMs > 0)) {
      throw new ConfigError(`invalid sharder timeout ${options.timeoutMs} ms: expected a positive number`);
    }
    const hedgeDelayMs = options.hedgeDelayMs ?? Math.min(options.timeoutMs / 4, MAX_DEFAULT_HEDGE_DELAY_MS);
    if (!(Number.isFinite(hedgeDelayMs) && hedgeDelayMs > 0)) {
      throw new ConfigError(`invalid sharder hedge delay ${hedgeDelayMs} ms: expected a positive number`);
    }
    // A sharder listed twice would count twice towards the share.
    this.sharders = [...new Set(options.sharders.map(normaliseNodeUrl))];
    for (const sharder of this.sharders) {
      this.targets.set(sharder, this.requestTarget(sharder));
    }
    this.required = Math.ceil(options.consensusShare * this.sharders.length);
    this.timeoutMs = options.timeoutMs;
    this.hedgeDelayMs = hedgeDelayMs;
    this.logger = options.logger;
  }

  /**
   * Sends `GET <sharder><path>?<query>` to sharders until at least `required` of them return the
   * same body (compared as canonical JSON of `compareBy(body)`) and returns that body.
   * Throws NotFoundOnChainError when that many agree the entity does not exist, and
   * TransientError (dependency `sharders`) naming every node's result when no response reaches
   * the share after a request to every sharder.
   */
  async getJson(
    path: string,
    query: Record<string, string> = {},
    options: GetJsonOptions = {},
  ): Promise<unknown> {
    const resource = buildResource(path, query);
    const outcomes = await this.askUntilAgreement(resource, options);
    const winner = findAgreement(outcomes, this.required);

    this.logIgnoredOutcomes(resource, outcomes, winner);
    if (winner === undefined) {
      throw new TransientError(this.describeDisagreement(resource, outcomes), { dependency: 'sharders' });
    }
    if (winner.kind === 'not_found') {
      throw new NotFoundOnChainError(
        `at least ${this.required} of ${this.sharders.length} sharders returned not found for GET ${resource}: ${shortenBody(JSON.stringify(winner.body) ?? '')}`,
        resource,
        winner.body,
      );
    }
    return winner.body;
  }

  /**
   * Sends `GET <sharder><path>` to every sharder, waits for all of them (each within the timeout)
   * and returns the JSON bodies of the 2xx responses, for reads whose answers legitimately differ
   * between sharders (the latest finalized block). The caller decides how to combine them.
   */
  async getFromEach(
    path: string,
    query: Record<string, string> = {},
  ): Promise<Array<{ sharder: string; body: unknown }>> {
    const resource = buildResource(path, query);
    const outcomes = await Promise.all(this.sharders.map((sharder) => this.askOne(sharder, resource, {})));
    const bodies: Array<{ sharder: string; body: unknown }> = [];
    for (const outcome of outcomes) {
      if (outcome.kind === 'response') {
        bodies.push({ sharder: outcome.sharder, body: outcome.body });
      } else if (outcome.kind === 'failed') {
        this.logger.debug('sharder read failed', {
          sharder: outcome.sharder,
          resource,
          reason: outcome.reason,
        });
      }
    }
    return bodies;
  }

  /** Closes the idle keep-alive connections. Requests still in flight finish first. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  /**
   * Requests `required` sharders, then one more for each one that fails or disagrees and one more
   * after each hedge delay without agreement. Resolves with the outcomes received once some
   * response reaches the share or every sharder has finished. Requests still in flight then are
   * left to finish, because aborting one destroys its keep-alive connection.
   */
  private askUntilAgreement(resource: string, options: GetJsonOptions): Promise<SharderOutcome[]> {
    const order = this.readOrder();
    const outcomes: SharderOutcome[] = [];
    let requested = 0;
    let settled = false;
    let hedgeTimer: NodeJS.Timeout | undefined;

    return new Promise((resolve) => {
      const settle = () => {
        settled = true;
        clearTimeout(hedgeTimer);
        resolve(outcomes);
      };
      const askNext = () => {
        const sharder = order[requested] as string;
        requested += 1;
        void this.askOne(sharder, resource, options).then(record);
      };
      // Keeps enough requests in flight to complete the largest group of equal responses.
      const topUp = () => {
        const missing = this.required - largestGroup(outcomes);
        while (requested < order.length && requested - outcomes.length < missing) {
          askNext();
        }
      };
      const hedge = () => {
        if (settled || requested >= order.length) {
          return;
        }
        askNext();
        hedgeTimer = setTimeout(hedge, this.hedgeDelayMs).unref();
      };
      const record = (outcome: SharderOutcome) => {
        if (outcome.kind === 'failed') {
          this.demotedAt.set(outcome.sharder, Date.now());
        }
        if (settled) {
          return;
        }
        outcomes.push(outcome);
        if (outcomes.length === order.length || findAgreement(outcomes, this.required) !== undefined) {
          settle();
          return;
        }
        topUp();
      };

      topUp();
      hedgeTimer = setTimeout(hedge, this.hedgeDelayMs).unref();
    });
  }

  private requestTarget(sharder: string): RequestTarget {
    const parsed = new URL(sharder);
    const url = urlToHttpOptions(parsed);
    const secure = url.protocol === 'https:';
    return {
      get: secure ? https.get : http.get,
      options: {
        protocol: url.protocol,
        hostname: url.hostname,
        port: url.port,
        agent: secure ? this.httpsAgent : this.httpAgent,
      },
      // normaliseNodeUrl removed trailing slashes, but the URL parser returns `/` for an empty path.
      basePath: parsed.pathname.replace(/\/+$/, ''),
    };
  }

  /** Returns the sharders in the order a read requests them: from the next start onwards, demoted sharders last. */
  private readOrder(): string[] {
    const count = this.sharders.length;
    const start = this.nextStart;
    this.nextStart = (start + 1) % count;
    const now = Date.now();
    const preferred: string[] = [];
    const demoted: string[] = [];
    for (let offset = 0; offset < count; offset += 1) {
      const sharder = this.sharders[(start + offset) % count] as string;
      const demotedAt = this.demotedAt.get(sharder);
      if (demotedAt !== undefined && now - demotedAt < DEMOTION_MS) {
        demoted.push(sharder);
      } else {
        preferred.push(sharder);
      }
    }
    return demoted.length === 0 ? preferred : preferred.concat(demoted);
  }

  private async askOne(sharder: string, resource: string, options: GetJsonOptions): Promise<SharderOutcome> {
    let status: number;
    let text: string;
    try {
      ({ status, text } = await this.request(sharder, resource));
    } catch (error) {
      return { kind: 'failed', sharder, reason: this.describeRequestError(error) };
    }

    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      if (status >= 200 && status < 300) {
        return { kind: 'failed', sharder, reason: `invalid JSON: ${shortenBody(text)}` };
      }
    }
    return classifyResponse(sharder, status, body, text, options);
  }

  /** Sends one GET over a keep-alive connection and reads the whole body as UTF-8 within the timeout. */
  private request(sharder: string, resource: string): Promise<{ status: number; text: string }> {
    const target = this.targets.get(sharder) as RequestTarget;
    const options = { ...target.options, path: `${target.basePath}${resource}` };

    return new Promise((resolve, reject) => {
      const request = target.get(options, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          clearTimeout(timer);
          resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
        });
        response.on('error', fail);
      });
      const timer = setTimeout(() => request.destroy(new SharderTimeoutError()), this.timeoutMs);
      function fail(error: Error) {
        clearTimeout(timer);
        reject(error);
      }
      request.on('error', fail);
    });
  }

  private describeRequestError(error: unknown): string {
    if (error instanceof SharderTimeoutError) {
      return `timed out after ${this.timeoutMs} ms`;
    }
    switch ((error as NodeJS.ErrnoException).code) {
      case 'ECONNREFUSED':
        return 'connection refused';
      case 'ECONNRESET':
      case 'EPIPE':
        return 'connection reset';
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return 'host not found';
      default:
        return describeFetchError(error);
    }
  }

  private describeDisagreement(resource: string, outcomes: SharderOutcome[]): string {
    const responseLabels = labelResponses(outcomes);
    const details = this.sharders.map((sharder) => {
      const outcome = outcomes.find((item) => item.sharder === sharder);
      return `${sharder} ${describeOutcome(outcome, responseLabels)}`;
    });
    return `no response from ${this.required} of ${this.sharders.length} sharders agrees for GET ${resource}: ${details.join('; ')}`;
  }

  /**
   * Logs sharders that failed or disagreed although the read succeeded, once per sharder at warn
   * level, and demotes the ones that disagreed.
   */
  private logIgnoredOutcomes(
    resource: string,
    outcomes: SharderOutcome[],
    winner: SharderOutcome | undefined,
  ): void {
    if (winner === undefined || outcomes.length === this.required) {
      return;
    }
    const winningKey = outcomeKey(winner);
    for (const outcome of outcomes) {
      if (outcomeKey(outcome) === winningKey) {
        continue;
      }
      if (outcome.kind !== 'failed') {
        this.demotedAt.set(outcome.sharder, Date.now());
      }
      const reason =
        outcome.kind === 'failed' ? outcome.reason : 'returned a response that differs from the agreed one';
      const level = this.warnedSharders.has(outcome.sharder) ? 'debug' : 'warn';
      this.warnedSharders.add(outcome.sharder);
      this.logger[level]('sharder response ignored: the other sharders agreed', {
        sharder: outcome.sharder,
        resource,
        reason,
      });
    }
  }
}

/** How to send a request to one sharder: the module's `get`, the parsed URL and the path prefix. */
interface RequestTarget {
  get: typeof http.get;
  options: http.RequestOptions;
  basePath: string;
}

/** Error that ends a sharder request after the client's timeout. */
class SharderTimeoutError extends Error {
  override name = 'SharderTimeoutError';
}

function buildResource(path: string, query: Record<string, string>): string {
  if (!path.startsWith('/')) {
    throw new Error(`invalid sharder path "${path}": it must start with /`);
  }
  const search = new URLSearchParams(query).toString();
  return search === '' ? path : `${path}?${search}`;
}

/** Classifies one parsed response as agreeable, not found or failed. Errors thrown by the callbacks become `failed`. */
function classifyResponse(
  sharder: string,
  status: number,
  body: unknown,
  text: string,
  options: GetJsonOptions,
): SharderOutcome {
  try {
    if (options.notFound?.(status, body) === true) {
      return { kind: 'not_found', sharder, body };
    }
    if (status < 200 || status >= 300) {
      return { kind: 'failed', sharder, reason: `HTTP ${status}: ${shortenBody(text)}` };
    }
    const compared = options.compareBy === undefined ? body : options.compareBy(body);
    return { kind: 'response', sharder, key: canonicalJson(compared), body };
  } catch (error) {
    return {
      kind: 'failed',
      sharder,
      reason: `unexpected response (${shortenBody(errorMessage(error))}): ${shortenBody(text)}`,
    };
  }
}

function outcomeKey(outcome: SharderOutcome): string | undefined {
  if (outcome.kind === 'response') {
    return outcome.key;
  }
  return outcome.kind === 'not_found' ? NOT_FOUND_KEY : undefined;
}

/** Returns one outcome of the first group of equal responses (or of not-found responses) with at least `required` members. */
function findAgreement(outcomes: SharderOutcome[], required: number): AgreeableOutcome | undefined {
  const counts = new Map<string, number>();
  for (const outcome of outcomes) {
    const key = outcomeKey(outcome);
    if (key === undefined) {
      continue;
    }
    const count = (counts.get(key) ?? 0) + 1;
    counts.set(key, count);
    if (count >= required) {
      return outcomes.find((item): item is AgreeableOutcome => outcomeKey(item) === key);
    }
  }
  return undefined;
}

/** Returns the size of the largest group of equal responses (or of not-found responses). */
function largestGroup(outcomes: SharderOutcome[]): number {
  const counts = new Map<string, number>();
  let largest = 0;
  for (const outcome of outcomes) {
    const key = outcomeKey(outcome);
    if (key !== undefined) {
      const count = (counts.get(key) ?? 0) + 1;
      counts.set(key, count);
      largest = Math.max(largest, count);
    }
  }
  return largest;
}

/** Numbers the distinct 2xx responses (response 1, response 2, ...) so an error can show which sharders agreed. */
function labelResponses(outcomes: SharderOutcome[]): Map<string, { label: string; count: number }> {
  const labels = new Map<string, { label: string; count: number }>();
  for (const outcome of outcomes) {
    if (outcome.kind !== 'response') {
      continue;
    }
    const entry = labels.get(outcome.key) ?? { label: `response ${labels.size + 1}`, count: 0 };
    entry.count += 1;
    labels.set(outcome.key, entry);
  }
  return labels;
}

function describeOutcome(
  outcome: SharderOutcome | undefined,
  labels: Map<string, { label: string; count: number }>,
): string {
  if (outcome === undefined) {
    return 'no response';
  }
  if (outcome.kind === 'failed') {
    return outcome.reason;
  }
  if (outcome.kind === 'not_found') {
    return `not found: ${shortenBody(JSON.stringify(outcome.body) ?? '')}`;
  }
  const entry = labels.get(outcome.key);
  const sharderCount = entry?.count === 1 ? '1 sharder' : `${entry?.count ?? 0} sharders`;
  return `${entry?.label ?? 'a response'} (returned by ${sharderCount})`;
}

/**
 * Serialises a value as JSON with object keys sorted at every depth, so that equal responses
 * compare equal whatever the key order. `bigint` and `Date` values are written as tagged strings.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value)) ?? 'undefined';
}

function sortKeys(value: unknown): unknown {
  if (typeof value === 'bigint') {
    return `bigint:${value}`;
  }
  if (value instanceof Date) {
    return `date:${value.toISOString()}`;
  }
  if (Array.isArray(value)) {
    return value.map(sortKeys);
  }
  if (value !== null && typeof value === 'object') {
    // Keys of one object are distinct, so two keys never compare equal.
    const entries = Object.entries(value).sort(([left], [right]) => (left < right ? -1 : 1));
    return Object.fromEntries(entries.map(([key, item]) => [key, sortKeys(item)]));
  }
  return value;
}
