/**
 * Loopback HTTP server that responds to every request after a fixed delay, run as its own
 * process by the concurrency benchmark. It listens on 127.0.0.1 with an ephemeral port, prints
 * `{"port": N}` once listening, and on `GET /stats` returns the number of requests served and
 * the maximum number in flight at once. Node runs this file directly (type stripping).
 */
import { createServer } from 'node:http';

const delayMs = Number(process.argv[2] ?? '100');
let served = 0;
let inFlight = 0;
let maxInFlight = 0;

const server = createServer((request, response) => {
  if (request.url === '/stats') {
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ served, maxInFlight }));
    return;
  }
  inFlight += 1;
  maxInFlight = Math.max(maxInFlight, inFlight);
  setTimeout(() => {
    inFlight -= 1;
    served += 1;
    response.setHeader('content-type', 'application/json');
    response.end('{"ok":true}');
  }, delayMs);
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});

process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
});
