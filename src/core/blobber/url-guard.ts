/**
 * The only way this project talks to blobbers. Blobber URLs come from chain data that anyone can
 * register, so every call goes through three guards:
 *
 * - `checkUrl`, before any socket exists: only `http:` and `https:`, no credentials in the URL, and
 *   an IP-literal host must be a public address.
 * - A DNS lookup hook on the socket, at connection time: every address a host name resolves to
 *   must be public. The socket connects only to the addresses the hook approved, so a name that is
 *   re-pointed between a check and the connection (DNS rebinding) is caught as well.
 * - Limits on the exchange: redirects are never followed, the response body is capped in bytes and
 *   the whole request in time.
 *
 * `allowPrivateAddresses` lets loopback and private addresses through, for tests and a local demo.
 * Metadata, link-local, multicast and the other special ranges stay rejected even then.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import {
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { BlockList, isIP, isIPv6 } from 'node:net';
import { PermanentError, TransientError } from '../errors.js';
import type { Logger } from '../output/logger.js';

/** Environment variable that sets `allowPrivateAddresses`. Every rejection it would lift names it. */
export const ALLOW_PRIVATE_ADDRESSES_VARIABLE = 'ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES';

/** Default limit of one request, from DNS lookup to the last body byte. A guess, not a measurement. */
export const DEFAULT_TIMEOUT_MS = 15_000;

/** Default cap of a response body. An auth ticket response is under 200 bytes, and downloads pass their own cap. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

/** A blobber URL or resolved address that the guard rejects. No retry changes the outcome. */
export class BlockedAddressError extends PermanentError {
  override name = 'BlockedAddressError';
}

// ---------------------------------------------------------------------------------------------
// Address classification
// ---------------------------------------------------------------------------------------------

/** Reason an address is not a public unicast address. */
export type AddressKind =
  | 'metadata'
  | 'unspecified'
  | 'loopback'
  | 'private'
  | 'shared'
  | 'link-local'
  | 'multicast'
  | 'broadcast'
  | 'reserved';

/** Kinds that `allowPrivateAddresses` lets through. */
const KINDS_ALLOWED_WITH_PRIVATE: ReadonlySet<AddressKind> = new Set(['loopback', 'private']);

interface AddressRange {
  kind: AddressKind;
  /** Words used in messages: "a <label> address". */
  label: string;
  /** Single addresses and CIDR blocks, IPv4 or IPv6. */
  blocks: readonly string[];
}

/**
 * Ranges in the order they are checked: the first match names the rule, so the metadata
 * addresses come before the private and link-local blocks that contain them.
 */
const ADDRESS_RANGES: readonly AddressRange[] = [
  {
    kind: 'metadata',
    label: 'cloud metadata',
    blocks: [
      '169.254.169.254', // AWS, GCP, Azure, OCI, OpenStack instance metadata
      '169.254.170.2', // AWS ECS task metadata and credentials
      '169.254.170.23', // AWS EKS Pod Identity agent
      '100.100.100.200', // Alibaba Cloud instance metadata
      '168.63.129.16', // Azure WireServer (a public-looking address)
      'fd00:ec2::254', // AWS instance metadata over IPv6
      'fd00:ec2::23', // AWS EKS Pod Identity agent over IPv6
    ],
  },
  { kind: 'unspecified', label: 'unspecified', blocks: ['0.0.0.0/8', '::/128'] },
  { kind: 'loopback', label: 'loopback', blocks: ['127.0.0.0/8', '::1/128'] },
  {
    kind: 'private',
    label: 'private',
    // RFC 1918, IPv6 unique local (fc00::/7) and the deprecated IPv6 site-local block.
    blocks: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7', 'fec0::/10'],
  },
  { kind: 'shared', label: 'carrier-grade NAT (100.64.0.0/10)', blocks: ['100.64.0.0/10'] },
  { kind: 'link-local', label: 'link-local', blocks: ['169.254.0.0/16', 'fe80::/10'] },
  { kind: 'broadcast', label: 'broadcast', blocks: ['255.255.255.255'] },
  { kind: 'multicast', label: 'multicast', blocks: ['224.0.0.0/4', 'ff00::/8'] },
  {
    kind: 'reserved',
    label: 'reserved',
    blocks: [
      '192.0.0.0/24', // IETF protocol assignments
      '192.0.2.0/24', // documentation
      '198.18.0.0/15', // benchmarking
      '198.51.100.0/24', // documentation
      '203.0.113.0/24', // documentation
      '240.0.0.0/4', // reserved for future use
      '100::/64', // discard-only
      '2001:db8::/32', // documentation
    ],
  },
];

interface CompiledRange extends AddressRange {
  list: BlockList;
}

const COMPILED_RANGES: readonly CompiledRange[] = ADDRESS_RANGES.map((range) => {
  const list = new BlockList();
  for (const block of range.blocks) {
    const [address = '', prefix] = block.split('/');
    const family = isIPv6(address) ? 'ipv6' : 'ipv4';
    if (prefix === undefined) {
      list.addAddress(address, family);
    } else {
      list.addSubnet(address, Number(prefix), family);
    }
  }
  return { ...range, list };
});

/** A non-public address and the rule it falls under. */
export interface AddressVerdict {
  kind: AddressKind;
  /** The address as checked, for example `::ffff:a00:1`. */
  address: string;
  /** The IPv4 address embedded in an IPv6 one (IPv4-mapped, NAT64, 6to4), when that is what matched. */
  embeddedIpv4?: string;
  /** Words for messages: "a private address 10.0.0.1". */
  description: string;
  /** Whether `allowPrivateAddresses` lets this address through. */
  allowedWithPrivate: boolean;
}

/**
 * Classifies an IP address. Returns undefined for a public unicast address and the matching rule
 * otherwise. An IPv6 address that carries an IPv4 address (IPv4-mapped `::ffff:0:0/96`,
 * IPv4-compatible `::/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged by that IPv4 address.
 * Throws a TypeError when `address` is not an IP address.
 */
export function classifyAddress(address: string): AddressVerdict | undefined {
  const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 0) {
    throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
  }

  const direct = matchRange(bare, family === 6 ? 'ipv6' : 'ipv4');
  if (family === 4) {
    return direct === undefined ? undefined : verdict(direct, bare);
  }

  // `::` and `::1` sit inside the IPv4-compatible block ::/96, so they are judged as IPv6 addresses.
  const bytes = ipv6Bytes(bare);
  const isUnspecifiedOrLoopback = bytes.subarray(0, 15).every((byte) => byte === 0) && (bytes[15] ?? 0) <= 1;
  const embedded = isUnspecifiedOrLoopback ? undefined : embeddedIpv4(bytes);
  if (embedded !== undefined) {
    const inner = matchRange(embedded, 'ipv4');
    return inner === undefined ? undefined : verdict(inner, bare, embedded);
  }
  return direct === undefined ? undefined : verdict(direct, bare);
}

function matchRange(address: string, family: 'ipv4' | 'ipv6'): CompiledRange | undefined {
  return COMPILED_RANGES.find((range) => range.list.check(address, family));
}

function verdict(range: CompiledRange, address: string, embedded?: string): AddressVerdict {
  const article = /^[aeiou]/.test(range.label) ? 'an' : 'a';
  const shown = embedded === undefined ? address : `${embedded} (inside the IPv6 address ${address})`;
  return {
    kind: range.kind,
    address,
    ...(embedded === undefined ? {} : { embeddedIpv4: embedded }),
    description: `${article} ${range.label} address ${shown}`,
    allowedWithPrivate: KINDS_ALLOWED_WITH_PRIVATE.has(range.kind),
  };
}

/** Returns the IPv4 address an IPv6 address carries in one of the well-known embeddings, if any. */
function embeddedIpv4(bytes: Uint8Array): string | undefined {
  const zeros = (from: number, to: number) => bytes.subarray(from, to).every((byte) => byte === 0);
  const ipv4At = (offset: number) => Array.from(bytes.subarray(offset, offset + 4)).join('.');

  // ::ffff:a.b.c.d (IPv4-mapped) and ::a.b.c.d (IPv4-compatible, deprecated).
  if (zeros(0, 10) && ((bytes[10] === 0xff && bytes[11] === 0xff) || zeros(10, 12))) {
    return ipv4At(12);
  }
  // 64:ff9b::a.b.c.d (NAT64 well-known prefix).
  if (bytes[0] === 0x00 && bytes[1] === 0x64 && bytes[2] === 0xff && bytes[3] === 0x9b && zeros(4, 12)) {
    return ipv4At(12);
  }
  // 2002:aabb:ccdd::/48 (6to4).
  if (bytes[0] === 0x20 && bytes[1] === 0x02) {
    return ipv4At(2);
  }
  return undefined;
}

/** Returns the 16 bytes of a valid IPv6 address, including the `::` and dotted-quad-suffix forms. */
function ipv6Bytes(address: string): Uint8Array {
  let text = address.toLowerCase();
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted !== null) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(tail === undefined ? 0 : missing).fill('0'), ...tailGroups];

  const bytes = new Uint8Array(16);
  groups.forEach((group, index) => {
    const value = Number.parseInt(group, 16);
    bytes[index * 2] = value >> 8;
    bytes[index * 2 + 1] = value & 0xff;
  });
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// URL check
// ---------------------------------------------------------------------------------------------

export interface UrlGuardOptions {
  /** Let loopback and private addresses through (tests and a local demo only). */
  allowPrivateAddresses: boolean;
}

/**
 * Checks a blobber URL without opening any connection: it must parse, use `http:` or `https:`,
 * carry no user name or password, and an IP-literal host must be allowed. A host name is only
 * checked later, when the socket resolves it. Returns the parsed URL.
 * Throws BlockedAddressError (a PermanentError) naming the URL and the rule.
 */
export function checkUrl(url: string | URL, options: UrlGuardOptions): URL {
  let parsed: URL;
  try {
    parsed = new URL(String(url));
  } catch {
    throw new BlockedAddressError(`blobber URL ${quoteText(String(url), 200)} is not a valid URL`);
  }

  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new BlockedAddressError(
      `blobber URL ${showUrl(parsed)} uses the scheme ${parsed.protocol}, but only http: and https: are allowed`,
    );
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw new BlockedAddressError(
      `blobber URL ${showUrl(parsed)} contains a user name or password, which blobber URLs never carry`,
    );
  }

  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) !== 0) {
    const rejection = addressRejection(`blobber URL ${showUrl(parsed)}`, classifyAddress(host), options);
    if (rejection !== undefined) {
      throw rejection;
    }
  }
  return parsed;
}

/**
 * Returns the error for an address the guard rejects, or undefined when it is allowed. `subject`
 * starts the message, for example "blobber URL http://10.0.0.1/".
 */
function addressRejection(
  subject: string,
  addressVerdict: AddressVerdict | undefined,
  options: UrlGuardOptions,
): BlockedAddressError | undefined {
  if (addressVerdict === undefined) {
    return undefined;
  }
  if (addressVerdict.allowedWithPrivate) {
    if (options.allowPrivateAddresses) {
      return undefined;
    }
    return new BlockedAddressError(
      `${subject} resolves to ${addressVerdict.description} (set ${ALLOW_PRIVATE_ADDRESSES_VARIABLE}=true only for tests or a local demo)`,
    );
  }
  return new BlockedAddressError(
    `${subject} resolves to ${addressVerdict.description}, which blobber calls never reach`,
  );
}

/** Returns the URL for messages, without any user name or password. */
function showUrl(url: URL): string {
  if (url.username === '' && url.password === '') {
    return url.href;
  }
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return copy.href;
}

/**
 * Quotes at most `maxChars` characters of untrusted text for an error message: whitespace runs
 * collapse to one space, and a cut is marked with an ellipsis.
 */
export function quoteText(text: string, maxChars = 100): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  const cut = flat.length > maxChars ? `${flat.slice(0, maxChars)}…` : flat;
  return JSON.stringify(cut);
}

// ---------------------------------------------------------------------------------------------
// Connection-time DNS check
// ---------------------------------------------------------------------------------------------

/** The shape of `dns.lookup` as a socket calls it. */
export type LookupFunction = (
  hostname: string,
  options: LookupOptions,
  callback: (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
) => void;

export interface GuardedLookupOptions extends UrlGuardOptions {
  /** Resolver behind the check (default `dns.lookup`). */
  resolve?: LookupFunction;
  /** URL named in rejections. Without it they name the host. */
  url?: string;
}

/**
 * Wraps a resolver so that a socket can only connect to allowed addresses. It requests every
 * address of the name and fails with BlockedAddressError when any of them is rejected, because
 * the socket may try each one in turn.
 */
export function createGuardedLookup(options: GuardedLookupOptions): LookupFunction {
  const resolve = options.resolve ?? (dnsLookup as unknown as LookupFunction);

  return (hostname, lookupOptions, callback) => {
    resolve(hostname, { ...lookupOptions, all: true }, (error, result) => {
      if (error !== null) {
        callback(error, '');
        return;
      }
      const addresses = Array.isArray(result) ? result : [{ address: result, family: isIP(result) }];
      if (addresses.length === 0) {
        callback(Object.assign(new Error(`no address found for ${hostname}`), { code: 'ENOTFOUND' }), '');
        return;
      }
      const subject = options.url === undefined ? `blobber host ${hostname}` : `blobber URL ${options.url}`;
      for (const { address } of addresses) {
        const rejection = addressRejection(subject, classifyAddress(address), options);
        if (rejection !== undefined) {
          callback(rejection as NodeJS.ErrnoException, '');
          return;
        }
      }
      if (lookupOptions.all === true) {
        callback(null, addresses);
        return;
      }
      const [first] = addresses as [LookupAddress];
      callback(null, first.address, first.family);
    });
  };
}

// ---------------------------------------------------------------------------------------------
// The guarded fetch
// ---------------------------------------------------------------------------------------------

export interface GuardedFetchOptions extends UrlGuardOptions {
  /** Limit of one request, from DNS lookup to the last body byte, in milliseconds. */
  timeoutMs?: number;
  /** Largest response body read, in bytes. A longer one is cut off and the request fails. */
  maxResponseBytes?: number;
  logger?: Logger;
  /** Resolver behind the address check (default `dns.lookup`). Tests replace it. */
  resolve?: LookupFunction;
}

export interface GuardedRequestInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Name of the dependency in errors, such as a blobber id (default: the URL's origin). */
  dependency?: string;
  /** Overrides the client's time limit for this request. */
  timeoutMs?: number;
  /** Overrides the client's body cap for this request. */
  maxResponseBytes?: number;
  /** Texts replaced by `[redacted]` wherever the response is quoted in an error (credentials a server might echo). */
  redact?: readonly string[];
  signal?: AbortSignal;
}

export interface GuardedResponse {
  /** Final URL requested (redirects are never followed, so it is the URL given). */
  url: string;
  status: number;
  headers: Headers;
  body: Buffer;
  /** The body decoded as UTF-8. */
  text(): string;
}

/** A function with the contract of `createGuardedFetch`'s result, as the blobber clients take it. */
export type BlobberFetch = (url: string, init?: GuardedRequestInit) => Promise<GuardedResponse>;

export type GuardedFetch = BlobberFetch & {
  /** Closes idle keep-alive connections. Requests still running are not interrupted. */
  close(): void;
};

/**
 * Creates the HTTP client for blobber calls. The returned function resolves with any 1xx, 2xx or
 * 4xx response (the caller reads its meaning) and rejects with:
 * - PermanentError: a URL or address the guard rejects (BlockedAddressError), a redirect (3xx,
 *   never followed), a body over the cap;
 * - TransientError: a refused or reset connection, a DNS failure, the time limit, a 5xx or 429
 *   response. Its `dependency` is `init.dependency` or the URL's origin.
 * Error messages never contain request headers.
 */
export function createGuardedFetch(options: GuardedFetchOptions): GuardedFetch {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  // A pooled keep-alive socket is reused only for the same host and port. Every new socket gets
  // the guarded lookup of the request that opens it.
  const httpAgent = new HttpAgent({ keepAlive: true });
  const httpsAgent = new HttpsAgent({ keepAlive: true });

  const guardedFetch = async (url: string, init: GuardedRequestInit = {}): Promise<GuardedResponse> => {
    let parsed: URL;
    try {
      parsed = checkUrl(url, options);
    } catch (error) {
      logRejection(options.logger, String(url), error);
      throw error;
    }
    const shownUrl = showUrl(parsed);
    const exchange: Exchange = {
      url: parsed,
      shownUrl,
      init,
      dependency: init.dependency ?? parsed.origin,
      timeoutMs: init.timeoutMs ?? timeoutMs,
      maxResponseBytes: init.maxResponseBytes ?? maxResponseBytes,
      agent: parsed.protocol === 'https:' ? httpsAgent : httpAgent,
      lookup: createGuardedLookup({
        allowPrivateAddresses: options.allowPrivateAddresses,
        url: shownUrl,
        ...(options.resolve === undefined ? {} : { resolve: options.resolve }),
      }),
    };

    const started = performance.now();
    try {
      const response = await send(exchange);
      options.logger?.debug('blobber request done', {
        method: init.method ?? 'GET',
        url: shownUrl,
        status: response.status,
        duration_ms: Math.round(performance.now() - started),
      });
      return response;
    } catch (error) {
      logRejection(options.logger, shownUrl, error);
      throw error;
    }
  };

  return Object.assign(guardedFetch, {
    close: () => {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  });
}

function logRejection(logger: Logger | undefined, url: string, error: unknown): void {
  if (error instanceof BlockedAddressError) {
    logger?.warn('blobber URL rejected by the address guard', { url, reason: error.message });
  }
}

interface Exchange {
  url: URL;
  shownUrl: string;
  init: GuardedRequestInit;
  dependency: string;
  timeoutMs: number;
  maxResponseBytes: number;
  agent: HttpAgent;
  lookup: LookupFunction;
}

/** Sends one request and reads the whole (capped) response. */
function send(exchange: Exchange): Promise<GuardedResponse> {
  const { url, shownUrl, init, dependency } = exchange;

  return new Promise<GuardedResponse>((resolve, reject) => {
    let settled = false;
    const finish = (outcome: { response: GuardedResponse } | { error: unknown }) => {
      if (settled) {
        return;
      }
      settled = true;
      clearTimeout(timer);
      init.signal?.removeEventListener('abort', onAbort);
      if ('error' in outcome) {
        request.destroy();
        reject(outcome.error);
      } else {
        resolve(outcome.response);
      }
    };

    const requestFunction = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const request = requestFunction(url, {
      method: init.method ?? 'GET',
      headers: init.headers ?? {},
      agent: exchange.agent,
      lookup: exchange.lookup,
    });

    const timer = setTimeout(() => {
      finish({
        error: new TransientError(`blobber URL ${shownUrl} timed out after ${exchange.timeoutMs} ms`, {
          dependency,
        }),
      });
    }, exchange.timeoutMs);

    const onAbort = () => finish({ error: init.signal?.reason });
    if (init.signal?.aborted === true) {
      onAbort();
      return;
    }
    init.signal?.addEventListener('abort', onAbort, { once: true });

    request.on('error', (error) => finish({ error: connectionError(error, exchange) }));
    request.on('response', (response) => {
      readResponse(response, exchange).then(
        (result) => finish({ response: result }),
        (error: unknown) => finish({ error }),
      );
    });
    request.end(init.body);
  });
}

/** Maps an error of the socket or the request to the project's error kinds. */
function connectionError(error: Error, exchange: Exchange): Error {
  if (error instanceof PermanentError || error instanceof TransientError) {
    return error;
  }
  const code = (error as NodeJS.ErrnoException).code;
  const detail =
    code === undefined || error.message.includes(code) ? error.message : `${code}: ${error.message}`;
  return new TransientError(`blobber URL ${exchange.shownUrl} could not be reached (${detail})`, {
    dependency: exchange.dependency,
    cause: error,
  });
}

/** Reads a response within the body cap and applies the status rules of `createGuardedFetch`. */
async function readResponse(response: IncomingMessage, exchange: Exchange): Promise<GuardedResponse> {
  const { shownUrl, dependency, maxResponseBytes } = exchange;
  const status = response.statusCode ?? 0;

  if (status >= 300 && status < 400) {
    response.destroy();
    const location = response.headers.location;
    const target = location === undefined ? 'no Location header' : redirectTarget(location, exchange.url);
    throw new PermanentError(
      `blobber URL ${shownUrl} returned a ${status} redirect to ${target}, which was not followed because blobber calls never follow redirects`,
      { dependency },
    );
  }

  const declaredLength = Number(response.headers['content-length'] ?? Number.NaN);
  if (Number.isFinite(declaredLength) && declaredLength > maxResponseBytes) {
    response.destroy();
    throw new PermanentError(
      `blobber URL ${shownUrl} declared a response body of ${declaredLength} bytes, over the limit of ${maxResponseBytes} bytes, so it was not read`,
      { dependency },
    );
  }

  const body = await readCapped(response, exchange);
  if (status >= 500 || status === 429) {
    const quoted = quoteText(redactText(body.toString('utf8'), exchange.init.redact));
    throw new TransientError(`blobber URL ${shownUrl} returned HTTP ${status}: ${quoted}`, { dependency });
  }
  return {
    url: exchange.url.href,
    status,
    headers: toHeaders(response.headers),
    body,
    text: () => body.toString('utf8'),
  };
}

function readCapped(response: IncomingMessage, exchange: Exchange): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let ended = false;
    response.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > exchange.maxResponseBytes) {
        response.destroy();
        reject(
          new PermanentError(
            `blobber URL ${exchange.shownUrl} sent a response body over the limit of ${exchange.maxResponseBytes} bytes, so it was cut off there`,
            { dependency: exchange.dependency },
          ),
        );
        return;
      }
      chunks.push(chunk);
    });
    response.on('end', () => {
      ended = true;
      resolve(Buffer.concat(chunks, size));
    });
    // A connection closed before the end of the body shows up as 'close' without 'end', sometimes
    // after an 'error' as well, so the 'close' handler reports it and 'error' is only consumed.
    response.on('error', () => {});
    response.on('close', () => {
      if (!ended) {
        reject(
          new TransientError(
            `blobber URL ${exchange.shownUrl} closed the connection before the end of the body`,
            {
              dependency: exchange.dependency,
            },
          ),
        );
      }
    });
  });
}

function redirectTarget(location: string, base: URL): string {
  try {
    return showUrl(new URL(location, base));
  } catch {
    return quoteText(location, 200);
  }
}

/** Replaces each of `secrets` in `text` by `[redacted]`, before untrusted text is quoted. */
export function redactText(text: string, secrets: readonly string[] | undefined): string {
  let result = text;
  for (const secret of secrets ?? []) {
    if (secret !== '') {
      result = result.replaceAll(secret, '[redacted]');
    }
  }
  return result;
}

function toHeaders(incoming: IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined) {
      continue;
    }
    for (const item of Array.isArray(value) ? value : [value]) {
      headers.append(name, item);
    }
  }
  return headers;
}
