import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  BlockedAddressError,
  checkUrl,
  classifyAddress,
  createGuardedFetch,
  createGuardedLookup,
  type LookupFunction,
} from '../src/core/blobber/url-guard.js';
import { PermanentError, TransientError } from '../src/core/errors.js';

const ALLOW_HINT = '(set ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES=true only for tests or a local demo)';

/** A server on 127.0.0.1 that counts connections and responds with `handler`. */
interface LoopbackServer {
  port: number;
  connections: number;
  requests: number;
  handler: (request: IncomingMessage, response: ServerResponse) => void;
  close(): Promise<void>;
}

async function startLoopbackServer(): Promise<LoopbackServer> {
  const server: Server = createServer();
  const state: LoopbackServer = {
    port: 0,
    connections: 0,
    requests: 0,
    handler: (_request, response) => {
      response.end('hello');
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  server.on('connection', () => {
    state.connections += 1;
  });
  server.on('request', (request, response) => {
    state.requests += 1;
    state.handler(request, response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  return state;
}

/**
 * Runs `action` while every client socket is stopped before it connects, and returns how many
 * sockets tried. It makes sure that no test reaches an address outside this machine, even when the
 * guard under test is broken.
 */
async function countConnectAttempts(action: () => Promise<void>): Promise<number> {
  const original = Socket.prototype.connect;
  let attempts = 0;
  Socket.prototype.connect = function blockedConnect(this: Socket) {
    attempts += 1;
    this.destroy(new Error('test tripwire: outgoing connection blocked'));
    return this;
  } as typeof Socket.prototype.connect;
  try {
    await action();
  } finally {
    Socket.prototype.connect = original;
  }
  return attempts;
}

/** Creates a resolver that resolves every name to `addresses` and counts its calls. */
function fixedResolver(addresses: LookupAddress[]): LookupFunction & { calls: string[] } {
  const calls: string[] = [];
  const resolve: LookupFunction = (hostname, _options, callback) => {
    calls.push(hostname);
    process.nextTick(() => callback(null, addresses));
  };
  return Object.assign(resolve, { calls });
}

function lookupOnce(lookup: LookupFunction, hostname: string): Promise<LookupAddress[]> {
  return new Promise((resolve, reject) => {
    lookup(hostname, { all: true }, (error, addresses) => {
      if (error !== null) {
        reject(error);
      } else {
        resolve(addresses as LookupAddress[]);
      }
    });
  });
}

describe('checkUrl', () => {
  test('rejects schemes other than http and https', () => {
    for (const url of ['file:///etc/passwd', 'ftp://files.example.org/data', 'gopher://example.org/']) {
      assert.throws(
        () => checkUrl(url, { allowPrivateAddresses: false }),
        (error: unknown) =>
          error instanceof BlockedAddressError &&
          error.message.includes(`uses the scheme ${new URL(url).protocol}`) &&
          error.message.includes('only http: and https: are allowed'),
        url,
      );
    }
  });

  test('rejects credentials without showing them', () => {
    assert.throws(
      () => checkUrl('http://user:hunter2@blobber.example.org/', { allowPrivateAddresses: false }),
      (error: unknown) =>
        error instanceof BlockedAddressError &&
        error.message.includes('contains a user name or password') &&
        !error.message.includes('hunter2'),
    );
  });

  test('rejects an invalid URL', () => {
    assert.throws(
      () => checkUrl('not a url', { allowPrivateAddresses: false }),
      /blobber URL "not a url" is not a valid URL/,
    );
  });

  test('accepts public addresses and host names', () => {
    for (const url of [
      'https://blobber.example.org:443/',
      'http://8.8.8.8:5051/',
      'http://[2606:4700::1111]/',
    ]) {
      assert.equal(checkUrl(url, { allowPrivateAddresses: false }).href, new URL(url).href);
    }
  });

  test('keeps metadata rejected with private addresses allowed', () => {
    for (const url of [
      'http://169.254.169.254/latest/meta-data/',
      'http://[::ffff:169.254.169.254]/',
      'http://[fd00:ec2::254]/',
      'http://100.100.100.200/',
    ]) {
      assert.throws(
        () => checkUrl(url, { allowPrivateAddresses: true }),
        (error: unknown) =>
          error instanceof BlockedAddressError &&
          error.message.includes('a cloud metadata address') &&
          error.message.includes('which blobber calls never reach'),
        url,
      );
    }
    assert.throws(
      () => checkUrl('http://[fe80::1]/', { allowPrivateAddresses: true }),
      /a link-local address fe80::1/,
    );
  });

  test('lets private literals through when allowed', () => {
    for (const url of [
      'http://10.0.0.1/',
      'http://[::1]:5051/',
      'http://[fd12:3456::1]/',
      'http://192.168.1.20/',
    ]) {
      assert.equal(checkUrl(url, { allowPrivateAddresses: true }).href, new URL(url).href);
    }
  });
});

describe('classifyAddress', () => {
  const cases: Array<[string, string | undefined]> = [
    ['8.8.8.8', undefined],
    ['2606:4700::1111', undefined],
    ['10.1.2.3', 'private'],
    ['172.31.255.255', 'private'],
    ['172.32.0.1', undefined],
    ['192.168.0.1', 'private'],
    ['127.0.0.2', 'loopback'],
    ['::1', 'loopback'],
    ['0.0.0.0', 'unspecified'],
    ['::', 'unspecified'],
    ['169.254.169.254', 'metadata'],
    ['169.254.10.10', 'link-local'],
    ['fe80::abcd', 'link-local'],
    ['100.64.0.1', 'shared'],
    ['100.127.255.255', 'shared'],
    ['100.128.0.1', undefined],
    ['fc00::1', 'private'],
    ['fd00:ec2::254', 'metadata'],
    ['224.0.0.251', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:8.8.8.8', undefined],
    ['64:ff9b::a9fe:a9fe', 'metadata'],
    ['2002:0a00:0001::1', 'private'],
    ['2002:0808:0808::1', undefined],
  ];
  for (const [address, kind] of cases) {
    test(`${address} is ${kind ?? 'public'}`, () => {
      assert.equal(classifyAddress(address)?.kind, kind);
    });
  }

  test('names the IPv4 inside a mapped address', () => {
    assert.equal(
      classifyAddress('::ffff:a00:1')?.description,
      'a private address 10.0.0.1 (inside the IPv6 address ::ffff:a00:1)',
    );
    assert.equal(
      classifyAddress('::ffff:127.0.0.1')?.description,
      'a loopback address 127.0.0.1 (inside the IPv6 address ::ffff:127.0.0.1)',
    );
    assert.equal(classifyAddress('::1')?.description, 'a loopback address ::1');
  });
});

describe('createGuardedLookup', () => {
  // The lookup is called directly here: no socket exists, so no address is ever contacted.
  test('rejects a name when any address is private', async () => {
    const resolve = fixedResolver([
      { address: '8.8.8.8', family: 4 },
      { address: '10.0.0.1', family: 4 },
    ]);
    const lookup = createGuardedLookup({ allowPrivateAddresses: false, resolve });

    await assert.rejects(lookupOnce(lookup, 'inside.example'), (error: unknown) => {
      assert.ok(error instanceof BlockedAddressError);
      assert.equal(
        error.message,
        `blobber host inside.example resolves to a private address 10.0.0.1 ${ALLOW_HINT}`,
      );
      return true;
    });
    assert.deepEqual(resolve.calls, ['inside.example']);
  });

  test('catches a name re-pointed between lookups', async () => {
    let answer = '127.0.0.1';
    const resolve: LookupFunction = (_hostname, _options, callback) => {
      const address = answer;
      answer = '169.254.169.254';
      callback(null, [{ address, family: 4 }]);
    };
    const lookup = createGuardedLookup({ allowPrivateAddresses: true, resolve });

    assert.deepEqual(await lookupOnce(lookup, 'rebinding.example'), [{ address: '127.0.0.1', family: 4 }]);
    await assert.rejects(
      lookupOnce(lookup, 'rebinding.example'),
      /a cloud metadata address 169\.254\.169\.254/,
    );
  });

  test('returns one address on request', async () => {
    const lookup = createGuardedLookup({
      allowPrivateAddresses: true,
      resolve: fixedResolver([{ address: '::1', family: 6 }]),
    });
    const result = await new Promise<[string, number | undefined]>((resolve, reject) => {
      lookup('localhost', {}, (error, address, family) =>
        error === null ? resolve([address as string, family]) : reject(error),
      );
    });
    assert.deepEqual(result, ['::1', 6]);
  });
});

describe('createGuardedFetch', () => {
  let server: LoopbackServer;

  before(async () => {
    server = await startLoopbackServer();
  });
  after(async () => {
    await server.close();
  });

  test('rejects bad targets before any connection', async () => {
    const fetch = createGuardedFetch({ allowPrivateAddresses: false, timeoutMs: 2_000 });
    const cases: Array<[string, string]> = [
      ['file:///etc/passwd', 'uses the scheme file:'],
      ['ftp://files.example.org/data', 'uses the scheme ftp:'],
      ['http://169.254.169.254/latest/meta-data/', 'resolves to a cloud metadata address 169.254.169.254'],
      [
        'http://10.0.0.1/',
        `blobber URL http://10.0.0.1/ resolves to a private address 10.0.0.1 ${ALLOW_HINT}`,
      ],
      ['http://[::1]/', 'resolves to a loopback address ::1'],
      ['http://[::ffff:10.0.0.1]/', 'a private address 10.0.0.1 (inside the IPv6 address ::ffff:a00:1)'],
      ['http://2130706433/', 'resolves to a loopback address 127.0.0.1'],
      ['http://0.0.0.0:8080/', 'resolves to an unspecified address 0.0.0.0'],
      ['http://[fd00:ec2::254]/', 'resolves to a cloud metadata address fd00:ec2::254'],
      ['http://100.64.0.1/', 'a carrier-grade NAT (100.64.0.0/10) address 100.64.0.1'],
      ['http://255.255.255.255/', 'a broadcast address 255.255.255.255'],
      ['http://239.1.2.3/', 'a multicast address 239.1.2.3'],
    ];

    const attempts = await countConnectAttempts(async () => {
      for (const [url, expected] of cases) {
        await assert.rejects(
          fetch(url),
          (error: unknown) => error instanceof BlockedAddressError && error.message.includes(expected),
          url,
        );
      }
    });

    assert.equal(attempts, 0);
    fetch.close();
  });

  test('rejects a name resolving to loopback', async () => {
    const fetch = createGuardedFetch({ allowPrivateAddresses: false, timeoutMs: 2_000 });
    const url = `http://localhost:${server.port}/`;
    const connectionsBefore = server.connections;

    await assert.rejects(fetch(url), (error: unknown) => {
      assert.ok(error instanceof BlockedAddressError);
      assert.equal(
        error.message,
        `blobber URL ${url} resolves to a loopback address 127.0.0.1 ${ALLOW_HINT}`,
      );
      return true;
    });

    assert.equal(server.connections, connectionsBefore);
    fetch.close();
  });

  test('reaches loopback when private addresses are allowed', async () => {
    const fetch = createGuardedFetch({ allowPrivateAddresses: true, timeoutMs: 2_000 });
    const connectionsBefore = server.connections;

    const response = await fetch(`http://localhost:${server.port}/`);

    assert.equal(response.status, 200);
    assert.equal(response.text(), 'hello');
    assert.equal(server.connections, connectionsBefore + 1);
    fetch.close();
  });

  test('runs the address check on each connection', async () => {
    const resolve = fixedResolver([{ address: '127.0.0.1', family: 4 }]);
    const fetch = createGuardedFetch({ allowPrivateAddresses: true, timeoutMs: 2_000, resolve });
    server.handler = (_request, response) => {
      response.setHeader('connection', 'close');
      response.end('fresh');
    };
    const connectionsBefore = server.connections;

    try {
      await fetch(`http://blobber.test:${server.port}/`);
      await fetch(`http://blobber.test:${server.port}/`);
    } finally {
      server.handler = (_request, response) => response.end('hello');
      fetch.close();
    }

    assert.deepEqual(resolve.calls, ['blobber.test', 'blobber.test']);
    assert.equal(server.connections, connectionsBefore + 2);
  });

  test('does not follow a redirect', async () => {
    const resolve = fixedResolver([{ address: '127.0.0.1', family: 4 }]);
    const fetch = createGuardedFetch({ allowPrivateAddresses: true, timeoutMs: 2_000, resolve });
    server.handler = (_request, response) => {
      response.writeHead(302, { location: 'http://other-host.test/latest/meta-data/' });
      response.end();
    };
    const requestsBefore = server.requests;

    try {
      await assert.rejects(fetch(`http://127.0.0.1:${server.port}/v1/auth/generate`), (error: unknown) => {
        assert.ok(error instanceof PermanentError);
        assert.match(
          error.message,
          /returned a 302 redirect to http:\/\/other-host\.test\/latest\/meta-data\//,
        );
        assert.match(error.message, /never follow redirects/);
        return true;
      });
    } finally {
      server.handler = (_request, response) => response.end('hello');
      fetch.close();
    }

    assert.equal(server.requests, requestsBefore + 1);
    assert.deepEqual(resolve.calls, []);
  });

  test('rejects a declared oversized body unread', async () => {
    const fetch = createGuardedFetch({
      allowPrivateAddresses: true,
      timeoutMs: 2_000,
      maxResponseBytes: 1024,
    });
    server.handler = (_request, response) => {
      response.end('x'.repeat(64 * 1024));
    };

    try {
      await assert.rejects(
        fetch(`http://127.0.0.1:${server.port}/`, { dependency: 'blobber-a' }),
        (error: unknown) =>
          error instanceof PermanentError &&
          error.dependency === 'blobber-a' &&
          error.message.includes('declared a response body of 65536 bytes, over the limit of 1024 bytes'),
      );
    } finally {
      server.handler = (_request, response) => response.end('hello');
      fetch.close();
    }
  });

  test('cuts off a streamed oversized body', async () => {
    const fetch = createGuardedFetch({
      allowPrivateAddresses: true,
      timeoutMs: 5_000,
      maxResponseBytes: 1024,
    });
    let chunksWritten = 0;
    server.handler = (_request, response) => {
      // No Content-Length: chunked encoding, so only reading shows the size.
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      const writeMore = () => {
        while (chunksWritten < 10_000 && !response.destroyed) {
          chunksWritten += 1;
          if (!response.write(Buffer.alloc(16 * 1024, 0x61))) {
            response.once('drain', writeMore);
            return;
          }
        }
        response.end();
      };
      writeMore();
    };

    try {
      await assert.rejects(
        fetch(`http://127.0.0.1:${server.port}/`),
        (error: unknown) =>
          error instanceof PermanentError &&
          error.message.includes(
            'sent a response body over the limit of 1024 bytes, so it was cut off there',
          ),
      );
    } finally {
      server.handler = (_request, response) => response.end('hello');
      fetch.close();
    }

    assert.ok(chunksWritten < 10_000, `the server wrote all ${chunksWritten} chunks`);
  });

  test('times out a slow server', async () => {
    const fetch = createGuardedFetch({ allowPrivateAddresses: true, timeoutMs: 200 });
    server.handler = () => {
      // Never responds.
    };
    const started = performance.now();

    try {
      await assert.rejects(
        fetch(`http://127.0.0.1:${server.port}/`, { dependency: 'blobber-slow' }),
        (error: unknown) => {
          assert.ok(error instanceof TransientError);
          assert.equal(error.dependency, 'blobber-slow');
          assert.match(error.message, /timed out after 200 ms/);
          return true;
        },
      );
    } finally {
      server.handler = (_request, response) => response.end('hello');
      fetch.close();
    }

    assert.ok(performance.now() - started < 2_000);
  });

  test('treats 5xx and 429 as transient', async () => {
    const fetch = createGuardedFetch({ allowPrivateAddresses: true, timeoutMs: 2_000 });
    const origin = `http://127.0.0.1:${server.port}`;

    try {
      for (const status of [500, 503, 429]) {
        server.handler = (_request, response) => {
          response.writeHead(status);
          response.end('busy, token=s3cret-value');
        };
        await assert.rejects(
          fetch(`${origin}/`, { redact: ['s3cret-value'] }),
          (error: unknown) =>
            error instanceof TransientError &&
            error.dependency === origin &&
            error.message.includes(`returned HTTP ${status}: "busy, token=[redacted]"`),
          String(status),
        );
      }
    } finally {
      server.handler = (_request, response) => response.end('hello');
      fetch.close();
    }
  });

  test('returns 4xx responses to the caller', async () => {
    const fetch = createGuardedFetch({ allowPrivateAddresses: true, timeoutMs: 2_000 });
    server.handler = (_request, response) => {
      response.writeHead(403, { 'content-type': 'text/plain' });
      response.end('Invalid signature');
    };

    try {
      const response = await fetch(`http://127.0.0.1:${server.port}/`);
      assert.equal(response.status, 403);
      assert.equal(response.headers.get('content-type'), 'text/plain');
      assert.equal(response.text(), 'Invalid signature');
    } finally {
      server.handler = (_request, response) => response.end('hello');
      fetch.close();
    }
  });

  test('treats a refused connection as transient', async () => {
    const closed = await startLoopbackServer();
    await closed.close();
    const fetch = createGuardedFetch({ allowPrivateAddresses: true, timeoutMs: 2_000 });

    await assert.rejects(
      fetch(`http://127.0.0.1:${closed.port}/`, { dependency: 'blobber-down' }),
      (error: unknown) =>
        error instanceof TransientError &&
        error.dependency === 'blobber-down' &&
        /could not be reached \(.*ECONNREFUSED/.test(error.message),
    );
    fetch.close();
  });
});
