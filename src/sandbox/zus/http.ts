/** HTTP plumbing shared by the fake nodes: listening on loopback and responding as Go's net/http does. */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { encodeJson } from './json.js';

/**
 * An error as a chain node reports it. With a `code` it is the node's `common.Error`, whose text is
 * `<code>: <msg>`; without one it is a plain Go error.
 */
export class ChainError extends Error {
  override name = 'ChainError';

  constructor(
    readonly msg: string,
    readonly code?: string,
  ) {
    super(code === undefined ? msg : `${code}: ${msg}`);
  }
}

/** `common.InvalidRequest(text)` of the chain: code `invalid_request`, text `Invalid request (<text>)`. */
export function invalidRequest(text: string): ChainError {
  return new ChainError(`Invalid request (${text})`, 'invalid_request');
}

export function sendJson(response: ServerResponse, status: number, body: unknown): void {
  // Go's json.Encoder ends the document with a newline.
  const text = `${encodeJson(body)}\n`;
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

/**
 * Sends an error as the chain's `common.Respond` does: `{"code": ..., "error": ...}` (keys in Go's
 * map order), HTTP 500 for `internal_error`, 404 for `resource_not_found` and 400 otherwise.
 */
export function sendChainError(response: ServerResponse, error: ChainError): void {
  const body =
    error.code === undefined ? { error: error.message } : { code: error.code, error: error.message };
  let status = 400;
  if (error.code === 'internal_error') {
    status = 500;
  } else if (error.code === 'resource_not_found') {
    status = 404;
  }
  sendJson(response, status, body);
}

export function sendText(
  response: ServerResponse,
  status: number,
  text: string,
  type = 'text/plain; charset=utf-8',
): void {
  response.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

/** Go's `http.Error(w, text, status)`: plain text with a newline and the nosniff header. */
export function sendGoHttpError(response: ServerResponse, status: number, text: string): void {
  const body = `${text}\n`;
  response.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'x-content-type-options': 'nosniff',
    'content-length': Buffer.byteLength(body),
  });
  response.end(body);
}

/** Go's http.NotFound response for a path no route matches. */
export function sendGoNotFound(response: ServerResponse): void {
  sendText(response, 404, '404 page not found\n');
}

/** Reads a request body of at most `maxBytes`; a longer body resolves to undefined. */
export function readBody(request: IncomingMessage, maxBytes: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLong = false;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        tooLong = true;
        chunks.length = 0;
        return;
      }
      if (!tooLong) {
        chunks.push(chunk);
      }
    });
    request.on('end', () => resolve(tooLong ? undefined : Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

export function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export function stop(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
