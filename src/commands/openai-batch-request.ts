import { createReadStream } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from 'slonik';
import { z } from 'zod';
import { downloadShare } from '../core/blobber/download.js';
import { decodeShareTicket } from '../core/blobber/share.js';
import { createGuardedFetch, type GuardedFetch } from '../core/blobber/url-guard.js';
import { mapWithConcurrency } from '../core/concurrency.js';
import { requireVariable } from '../core/config.js';
import type { RunContext } from '../core/engine/context.js';
import { type QueueWorker, runQueueCycle } from '../core/engine/cycle.js';
import type { Row } from '../core/engine/queue-sql.js';
import type { WorkerSpec } from '../core/engine/runtime.js';
import { errorMessage, PermanentError } from '../core/errors.js';
import {
  type BatchEndpoint,
  type ChatBatchRequest,
  createBatch,
  findBatchByInputFile,
  MAX_IMAGE_BYTES,
  type OpenAIClient,
  uploadBatchFile,
  writeBatchInputFile,
} from '../core/openai/client.js';
import { connectOpenAI, connectS3, temporaryFolder } from '../core/openai/connect.js';
import type { S3Storage } from '../core/storage/s3.js';
import { fetchAllocationBlobbers } from '../core/zus/allocation-blobbers.js';
import { connectSharders } from '../core/zus/connect.js';
import type { ShardersClient } from '../core/zus/sharders.js';
import { loadWallet, type Wallet } from '../core/zus/wallet.js';

/**
 * openai-batch-request: turns pending batch tasks (a prompt and files users shared on Züs) into
 * OpenAI Batches. Per task it downloads each share from the blobbers, puts images in S3 behind a
 * presigned URL (or inline as a `data:` URL) and embeds text, writes the `.jsonl`, uploads it and
 * creates the batch. The input file id and the batch id are stored as soon as each call returns;
 * a retry first adopts a batch already made from that input file, so a crash or a lost response
 * never creates a second batch. Files that cannot be used get a per-file reason; a task whose
 * files all fail is dead with the list. A retry presigns the images an earlier attempt already put
 * in S3 again instead of downloading them again, so a large task makes progress across attempts.
 * Each downloaded file is deleted once it is embedded or uploaded, and the task's temporary folder
 * is removed in a finally block whatever the outcome.
 */

interface BatchTask {
  id: bigint;
  prompt: string;
  systemPrompt: string | undefined;
  model: string;
  shareIds: bigint[];
  endpoint: BatchEndpoint;
  inputFileId: string | undefined;
  batchId: string | undefined;
}

interface Deps {
  openai: OpenAIClient;
  sharders: ShardersClient;
  fetch: GuardedFetch;
  operator: Wallet;
  images: 'inline' | 's3';
  s3: () => Promise<S3Storage>;
  urlLifetimeSeconds: number;
  tempRoot: string;
}

/** OpenAI reads a batch's inputs within its 24 h completion window. */
const COMPLETION_WINDOW_SECONDS = 24 * 3600;
/** Shares downloaded at once per task. */
const SHARE_CONCURRENCY = 2;
/** Largest text file embedded in a request line. */
const MAX_TEXT_BYTES = 5 * 1024 * 1024;

export function openAIBatchRequest(): WorkerSpec {
  return { name: 'openai-batch-request', singleton: false, body: run };
}

async function run(ctx: RunContext): Promise<void> {
  const openai = await connectOpenAI(ctx.env, ctx.logger);
  const sharders = await connectSharders(ctx.env, ctx.logger);
  const operator = await loadWallet(requireVariable(ctx.env, 'ZBOX_OPERATOR_WALLET'), {
    scheme: requireVariable(ctx.env, 'ZUS_SIGNATURE_SCHEME'),
    variable: 'ZBOX_OPERATOR_WALLET',
  });
  const allowPrivateAddresses = requireVariable(ctx.env, 'ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES');
  if (allowPrivateAddresses) {
    ctx.logger.warn('blobber URL guard allows loopback and private addresses (tests and local demo only)');
  }
  const fetch = createGuardedFetch({
    allowPrivateAddresses,
    timeoutMs: requireVariable(ctx.env, 'ZBOX_BLOBBER_TIMEOUT_MS'),
    maxResponseBytes: 64 * 1024 * 1024,
    logger: ctx.logger,
  });
  let s3: Promise<S3Storage> | undefined;
  const deps: Deps = {
    openai,
    sharders,
    fetch,
    operator,
    images: requireVariable(ctx.env, 'ZBOX_BATCH_IMAGES'),
    s3: () => {
      s3 ??= connectS3(ctx.env, ctx.logger);
      return s3;
    },
    urlLifetimeSeconds:
      COMPLETION_WINDOW_SECONDS + requireVariable(ctx.env, 'ZBOX_BATCH_URL_MARGIN_HOURS') * 3600,
    tempRoot: temporaryFolder(ctx.env),
  };
  try {
    await runQueueCycle(batchWorker(deps, requireVariable(ctx.env, 'ZBOX_OPENAI_BATCH_MAX_ATTEMPTS')), ctx);
  } finally {
    fetch.close();
    (await s3)?.close();
  }
}

function batchWorker(
  deps: Deps,
  maxAttempts: number,
): QueueWorker<BatchTask, { batchId: string; reasons: Record<string, string> }> {
  return {
    name: 'openai-batch-request',
    table: 'openai_batch_tasks',
    parseTask,
    dependencyOf: () => 'openai',
    maxAttempts,

    execute: async (task, ctx) => {
      if (task.batchId !== undefined) {
        return { batchId: task.batchId, reasons: {} };
      }
      let reasons: Record<string, string> = {};
      let inputFileId = task.inputFileId;
      if (inputFileId === undefined) {
        const built = await buildAndUpload(task, deps, ctx);
        inputFileId = built.inputFileId;
        reasons = built.reasons;
      }
      const batchId = await adoptOrCreateBatch(task, inputFileId, deps, ctx);
      return { batchId, reasons };
    },

    recordSuccess: async (tx, task, result) => {
      await tx.query(sql.unsafe`
        UPDATE openai_batch_tasks SET batch_id = ${result.batchId}, file_reasons = ${sql.jsonb(result.reasons)}
        WHERE id = ${task.id}`);
    },

    describe: async (task) => ({
      action:
        task.inputFileId === undefined
          ? `download ${task.shareIds.length} share(s), build the .jsonl for ${task.model} and create a batch on ${task.endpoint}`
          : `adopt or create the batch of input file ${task.inputFileId}`,
      fields: { share_ids: task.shareIds.map(String), model: task.model, images: deps.images },
    }),
  };
}

const taskRow = z.object({
  id: z.bigint(),
  prompt: z.string().min(1, 'the prompt is empty'),
  system_prompt: z.string().nullable(),
  model: z.string().min(1),
  share_info_ids: z
    .array(z.union([z.bigint(), z.string(), z.number()]).transform((value) => BigInt(value)))
    .min(1, 'the task has no share'),
  endpoint: z.string(),
  input_file_id: z.string().nullable(),
  batch_id: z.string().nullable(),
});

function parseTask(row: Row): BatchTask {
  const parsed = taskRow.parse(row);
  if (parsed.endpoint !== '/v1/chat/completions') {
    throw new Error(
      `endpoint ${parsed.endpoint} is not supported: only /v1/chat/completions batches are built`,
    );
  }
  return {
    id: parsed.id,
    prompt: parsed.prompt,
    systemPrompt: parsed.system_prompt ?? undefined,
    model: parsed.model,
    shareIds: parsed.share_info_ids,
    endpoint: parsed.endpoint as BatchEndpoint,
    inputFileId: parsed.input_file_id ?? undefined,
    batchId: parsed.batch_id ?? undefined,
  };
}

/** Downloads the shares, writes and uploads the .jsonl, and stores the input file id at once. */
async function buildAndUpload(task: BatchTask, deps: Deps, ctx: RunContext) {
  const folder = await mkdtemp(join(deps.tempRoot, `zbox-batch-${task.id}-`));
  try {
    const { requests, reasons, reused } = await prepareRequests(task, deps, ctx, folder);
    if (requests.length === 0) {
      throw new PermanentError(`no file of the task could be used: ${describeReasons(reasons)}`);
    }
    const path = join(folder, `task-${task.id}.jsonl`);
    await writeBatchInputFile(path, requests);
    const file = await uploadBatchFile(deps.openai, path);
    await ctx.pool.query(sql.unsafe`
      UPDATE openai_batch_tasks SET input_file_id = ${file.id}, file_reasons = ${sql.jsonb(reasons)}, updated_at = now()
      WHERE id = ${task.id}`);
    ctx.logger.info('batch input uploaded', {
      task_id: String(task.id),
      input_file_id: file.id,
      lines: requests.length,
      images_from_earlier_attempts: reused,
    });
    return { inputFileId: file.id, reasons };
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

function describeReasons(reasons: Record<string, string>): string {
  return Object.entries(reasons)
    .map(([share, reason]) => `share ${share}: ${reason}`)
    .join('; ');
}

/** Builds one request line per usable share. A share that cannot be used gets a reason instead. */
async function prepareRequests(task: BatchTask, deps: Deps, ctx: RunContext, folder: string) {
  const rows = await ctx.pool.any(sql.type(
    z.object({ id: z.bigint(), auth_ticket: z.string(), lookup_hash: z.string() }),
  )`
    SELECT id, auth_ticket, lookup_hash FROM share_infos WHERE id = ANY(${sql.array(task.shareIds, 'int8')})`);
  const byId = new Map(rows.map((row) => [row.id, row]));
  const uploaded = deps.images === 's3' ? await readLiveUploads(task, ctx) : new Map<bigint, string>();
  const reasons: Record<string, string> = {};
  const requests: ChatBatchRequest[] = [];
  await mapWithConcurrency(task.shareIds, SHARE_CONCURRENCY, async (shareId) => {
    const share = byId.get(shareId);
    if (share === undefined) {
      reasons[String(shareId)] = 'share not found';
      return;
    }
    try {
      const key = uploaded.get(shareId);
      const content =
        key === undefined
          ? await shareContent(task, share, deps, ctx, folder)
          : await uploadedImage(task, share, key, deps, ctx);
      requests.push({
        customId: `task-${task.id}-share-${shareId}`,
        model: task.model,
        ...(task.systemPrompt === undefined ? {} : { instructions: task.systemPrompt }),
        text: content.kind === 'text' ? `${task.prompt}\n\n${content.name}:\n${content.text}` : task.prompt,
        ...(content.kind === 'image' ? { images: [{ url: content.url }] } : {}),
      });
    } catch (error) {
      if (!(error instanceof PermanentError)) {
        throw error;
      }
      reasons[String(shareId)] = errorMessage(error);
    }
  });
  requests.sort((a, b) => a.customId.localeCompare(b.customId));
  return { requests, reasons, reused: uploaded.size };
}

/**
 * Returns the S3 keys, by share id, of the images an earlier attempt of the task uploaded. A row
 * exists only once its upload completed. Presigning pushes the row's delete_after out within this
 * run, which lasts minutes, so an hour left before it keeps delete-openai-files away meanwhile.
 */
async function readLiveUploads(task: BatchTask, ctx: RunContext): Promise<Map<bigint, string>> {
  const rows = await ctx.pool.any(sql.type(z.object({ share_info_id: z.bigint(), s3_key: z.string() }))`
    SELECT share_info_id, s3_key FROM batch_image_uploads
    WHERE task_id = ${task.id} AND deleted_at IS NULL AND delete_after > now() + interval '1 hour'`);
  return new Map(rows.map((row) => [row.share_info_id, row.s3_key]));
}

/**
 * Presigns an image an earlier attempt uploaded, once its ticket still decodes and has not
 * expired, so a share whose link expired meanwhile gets its reason as before.
 */
async function uploadedImage(
  task: BatchTask,
  share: { id: bigint; auth_ticket: string },
  key: string,
  deps: Deps,
  ctx: RunContext,
): Promise<ShareContent> {
  decodeShareTicket(share.auth_ticket);
  ctx.logger.debug('image uploaded by an earlier attempt presigned again', {
    task_id: String(task.id),
    key,
  });
  return { kind: 'image', url: await presignImage(task, share.id, key, deps, ctx) };
}

type ShareContent = { kind: 'text'; name: string; text: string } | { kind: 'image'; url: string };

/** Downloads one share and turns it into embedded text or an image URL. */
async function shareContent(
  task: BatchTask,
  share: { id: bigint; auth_ticket: string; lookup_hash: string },
  deps: Deps,
  ctx: RunContext,
  folder: string,
): Promise<ShareContent> {
  const ticket = decodeShareTicket(share.auth_ticket);
  const allocation = await fetchAllocationBlobbers(deps.sharders, ticket.allocationId);
  const file = await downloadShare({
    ticket,
    lookupHash: share.lookup_hash,
    allocation,
    blobbers: allocation.blobbers,
    fetch: deps.fetch,
    operator: {
      clientId: deps.operator.clientId,
      publicKey: deps.operator.publicKey,
      scheme: deps.operator.scheme,
    },
    tempDir: folder,
    logger: ctx.logger,
  });
  try {
    return await useDownloadedFile(task, share.id, file, deps, ctx);
  } finally {
    await rm(file.path, { force: true });
  }
}

/** Turns a downloaded file into embedded text or an image URL. */
async function useDownloadedFile(
  task: BatchTask,
  shareId: bigint,
  file: { path: string; name: string; sizeBytes: number },
  deps: Deps,
  ctx: RunContext,
): Promise<ShareContent> {
  const kind = await sniffType(file.path);
  if (kind === 'text') {
    if (file.sizeBytes > MAX_TEXT_BYTES) {
      throw new PermanentError(
        `text file of ${file.sizeBytes} bytes is above the ${MAX_TEXT_BYTES}-byte limit`,
      );
    }
    const bytes = await readFile(file.path);
    try {
      return { kind: 'text', name: file.name, text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
    } catch {
      throw new PermanentError(`${file.name} is neither a supported image nor valid UTF-8 text`);
    }
  }
  if (kind === 'animated-gif') {
    throw new PermanentError(`${file.name} is an animated GIF, which OpenAI does not accept`);
  }
  if (file.sizeBytes > MAX_IMAGE_BYTES) {
    throw new PermanentError(
      `image of ${file.sizeBytes} bytes is above OpenAI's ${MAX_IMAGE_BYTES}-byte limit`,
    );
  }
  const mime = `image/${kind}`;
  if (deps.images === 'inline') {
    return { kind: 'image', url: `data:${mime};base64,${(await readFile(file.path)).toString('base64')}` };
  }
  const s3 = await deps.s3();
  const key = `batch-images/task-${task.id}/share-${shareId}`;
  await s3.uploadStream(key, createReadStream(file.path), mime);
  return { kind: 'image', url: await presignImage(task, shareId, key, deps, ctx) };
}

/** Presigns an uploaded image and records when delete-openai-files may remove it. */
async function presignImage(task: BatchTask, shareId: bigint, key: string, deps: Deps, ctx: RunContext) {
  const s3 = await deps.s3();
  const url = await s3.presignGet(key, deps.urlLifetimeSeconds);
  if (url.capped) {
    ctx.logger.warn('presigned image URL shortened', {
      task_id: String(task.id),
      key,
      reason: url.cappedBy,
      expires_at: url.expiresAt.toISOString(),
    });
  }
  await ctx.pool.query(sql.unsafe`
    INSERT INTO batch_image_uploads (task_id, share_info_id, s3_key, delete_after)
    VALUES (${task.id}, ${shareId}, ${key}, ${url.expiresAt.toISOString()}::timestamptz + interval '1 hour')
    ON CONFLICT (s3_key) DO UPDATE SET delete_after = EXCLUDED.delete_after, deleted_at = NULL`);
  return url.url;
}

/** Recognises the image types OpenAI accepts by their first bytes; anything else is treated as text. */
async function sniffType(path: string): Promise<'png' | 'jpeg' | 'webp' | 'gif' | 'animated-gif' | 'text'> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(16);
    await handle.read(head, 0, 16, 0);
    if (head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
      return 'png';
    }
    if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) {
      return 'jpeg';
    }
    if (head.toString('latin1', 0, 4) === 'RIFF' && head.toString('latin1', 8, 12) === 'WEBP') {
      return 'webp';
    }
    if (head.toString('latin1', 0, 4) === 'GIF8') {
      const whole = await readFile(path);
      // An animated GIF carries the NETSCAPE2.0 looping extension or more than one image.
      return whole.includes('NETSCAPE2.0') ? 'animated-gif' : 'gif';
    }
    return 'text';
  } finally {
    await handle.close();
  }
}

/** Adopts a batch already created from this input file (a crash or a lost response), else creates it; stores its id at once. */
async function adoptOrCreateBatch(
  task: BatchTask,
  inputFileId: string,
  deps: Deps,
  ctx: RunContext,
): Promise<string> {
  const existing = await findBatchByInputFile(deps.openai, inputFileId);
  const batch =
    existing ??
    (await createBatch(deps.openai, {
      inputFileId,
      endpoint: task.endpoint,
      metadata: { zbox_task_id: String(task.id) },
    }));
  await ctx.pool.query(sql.unsafe`
    UPDATE openai_batch_tasks SET batch_id = ${batch.id}, updated_at = now() WHERE id = ${task.id}`);
  ctx.logger.info(existing === undefined ? 'batch created' : 'existing batch adopted', {
    task_id: String(task.id),
    batch_id: batch.id,
    input_file_id: inputFileId,
  });
  return batch.id;
}
