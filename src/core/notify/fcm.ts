/**
 * Push notifications through Firebase Cloud Messaging with firebase-admin. Each token gets its own
 * `messaging.send()` call, at most `concurrency` at a time. `send()` goes through the SDK's
 * HTTP/1.1 client, which honours the `httpAgent` app option. The HTTP/2 session behind `sendEach*`
 * ignores that option, so production and tests could not share one transport with it.
 *
 * firebase-admin 14.5 retries a request itself on HTTP 503, ECONNRESET and ETIMEDOUT. It waits 0, 1,
 * 2 and 4 s before its four retries, or the `Retry-After` delay when that is at most 60 s. Every
 * other failure reaches the classification below at once.
 * NOTE: the SDK's 15 s request timeout also counts as ETIMEDOUT, so a silent FCM can hold one
 * token for about 80 s (five timed-out attempts plus the waits) before it becomes `retry`.
 */
import { randomUUID } from 'node:crypto';
import type { Agent } from 'node:https';
import type { App, Credential, cert as certFunction } from 'firebase-admin/app';
import type { Message, Messaging } from 'firebase-admin/messaging';
import { mapWithConcurrency } from '../concurrency.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../output/logger.js';

/** Environment variable that contains the service-account JSON, named in configuration errors. */
export const CREDENTIALS_VARIABLE = 'ZBOX_FIREBASE_CREDENTIALS';

export interface PushMessage {
  title: string;
  body: string;
  /** Key/value pairs for the app. FCM accepts string values only. */
  data?: Record<string, string>;
}

/**
 * Next step for a token after a send:
 * - `sent`: FCM accepted the message.
 * - `prune`: the token is unregistered, malformed or of another sender, so delete it.
 * - `retry`: FCM or the network failed for now (429, 5xx, connection errors). Keep the token.
 * - `failed`: the message or the sender's setup is wrong. Keep the token.
 */
export type PushOutcome = 'sent' | 'prune' | 'retry' | 'failed';

export interface PushResult {
  token: string;
  outcome: PushOutcome;
  /** firebase-admin error code, for example `messaging/registration-token-not-registered`. */
  code?: string;
  /** Error message, with the token shortened to its first characters. */
  reason?: string;
}

export interface PushSender {
  /** Name of this sender's firebase-admin app. */
  readonly appName: string;
  /**
   * Sends `message` to every distinct token and returns one result per distinct token, in the
   * order the tokens first appear. No request is made for an empty list.
   */
  send(tokens: string[], message: PushMessage): Promise<PushResult[]>;
  /** Deletes the firebase-admin app, so later `send` calls reject. Calling it again does nothing. */
  close(): Promise<void>;
}

export interface PushSenderOptions {
  /** Service-account JSON text (a secret). Either this or `credential` is required. */
  credentialJson?: string;
  /** A ready firebase-admin Credential, used instead of `credentialJson`. */
  credential?: Credential;
  /** Firebase project the messages are sent through. */
  projectId: string;
  /** Agent for the SDK's HTTPS requests, including the access-token request of `credentialJson`. */
  httpAgent?: Agent;
  /** Maximum number of send requests in flight. */
  concurrency: number;
  logger: Logger;
}

/** FCM's message for a malformed registration token, reported as `messaging/invalid-argument`. */
const INVALID_TOKEN_MESSAGE = /registration token is not a valid FCM registration token/i;

/** Codes that mean FCM or the network failed for now. */
const RETRY_CODES = new Set([
  'messaging/message-rate-exceeded',
  'messaging/device-message-rate-exceeded',
  'messaging/server-unavailable',
  'messaging/internal-error',
  'app/network-error',
  'app/network-timeout',
]);

/** Node.js socket and DNS error codes of a failed connection. */
const NETWORK_ERROR_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
]);

/** Longest `reason` kept, so a verbose server body does not fill `last_error`. */
const MAX_REASON_LENGTH = 300;

/** Number of token prefixes listed in one log line about a group of failures. */
const LOGGED_PREFIXES = 3;

/**
 * Creates a sender with its own uniquely named firebase-admin app, importing firebase-admin on
 * first use. Raises ConfigError for a missing or invalid credential, naming the variable but
 * never printing its content.
 */
export async function createPushSender(options: PushSenderOptions): Promise<PushSender> {
  if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
    throw new ConfigError(`FCM concurrency must be a positive integer, got ${options.concurrency}`);
  }
  if (options.projectId.trim() === '') {
    throw new ConfigError('the Firebase project id is empty: set it to the id of the project the app uses');
  }

  // The credential is checked before firebase-admin loads, so a configuration error costs nothing.
  const serviceAccount = checkCredentialOptions(options);
  const { cert, deleteApp, initializeApp } = await import('firebase-admin/app');
  const { getMessaging } = await import('firebase-admin/messaging');

  const credential =
    serviceAccount === undefined
      ? (options.credential as Credential)
      : credentialFrom(serviceAccount, cert, options.httpAgent);
  const appName = `zbox-workers-fcm-${randomUUID()}`;
  const app: App = initializeApp(
    {
      credential,
      projectId: options.projectId,
      ...(options.httpAgent === undefined ? {} : { httpAgent: options.httpAgent }),
    },
    appName,
  );
  const messaging = getMessaging(app);
  const logger = options.logger.child({ fcm_app: appName });
  logger.debug('FCM push sender ready', { project_id: options.projectId, concurrency: options.concurrency });

  let closed = false;
  return {
    appName,
    send: async (tokens, message) => {
      if (closed) {
        throw new Error(`FCM push sender ${appName} is closed: create a new one to send`);
      }
      return sendToTokens(messaging, tokens, message, options.concurrency, logger);
    },
    close: async () => {
      if (closed) {
        return;
      }
      closed = true;
      await deleteApp(app);
      logger.debug('FCM push sender closed');
    },
  };
}

/**
 * Checks that exactly one credential option is set and parses `credentialJson` when it is the
 * one. Returns undefined when the caller passed a ready `credential`.
 */
function checkCredentialOptions(options: PushSenderOptions): ServiceAccountJson | undefined {
  if (options.credential !== undefined) {
    if (options.credentialJson !== undefined) {
      throw new TypeError('createPushSender takes credentialJson or credential, not both');
    }
    return undefined;
  }
  if (options.credentialJson === undefined || options.credentialJson.trim() === '') {
    throw new ConfigError(
      `${CREDENTIALS_VARIABLE} is missing: set it to the service-account JSON key of the Firebase project`,
    );
  }

  const serviceAccount = parseServiceAccount(options.credentialJson);
  if (serviceAccount.project_id !== options.projectId) {
    options.logger.warn(
      'the Firebase service account belongs to another project than the one messages are sent to',
      {
        project_id: options.projectId,
        service_account_project_id: serviceAccount.project_id,
      },
    );
  }
  return serviceAccount;
}

/** Builds a firebase-admin credential from a checked service-account key. */
function credentialFrom(
  serviceAccount: ServiceAccountJson,
  cert: typeof certFunction,
  httpAgent: Agent | undefined,
): Credential {
  try {
    return cert(
      {
        projectId: serviceAccount.project_id,
        clientEmail: serviceAccount.client_email,
        privateKey: serviceAccount.private_key,
      },
      httpAgent,
    );
  } catch {
    // firebase-admin rejects a private key that node:crypto cannot parse. Its error is not
    // passed on, so no part of the key can reach a log.
    throw new ConfigError(
      `${CREDENTIALS_VARIABLE} is invalid: its private_key is not a PEM private key. Download a new key file from the Firebase console`,
    );
  }
}

interface ServiceAccountJson {
  type: 'service_account';
  project_id: string;
  private_key: string;
  client_email: string;
}

/** Parses and checks the service-account JSON. Its errors name missing fields but never show values. */
function parseServiceAccount(text: string): ServiceAccountJson {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // JSON.parse quotes part of the input in its message, so the message is not used.
    throw new ConfigError(
      `${CREDENTIALS_VARIABLE} is not valid JSON: set it to the content of the service-account key file, not a path or a fragment`,
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`${CREDENTIALS_VARIABLE} must be a JSON object (a service-account key file)`);
  }

  const fields = parsed as Record<string, unknown>;
  if (fields.type !== 'service_account') {
    throw new ConfigError(
      `${CREDENTIALS_VARIABLE} is not a service-account key: its "type" must be "service_account"`,
    );
  }
  const missing = ['project_id', 'private_key', 'client_email'].filter(
    (name) => typeof fields[name] !== 'string' || (fields[name] as string).trim() === '',
  );
  if (missing.length > 0) {
    throw new ConfigError(
      `${CREDENTIALS_VARIABLE} is missing the service-account field(s) ${missing.join(', ')}. Download a complete key file from the Firebase console`,
    );
  }
  return fields as unknown as ServiceAccountJson;
}

// ---------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------

async function sendToTokens(
  messaging: Messaging,
  tokens: string[],
  message: PushMessage,
  concurrency: number,
  logger: Logger,
): Promise<PushResult[]> {
  const distinct = [...new Set(tokens)];
  if (distinct.length === 0) {
    return [];
  }
  if (distinct.length < tokens.length) {
    logger.debug('duplicate FCM tokens sent once', { duplicates: tokens.length - distinct.length });
  }

  const started = Date.now();
  const results = await mapWithConcurrency(distinct, concurrency, (token) =>
    sendOne(messaging, token, message),
  );
  logOutcomes(logger, results, Date.now() - started);
  return results;
}

async function sendOne(messaging: Messaging, token: string, message: PushMessage): Promise<PushResult> {
  if (token.trim() === '') {
    return {
      token,
      outcome: 'prune',
      code: 'messaging/invalid-registration-token',
      reason: 'the registration token is empty',
    };
  }

  const request: Message = {
    token,
    notification: { title: message.title, body: message.body },
    ...(message.data === undefined ? {} : { data: message.data }),
  };
  try {
    // `send` validates the message synchronously and can throw before any request. The `await`
    // inside this try block catches that error too.
    await messaging.send(request);
    return { token, outcome: 'sent' };
  } catch (error) {
    return classifyError(token, error);
  }
}

/** Maps a firebase-admin error to what the caller should do with the token. */
export function classifyError(token: string, error: unknown): PushResult {
  const code = stringProperty(error, 'code');
  const status = httpStatusOf(error);
  const reason = reasonOf(token, error, code);
  const result = (outcome: PushOutcome): PushResult => ({
    token,
    outcome,
    ...(code === undefined ? {} : { code }),
    reason,
  });

  switch (code) {
    case 'messaging/registration-token-not-registered':
    case 'messaging/invalid-registration-token':
      return result('prune');
    case 'messaging/invalid-argument':
      // FCM reports a malformed token and a malformed payload with the same code, so only the
      // message separates them.
      return result(INVALID_TOKEN_MESSAGE.test(stringProperty(error, 'message') ?? '') ? 'prune' : 'failed');
    case 'messaging/mismatched-credential':
      // firebase-admin maps both SENDER_ID_MISMATCH (the token belongs to another project) and a
      // bare PERMISSION_DENIED (this service account may not send at all) to this code. Only the
      // first concerns the token, and pruning on the second would empty the token table.
      return result(fcmErrorCodeOf(error) === 'SENDER_ID_MISMATCH' ? 'prune' : 'failed');
    case 'app/invalid-credential':
      // The access-token request failed. A network failure may pass, but a revoked key will not.
      return result(isNetworkError(causeOf(error)) ? 'retry' : 'failed');
    default:
      break;
  }
  if (
    (code !== undefined && RETRY_CODES.has(code)) ||
    status === 429 ||
    (status !== undefined && status >= 500)
  ) {
    return result('retry');
  }
  if (isNetworkError(error)) {
    return result('retry');
  }
  return result('failed');
}

/** HTTP status of the response behind a firebase-admin error, if there was one. */
function httpStatusOf(error: unknown): number | undefined {
  const response = objectProperty(error, 'httpResponse');
  const status = response?.status;
  return typeof status === 'number' ? status : undefined;
}

/** `errorCode` of the `FcmError` detail in FCM's error body, for example `SENDER_ID_MISMATCH`. */
function fcmErrorCodeOf(error: unknown): string | undefined {
  const data = objectProperty(objectProperty(error, 'httpResponse'), 'data');
  const details = objectProperty(data, 'error')?.details;
  if (!Array.isArray(details)) {
    return undefined;
  }
  for (const detail of details) {
    if (typeof detail === 'object' && detail !== null && String(detail['@type']).endsWith('.FcmError')) {
      return typeof detail.errorCode === 'string' ? detail.errorCode : undefined;
    }
  }
  return undefined;
}

function isNetworkError(error: unknown): boolean {
  for (
    let current = error, depth = 0;
    current !== undefined && depth < 4;
    current = causeOf(current), depth++
  ) {
    const code = stringProperty(current, 'code');
    if (code !== undefined && NETWORK_ERROR_CODES.has(code)) {
      return true;
    }
  }
  return false;
}

/**
 * Builds the reason to store from the error message, with the token shortened. The message of
 * `app/invalid-credential` can quote the credential's output (an access token), so a fixed text
 * replaces it.
 */
function reasonOf(token: string, error: unknown, code: string | undefined): string {
  let text: string;
  if (code === 'app/invalid-credential') {
    const causeCode = stringProperty(causeOf(error), 'code');
    text = `fetching the OAuth2 access token for FCM failed${causeCode === undefined ? '' : ` (${causeCode})`}`;
  } else {
    text = stringProperty(error, 'message') ?? String(error);
  }
  if (token !== '') {
    text = text.replaceAll(token, tokenPrefix(token));
  }
  return text.length > MAX_REASON_LENGTH ? `${text.slice(0, MAX_REASON_LENGTH - 1)}…` : text;
}

/** Returns the first characters of a token (at most half of it) for logs. */
export function tokenPrefix(token: string): string {
  return `${token.slice(0, Math.min(8, Math.floor(token.length / 2)))}…`;
}

/** Logs one summary line, then one line per failure kind with a count and a few token prefixes. */
function logOutcomes(logger: Logger, results: PushResult[], durationMs: number) {
  const counts: Record<PushOutcome, number> = { sent: 0, prune: 0, retry: 0, failed: 0 };
  const groups = new Map<string, PushResult[]>();
  for (const result of results) {
    counts[result.outcome] += 1;
    if (result.outcome !== 'sent') {
      const key = `${result.outcome} ${result.code ?? 'unknown'}`;
      const group = groups.get(key);
      if (group === undefined) {
        groups.set(key, [result]);
      } else {
        group.push(result);
      }
    }
  }
  logger.info('FCM push batch finished', { devices: results.length, ...counts, duration_ms: durationMs });

  for (const group of groups.values()) {
    const first = group[0] as PushResult;
    const fields = {
      outcome: first.outcome,
      code: first.code,
      count: group.length,
      reason: first.reason,
      devices: group.slice(0, LOGGED_PREFIXES).map((result) => tokenPrefix(result.token)),
    };
    if (first.outcome === 'prune') {
      logger.info('FCM reported dead registration tokens', fields);
    } else {
      logger.warn(first.outcome === 'retry' ? 'FCM send failed for now' : 'FCM send failed', fields);
    }
  }
}

function causeOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { cause?: unknown }).cause : undefined;
}

function stringProperty(value: unknown, name: string): string | undefined {
  if (typeof value !== 'object' || value === null) {
    return undefined;
  }
  const property = (value as Record<string, unknown>)[name];
  return typeof property === 'string' ? property : undefined;
}

function objectProperty(value: unknown, name: string): Record<string, unknown> | undefined {
  if (typeof value !== 'object' || value === null) {
    return undefined;
  }
  const property = (value as Record<string, unknown>)[name];
  return typeof property === 'object' && property !== null
    ? (property as Record<string, unknown>)
    : undefined;
}
