import { type DatabaseTransactionConnection, sql } from 'slonik';
import { z } from 'zod';
import { mapWithConcurrency } from '../core/concurrency.js';
import { requireVariable } from '../core/config.js';
import type { RunContext } from '../core/engine/context.js';
import type { Outcome, QueueWorker } from '../core/engine/cycle.js';
import { outcomeOfError, runQueueCycle } from '../core/engine/cycle.js';
import type { Row } from '../core/engine/queue-sql.js';
import type { WorkerSpec } from '../core/engine/runtime.js';
import { createDocuments, createElasticsearchClient } from '../core/notify/elasticsearch.js';
import { type AllocationInfo, fetchAllocation } from '../core/zus/allocations.js';
import { connectSharders } from '../core/zus/connect.js';
import type { ShardersClient } from '../core/zus/sharders.js';

/**
 * expiring-allocations: for each notice window (ZBOX_EXPIRY_WINDOWS_DAYS) finds allocations
 * expiring within it that are not finalized or canceled, and queues one notice per (allocation,
 * expiry instant, tightest window). Per batch of notices it re-reads each allocation's expiry
 * from the sharders (a user can extend it outside the platform), then writes the documents to
 * Elasticsearch in one bulk request with deterministic ids and create-only semantics, so a
 * repeated write returns 409 and counts as already sent. It records each notice's outcome.
 */

interface Notice {
  id: bigint;
  allocationId: string;
  expiresAt: Date;
  windowDays: number;
  documentId: string;
  userId: string;
}

interface NoticeResult {
  outcome: 'created' | 'already_sent' | 'superseded' | 'expired' | 'closed';
  chain: AllocationInfo;
}

/** Notices written by one bulk request. */
const BULK_SIZE = 200;
/** Sharder reads in flight within one batch. */
const CHAIN_READS_IN_FLIGHT = 8;

export function expiringAllocations(): WorkerSpec {
  return { name: 'expiring-allocations', singleton: false, body: run };
}

async function run(ctx: RunContext): Promise<void> {
  const windows = requireVariable(ctx.env, 'ZBOX_EXPIRY_WINDOWS_DAYS');
  const index = requireVariable(ctx.env, 'ZBOX_EXPIRY_INDEX');
  // Connected at the first batch: a cycle with nothing due reads nothing from the chain (with
  // ZUS_BLOCK_WORKER alone, connecting means a request for the network's sharders).
  let connecting: Promise<ShardersClient> | undefined;
  const sharders = () => {
    connecting ??= connectSharders(ctx.env, ctx.logger).catch((error: unknown) => {
      connecting = undefined;
      throw error;
    });
    return connecting;
  };
  const elasticsearch = createElasticsearchClient({
    node: requireVariable(ctx.env, 'ELASTICSEARCH_URL'),
    apiKey: ctx.env.ELASTICSEARCH_API_KEY || undefined,
    requestTimeoutMs: requireVariable(ctx.env, 'ZUS_TIMEOUT_MS'),
  });
  try {
    await runQueueCycle(noticeWorker(windows, index, sharders, elasticsearch), ctx);
  } finally {
    await elasticsearch.close();
    (await connecting?.catch(() => undefined))?.close();
  }
}

function noticeWorker(
  windows: number[],
  index: string,
  sharders: () => Promise<ShardersClient>,
  elasticsearch: ReturnType<typeof createElasticsearchClient>,
): QueueWorker<Notice, NoticeResult> {
  return {
    name: 'expiring-allocations',
    table: 'allocation_expiry_notices',
    batchSize: BULK_SIZE,
    parseTask: parseNotice,
    dependencyOf: () => 'elasticsearch',

    produce: async (ctx) => {
      const queued = await queueDueNotices(ctx, windows);
      ctx.details.notices_queued = queued;
    },

    executeBatch: async (notices, ctx) => {
      const fresh = await rereadAllocations(notices, await sharders());
      const outcomes = new Map<bigint, Outcome<NoticeResult>>();
      const toSend: Array<{ notice: Notice; chain: AllocationInfo }> = [];
      for (const notice of notices) {
        const read = fresh.get(notice.id) as { chain: AllocationInfo } | { error: unknown };
        if ('error' in read) {
          outcomes.set(notice.id, outcomeOfError(read.error));
          continue;
        }
        const skip = skipReason(notice, read.chain, windows);
        if (skip !== undefined) {
          outcomes.set(notice.id, { kind: 'succeeded', result: { outcome: skip, chain: read.chain } });
          continue;
        }
        toSend.push({ notice, chain: read.chain });
      }
      await sendNotices(toSend, index, elasticsearch, outcomes, ctx);
      return outcomes;
    },

    recordSuccessMany: recordNotices,

    describe: async (notice) => ({
      action: `notify user ${notice.userId}: ${expiryMessage(daysLeft(notice.expiresAt, new Date()))}`,
      fields: {
        allocation_id: notice.allocationId,
        window_days: notice.windowDays,
        document_id: notice.documentId,
      },
    }),

    preview: async (ctx) => {
      for (const candidate of await findDueNotices(ctx, windows)) {
        ctx.plan.push({
          task: `allocation ${candidate.allocation_id}`,
          action: `queue and send the ${candidate.window_days}-day notice to user ${candidate.user_id}: ${expiryMessage(daysLeft(candidate.expires_at, new Date()))}`,
          fields: { expires_at: candidate.expires_at, document_id: candidate.document_id },
        });
      }
    },
  };
}

const noticeRow = z.object({
  id: z.bigint(),
  allocation_id: z.string().min(1),
  expires_at: z.date(),
  window_days: z.number().int().positive(),
  document_id: z.string().min(1),
  user_id: z.string().min(1, 'the allocation has no user id'),
});

function parseNotice(row: Row): Notice {
  const parsed = noticeRow.parse(row);
  return {
    id: parsed.id,
    allocationId: parsed.allocation_id,
    expiresAt: parsed.expires_at,
    windowDays: parsed.window_days,
    documentId: parsed.document_id,
    userId: parsed.user_id,
  };
}

/** Tightest window covering an expiry: an allocation expiring in 20 hours gets the 1-day notice only. */
const candidateSql = (windows: number[]) => sql.fragment`
  SELECT a.id AS allocation_id, a.user_id, a.expires_at,
         (SELECT min(w) FROM unnest(${sql.array(windows, 'int4')}) AS w
          WHERE a.expires_at <= now() + make_interval(days => w)) AS window_days
  FROM allocations a
  WHERE NOT a.finalized AND NOT a.canceled
    AND a.expires_at > now()
    AND a.expires_at <= now() + make_interval(days => ${Math.max(...windows)})`;

const documentIdSql = sql.fragment`
  'expiry-' || c.allocation_id || '-' || extract(epoch FROM c.expires_at)::bigint || '-' || c.window_days || 'd'`;

/**
 * Inserts the notices now due, one per (allocation, expiry, tightest window), skipping those
 * already queued or sent. Then it marks pending notices of a wider window for the same expiry
 * as superseded, so only the tightest window is sent.
 */
async function queueDueNotices(ctx: RunContext, windows: number[]): Promise<number> {
  return ctx.pool.transaction(async (tx) => {
    const inserted = await tx.query(sql.unsafe`
      INSERT INTO allocation_expiry_notices (allocation_id, user_id, expires_at, window_days, document_id)
      SELECT c.allocation_id, c.user_id, c.expires_at, c.window_days, ${documentIdSql}
      FROM (${candidateSql(windows)}) AS c
      ON CONFLICT DO NOTHING`);
    await tx.query(sql.unsafe`
      UPDATE allocation_expiry_notices AS n
      SET status = 'succeeded', outcome = 'superseded', completed_at = now(), updated_at = now()
      WHERE n.status = 'pending'
        AND EXISTS (SELECT 1 FROM allocation_expiry_notices AS m
                    WHERE m.allocation_id = n.allocation_id AND m.expires_at = n.expires_at
                      AND m.window_days < n.window_days)`);
    return inserted.rowCount;
  });
}

const candidateRow = z.object({
  allocation_id: z.string(),
  user_id: z.string(),
  expires_at: z.date(),
  window_days: z.number(),
  document_id: z.string(),
});

/** Notices a run would queue now, without writing anything (for --dry-run). */
async function findDueNotices(ctx: RunContext, windows: number[]) {
  const rows = await ctx.pool.any(sql.unsafe`
    SELECT c.*, ${documentIdSql} AS document_id
    FROM (${candidateSql(windows)}) AS c
    WHERE NOT EXISTS (SELECT 1 FROM allocation_expiry_notices AS n
                      WHERE n.allocation_id = c.allocation_id AND n.expires_at = c.expires_at
                        AND n.window_days = c.window_days)
    ORDER BY c.expires_at LIMIT ${ctx.limit}`);
  return rows.map((row) => candidateRow.parse(row));
}

async function rereadAllocations(notices: Notice[], sharders: ShardersClient) {
  const results = await mapWithConcurrency(notices, CHAIN_READS_IN_FLIGHT, async (notice) => {
    try {
      return { chain: await fetchAllocation(sharders, notice.allocationId) };
    } catch (error) {
      return { error };
    }
  });
  return new Map(notices.map((notice, i) => [notice.id, results[i]]));
}

/** Returns why a notice is not sent after the chain was re-read, or undefined to send it. */
function skipReason(
  notice: Notice,
  chain: AllocationInfo,
  windows: number[],
): NoticeResult['outcome'] | undefined {
  if (chain.finalized || chain.canceled) {
    return 'closed';
  }
  if (chain.expiresAt.getTime() !== notice.expiresAt.getTime()) {
    return 'superseded';
  }
  const remainingMs = chain.expiresAt.getTime() - Date.now();
  if (remainingMs <= 0) {
    return 'expired';
  }
  const tightest = windows.find((days) => remainingMs <= days * 86_400_000);
  return tightest !== undefined && tightest < notice.windowDays ? 'superseded' : undefined;
}

async function sendNotices(
  items: Array<{ notice: Notice; chain: AllocationInfo }>,
  index: string,
  elasticsearch: ReturnType<typeof createElasticsearchClient>,
  outcomes: Map<bigint, Outcome<NoticeResult>>,
  ctx: RunContext,
): Promise<void> {
  if (items.length === 0) {
    return;
  }
  const now = new Date();
  const written = await createDocuments(
    elasticsearch,
    index,
    items.map(({ notice }) => ({ id: notice.documentId, document: noticeDocument(notice, now) })),
  );
  for (const { notice, chain } of items) {
    const item = written.get(notice.documentId);
    if (item === undefined || item.outcome === 'retry') {
      outcomes.set(notice.id, {
        kind: 'retry',
        error: `Elasticsearch did not write the notice: ${item?.reason ?? 'no item in the bulk answer'}`,
        dependency: 'elasticsearch',
      });
    } else if (item.outcome === 'rejected') {
      outcomes.set(notice.id, { kind: 'dead', reason: `Elasticsearch rejected the notice: ${item.reason}` });
    } else {
      const outcome = item.outcome === 'created' ? 'created' : 'already_sent';
      ctx.logger.child({ task_id: String(notice.id) }).info('notice written', {
        allocation_id: notice.allocationId,
        document_id: notice.documentId,
        outcome,
      });
      outcomes.set(notice.id, { kind: 'succeeded', result: { outcome, chain } });
    }
  }
}

/** Builds the Elasticsearch document of one notice; the platform's notification service reads these fields. */
export function noticeDocument(notice: Notice, now: Date) {
  const days = daysLeft(notice.expiresAt, now);
  return {
    type: 'allocation_expiring',
    user_id: notice.userId,
    allocation_id: notice.allocationId,
    days_left: days,
    window_days: notice.windowDays,
    expires_at: notice.expiresAt.toISOString(),
    message: expiryMessage(days),
    created_at: now.toISOString(),
  };
}

/** Remaining time rounded up to whole days (20 hours left is 1 day). */
export function daysLeft(expiresAt: Date, now: Date): number {
  return Math.max(1, Math.ceil((expiresAt.getTime() - now.getTime()) / 86_400_000));
}

export function expiryMessage(days: number): string {
  return days === 1 ? 'Your allocation expires in 1 day' : `Your allocation expires in ${days} days`;
}

/** Records the outcomes of a batch of notices and the allocations' state as the chain reports it. */
async function recordNotices(
  tx: DatabaseTransactionConnection,
  succeeded: Array<{ task: Notice; result: NoticeResult }>,
): Promise<void> {
  if (succeeded.length === 0) {
    return;
  }
  await recordOutcomes(tx, succeeded);
  await storeChainStates(tx, succeeded);
}

/** Sets each notice's outcome, and sent_at for the notices whose document exists. */
async function recordOutcomes(
  tx: DatabaseTransactionConnection,
  succeeded: Array<{ task: Notice; result: NoticeResult }>,
): Promise<void> {
  const noticeIds = succeeded.map(({ task }) => String(task.id));
  const outcomes = succeeded.map(({ result }) => result.outcome);
  await tx.query(sql.unsafe`
    UPDATE allocation_expiry_notices AS n
    SET outcome = u.outcome,
        sent_at = CASE WHEN u.outcome IN ('created', 'already_sent') THEN now() END
    FROM unnest(${sql.array(noticeIds, 'int8')}, ${sql.array(outcomes, 'text')}) AS u(id, outcome)
    WHERE n.id = u.id`);
}

/**
 * Stores the chain's expiry and flags on the allocations whose stored state differs. When one
 * allocation has several notices in the batch, the chain state read for the last of them wins.
 * The rows are passed in id order, so that concurrent runs tend to lock shared rows in one order.
 */
async function storeChainStates(
  tx: DatabaseTransactionConnection,
  succeeded: Array<{ task: Notice; result: NoticeResult }>,
): Promise<void> {
  const chainById = new Map(succeeded.map(({ task, result }) => [task.allocationId, result.chain]));
  const ids = [...chainById.keys()].sort();
  const chains = ids.map((id) => chainById.get(id) as AllocationInfo);
  const expiries = chains.map((chain) => chain.expiresAt.toISOString());
  const finalized = chains.map((chain) => chain.finalized);
  const canceled = chains.map((chain) => chain.canceled);
  await tx.query(sql.unsafe`
    UPDATE allocations AS a
    SET expires_at = u.expires_at, finalized = u.finalized, canceled = u.canceled, updated_at = now()
    FROM unnest(
      ${sql.array(ids, 'text')}, ${sql.array(expiries, 'timestamptz')},
      ${sql.array(finalized, 'bool')}, ${sql.array(canceled, 'bool')}
    ) AS u(id, expires_at, finalized, canceled)
    WHERE a.id = u.id
      AND (a.expires_at IS DISTINCT FROM u.expires_at
           OR a.finalized <> u.finalized OR a.canceled <> u.canceled)`);
}
