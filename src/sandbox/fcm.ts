/**
 * Loopback fake of the FCM HTTP v1 send endpoint, `POST /v1/projects/<project>/messages:send`,
 * for the real firebase-admin client. The client still addresses `https://fcm.googleapis.com`,
 * and the agent from `fakeHttpAgent` connects those requests to the fake on 127.0.0.1 over TLS.
 * That agent alone trusts the fake's self-signed certificate, which the `openssl` CLI generates
 * at start-up.
 *
 * The fake behaves like FCM where the client notices:
 * - `Authorization: Bearer <access token>` is required (401 `UNAUTHENTICATED` otherwise), and a
 *   project other than the fake's gets 403 `PERMISSION_DENIED`.
 * - The message is validated: one token target, notification title and body strings, string data
 *   values, no reserved data keys, no unknown fields, payload at most 4096 bytes.
 * - Errors carry FCM's JSON error body with the `FcmError` detail that firebase-admin reads. The
 *   cases are an unregistered token (404 `UNREGISTERED`) and a malformed token (400
 *   `INVALID_ARGUMENT`, "The registration token is not a valid FCM registration token"). Others
 *   are a token of another sender (403 `SENDER_ID_MISMATCH`), payload errors (400
 *   `INVALID_ARGUMENT` with another message), quota (429 `QUOTA_EXCEEDED`), unavailable (503) and
 *   internal errors (500).
 * - An unknown path gets Google's HTML 404 page, not JSON, so firebase-admin reports it as an
 *   unknown error instead of an unregistered token.
 *
 * NOTE: error texts that FCM varies by case (the 4096-byte payload error, the reserved-key error)
 * are close to FCM's but not copied from a captured response. The fake sends no `Retry-After`.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent, createServer, type RequestOptions, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { Credential, GoogleOAuthAccessToken } from 'firebase-admin/app';
import { CERTIFICATE_HOST, generateSelfSignedCertificate } from './tls.js';

/** Host that firebase-admin sends messages to, and the only host `fakeHttpAgent` connects. */
export const FCM_HOST = 'fcm.googleapis.com';

/** Access token that `fakeCredential` returns and the fake accepts by default. */
export const FAKE_ACCESS_TOKEN = 'fake-fcm-access-token-for-tests';

/** Project id the fake serves by default. */
export const FAKE_PROJECT_ID = 'zbox-fake-project';

/** Maximum payload of a message to a token, in bytes, as FCM's documentation gives it. */
export const MAX_PAYLOAD_BYTES = 4096;

/** Largest request body the fake reads. FCM requests are a few kilobytes. */
const MAX_REQUEST_BYTES = 1024 * 1024;

const FCM_ERROR_TYPE = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';
const BAD_REQUEST_TYPE = 'type.googleapis.com/google.rpc.BadRequest';

const MESSAGE_FIELDS = new Set([
  'name',
  'token',
  'topic',
  'condition',
  'data',
  'notification',
  'android',
  'webpush',
  'apns',
  'fcm_options',
]);
const NOTIFICATION_FIELDS = new Set(['title', 'body', 'image']);
const RESERVED_DATA_KEYS = new Set(['from', 'notification', 'message_type']);

export interface FcmFakeOptions {
  /** Project id in the request path that the fake accepts (default `FAKE_PROJECT_ID`). */
  projectId?: string;
  /** Bearer token the fake accepts (default `FAKE_ACCESS_TOKEN`). */
  accessToken?: string;
}

/** A message the fake accepted for delivery. */
export interface DeliveredMessage {
  token: string;
  title: string | undefined;
  body: string | undefined;
  data: Record<string, string>;
  /** The `name` returned to the client, `projects/<p>/messages/<id>`. */
  name: string;
}

/** One request received by the fake, with the status it returned. */
export interface FcmRequestRecord {
  /** Target token when the body could be read, else undefined. */
  token: string | undefined;
  status: number;
}

export interface FcmFake {
  readonly projectId: string;
  readonly port: number;
  /** PEM of the fake's self-signed certificate. Only agents from `fakeHttpAgent` trust it. */
  readonly certificate: string;
  /** Requests received, including failed ones and the client's own retries. */
  readonly requestCount: number;
  readonly requests: readonly FcmRequestRecord[];
  readonly delivered: readonly DeliveredMessage[];
  /** Requests being handled right now, and the maximum seen since start or `resetStats`. */
  readonly inFlight: number;
  readonly maxInFlight: number;
  /** Makes every later send to `token` fail with 404 `UNREGISTERED`. */
  markUnregistered(token: string): void;
  /** Makes every later send to `token` fail as a malformed token (400 `INVALID_ARGUMENT`). */
  markInvalid(token: string): void;
  /** Makes every later send to `token` fail as a token of another sender (403 `SENDER_ID_MISMATCH`). */
  markSenderMismatch(token: string): void;
  /**
   * Makes the next `times` sends to `token` fail with FCM's error for `status`: 400, 404, 429,
   * 500 or 503, or a generic body for any other status. Pass `Infinity` for every send.
   */
  failToken(token: string, status: number, times?: number): void;
  /** Makes the next `count` requests fail with `status` (default 503), whatever they contain. */
  failNextRequests(count: number, status?: number): void;
  /** Delays every response by `ms` milliseconds, so concurrent requests overlap at the fake. */
  setResponseDelay(ms: number): void;
  /** Clears the request log, the delivered messages and the in-flight maximum. */
  resetStats(): void;
  close(): Promise<void>;
}

/** FCM's JSON error response. */
interface FcmErrorResponse {
  status: number;
  body: { error: { code: number; message: string; status: string; details?: unknown[] } };
}

interface TokenFault {
  status: number;
  remaining: number;
}

interface FakeState {
  projectId: string;
  accessToken: string;
  unregistered: Set<string>;
  invalid: Set<string>;
  senderMismatch: Set<string>;
  tokenFaults: Map<string, TokenFault>;
  requestFault: { count: number; status: number };
  responseDelayMs: number;
  requests: FcmRequestRecord[];
  delivered: DeliveredMessage[];
  inFlight: number;
  maxInFlight: number;
}

/** Starts the fake on 127.0.0.1 with a fresh self-signed certificate. */
export async function createFcmFake(options: FcmFakeOptions = {}): Promise<FcmFake> {
  const { key, certificate } = await generateSelfSignedCertificate();
  const state: FakeState = {
    projectId: options.projectId ?? FAKE_PROJECT_ID,
    accessToken: options.accessToken ?? FAKE_ACCESS_TOKEN,
    unregistered: new Set(),
    invalid: new Set(),
    senderMismatch: new Set(),
    tokenFaults: new Map(),
    requestFault: { count: 0, status: 503 },
    responseDelayMs: 0,
    requests: [],
    delivered: [],
    inFlight: 0,
    maxInFlight: 0,
  };

  const server: Server = createServer({ key, cert: certificate }, (request, response) => {
    state.inFlight += 1;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    response.on('close', () => {
      state.inFlight -= 1;
    });
    handleRequest(state, request, response).catch((error: unknown) => {
      sendJson(response, state, errorResponse(500, 'INTERNAL', `fake FCM failed: ${String(error)}`));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    projectId: state.projectId,
    port,
    certificate,
    get requestCount() {
      return state.requests.length;
    },
    get requests() {
      return state.requests;
    },
    get delivered() {
      return state.delivered;
    },
    get inFlight() {
      return state.inFlight;
    },
    get maxInFlight() {
      return state.maxInFlight;
    },
    markUnregistered: (token) => {
      state.unregistered.add(token);
    },
    markInvalid: (token) => {
      state.invalid.add(token);
    },
    markSenderMismatch: (token) => {
      state.senderMismatch.add(token);
    },
    failToken: (token, status, times = 1) => {
      state.tokenFaults.set(token, { status, remaining: times });
    },
    failNextRequests: (count, status = 503) => {
      state.requestFault = { count, status };
    },
    setResponseDelay: (ms) => {
      state.responseDelayMs = ms;
    },
    resetStats: () => {
      state.requests = [];
      state.delivered = [];
      state.maxInFlight = state.inFlight;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Client side: credential and agent
// ---------------------------------------------------------------------------------------------

/** A firebase-admin Credential that returns a fixed access token without any network call. */
export interface FakeCredential extends Credential {
  /** How many times firebase-admin asked for an access token. */
  readonly calls: number;
}

/** Creates a credential whose `getAccessToken` returns `accessToken`, valid for one hour. */
export function fakeCredential(accessToken: string = FAKE_ACCESS_TOKEN): FakeCredential {
  let calls = 0;
  return {
    get calls() {
      return calls;
    },
    getAccessToken: async (): Promise<GoogleOAuthAccessToken> => {
      calls += 1;
      return { access_token: accessToken, expires_in: 3600 };
    },
  };
}

/**
 * An HTTPS agent that connects requests for `fcm.googleapis.com:443` to the fake on 127.0.0.1 and
 * rejects every other host or port before any socket or DNS lookup, recording the target.
 */
export class FakeFcmAgent extends Agent {
  /** `host:port` of every connection the agent rejected. */
  readonly rejectedConnections: string[] = [];
  readonly #port: number;
  readonly #certificate: string;

  constructor(fake: Pick<FcmFake, 'port' | 'certificate'>) {
    super({ keepAlive: true });
    this.#port = fake.port;
    this.#certificate = fake.certificate;
  }

  override createConnection(
    options: RequestOptions,
    callback?: (error: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const host = options.hostname ?? options.host ?? '';
    const port = Number(options.port ?? 443);
    if (host !== FCM_HOST || port !== 443) {
      const target = `${host}:${port}`;
      this.rejectedConnections.push(target);
      const error = Object.assign(
        new Error(`the fake FCM agent rejected a connection to ${target}: it only serves ${FCM_HOST}:443`),
        { code: 'ECONNREFUSED' },
      );
      process.nextTick(() => callback?.(error, undefined as unknown as Duplex));
      return undefined;
    }
    // A fresh TLS socket to the fake, verified against its certificate alone (rejectUnauthorized
    // stays at its default, true).
    return tlsConnect({
      host: '127.0.0.1',
      port: this.#port,
      ca: this.#certificate,
      servername: CERTIFICATE_HOST,
      ALPNProtocols: ['http/1.1'],
    });
  }
}

/** Creates an agent for firebase-admin's `httpAgent` option that reaches `fake` and nothing else. */
export function fakeHttpAgent(fake: Pick<FcmFake, 'port' | 'certificate'>): FakeFcmAgent {
  return new FakeFcmAgent(fake);
}

// ---------------------------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------------------------

async function handleRequest(state: FakeState, request: IncomingMessage, response: ServerResponse) {
  if (state.responseDelayMs > 0) {
    await new Promise((resolve) => setTimeout(resolve, state.responseDelayMs));
  }

  const match = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(request.url ?? '');
  if (request.method !== 'POST' || match === null) {
    drain(request);
    state.requests.push({ token: undefined, status: 404 });
    sendNotFoundPage(response, request.url ?? '');
    return;
  }

  const body = await readBody(request);
  const token = tokenOf(body);

  if (state.requestFault.count > 0) {
    state.requestFault.count -= 1;
    sendJson(response, state, cannedError(state.requestFault.status), token);
    return;
  }

  if (request.headers.authorization !== `Bearer ${state.accessToken}`) {
    sendJson(
      response,
      state,
      errorResponse(
        401,
        'UNAUTHENTICATED',
        'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
      ),
      token,
    );
    return;
  }

  const project = decodeURIComponent(match[1] ?? '');
  if (project !== state.projectId) {
    sendJson(
      response,
      state,
      errorResponse(
        403,
        'PERMISSION_DENIED',
        `Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/${project}' (or it may not exist).`,
      ),
      token,
    );
    return;
  }

  const contentType = request.headers['content-type'] ?? '';
  if (!contentType.toLowerCase().startsWith('application/json')) {
    sendJson(
      response,
      state,
      invalidPayload('', 'Invalid JSON payload received. Expected application/json.'),
      token,
    );
    return;
  }

  const validated = validateRequest(body);
  if ('error' in validated) {
    sendJson(response, state, validated.error, token);
    return;
  }

  const fault = tokenFault(state, validated.message.token);
  if (fault !== undefined) {
    sendJson(response, state, fault, token);
    return;
  }

  const name = validated.validateOnly
    ? `projects/${state.projectId}/messages/fake_message_id`
    : `projects/${state.projectId}/messages/0:${Date.now()}%${randomBytes(8).toString('hex')}`;
  if (!validated.validateOnly) {
    state.delivered.push({ ...validated.message, name });
  }
  sendJson(response, state, { status: 200, body: { name } }, token);
}

/** Returns the error that an injected or marked fault of `token` produces, if any. */
function tokenFault(state: FakeState, token: string): FcmErrorResponse | undefined {
  const injected = state.tokenFaults.get(token);
  if (injected !== undefined && injected.remaining > 0) {
    injected.remaining -= 1;
    return cannedError(injected.status);
  }
  if (state.unregistered.has(token)) {
    return cannedError(404);
  }
  if (state.invalid.has(token) || !/^[\w:-]{1,4096}$/.test(token)) {
    return fcmError(
      400,
      'INVALID_ARGUMENT',
      'INVALID_ARGUMENT',
      'The registration token is not a valid FCM registration token',
    );
  }
  if (state.senderMismatch.has(token)) {
    return fcmError(403, 'PERMISSION_DENIED', 'SENDER_ID_MISMATCH', 'SenderId mismatch');
  }
  return undefined;
}

type ValidatedRequest =
  | { message: Omit<DeliveredMessage, 'name'>; validateOnly: boolean }
  | { error: FcmErrorResponse };

/** Checks the request body as FCM does for the parts this project sends. */
function validateRequest(body: unknown): ValidatedRequest {
  if (!isObject(body)) {
    return { error: invalidPayload('', 'Invalid JSON payload received. Expected an object.') };
  }
  for (const key of Object.keys(body)) {
    if (key !== 'message' && key !== 'validate_only') {
      return { error: unknownField(key, '') };
    }
  }
  if (body.validate_only !== undefined && typeof body.validate_only !== 'boolean') {
    return { error: invalidPayload('validate_only', "Invalid value at 'validate_only' (TYPE_BOOL).") };
  }
  const message = body.message;
  if (!isObject(message)) {
    return { error: invalidPayload('message', 'Request contains an invalid argument.') };
  }
  for (const key of Object.keys(message)) {
    if (!MESSAGE_FIELDS.has(key)) {
      return { error: unknownField(key, 'message') };
    }
  }

  const targets = ['token', 'topic', 'condition'].filter((key) => message[key] !== undefined);
  if (targets.length !== 1) {
    return { error: invalidPayload('message', 'Exactly one of token, topic or condition must be set.') };
  }
  if (targets[0] !== 'token') {
    // NOTE: FCM accepts topics and conditions, but the fake serves token targets only.
    return { error: invalidPayload('message', 'The fake FCM server accepts only token targets.') };
  }
  const token = message.token;
  if (typeof token !== 'string' || token === '') {
    return { error: invalidPayload('message.token', "Invalid value at 'message.token' (TYPE_STRING).") };
  }

  const notification = message.notification;
  let title: string | undefined;
  let notificationBody: string | undefined;
  if (notification !== undefined) {
    if (!isObject(notification)) {
      return { error: invalidPayload('message.notification', "Invalid value at 'message.notification'.") };
    }
    for (const [key, value] of Object.entries(notification)) {
      if (!NOTIFICATION_FIELDS.has(key)) {
        return { error: unknownField(key, 'message.notification') };
      }
      if (typeof value !== 'string') {
        return {
          error: invalidPayload(
            `message.notification.${key}`,
            `Invalid value at 'message.notification.${key}' (TYPE_STRING).`,
          ),
        };
      }
    }
    title = notification.title as string | undefined;
    notificationBody = notification.body as string | undefined;
  }

  const data: Record<string, string> = {};
  if (message.data !== undefined) {
    if (!isObject(message.data)) {
      return { error: invalidPayload('message.data', "Invalid value at 'message.data'.") };
    }
    for (const [key, value] of Object.entries(message.data)) {
      if (typeof value !== 'string') {
        return {
          error: invalidPayload(
            `message.data[${key}]`,
            `Invalid value at 'message.data[${key}].value' (TYPE_STRING).`,
          ),
        };
      }
      if (RESERVED_DATA_KEYS.has(key) || key.startsWith('google') || key.startsWith('gcm')) {
        return { error: invalidPayload(`message.data[${key}]`, `Invalid data payload key: ${key}`) };
      }
      data[key] = value;
    }
  }

  // NOTE: the fake counts the data keys and values plus the notification texts, which is how
  // FCM's documentation describes its 4096-byte limit. FCM's exact accounting is not published.
  const payloadBytes =
    Object.entries(data).reduce(
      (sum, [key, value]) => sum + Buffer.byteLength(key) + Buffer.byteLength(value),
      0,
    ) +
    Buffer.byteLength(title ?? '') +
    Buffer.byteLength(notificationBody ?? '');
  if (payloadBytes > MAX_PAYLOAD_BYTES) {
    return {
      error: fcmError(400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'Request contains an invalid argument.', [
        badRequest('message', `Message is too big: ${payloadBytes} bytes, limit ${MAX_PAYLOAD_BYTES}.`),
      ]),
    };
  }

  return {
    message: { token, title, body: notificationBody, data },
    validateOnly: body.validate_only === true,
  };
}

// ---------------------------------------------------------------------------------------------
// Error bodies
// ---------------------------------------------------------------------------------------------

/** FCM's error for a status, as used by `failToken` and `failNextRequests`. */
function cannedError(status: number): FcmErrorResponse {
  switch (status) {
    case 400:
      return fcmError(400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'Request contains an invalid argument.');
    case 404:
      return fcmError(404, 'NOT_FOUND', 'UNREGISTERED', 'Requested entity was not found.');
    case 429:
      return fcmError(
        429,
        'RESOURCE_EXHAUSTED',
        'QUOTA_EXCEEDED',
        "Quota exceeded for quota metric 'Send requests' of service 'fcm.googleapis.com'.",
      );
    case 500:
      return fcmError(500, 'INTERNAL', 'INTERNAL', 'Internal error encountered.');
    case 503:
      return fcmError(503, 'UNAVAILABLE', 'UNAVAILABLE', 'The service is currently unavailable.');
    default:
      return errorResponse(status, 'UNKNOWN', `Injected failure with HTTP status ${status}.`);
  }
}

function fcmError(
  status: number,
  canonical: string,
  fcmCode: string,
  message: string,
  extraDetails: unknown[] = [],
): FcmErrorResponse {
  return errorResponse(status, canonical, message, [
    { '@type': FCM_ERROR_TYPE, errorCode: fcmCode },
    ...extraDetails,
  ]);
}

function errorResponse(
  status: number,
  canonical: string,
  message: string,
  details?: unknown[],
): FcmErrorResponse {
  const error = { code: status, message, status: canonical, ...(details === undefined ? {} : { details }) };
  return { status, body: { error } };
}

/** Builds the 400 for a malformed request, with the field violation FCM attaches. */
function invalidPayload(field: string, description: string): FcmErrorResponse {
  return errorResponse(400, 'INVALID_ARGUMENT', description, [badRequest(field, description)]);
}

function unknownField(name: string, parent: string): FcmErrorResponse {
  const at = parent === '' ? '' : ` at '${parent}'`;
  return invalidPayload(
    parent,
    `Invalid JSON payload received. Unknown name "${name}"${at}: Cannot find field.`,
  );
}

function badRequest(field: string, description: string) {
  return { '@type': BAD_REQUEST_TYPE, fieldViolations: [{ field, description }] };
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------

function sendJson(
  response: ServerResponse,
  state: FakeState,
  result: { status: number; body: unknown },
  token?: string,
) {
  state.requests.push({ token, status: result.status });
  if (response.headersSent) {
    response.end();
    return;
  }
  const text = JSON.stringify(result.body, null, 2);
  response.writeHead(result.status, {
    'content-type': 'application/json; charset=UTF-8',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

/** Sends the HTML 404 page that Google's front end returns for an unknown URL, not a JSON error. */
function sendNotFoundPage(response: ServerResponse, url: string) {
  const page = `<!DOCTYPE html><html lang=en><title>Error 404 (Not Found)</title><p>The requested URL <code>${escapeHtml(url)}</code> was not found on this server.</p></html>`;
  response.writeHead(404, {
    'content-type': 'text/html; charset=UTF-8',
    'content-length': Buffer.byteLength(page),
  });
  response.end(page);
}

/**
 * Reads and parses a JSON body. Returns undefined when the body is not JSON or too large, after
 * reading it to the end so the connection stays usable for the response.
 */
function readBody(request: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_REQUEST_BYTES) {
        chunks.push(chunk);
      }
    });
    request.on('error', reject);
    request.on('end', () => {
      if (size > MAX_REQUEST_BYTES) {
        resolve(undefined);
        return;
      }
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        resolve(undefined);
      }
    });
  });
}

function drain(request: IncomingMessage) {
  request.resume();
}

function tokenOf(body: unknown): string | undefined {
  if (isObject(body) && isObject(body.message) && typeof body.message.token === 'string') {
    return body.message.token;
  }
  return undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"]/g, (character) => `&#${character.charCodeAt(0)};`);
}
