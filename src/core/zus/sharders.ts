import { ConfigError, errorMessage, PermanentError, TransientError } from '../errors.js';
import type { Logger } from '../output/logger.js';
import { describeFetchError, normaliseNodeUrl, shortenBody } from './network.js';

export interface ShardersClientOptions {
  sharders: string[];
  /** Timeout of each sharder request, in milliseconds. */
  timeoutMs: number;
  /** Share of the sharders that must return the same response, in (0, 1]. */
  consensusShare: number;
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
  | { kind: 'failed'; sharder: string; reason: string }
  | { kind: 'cancelled'; sharder: string };

type AgreeableOutcome = Extract<SharderOutcome, { kind: 'response' | 'not_found' }>;

const NOT_FOUND_KEY = 'not found';

/**
 * Reads REST endpoints from all sharders at once and returns the response that a configured share
 * of them agree on, so one faulty or lagging sharder can neither fail nor fool a read.
 */
export class ShardersClient {
  readonly sharders: readonly string[];
  readonly required: number;
  private readonly timeoutMs: number;
  private readonly logger: Logger;
  /** Sharders already reported at warn level. Later failures of the same node are logged at debug level. */
  private readonly warnedSharders = new Set<string>();

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
    // A sharder listed twice would count twice towards the share.
    this.sharders = [...new Set(options.sharders.map(normaliseNodeUrl))];
    this.required = Math.ceil(options.consensusShare * this.sharders.length);
    this.timeoutMs = options.timeoutMs;
    this.logger = options.logger;
  }

  /**
   * Sends `GET <sharder><path>?<query>` to every sharder and returns the body that at least
   * `required` sharders agree on (compared as canonical JSON of `compareBy(body)`).
   * Throws NotFoundOnChainError when that many agree the entity does not exist, and
   * TransientError (dependency `sharders`) naming every node's result when no response reaches the share.
   */
  async getJson(
    path: string,
    query: Record<string, string> = {},
    options: GetJsonOptions = {},
  ): Promise<unknown> {
    const resource = buildResource(path, query);
    const outcomes = await this.askAll(resource, options);
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
    const never = new AbortController();
    const outcomes = await Promise.all(
      this.sharders.map((sharder) => this.askOne(sharder, resource, {}, never.signal)),
    );
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

  /** Asks every sharder and resolves once some response reaches the share or every sharder has finished. */
  private askAll(resource: string, options: GetJsonOptions): Promise<SharderOutcome[]> {
    const stopAll = new AbortController();
    const outcomes: SharderOutcome[] = [];

    return new Promise((resolve) => {
      const record = (outcome: SharderOutcome) => {
        if (stopAll.signal.aborted) {
          return;
        }
        outcomes.push(outcome);
        const finished = outcomes.length === this.sharders.length;
        if (finished || findAgreement(outcomes, this.required) !== undefined) {
          stopAll.abort();
          resolve(outcomes);
        }
      };
      for (const sharder of this.sharders) {
        void this.askOne(sharder, resource, options, stopAll.signal).then(record);
      }
    });
  }

  private async askOne(
    sharder: string,
    resource: string,
    options: GetJsonOptions,
    stop: AbortSignal,
  ): Promise<SharderOutcome> {
    let status: number;
    let text: string;
    try {
      const signal = AbortSignal.any([stop, AbortSignal.timeout(this.timeoutMs)]);
      const response = await fetch(`${sharder}${resource}`, { signal });
      status = response.status;
      text = await response.text();
    } catch (error) {
      if (stop.aborted) {
        return { kind: 'cancelled', sharder };
      }
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

  private describeRequestError(error: unknown): string {
    if (error instanceof DOMException && error.name === 'TimeoutError') {
      return `timed out after ${this.timeoutMs} ms`;
    }
    return describeFetchError(error);
  }

  private describeDisagreement(resource: string, outcomes: SharderOutcome[]): string {
    const responseLabels = labelResponses(outcomes);
    const details = this.sharders.map((sharder) => {
      const outcome = outcomes.find((item) => item.sharder === sharder);
      return `${sharder} ${describeOutcome(outcome, responseLabels)}`;
    });
    return `no response from ${this.required} of ${this.sharders.length} sharders agrees for GET ${resource}: ${details.join('; ')}`;
  }

  /** Logs sharders that failed or disagreed although the read succeeded, once per sharder at warn level. */
  private logIgnoredOutcomes(
    resource: string,
    outcomes: SharderOutcome[],
    winner: SharderOutcome | undefined,
  ): void {
    if (winner === undefined) {
      return;
    }
    const winningKey = outcomeKey(winner);
    for (const outcome of outcomes) {
      if (outcome.kind === 'cancelled' || outcomeKey(outcome) === winningKey) {
        continue;
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
  if (outcome === undefined || outcome.kind === 'cancelled') {
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
