import { sql } from 'slonik';
import { z } from 'zod';
import { mapWithConcurrency } from '../core/concurrency.js';
import { requireVariable } from '../core/config.js';
import type { RunContext } from '../core/engine/context.js';
import type { WorkerSpec } from '../core/engine/runtime.js';
import { errorMessage } from '../core/errors.js';
import {
  deleteFile,
  type FileObject,
  listActiveBatchInputs,
  listFiles,
  type OpenAIClient,
  OpenAIRateLimitError,
} from '../core/openai/client.js';
import { connectOpenAI, connectS3 } from '../core/openai/connect.js';

/**
 * delete-openai-files (singleton): deletes OpenAI files older than ZBOX_OPENAI_FILE_MAX_AGE_HOURS
 * whose purpose is not protected (ZBOX_OPENAI_PROTECTED_PURPOSES, default `batch`), never one a
 * batch still running references, whatever its purpose. It then deletes the S3 batch images past
 * their delete-after time, at most 1,000 keys per request. A 404 on a file counts as done.
 */

/** Files listed per request; the API's own default is 10,000. */
const FILES_PER_PAGE = 100;
/** File deletions in flight at once. */
const DELETE_CONCURRENCY = 4;
/** Times one deletion is retried after a 429, each after the server's retry-after (at most 60 s). */
const RATE_LIMIT_RETRIES = 3;

export function deleteOpenAIFiles(): WorkerSpec {
  return { name: 'delete-openai-files', singleton: true, body: run };
}

async function run(ctx: RunContext): Promise<void> {
  const maxAgeSeconds = requireVariable(ctx.env, 'ZBOX_OPENAI_FILE_MAX_AGE_HOURS') * 3600;
  const protectedPurposes = new Set(requireVariable(ctx.env, 'ZBOX_OPENAI_PROTECTED_PURPOSES'));
  const client = await connectOpenAI(ctx.env, ctx.logger);

  const active = await listActiveBatchInputs(client);
  const nowSeconds = Math.floor(Date.now() / 1000);
  const due: FileObject[] = [];
  const kept: Record<string, number> = {};
  for await (const file of listFiles(client, { limit: FILES_PER_PAGE })) {
    const reason = keepReason(file, nowSeconds - maxAgeSeconds, protectedPurposes, active);
    if (reason === undefined) {
      due.push(file);
    } else {
      kept[reason] = (kept[reason] ?? 0) + 1;
    }
  }
  ctx.details.files_kept = kept;
  ctx.details[ctx.dryRun ? 'files_would_delete' : 'files_deleted'] = countByPurpose(due);

  if (ctx.dryRun) {
    for (const [purpose, count] of Object.entries(countByPurpose(due))) {
      ctx.plan.push({
        task: `purpose ${purpose}`,
        action: `delete ${count} OpenAI file(s) older than ${maxAgeSeconds / 3600} h`,
      });
    }
  } else {
    await deleteFiles(ctx, client, due);
  }
  await deleteExpiredImages(ctx);
}

/** Returns why a file is kept, or undefined when it is deleted. */
function keepReason(
  file: FileObject,
  cutoffSeconds: number,
  protectedPurposes: Set<string>,
  active: Set<string>,
) {
  if (active.has(file.id)) {
    return 'used by a running batch';
  }
  if (protectedPurposes.has(file.purpose)) {
    return `protected purpose ${file.purpose}`;
  }
  if (file.created_at > cutoffSeconds) {
    return 'not old enough';
  }
  return undefined;
}

function countByPurpose(files: FileObject[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const file of files) {
    counts[file.purpose] = (counts[file.purpose] ?? 0) + 1;
  }
  return counts;
}

async function deleteFiles(ctx: RunContext, client: OpenAIClient, files: FileObject[]): Promise<void> {
  const failures: string[] = [];
  await mapWithConcurrency(files, DELETE_CONCURRENCY, async (file) => {
    for (let retry = 0; ; retry++) {
      try {
        const outcome = await deleteFile(client, file.id);
        ctx.logger.debug('OpenAI file deleted', { file_id: file.id, purpose: file.purpose, outcome });
        return;
      } catch (error) {
        if (error instanceof OpenAIRateLimitError && retry < RATE_LIMIT_RETRIES) {
          const waitSeconds = Math.min(60, error.retryAfterSeconds ?? 1);
          await new Promise((resolve) => setTimeout(resolve, waitSeconds * 1000));
          continue;
        }
        failures.push(`${file.id}: ${errorMessage(error)}`);
        return;
      }
    }
  });
  if (failures.length > 0) {
    ctx.logger.warn('OpenAI files not deleted; a later run tries again', {
      count: failures.length,
      first: failures[0],
    });
    ctx.attention.push(
      `${failures.length} OpenAI file(s) could not be deleted: ${failures.slice(0, 3).join('; ')}`,
    );
  }
}

const uploadRow = z.object({ id: z.bigint(), s3_key: z.string() });

/** Deletes S3 batch images past their delete-after time and marks them; per-key errors are kept for a later run. */
async function deleteExpiredImages(ctx: RunContext): Promise<void> {
  const rows = await ctx.pool.any(sql.type(uploadRow)`
    SELECT id, s3_key FROM batch_image_uploads WHERE deleted_at IS NULL AND delete_after < now() ORDER BY id`);
  ctx.details[ctx.dryRun ? 'images_would_delete' : 'images_deleted'] = rows.length;
  if (rows.length === 0 || ctx.dryRun) {
    return;
  }
  const s3 = await connectS3(ctx.env, ctx.logger);
  try {
    const result = await s3.deleteObjects(rows.map((row) => row.s3_key));
    const failed = new Set(result.errors.map((error) => error.key));
    const deleted = rows.filter((row) => !failed.has(row.s3_key)).map((row) => row.id);
    if (deleted.length > 0) {
      await ctx.pool.query(sql.unsafe`
        UPDATE batch_image_uploads SET deleted_at = now() WHERE id = ANY(${sql.array(deleted, 'int8')})`);
    }
    ctx.details.images_deleted = deleted.length;
    if (result.errors.length > 0) {
      const permanent = result.errors.filter((error) => !error.transient);
      ctx.logger.warn('S3 images not deleted; a later run tries again', {
        count: result.errors.length,
        first: `${result.errors[0]?.key}: ${result.errors[0]?.code}`,
      });
      if (permanent.length > 0) {
        ctx.attention.push(
          `${permanent.length} S3 image(s) could not be deleted: ${permanent[0]?.key} ${permanent[0]?.code}`,
        );
      }
    }
  } finally {
    s3.close();
  }
}
