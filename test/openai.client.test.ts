/**
 * The OpenAI adapter with the real `openai` client against the loopback fake. Every client gets
 * the fake's base URL, so no request leaves 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { ConfigError, HaltError, PermanentError, TransientError } from '../src/core/errors.js';
import {
  buildChatCompletionLine,
  type ChatBatchRequest,
  classifyOpenAIError,
  createBatch,
  createOpenAIClient,
  deleteFile,
  findBatchByInputFile,
  listActiveBatchInputs,
  listFiles,
  MAX_IMAGES_PER_REQUEST,
  type OpenAIClient,
  OpenAIRateLimitError,
  uploadBatchFile,
  writeBatchInputFile,
} from '../src/core/openai/client.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { type OpenAIFake, startOpenAIFake } from '../src/sandbox/openai.js';

/** A made-up key for the fake; the log must never contain it. */
const API_KEY = 'sk-test-zbox-0123456789abcdefghijklmnop';
const CHAT = '/v1/chat/completions';

const logger = createMemoryLogger();
let directory: string;

function request(customId: string, overrides: Partial<ChatBatchRequest> = {}): ChatBatchRequest {
  return { customId, model: 'gpt-4o-mini', text: `Describe file ${customId}`, ...overrides };
}

/** Serializes a raw JSONL line, for cases the line builder rejects. */
function rawLine(fields: Record<string, unknown>): string {
  return JSON.stringify(fields);
}

function validLine(customId: string, model = 'gpt-4o-mini', url = CHAT): Record<string, unknown> {
  return {
    custom_id: customId,
    method: 'POST',
    url,
    body: { model, messages: [{ role: 'user', content: 'hello' }] },
  };
}

function writeRaw(name: string, lines: string[]): string {
  const path = join(directory, name);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

async function openClient(fake: OpenAIFake, apiKey = API_KEY): Promise<OpenAIClient> {
  return createOpenAIClient({ apiKey, baseURL: fake.url, timeoutMs: 5_000, maxRetries: 1, logger });
}

/** Returns the SDK error an adapter error wraps, for checks of OpenAI's own fields. */
function sdkCause(error: unknown): InstanceType<typeof OpenAI.APIError> {
  assert.ok(error instanceof Error, 'expected an Error');
  const cause = (error as Error & { cause?: unknown }).cause;
  assert.ok(cause instanceof OpenAI.APIError, `expected an OpenAI APIError as cause, got ${String(cause)}`);
  return cause;
}

before(() => {
  directory = mkdtempSync(join(tmpdir(), 'zbox-openai-'));
});

after(() => {
  rmSync(directory, { recursive: true, force: true });
  const leaked = logger.lines.filter((line) => JSON.stringify(line).includes(API_KEY));
  assert.deepEqual(leaked, [], 'the API key reached the log');
});

describe('batch input upload', () => {
  let fake: OpenAIFake;
  let client: OpenAIClient;

  before(async () => {
    fake = await startOpenAIFake({ apiKey: API_KEY });
    client = await openClient(fake);
  });
  after(() => fake.close());

  test('uploads a streamed .jsonl file', async () => {
    const path = join(directory, 'upload.jsonl');
    const summary = await writeBatchInputFile(path, [
      request('task-1'),
      request('task-2', {
        images: [{ url: 'https://images.example/a.png?X-Amz-Signature=abc', detail: 'low' }],
      }),
      request('task-3', { images: [{ url: 'data:image/png;base64,iVBORw0KGgo=' }] }),
    ]);

    const file = await uploadBatchFile(client, path);

    assert.equal(summary.lines, 3);
    assert.equal(file.purpose, 'batch');
    assert.equal(file.filename, 'upload.jsonl');
    assert.equal(file.bytes, summary.bytes);
    assert.equal(fake.fileContent(file.id), readFileSync(path, 'utf8'));
    assert.equal(fake.countRequests('POST', '/v1/files'), 1);
    assert.equal(fake.requests.at(-1)?.authScheme, 'Bearer');
  });

  const lineCases: Array<{
    name: string;
    lines: string[];
    code: string;
    message: string;
    param: string | null;
    line: number;
  }> = [
    {
      name: 'invalid JSON',
      lines: [rawLine(validLine('a')), '{"custom_id": "b", '],
      code: 'invalid_json_line',
      message: 'This line is not parseable as valid JSON.',
      param: null,
      line: 2,
    },
    ...(['custom_id', 'method', 'url', 'body'] as const).map((field) => {
      const fields = validLine('a');
      delete fields[field];
      return {
        name: `missing ${field}`,
        lines: [rawLine(fields)],
        code: 'missing_required_parameter',
        message: `Missing required parameter: '${field}'.`,
        param: field,
        line: 1,
      };
    }),
    {
      name: 'custom_id not a string',
      lines: [rawLine({ ...validLine('a'), custom_id: 7 })],
      code: 'invalid_type',
      message: "Invalid type for 'custom_id': expected a string, but got a number instead.",
      param: 'custom_id',
      line: 1,
    },
    {
      name: 'duplicate custom_id',
      lines: [rawLine(validLine('same')), rawLine(validLine('other')), rawLine(validLine('same'))],
      code: 'duplicate_custom_id',
      message: "The custom_id 'same' is already used on line 1; each request needs a unique custom_id.",
      param: 'custom_id',
      line: 3,
    },
    {
      name: 'method other than POST',
      lines: [rawLine({ ...validLine('a'), method: 'GET' })],
      code: 'invalid_value',
      message: "Invalid value: 'GET'. Supported values are: 'POST'.",
      param: 'method',
      line: 1,
    },
    {
      name: 'unsupported url',
      lines: [rawLine(validLine('a', 'gpt-4o-mini', '/v1/chat'))],
      code: 'invalid_url',
      message: "The URL '/v1/chat' is not an endpoint the Batch API supports.",
      param: 'url',
      line: 1,
    },
    {
      name: 'two urls',
      lines: [rawLine(validLine('a')), rawLine(validLine('b', 'gpt-4o-mini', '/v1/embeddings'))],
      code: 'url_mismatch',
      message: `The URL '/v1/embeddings' differs from '${CHAT}' on line 1; all requests of a batch use one URL.`,
      param: 'url',
      line: 2,
    },
    {
      name: 'two models',
      lines: [rawLine(validLine('a')), rawLine(validLine('b', 'gpt-4o'))],
      code: 'model_mismatch',
      message: "The model 'gpt-4o' differs from 'gpt-4o-mini' on line 1; a batch file may use one model.",
      param: 'body.model',
      line: 2,
    },
    {
      name: 'missing model',
      lines: [rawLine({ ...validLine('a'), body: { messages: [{ role: 'user', content: 'hi' }] } })],
      code: 'invalid_request',
      message: 'Model parameter is required.',
      param: 'body.model',
      line: 1,
    },
    {
      name: 'missing messages',
      lines: [rawLine({ ...validLine('a'), body: { model: 'gpt-4o-mini' } })],
      code: 'invalid_request',
      message: 'Messages parameter is required.',
      param: 'body.messages',
      line: 1,
    },
    {
      name: 'streaming request',
      lines: [
        rawLine({
          ...validLine('a'),
          body: { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] },
        }),
      ],
      code: 'streaming_unsupported',
      message: 'Chat Completions: Streaming is not supported in the Batch API.',
      param: 'body.stream',
      line: 1,
    },
  ];

  for (const testCase of lineCases) {
    test(`upload rejects ${testCase.name}`, async () => {
      const path = writeRaw(`${testCase.name.replace(/\W+/g, '-')}.jsonl`, testCase.lines);
      const filesBefore = fake.files().length;

      const error = await uploadBatchFile(client, path).then(
        () => assert.fail('the upload was accepted'),
        (rejection: unknown) => rejection,
      );

      assert.ok(error instanceof PermanentError, String(error));
      assert.ok(error.message.includes(testCase.message), error.message);
      const cause = sdkCause(error);
      assert.equal(cause.status, 400);
      assert.equal(cause.code, testCase.code);
      assert.equal(cause.param, testCase.param);
      assert.equal((cause.error as { message?: string }).message, testCase.message);
      assert.equal((cause.error as { line?: number }).line, testCase.line);
      assert.equal(fake.files().length, filesBefore);
    });
  }

  test('upload rejects a file that is not JSONL', async () => {
    const notJsonl = await client.api.files
      .create({ file: await OpenAI.toFile(Buffer.from('plain text\n'), 'notes.jsonl'), purpose: 'batch' })
      .then(
        () => assert.fail('accepted'),
        (error: unknown) => error,
      );
    const wrongName = await client.api.files
      .create({
        file: await OpenAI.toFile(Buffer.from(`${rawLine(validLine('a'))}\n`), 'notes.txt'),
        purpose: 'batch',
      })
      .then(
        () => assert.fail('accepted'),
        (error: unknown) => error,
      );

    for (const error of [notJsonl, wrongName]) {
      assert.ok(error instanceof OpenAI.BadRequestError);
      assert.equal(
        (error.error as { message?: string }).message,
        'Invalid file format for Batch API. Must be .jsonl',
      );
    }
  });

  test('uploadBatchFile refuses a name without .jsonl', async () => {
    const path = join(directory, 'requests.txt');
    writeFileSync(path, `${rawLine(validLine('a'))}\n`);
    const before = fake.countRequests('POST', '/v1/files');

    await assert.rejects(uploadBatchFile(client, path), PermanentError);
    assert.equal(fake.countRequests('POST', '/v1/files'), before);
  });

  test('upload rejects an unknown purpose', async () => {
    const error = await client.api.files
      .create({ file: await OpenAI.toFile(Buffer.from('x'), 'a.txt'), purpose: 'backup' as 'batch' })
      .then(
        () => assert.fail('accepted'),
        (rejection: unknown) => rejection,
      );

    assert.ok(error instanceof OpenAI.BadRequestError);
    assert.equal(error.code, 'invalid_value');
    assert.equal(error.param, 'purpose');
  });
});

describe('batch validation at creation', () => {
  let fake: OpenAIFake;
  let client: OpenAIClient;

  before(async () => {
    fake = await startOpenAIFake({ apiKey: API_KEY, lineValidation: 'batch' });
    client = await openClient(fake);
  });
  after(() => fake.close());

  test('bad lines fail the batch, not the upload', async () => {
    const path = writeRaw('late.jsonl', [
      rawLine(validLine('a')),
      rawLine(validLine('a')),
      rawLine(validLine('b', 'gpt-4o-mini', '/v1/embeddings')),
    ]);
    const file = await uploadBatchFile(client, path);

    const created = await createBatch(client, { inputFileId: file.id, endpoint: CHAT });
    const later = await client.api.batches.retrieve(created.id);

    assert.equal(created.status, 'validating');
    assert.equal(later.status, 'failed');
    assert.equal(typeof later.failed_at, 'number');
    assert.deepEqual(later.errors?.data, [
      {
        code: 'duplicate_custom_id',
        message: "The custom_id 'a' is already used on line 1; each request needs a unique custom_id.",
        param: 'custom_id',
        line: 2,
      },
      {
        code: 'invalid_url',
        message: 'The URL provided for this request does not match the batch endpoint.',
        param: 'url',
        line: 3,
      },
    ]);
  });

  test('a missing input file fails the batch', async () => {
    const created = await createBatch(client, { inputFileId: 'file-doesnotexist', endpoint: CHAT });
    const later = await client.api.batches.retrieve(created.id);

    assert.equal(later.status, 'failed');
    assert.equal(later.errors?.data?.[0]?.code, 'invalid_request');
    assert.equal(later.errors?.data?.[0]?.param, 'file_id');
    assert.match(later.errors?.data?.[0]?.message ?? '', /^Cannot find file file-doesnotexist/);
  });

  test('a valid file moves the batch to in_progress', async () => {
    const path = join(directory, 'valid.jsonl');
    await writeBatchInputFile(path, [request('v-1'), request('v-2')]);
    const file = await uploadBatchFile(client, path);

    const created = await createBatch(client, { inputFileId: file.id, endpoint: CHAT });
    const later = await client.api.batches.retrieve(created.id);

    assert.equal(later.status, 'in_progress');
    assert.equal(later.request_counts?.total, 2);
  });

  test('create rejects an unknown endpoint', async () => {
    const error = await createBatch(client, {
      inputFileId: 'file-any',
      endpoint: '/v1/invalid/endpoint' as typeof CHAT,
    }).then(
      () => assert.fail('accepted'),
      (rejection: unknown) => rejection,
    );

    assert.ok(error instanceof PermanentError);
    const cause = sdkCause(error);
    assert.equal(cause.code, 'invalid_value');
    assert.equal(cause.param, 'endpoint');
    assert.match(
      cause.message,
      /^400 Invalid value: '\/v1\/invalid\/endpoint'\. Supported values are: '\/v1\/responses'/,
    );
  });

  test('create rejects a non-string metadata value', async () => {
    const error = await client.api.batches
      .create({
        input_file_id: 'file-any',
        endpoint: CHAT,
        completion_window: '24h',
        metadata: { tags: ['a', 'b'] as unknown as string },
      })
      .then(
        () => assert.fail('accepted'),
        (rejection: unknown) => rejection,
      );

    assert.ok(error instanceof OpenAI.BadRequestError);
    assert.equal(error.code, 'invalid_type');
    assert.equal(
      (error.error as { message?: string }).message,
      "Invalid type for 'metadata.tags': expected a string, but got an array instead.",
    );
  });

  test('createBatch checks metadata before sending', async () => {
    const before = fake.countRequests('POST', '/v1/batches');
    const metadata = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`key${i}`, 'v']));

    await assert.rejects(
      createBatch(client, { inputFileId: 'file-any', endpoint: CHAT, metadata }),
      PermanentError,
    );
    await assert.rejects(
      createBatch(client, { inputFileId: 'file-any', endpoint: CHAT, metadata: { task: 'x'.repeat(513) } }),
      PermanentError,
    );
    assert.equal(fake.countRequests('POST', '/v1/batches'), before);
  });
});

describe('batch creation and lookup', () => {
  let fake: OpenAIFake;
  let client: OpenAIClient;
  let clock = 1_800_000_000;

  before(async () => {
    fake = await startOpenAIFake({ apiKey: API_KEY, now: () => clock });
    client = await openClient(fake);
  });
  after(() => fake.close());

  async function uploadOne(name: string): Promise<string> {
    const path = join(directory, `${name}.jsonl`);
    await writeBatchInputFile(path, [request(`${name}-1`)]);
    return (await uploadBatchFile(client, path)).id;
  }

  test('creates a batch and finds it by input file', async () => {
    const inputFileId = await uploadOne('lookup');

    const created = await createBatch(client, {
      inputFileId,
      endpoint: CHAT,
      metadata: { task_id: '42', worker: 'openai-batch-request' },
    });
    const found = await findBatchByInputFile(client, inputFileId);

    assert.equal(found?.id, created.id);
    assert.equal(found?.input_file_id, inputFileId);
    assert.equal(found?.endpoint, CHAT);
    assert.equal(found?.completion_window, '24h');
    assert.deepEqual(found?.metadata, { task_id: '42', worker: 'openai-batch-request' });
  });

  test('lookup follows pagination', async () => {
    clock = 1_800_001_000;
    const oldest = await uploadOne('oldest');
    await createBatch(client, { inputFileId: oldest, endpoint: CHAT });
    const filler = fake.seedFile({
      filename: 'filler.jsonl',
      purpose: 'batch',
      createdAt: clock,
      content: '{}',
    });
    for (let i = 0; i < 230; i += 1) {
      clock += 1;
      await createBatch(client, { inputFileId: filler.id, endpoint: CHAT });
    }
    const listsBefore = fake.countRequests('GET', '/v1/batches');

    const found = await findBatchByInputFile(client, oldest);
    const listsForFound = fake.countRequests('GET', '/v1/batches') - listsBefore;
    const missing = await findBatchByInputFile(client, 'file-never-uploaded');
    const listsForMissing = fake.countRequests('GET', '/v1/batches') - listsBefore - listsForFound;

    assert.equal(found?.input_file_id, oldest);
    assert.equal(listsForFound, 3);
    assert.equal(missing, undefined);
    assert.equal(listsForMissing, 3);
    const afterValues = fake.requests
      .filter((r) => r.method === 'GET' && r.path === '/v1/batches')
      .slice(-3)
      .map((r) => r.query.after);
    assert.equal(afterValues[0], undefined);
    assert.ok(afterValues[1]?.startsWith('batch_'));
  });

  test('lookup stops at createdAfter', async () => {
    const listsBefore = fake.countRequests('GET', '/v1/batches');

    const found = await findBatchByInputFile(client, 'file-never-uploaded', { createdAfter: clock - 50 });

    assert.equal(found, undefined);
    assert.equal(fake.countRequests('GET', '/v1/batches') - listsBefore, 1);
  });

  test('lost create response does not make a second batch', async () => {
    const inputFileId = await uploadOne('lost');
    fake.dropNextResponse('POST /v1/batches');
    const createsBefore = fake.countRequests('POST', '/v1/batches');

    const error = await createBatch(client, { inputFileId, endpoint: CHAT }).then(
      () => assert.fail('the dropped response was read'),
      (rejection: unknown) => rejection,
    );
    // What the worker does on its next attempt: look first, create only when nothing is found.
    const existing = await findBatchByInputFile(client, inputFileId);
    const batch = existing ?? (await createBatch(client, { inputFileId, endpoint: CHAT }));

    assert.ok(error instanceof TransientError, String(error));
    assert.equal(error.dependency, 'openai');
    assert.equal(fake.countRequests('POST', '/v1/batches'), createsBefore + 1);
    assert.ok(existing !== undefined);
    assert.equal(batch.input_file_id, inputFileId);
    assert.equal(fake.batches().filter((b) => b.input_file_id === inputFileId).length, 1);
  });

  test('lost upload response is not retried', async () => {
    const path = join(directory, 'lost-upload.jsonl');
    await writeBatchInputFile(path, [request('lost-upload-1')]);
    fake.dropNextResponse('POST /v1/files');
    // openai-node 7.60 never retries a streamed body; `maxRetries: 0` keeps that true for any body.
    const uploadsBefore = fake.countRequests('POST', '/v1/files');
    const filesBefore = fake.files().length;

    await assert.rejects(uploadBatchFile(client, path), TransientError);

    assert.equal(fake.countRequests('POST', '/v1/files'), uploadsBefore + 1);
    assert.equal(fake.files().length, filesBefore + 1);
  });

  test('SDK retries are off for upload and create', async () => {
    const path = join(directory, 'retry.jsonl');
    await writeBatchInputFile(path, [request('retry-1')]);
    const inputFileId = await uploadOne('retry-create');
    const uploadsBefore = fake.countRequests('POST', '/v1/files');
    const createsBefore = fake.countRequests('POST', '/v1/batches');
    const listsBefore = fake.countRequests('GET', '/v1/files');

    fake.failNextRequests(1, { kind: 'server_error', status: 500 }, { method: 'POST', path: '/v1/files' });
    await assert.rejects(uploadBatchFile(client, path), TransientError);
    fake.failNextRequests(1, { kind: 'server_error', status: 503 }, { method: 'POST', path: '/v1/batches' });
    await assert.rejects(createBatch(client, { inputFileId, endpoint: CHAT }), TransientError);
    // The same fault on a list call is retried by the SDK (maxRetries 1 here) and then succeeds.
    fake.failNextRequests(1, { kind: 'server_error', status: 500 }, { method: 'GET', path: '/v1/files' });
    for await (const _file of listFiles(client)) {
      // Only the requests count.
    }

    assert.equal(fake.countRequests('POST', '/v1/files'), uploadsBefore + 1);
    assert.equal(fake.countRequests('POST', '/v1/batches'), createsBefore + 1);
    assert.equal(fake.countRequests('GET', '/v1/files'), listsBefore + 2);
  });

  test('active batch inputs skip terminal batches', async () => {
    const ids: Record<string, string> = {};
    for (const name of [
      'inprogress',
      'finalizing',
      'completed',
      'cancelling',
      'failed',
      'expired',
      'fresh',
    ]) {
      ids[name] = await uploadOne(`active-${name}`);
    }
    const batchOf = async (name: string) =>
      (await createBatch(client, { inputFileId: ids[name] ?? '', endpoint: CHAT })).id;
    fake.setBatchStatus(await batchOf('inprogress'), 'in_progress');
    fake.setBatchStatus(await batchOf('finalizing'), 'finalizing', {
      output_file_id: 'file-out-1',
      error_file_id: '',
    });
    fake.setBatchStatus(await batchOf('completed'), 'completed', { output_file_id: 'file-out-2' });
    fake.setBatchStatus(await batchOf('cancelling'), 'cancelling', { output_file_id: 'file-out-3' });
    fake.setBatchStatus(await batchOf('failed'), 'failed');
    fake.setBatchStatus(await batchOf('expired'), 'expired', { output_file_id: 'file-out-4' });
    await batchOf('fresh');

    const active = await listActiveBatchInputs(client);

    for (const name of ['inprogress', 'finalizing', 'cancelling', 'fresh']) {
      assert.ok(active.has(ids[name] ?? ''), `${name} input missing`);
    }
    for (const name of ['completed', 'failed', 'expired']) {
      assert.ok(!active.has(ids[name] ?? ''), `${name} input listed`);
    }
    assert.ok(active.has('file-out-1'));
    assert.ok(active.has('file-out-3'));
    assert.ok(!active.has('file-out-2'));
    assert.ok(!active.has('file-out-4'));
    assert.ok(!active.has(''));
  });
});

describe('file listing and deletion', () => {
  let fake: OpenAIFake;
  let client: OpenAIClient;
  const seeded: string[] = [];

  before(async () => {
    fake = await startOpenAIFake({ apiKey: API_KEY });
    client = await openClient(fake);
    for (let i = 0; i < 25; i += 1) {
      const purpose = i % 5 === 0 ? 'batch_output' : 'batch';
      seeded.push(
        fake.seedFile({
          filename: `f${i}.jsonl`,
          purpose,
          createdAt: 1_700_000_000 + i * 60,
          content: `${i}`,
        }).id,
      );
    }
  });
  afterEach(() => fake.repeatCursor(false));
  after(() => fake.close());

  test('follows after until has_more is false', async () => {
    const listsBefore = fake.countRequests('GET', '/v1/files');

    const ids: string[] = [];
    for await (const file of listFiles(client, { limit: 10 })) {
      ids.push(file.id);
    }

    assert.deepEqual(ids, [...seeded].reverse());
    assert.equal(fake.countRequests('GET', '/v1/files') - listsBefore, 3);
    const queries = fake.requests.filter((r) => r.path === '/v1/files' && r.method === 'GET').slice(-3);
    assert.deepEqual(
      queries.map((r) => r.query.after),
      [undefined, seeded[15], seeded[5]],
    );
  });

  test('filters by purpose in ascending order', async () => {
    const ids: string[] = [];
    for await (const file of listFiles(client, { purpose: 'batch_output', order: 'asc', limit: 2 })) {
      ids.push(file.id);
    }

    assert.deepEqual(
      ids,
      seeded.filter((_, i) => i % 5 === 0),
    );
  });

  test('stops when the server repeats a cursor', async () => {
    fake.repeatCursor(true);
    const listsBefore = fake.countRequests('GET', '/v1/files');
    let seen = 0;

    const error = await (async () => {
      for await (const _file of listFiles(client, { limit: 10 })) {
        seen += 1;
      }
    })().then(
      () => assert.fail('the listing ended'),
      (rejection: unknown) => rejection,
    );

    assert.ok(error instanceof TransientError, String(error));
    assert.equal(error.dependency, 'openai');
    assert.match(error.message, new RegExp(`cursor ${seeded[15]} a second time`));
    assert.equal(seen, 20);
    assert.equal(fake.countRequests('GET', '/v1/files') - listsBefore, 2);
  });

  test('deleting while listing visits every file once', async () => {
    const local = await startOpenAIFake({ apiKey: API_KEY });
    const localClient = await openClient(local);
    const ids = Array.from(
      { length: 12 },
      (_, i) =>
        local.seedFile({ filename: `d${i}.jsonl`, purpose: 'batch', createdAt: 1_700_000_000 + i }).id,
    );

    const visited: string[] = [];
    for await (const file of listFiles(localClient, { limit: 5 })) {
      visited.push(file.id);
      assert.equal(await deleteFile(localClient, file.id), 'deleted');
    }
    await local.close();

    assert.deepEqual(visited, [...ids].reverse());
    assert.equal(local.files().length, 0);
  });

  test('deleteFile treats 404 as done', async () => {
    const target = seeded[3] ?? '';

    const first = await deleteFile(client, target);
    const second = await deleteFile(client, target);

    assert.equal(first, 'deleted');
    assert.equal(second, 'not_found');
    assert.ok(!fake.files().some((file) => file.id === target));
    await assert.rejects(deleteFile(client, ''), PermanentError);
  });
});

describe('error classification', () => {
  let fake: OpenAIFake;
  let client: OpenAIClient;

  before(async () => {
    fake = await startOpenAIFake({ apiKey: API_KEY });
    client = await openClient(fake);
  });
  after(() => fake.close());

  test('insufficient_quota halts the run', async () => {
    fake.failNextRequests(1, { kind: 'insufficient_quota' }, { method: 'POST', path: '/v1/batches' });

    const error = await createBatch(client, { inputFileId: 'file-x', endpoint: CHAT }).then(
      () => assert.fail('accepted'),
      (rejection: unknown) => rejection,
    );

    assert.ok(error instanceof HaltError, String(error));
    assert.match(error.message, /^OpenAI quota exhausted \(HTTP 429, insufficient_quota\)/);
    assert.match(error.message, /You exceeded your current quota/);
  });

  test('rate limit carries retry-after', async () => {
    fake.failNextRequests(
      1,
      { kind: 'rate_limit', retryAfterSeconds: 7 },
      { method: 'POST', path: '/v1/batches' },
    );

    const error = await createBatch(client, { inputFileId: 'file-x', endpoint: CHAT }).then(
      () => assert.fail('accepted'),
      (rejection: unknown) => rejection,
    );

    assert.ok(error instanceof OpenAIRateLimitError, String(error));
    assert.ok(error instanceof TransientError);
    assert.equal(error.retryAfterSeconds, 7);
    assert.equal(error.dependency, 'openai');
    assert.match(error.message, /retry after 7 s/);
  });

  test('quota on a retried call is classified after retries', async () => {
    fake.failNextRequests(2, { kind: 'insufficient_quota' }, { method: 'GET', path: '/v1/files' });

    const error = await (async () => {
      for await (const _file of listFiles(client)) {
        // Never reached.
      }
    })().then(
      () => assert.fail('listed'),
      (rejection: unknown) => rejection,
    );

    assert.ok(error instanceof HaltError, String(error));
  });

  test('400 is permanent with the message', async () => {
    const error = classifyOpenAIError(
      new OpenAI.BadRequestError(
        400,
        {
          message: 'Invalid value: x.',
          type: 'invalid_request_error',
          param: 'endpoint',
          code: 'invalid_value',
        },
        undefined,
        new Headers(),
      ),
    );

    assert.ok(error instanceof PermanentError);
    assert.equal(
      error.message,
      'OpenAI rejected the request (HTTP 400, invalid_value, param endpoint): Invalid value: x.',
    );
  });

  test('500 and connection errors are transient', async () => {
    fake.failNextRequests(1, { kind: 'server_error', status: 500 }, { method: 'POST', path: '/v1/batches' });
    const serverError = await createBatch(client, { inputFileId: 'file-x', endpoint: CHAT }).then(
      () => assert.fail('accepted'),
      (rejection: unknown) => rejection,
    );

    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const unreachable = await createOpenAIClient({
      apiKey: API_KEY,
      baseURL: `http://127.0.0.1:${port}/v1`,
      timeoutMs: 2_000,
      maxRetries: 0,
      logger,
    });
    const connectionError = await deleteFile(unreachable, 'file-x').then(
      () => assert.fail('deleted'),
      (rejection: unknown) => rejection,
    );

    assert.ok(serverError instanceof TransientError, String(serverError));
    assert.equal(serverError.dependency, 'openai');
    assert.match(serverError.message, /HTTP 500/);
    assert.ok(connectionError instanceof TransientError, String(connectionError));
    assert.equal(connectionError.dependency, 'openai');
  });

  test('wrong API key is a configuration error', async () => {
    const wrongKey = await openClient(fake, 'sk-test-wrong-key-000000000000');

    const error = await deleteFile(wrongKey, 'file-x').then(
      () => assert.fail('deleted'),
      (rejection: unknown) => rejection,
    );

    assert.ok(error instanceof ConfigError, String(error));
    assert.match(error.message, /invalid_api_key/);
    assert.doesNotMatch(error.message, /sk-test-wrong-key-000000000000/);
  });

  test('retry delay forms are parsed', () => {
    const rateLimit = (headers: Record<string, string>) =>
      classifyOpenAIError(
        new OpenAI.RateLimitError(
          429,
          { message: 'slow down', code: 'rate_limit_exceeded' },
          undefined,
          new Headers(headers),
        ),
      ) as OpenAIRateLimitError;

    assert.equal(rateLimit({ 'retry-after-ms': '1500' }).retryAfterSeconds, 2);
    assert.equal(rateLimit({ 'retry-after': '3' }).retryAfterSeconds, 3);
    const dated =
      rateLimit({ 'retry-after': new Date(Date.now() + 10_000).toUTCString() }).retryAfterSeconds ?? 0;
    assert.ok(dated >= 8 && dated <= 11, String(dated));
    assert.equal(rateLimit({}).retryAfterSeconds, undefined);
  });

  test('other errors pass through', () => {
    const own = new PermanentError('bad input');
    const other = new TypeError('bug');

    assert.equal(classifyOpenAIError(own), own);
    assert.equal(classifyOpenAIError(other), other);
  });
});

describe('client options', () => {
  test('OPENAI_* variables do not redirect requests', async () => {
    const fake = await startOpenAIFake({ apiKey: API_KEY });
    const elsewhere = await startOpenAIFake();
    const saved = { ...process.env };
    process.env.OPENAI_BASE_URL = elsewhere.url;
    process.env.OPENAI_ORG_ID = 'org-from-environment';
    process.env.OPENAI_PROJECT_ID = 'proj_from_environment';
    try {
      const client = await openClient(fake);
      for await (const _file of listFiles(client)) {
        // Only the request matters.
      }
    } finally {
      for (const name of ['OPENAI_BASE_URL', 'OPENAI_ORG_ID', 'OPENAI_PROJECT_ID']) {
        if (saved[name] === undefined) {
          delete process.env[name];
        } else {
          process.env[name] = saved[name];
        }
      }
      await fake.close();
      await elsewhere.close();
    }

    assert.equal(elsewhere.requests.length, 0);
    assert.equal(fake.requests.length, 1);
    assert.equal(fake.requests[0]?.organization, undefined);
    assert.equal(fake.requests[0]?.project, undefined);
  });

  test('createOpenAIClient rejects invalid options', async () => {
    const base = { apiKey: API_KEY, baseURL: 'http://127.0.0.1:9/v1', timeoutMs: 1_000, logger };

    await assert.rejects(createOpenAIClient({ ...base, apiKey: ' ' }), ConfigError);
    await assert.rejects(createOpenAIClient({ ...base, timeoutMs: 0 }), ConfigError);
    await assert.rejects(createOpenAIClient({ ...base, maxRetries: -1 }), ConfigError);
    await assert.rejects(createOpenAIClient({ ...base, baseURL: 'ftp://127.0.0.1/v1' }), ConfigError);
    await assert.rejects(
      createOpenAIClient({ ...base, baseURL: 'http://user:secret@127.0.0.1:9/v1' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.doesNotMatch(error.message, /secret/);
        return true;
      },
    );
  });
});

describe('batch input lines', () => {
  test('builds text and image parts', () => {
    const line = buildChatCompletionLine({
      customId: 'task-9-file-2',
      model: 'gpt-4o-mini',
      instructions: 'Answer in one sentence.',
      text: 'What is in these images?',
      images: [
        { url: 'https://bucket.example/a.png', detail: 'high' },
        { url: 'data:image/jpeg;base64,/9j/4AA=' },
      ],
      maxCompletionTokens: 300,
    });

    assert.deepEqual(JSON.parse(line), {
      custom_id: 'task-9-file-2',
      method: 'POST',
      url: CHAT,
      body: {
        model: 'gpt-4o-mini',
        messages: [
          { role: 'system', content: 'Answer in one sentence.' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'What is in these images?' },
              { type: 'image_url', image_url: { url: 'https://bucket.example/a.png', detail: 'high' } },
              { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,/9j/4AA=' } },
            ],
          },
        ],
        max_completion_tokens: 300,
      },
    });
    assert.ok(!line.includes('\n'));
  });

  test('rejects requests beyond the limits', () => {
    const cases: Array<[string, Partial<ChatBatchRequest>]> = [
      ['http image', { images: [{ url: 'http://bucket.example/a.png' }] }],
      ['ftp image', { images: [{ url: 'ftp://bucket.example/a.png' }] }],
      ['svg data URL', { images: [{ url: 'data:image/svg+xml;base64,PHN2Zz4=' }] }],
      ['broken base64', { images: [{ url: 'data:image/png;base64,abc' }] }],
      [
        'too many images',
        {
          images: Array.from({ length: MAX_IMAGES_PER_REQUEST + 1 }, () => ({
            url: 'https://a.example/x.png',
          })),
        },
      ],
      ['image over 20 MB', { images: [{ url: `data:image/png;base64,${'A'.repeat(28 * 1024 * 1024)}` }] }],
      ['custom_id with a space', { customId: 'task 1' }],
      ['custom_id over 64 characters', { customId: 'x'.repeat(65) }],
      ['empty model', { model: '' }],
      ['no text and no images', { text: ' ' }],
      ['fractional max tokens', { maxCompletionTokens: 1.5 }],
    ];
    for (const [name, overrides] of cases) {
      assert.throws(() => buildChatCompletionLine(request('task-1', overrides)), PermanentError, name);
    }
  });

  test('rejects inline images over 50 MB per request', () => {
    const fifteenMegabytes = `data:image/png;base64,${'A'.repeat(20 * 1024 * 1024)}`;

    assert.throws(
      () =>
        buildChatCompletionLine(
          request('task-1', { images: Array.from({ length: 4 }, () => ({ url: fifteenMegabytes })) }),
        ),
      /inline images/,
    );
  });

  test('file writer enforces unique ids and one model', async () => {
    const duplicate = join(directory, 'duplicate.jsonl');
    const mixed = join(directory, 'mixed.jsonl');

    await assert.rejects(writeBatchInputFile(duplicate, [request('a'), request('a')]), /appears twice/);
    await assert.rejects(
      writeBatchInputFile(mixed, [request('a'), request('b', { model: 'gpt-4o' })]),
      /a batch file has one model/,
    );
    await assert.rejects(writeBatchInputFile(join(directory, 'empty.jsonl'), []), /at least one request/);
    await assert.rejects(
      writeBatchInputFile(join(directory, 'wrong.json'), [request('a')]),
      /must end with \.jsonl/,
    );

    assert.throws(() => readFileSync(duplicate), /ENOENT/);
    assert.throws(() => readFileSync(mixed), /ENOENT/);
  });
});
