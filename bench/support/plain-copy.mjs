/**
 * Baseline process of the openai-batch benchmark: a plain stream copy. Usage:
 * `node plain-copy.mjs <base URL> <files> <concurrency> <folder>`. It fetches `GET <base URL>/files/<i>`
 * for i from 0 to files - 1 over one keep-alive agent, `concurrency` at a time, and streams each
 * response body into its own file in `folder` with stream.pipeline. At the end it deletes the
 * files, as the worker deletes its task folder, and prints `{"files": n, "bytes": total}`.
 * Plain JavaScript, like rss-report.mjs, so its RSS does not include Node's type stripper.
 */
import { createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { Agent, get } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

const [baseUrl = '', filesText = '', concurrencyText = '', folder = ''] = process.argv.slice(2);
const files = Number(filesText);
const concurrency = Number(concurrencyText);
if (baseUrl === '' || folder === '' || !(files >= 1) || !(concurrency >= 1)) {
  throw new Error('usage: plain-copy.mjs <base URL> <files> <concurrency> <folder>');
}

const agent = new Agent({ keepAlive: true });

function request(url) {
  return new Promise((resolve, reject) => {
    get(url, { agent }, resolve).on('error', reject);
  });
}

async function copyOne(index) {
  const response = await request(`${baseUrl}/files/${index}`);
  if (response.statusCode !== 200) {
    response.resume();
    throw new Error(`GET /files/${index} returned ${response.statusCode}`);
  }
  const path = join(folder, `file-${index}.png`);
  await pipeline(response, createWriteStream(path));
  return (await stat(path)).size;
}

let next = 0;
let bytes = 0;
async function runWorker() {
  while (next < files) {
    const index = next;
    next += 1;
    // Awaited first: `bytes += await ...` would read bytes before the await and lose other workers' sums.
    const size = await copyOne(index);
    bytes += size;
  }
}

await Promise.all(Array.from({ length: concurrency }, runWorker));
await rm(folder, { recursive: true, force: true });
agent.destroy();
process.stdout.write(`${JSON.stringify({ files, bytes })}\n`);
