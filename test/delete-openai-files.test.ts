import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, beforeEach, test } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { createBatch, createOpenAIClient } from '../src/core/openai/client.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { createS3 } from '../src/core/storage/s3.js';
import { type OpenAIFake, startOpenAIFake } from '../src/sandbox/openai.js';
import { runCli, summaryOf } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

const API_KEY = 'sk-test-delete-openai-files';
const HOUR = 3600;
const BUCKET = 'zbox-batch-images';

let database: TestDatabase;
let pool: DatabasePool;
let openai: OpenAIFake;

before(async () => {
  database = await createTestDatabase('delete_openai_files');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 2 });
});

beforeEach(async () => {
  await openai?.close();
  openai = await startOpenAIFake({ apiKey: API_KEY });
});

after(async () => {
  await openai.close();
  await pool.end();
  await database.drop();
});

function env(extra: Record<string, string> = {}) {
  return { DATABASE_URL: database.url, OPENAI_API_KEY: API_KEY, OPENAI_BASE_URL: openai.url, ...extra };
}

/** 250 files (three pages of 100): old and new, in four purposes. */
function seedFiles(): { oldUnprotected: number } {
  const now = Math.floor(Date.now() / 1000);
  const purposes = ['batch', 'batch_output', 'assistants', 'vision'];
  let oldUnprotected = 0;
  for (let index = 0; index < 250; index++) {
    const purpose = purposes[index % purposes.length] as string;
    const old = index % 3 !== 0;
    openai.seedFile({
      filename: `file-${index}.jsonl`,
      purpose,
      createdAt: old ? now - 30 * HOUR : now - HOUR,
    });
    if (old && purpose !== 'batch') {
      oldUnprotected += 1;
    }
  }
  return { oldUnprotected };
}

test('deletes old unprotected files over three pages', async () => {
  const { oldUnprotected } = seedFiles();
  const dry = await runCli(['delete-openai-files', '--dry-run', '--json'], env());
  assert.equal(dry.code, 0, dry.stderr);
  const wouldDelete = summaryOf(dry).details as { files_would_delete: Record<string, number> };
  assert.equal(
    Object.values(wouldDelete.files_would_delete).reduce((sum, count) => sum + count, 0),
    oldUnprotected,
  );
  assert.equal(openai.files().length, 250, 'a dry run deletes nothing');

  const result = await runCli(['delete-openai-files', '--json'], env());
  assert.equal(result.code, 0, result.stderr);
  const left = openai.files();
  assert.equal(left.length, 250 - oldUnprotected);
  const now = Math.floor(Date.now() / 1000);
  for (const file of left) {
    assert.ok(
      file.purpose === 'batch' || file.created_at > now - 24 * HOUR,
      `${file.id} (${file.purpose}) should be gone`,
    );
  }
  assert.ok(openai.countRequests('GET', '/v1/files') >= 3, 'the listing followed three pages');
});

test('file of a running batch is never deleted', async () => {
  const now = Math.floor(Date.now() / 1000);
  const line = JSON.stringify({
    custom_id: 'task-1-share-1',
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
  });
  const input = openai.seedFile({
    filename: 'input.jsonl',
    purpose: 'batch',
    createdAt: now - 50 * HOUR,
    content: `${line}\n`,
  });
  const stray = openai.seedFile({ filename: 'stray.jsonl', purpose: 'batch', createdAt: now - 50 * HOUR });
  const client = await createOpenAIClient({
    apiKey: API_KEY,
    baseURL: openai.url,
    timeoutMs: 5_000,
    logger: createMemoryLogger(),
  });
  const batch = await createBatch(client, { inputFileId: input.id, endpoint: '/v1/chat/completions' });
  openai.setBatchStatus(batch.id, 'in_progress');
  // Nothing is protected by purpose here, so only the running batch keeps its input file.
  const result = await runCli(
    ['delete-openai-files', '--json'],
    env({ ZBOX_OPENAI_PROTECTED_PURPOSES: 'none' }),
  );
  assert.equal(result.code, 0, result.stderr);
  const left = openai.files().map((file) => file.id);
  assert.ok(left.includes(input.id), 'the running batch keeps its input file');
  assert.ok(!left.includes(stray.id), 'an unreferenced old file is deleted');
});

test('repeated cursor stops the listing with a reason', async () => {
  seedFiles();
  openai.repeatCursor(true);
  const result = await runCli(['delete-openai-files', '--json'], env());
  assert.notEqual(result.code, 0);
  assert.match(result.stderr + result.stdout, /returned cursor .* a second time/);
  assert.equal(openai.files().length, 250, 'nothing was deleted from a listing that looped');
});

test('expired batch images are deleted from S3 and marked', async () => {
  await pool.query(sql.unsafe`TRUNCATE batch_image_uploads, openai_batch_tasks CASCADE`);
  const none = await runCli(['delete-openai-files', '--json'], env());
  assert.equal(none.code, 0);
  assert.equal(
    (summaryOf(none).details as Record<string, unknown>).images_deleted,
    0,
    'no S3 call without due images',
  );

  const directory = mkdtempSync(join(tmpdir(), 'zbox-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: BUCKET, configs: [] }],
  });
  const address = await server.run();
  const s3Env = {
    ZBOX_S3_BUCKET: BUCKET,
    ZBOX_S3_ENDPOINT: `http://127.0.0.1:${address.port}`,
    ZBOX_S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
  };
  const s3 = await createS3({
    bucket: BUCKET,
    region: 'us-east-1',
    endpoint: s3Env.ZBOX_S3_ENDPOINT,
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    logger: createMemoryLogger(),
  });
  try {
    const taskId = await pool.oneFirst(sql.type(z.object({ id: z.bigint() }))`
      INSERT INTO openai_batch_tasks (user_id, prompt, model, share_info_ids) VALUES ('u', 'p', 'm', '{1}') RETURNING id`);
    for (const [index, hoursAgo] of [48, 30, -10].entries()) {
      const key = `batch-images/task-${taskId}/share-${index}`;
      await s3.uploadStream(key, Readable.from([Buffer.from(`image ${index}`)]), 'image/png');
      await pool.query(sql.unsafe`
        INSERT INTO batch_image_uploads (task_id, share_info_id, s3_key, delete_after)
        VALUES (${taskId}, ${index}, ${key}, now() - make_interval(hours => ${hoursAgo}))`);
    }
    const result = await runCli(['delete-openai-files', '--json'], env(s3Env));
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.equal((summaryOf(result).details as Record<string, unknown>).images_deleted, 2);
    const marked = await pool.anyFirst(sql.type(z.object({ s3_key: z.string() }))`
      SELECT s3_key FROM batch_image_uploads WHERE deleted_at IS NOT NULL ORDER BY s3_key`);
    assert.deepEqual(
      [...marked],
      [`batch-images/task-${taskId}/share-0`, `batch-images/task-${taskId}/share-1`],
    );
    const kept = await s3.client.send(new ListObjectsV2Command({ Bucket: BUCKET }));
    assert.deepEqual(
      (kept.Contents ?? []).map((object) => object.Key),
      [`batch-images/task-${taskId}/share-2`],
      'only the image whose URL may still be read stays',
    );
  } finally {
    s3.close();
    await server.close();
    rmSync(directory, { recursive: true, force: true });
  }
});
