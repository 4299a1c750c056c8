import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { type OpenAIFake, startOpenAIFake } from '../src/sandbox/openai.js';
import type { ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { type BatchShareFixture, startBatchShareFixture } from './support/batch-shares.js';
import { runCli, summaryOf } from './support/cli.js';
import type { TestDatabase } from './support/database.js';

const API_KEY = 'sk-test-batch-request';
const ALLOCATION_ID = 'ab'.repeat(32);

let database: TestDatabase;
let pool: DatabasePool;
let network: ZusNetworkFake;
let openai: OpenAIFake;
let folder: string;
let operatorFile: string;
let shares: Map<string, bigint>;

// A 1x1 PNG: the signature and a minimal IHDR are enough for the type check.
const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  Buffer.alloc(40, 7),
]);
const ANIMATED_GIF = Buffer.concat([
  Buffer.from('GIF89a'),
  Buffer.alloc(20, 1),
  Buffer.from('NETSCAPE2.0'),
  Buffer.alloc(20, 2),
]);

let fixture: BatchShareFixture;

before(async () => {
  fixture = await startBatchShareFixture('openai_batch_request', ALLOCATION_ID, [
    ['/notes/hello.txt', Buffer.from('Hello Züs, please summarise me.\n')],
    ['/pictures/cat.png', PNG],
    ['/bin/blob.bin', Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0xa0, 0xa1])],
    ['/pictures/loop.gif', ANIMATED_GIF],
  ]);
  ({ database, pool, network, folder, operatorFile, shares } = fixture);
});

beforeEach(async () => {
  await openai?.close();
  openai = await startOpenAIFake({ apiKey: API_KEY });
  await pool.query(sql.unsafe`TRUNCATE openai_batch_tasks, batch_image_uploads, zbox_runs CASCADE`);
});

after(async () => {
  await openai?.close();
  await fixture?.close();
});

function env(extra: Record<string, string> = {}) {
  return {
    DATABASE_URL: database.url,
    ZUS_SHARDERS: network.sharderUrls.join(','),
    ZBOX_OPERATOR_WALLET: operatorFile,
    ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES: 'true',
    OPENAI_API_KEY: API_KEY,
    OPENAI_BASE_URL: openai.url,
    ZBOX_BATCH_IMAGES: 'inline',
    ZBOX_TMP_DIR: folder,
    ...extra,
  };
}

async function addTask(paths: string[]): Promise<bigint> {
  const ids = paths.map((path) => shares.get(path) ?? 999_999n);
  return pool.oneFirst(sql.type(z.object({ id: z.bigint() }))`
    INSERT INTO openai_batch_tasks (user_id, prompt, system_prompt, model, share_info_ids)
    VALUES ('user-1', 'Describe this file.', 'Answer in one sentence.', 'gpt-4o-mini', ${sql.array(ids, 'int8')})
    RETURNING id`);
}

const taskRow = z.object({
  status: z.string(),
  input_file_id: z.string().nullable(),
  batch_id: z.string().nullable(),
  file_reasons: z.record(z.string(), z.string()),
  last_error: z.string().nullable(),
  attempts: z.number(),
});

async function task(id: bigint) {
  return pool.one(sql.type(taskRow)`
    SELECT status, input_file_id, batch_id, file_reasons, last_error, attempts FROM openai_batch_tasks WHERE id = ${id}`);
}

test('text and image shares become one batch; others get reasons', async () => {
  const id = await addTask(['/notes/hello.txt', '/pictures/cat.png', '/bin/blob.bin', '/pictures/loop.gif']);
  const result = await runCli(['openai-batch-request', '--json'], env());
  assert.equal(result.code, 0, result.stdout.slice(-2000) + result.stderr);
  const row = await task(id);
  assert.equal(row.status, 'succeeded');
  assert.notEqual(row.batch_id, null);
  assert.notEqual(row.input_file_id, null);
  assert.deepEqual(
    Object.keys(row.file_reasons).sort(),
    [String(shares.get('/bin/blob.bin')), String(shares.get('/pictures/loop.gif'))].sort(),
  );
  assert.match(String(row.file_reasons[String(shares.get('/pictures/loop.gif'))]), /animated GIF/);
  const input = openai.files().find((file) => file.id === row.input_file_id);
  const lines = String(input?.content)
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
  assert.equal(lines.length, 2);
  assert.deepEqual(
    lines.map((line) => line.custom_id),
    [
      `task-${id}-share-${shares.get('/notes/hello.txt')}`,
      `task-${id}-share-${shares.get('/pictures/cat.png')}`,
    ].sort(),
  );
  const text = JSON.stringify(lines);
  assert.match(text, /Hello Züs, please summarise me/);
  assert.match(text, /data:image\/png;base64,/);
  assert.equal(openai.batches().length, 1);
  assert.equal(openai.batches()[0]?.metadata?.zbox_task_id, String(id));
});

test('task whose files all fail is dead with the list', async () => {
  const id = await addTask(['/bin/blob.bin', '/missing']);
  const result = await runCli(['openai-batch-request', '--json'], env());
  assert.equal(result.code, 4);
  const row = await task(id);
  assert.equal(row.status, 'dead');
  assert.match(
    String(row.last_error),
    /^no file of the task could be used: share \d+: .*share 999999: share not found/,
  );
  assert.equal(openai.files().length, 0, 'nothing was uploaded');
});

test('lost create response never makes a second batch', async () => {
  const id = await addTask(['/notes/hello.txt']);
  openai.dropNextResponse('POST /v1/batches');
  const first = await runCli(
    ['openai-batch-request', '--json'],
    env({ ZBOX_BACKOFF_BASE_SECONDS: '1', ZBOX_BACKOFF_MAX_SECONDS: '1' }),
  );
  assert.equal(first.code, 0, first.stdout.slice(-1500));
  let row = await task(id);
  assert.equal(row.status, 'pending', 'the lost response is retried');
  assert.ok(row.input_file_id !== null, 'the input file id was stored at once');
  await pool.query(sql.unsafe`UPDATE openai_batch_tasks SET next_attempt_at = now() WHERE id = ${id}`);
  const second = await runCli(['openai-batch-request', '--json'], env());
  assert.equal(second.code, 0);
  row = await task(id);
  assert.equal(row.status, 'succeeded');
  assert.equal(openai.batches().length, 1, 'the batch created before the lost response was adopted');
  assert.equal(openai.batches()[0]?.id, row.batch_id);
  assert.equal(openai.files().length, 1, 'the file was uploaded once');
});

test('insufficient quota halts the run and keeps the task', async () => {
  const id = await addTask(['/notes/hello.txt']);
  openai.failNextRequests(1, { kind: 'insufficient_quota' });
  const result = await runCli(['openai-batch-request', '--json'], env());
  assert.equal(result.code, 4);
  assert.match(JSON.stringify(summaryOf(result).attention), /quota/);
  const row = await task(id);
  assert.equal(row.status, 'pending');
  assert.equal(row.attempts, 0, 'the halted task spent no attempt');
});

test('failure between upload and batch creation uploads once', async () => {
  const id = await addTask(['/notes/hello.txt']);
  openai.failNextRequests(1, { kind: 'server_error', status: 500 }, { method: 'POST', path: '/v1/batches' });
  const first = await runCli(['openai-batch-request', '--json'], env());
  assert.equal(first.code, 0, first.stdout.slice(-1500));
  let row = await task(id);
  assert.equal(row.status, 'pending');
  assert.ok(row.input_file_id !== null, 'the upload was recorded before the failure');
  assert.equal(openai.batches().length, 0);
  await pool.query(sql.unsafe`UPDATE openai_batch_tasks SET next_attempt_at = now() WHERE id = ${id}`);
  const second = await runCli(['openai-batch-request', '--json'], env());
  assert.equal(second.code, 0);
  row = await task(id);
  assert.equal(row.status, 'succeeded');
  assert.equal(openai.files().length, 1, 'the retry did not upload again');
  assert.equal(openai.batches().length, 1);
});
