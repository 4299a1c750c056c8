import { z } from 'zod';
import { ConfigError, errorMessage, TransientError } from '../errors.js';

/** Node URLs of one Züs network, without trailing slashes. */
export interface NetworkNodes {
  sharders: string[];
  miners: string[];
}

export interface ResolveNetworkOptions {
  /** Sharder URLs set by the operator, which take precedence over the block worker's list. An empty list counts as missing. */
  sharders?: string[];
  /**
   * Miner URLs set by the operator, which take precedence over the block worker's list. An empty
   * list means that the caller needs no miners, so the block worker is not asked for them.
   */
  miners?: string[];
  /** Base URL of the network's block worker (for example `https://mainnet.zus.network/dns`). */
  blockWorker?: string;
  /** Timeout of the block-worker request, in milliseconds. */
  timeoutMs: number;
}

const networkResponseSchema = z.object({
  miners: z.array(z.string()),
  sharders: z.array(z.string()),
});

/**
 * Resolves the sharder and miner URLs. An explicit list takes precedence. A missing list is read
 * from `GET <blockWorker>/network`, which returns `{"miners": [...], "sharders": [...]}`.
 * Without a block worker, missing sharders are a ConfigError and missing miners resolve to an
 * empty list, so read-only workers need no miners.
 * Throws ConfigError for an invalid URL given by the operator, and TransientError (dependency
 * `block_worker`) when the block worker fails or returns an invalid or empty list.
 */
export async function resolveNetwork(options: ResolveNetworkOptions): Promise<NetworkNodes> {
  const sharders =
    options.sharders?.length === 0 ? undefined : normaliseExplicitList('sharder', options.sharders);
  const miners = normaliseExplicitList('miner', options.miners);
  if (sharders !== undefined && miners !== undefined) {
    return { sharders, miners };
  }

  if (options.blockWorker === undefined || options.blockWorker === '') {
    if (sharders === undefined) {
      throw new ConfigError(
        'no sharder URLs are configured and no block worker is configured to discover them',
      );
    }
    return { sharders, miners: [] };
  }

  const discovered = await fetchNetwork(options.blockWorker, options.timeoutMs);
  return { sharders: sharders ?? discovered.sharders, miners: miners ?? discovered.miners };
}

/**
 * Validates one node URL and returns it without trailing slashes. Throws an Error naming the
 * value unless it is an absolute http(s) URL without credentials, query or fragment.
 */
export function normaliseNodeUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`invalid node URL "${text}": expected an absolute http(s) URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`invalid node URL "${text}": the scheme must be http or https`);
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw new Error(`invalid node URL "${url.origin}": remove credentials, query and fragment`);
  }
  return url.href.replace(/\/+$/, '');
}

function normaliseExplicitList(kind: string, list: string[] | undefined): string[] | undefined {
  if (list === undefined) {
    return undefined;
  }
  try {
    return list.map(normaliseNodeUrl);
  } catch (error) {
    throw new ConfigError(`invalid ${kind} list: ${errorMessage(error)}`);
  }
}

async function fetchNetwork(blockWorker: string, timeoutMs: number): Promise<NetworkNodes> {
  let base: string;
  try {
    base = normaliseNodeUrl(blockWorker);
  } catch (error) {
    throw new ConfigError(`invalid block worker URL: ${errorMessage(error)}`);
  }

  const url = `${base}/network`;
  const body = await getBlockWorkerJson(url, timeoutMs);
  const parsed = networkResponseSchema.safeParse(body);
  if (!parsed.success) {
    throw new TransientError(
      `block worker ${url} returned an invalid network list: ${parsed.error.message}`,
      {
        dependency: 'block_worker',
      },
    );
  }

  try {
    const nodes = {
      sharders: parsed.data.sharders.map(normaliseNodeUrl),
      miners: parsed.data.miners.map(normaliseNodeUrl),
    };
    if (nodes.sharders.length === 0) {
      throw new Error('the sharder list is empty');
    }
    return nodes;
  } catch (error) {
    throw new TransientError(
      `block worker ${url} returned an unusable network list: ${errorMessage(error)}`,
      {
        dependency: 'block_worker',
      },
    );
  }
}

async function getBlockWorkerJson(url: string, timeoutMs: number): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    const reason =
      error instanceof DOMException && error.name === 'TimeoutError'
        ? `timed out after ${timeoutMs} ms`
        : describeFetchError(error);
    throw new TransientError(`block worker ${url} failed: ${reason}`, {
      dependency: 'block_worker',
      cause: error,
    });
  }

  const text = await response.text();
  if (!response.ok) {
    throw new TransientError(`block worker ${url} returned HTTP ${response.status}: ${shortenBody(text)}`, {
      dependency: 'block_worker',
    });
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new TransientError(`block worker ${url} returned invalid JSON: ${shortenBody(text)}`, {
      dependency: 'block_worker',
    });
  }
}

/** Maximum characters of a response body quoted in an error message. */
export const MAX_QUOTED_BODY = 200;

/** Collapses whitespace and cuts a response body to at most MAX_QUOTED_BODY characters for error messages. */
export function shortenBody(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  if (flat === '') {
    return '(empty body)';
  }
  return flat.length <= MAX_QUOTED_BODY ? flat : `${flat.slice(0, MAX_QUOTED_BODY - 1)}…`;
}

/** Describes a failed `fetch` (undici puts the socket error in `cause`) in the usual words. */
export function describeFetchError(error: unknown): string {
  const cause =
    error instanceof Error ? (error.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  switch (cause?.code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return 'connection reset';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host not found';
    default:
      return typeof cause?.message === 'string' ? cause.message : errorMessage(error);
  }
}
