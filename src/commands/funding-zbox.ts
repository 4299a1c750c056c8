import { type DatabaseTransactionConnection, sql } from 'slonik';
import { z } from 'zod';
import { requireVariable } from '../core/config.js';
import type { RunContext } from '../core/engine/context.js';
import { type QueueWorker, runQueueCycle } from '../core/engine/cycle.js';
import type { Row } from '../core/engine/queue-sql.js';
import type { WorkerSpec } from '../core/engine/runtime.js';
import { PermanentError, TransientError } from '../core/errors.js';
import { openPushSender, type PushSender } from '../core/notify/push.js';
import { formatZcn } from '../core/zus/amounts.js';
import { payOnce } from '../core/zus/payments.js';
import { openTeamWallet, type TeamWallet } from '../core/zus/team-wallet.js';
import { sendData, TXN_TYPE_SEND } from '../core/zus/transaction.js';

/**
 * funding-zbox: sends tokens from the team wallet to users for pending funding tasks, then
 * notifies them through Firebase Cloud Messaging. The transfer is effectively once: its signed
 * transaction and reserved spending row are stored before sending, and a retry settles that
 * same transaction. The push is a separate step with its own state on the task, so its failure
 * never undoes or repeats the transfer. A failed push is retried a bounded number of times on
 * later runs.
 */

interface FundingTask {
  id: bigint;
  userId: string;
  recipientClientId: string;
  amountSas: bigint;
  txSuccess: boolean;
  notifyState: 'pending' | 'sent' | 'failed' | 'skipped';
  notifyAttempts: number;
}

interface FundingResult {
  notifyState: FundingTask['notifyState'];
  notifyAttempts: number;
  notifyError: string | undefined;
}

export interface FundingZboxOptions {
  /** Builds the push sender; by default from the environment (firebase-admin). Tests pass one for the FCM fake. */
  openPush?: (ctx: RunContext) => Promise<PushSender>;
}

export function fundingZbox(options: FundingZboxOptions = {}): WorkerSpec {
  return {
    name: 'funding-zbox',
    singleton: false,
    body: (ctx) => {
      if (options.openPush === undefined) {
        // Checked before any transfer, so a missing credential is a configuration error (exit 2).
        requireVariable(ctx.env, 'ZBOX_FIREBASE_CREDENTIALS');
      }
      return run(ctx, options.openPush ?? openPushSender);
    },
  };
}

async function run(ctx: RunContext, openPush: (ctx: RunContext) => Promise<PushSender>): Promise<void> {
  const teamWallet = await openTeamWallet(ctx);
  const notifyMaxAttempts = requireVariable(ctx.env, 'ZBOX_NOTIFY_MAX_ATTEMPTS');
  let push: Promise<PushSender> | undefined;
  try {
    await runQueueCycle(
      fundingWorker(teamWallet, notifyMaxAttempts, () => {
        push ??= openPush(ctx);
        return push;
      }),
      ctx,
    );
  } finally {
    await (await push)?.close();
  }
}

function fundingWorker(
  teamWallet: TeamWallet,
  notifyMaxAttempts: number,
  pushSender: () => Promise<PushSender>,
): QueueWorker<FundingTask, FundingResult> {
  return {
    name: 'funding-zbox',
    table: 'funding_tasks',
    parseTask,
    dependencyOf: () => 'chain',

    execute: async (task, ctx) => {
      validate(task, teamWallet);
      if (!task.txSuccess) {
        await transfer(task, teamWallet);
      }
      return notify(task, ctx, notifyMaxAttempts, pushSender);
    },

    recordSuccess: async (tx, task, result) => {
      await tx.query(sql.unsafe`
        UPDATE funding_tasks SET notify_state = ${result.notifyState}, notify_attempts = ${result.notifyAttempts},
          notify_last_error = ${result.notifyError ?? null}
        WHERE id = ${task.id}`);
    },

    describe: async (task) => ({
      action: task.txSuccess
        ? `notify user ${task.userId}: ${pushText(task.amountSas)}`
        : `send ${formatZcn(task.amountSas)} ZCN (${task.amountSas} SAS) to ${task.recipientClientId}, then notify user ${task.userId}`,
      fields: {
        amount_sas: task.amountSas,
        amount_zcn: formatZcn(task.amountSas),
        message: pushText(task.amountSas),
      },
    }),
  };
}

const fundingRow = z.object({
  id: z.bigint(),
  user_id: z.string().min(1),
  recipient_client_id: z.string(),
  amount_sas: z.bigint(),
  tx_success: z.boolean(),
  notify_state: z.enum(['pending', 'sent', 'failed', 'skipped']),
  notify_attempts: z.number(),
});

function parseTask(row: Row): FundingTask {
  const parsed = fundingRow.parse(row);
  return {
    id: parsed.id,
    userId: parsed.user_id,
    recipientClientId: parsed.recipient_client_id,
    amountSas: parsed.amount_sas,
    txSuccess: parsed.tx_success,
    notifyState: parsed.notify_state,
    notifyAttempts: parsed.notify_attempts,
  };
}

/** Rejects input the platform must fix: a bad recipient, a non-positive amount, one above the cap. */
function validate(task: FundingTask, teamWallet: TeamWallet): void {
  if (!/^[0-9a-f]{64}$/.test(task.recipientClientId)) {
    throw new PermanentError(
      `recipient_client_id "${task.recipientClientId}" is not a client id (64 lowercase hexadecimal characters)`,
    );
  }
  if (task.recipientClientId === teamWallet.wallet.clientId) {
    throw new PermanentError(
      'recipient_client_id is the team wallet itself: the chain rejects a send to oneself',
    );
  }
  if (task.amountSas <= 0n) {
    throw new PermanentError(`amount_sas ${task.amountSas} must be greater than 0`);
  }
  const cap = teamWallet.spending.caps.perTaskSas;
  if (task.amountSas > cap) {
    throw new PermanentError(
      `amount ${formatZcn(task.amountSas)} ZCN is above the per-task cap of ${formatZcn(cap)} ZCN (ZBOX_MAX_LOCK_PER_TASK_ZCN)`,
    );
  }
}

async function transfer(task: FundingTask, teamWallet: TeamWallet): Promise<void> {
  const result = await payOnce(teamWallet, {
    holder: `funding:${task.id}`,
    purpose: 'funding',
    toClientId: task.recipientClientId,
    valueSas: task.amountSas,
    type: TXN_TYPE_SEND,
    data: sendData(`0Box funding ${task.id}`),
    persist: async (tx, prepared) => {
      await tx.query(sql.unsafe`UPDATE funding_tasks SET tx_hash = ${prepared.hash} WHERE id = ${task.id}`);
    },
    onConfirmed: async (tx, confirmed) => markTransferred(tx, task.id, confirmed.hash),
  });
  if (result.kind === 'failed') {
    throw new PermanentError(`the chain rejected the transfer ${result.hash}: ${result.reason}`);
  }
}

async function markTransferred(tx: DatabaseTransactionConnection, id: bigint, hash: string): Promise<void> {
  await tx.query(sql.unsafe`UPDATE funding_tasks SET tx_success = true, tx_hash = ${hash} WHERE id = ${id}`);
}

export function pushText(amountSas: bigint): string {
  return `You have received ${formatZcn(amountSas)} free tokens`;
}

/**
 * Pushes the notice to the user's devices and deletes tokens FCM reports as gone. When every
 * device failed with a retryable error, the task is retried later, up to `maxAttempts` pushes.
 */
async function notify(
  task: FundingTask,
  ctx: RunContext,
  maxAttempts: number,
  pushSender: () => Promise<PushSender>,
): Promise<FundingResult> {
  if (task.notifyState !== 'pending') {
    return { notifyState: task.notifyState, notifyAttempts: task.notifyAttempts, notifyError: undefined };
  }
  const tokens = await ctx.pool.anyFirst(sql.type(z.object({ fcm_token: z.string() }))`
    SELECT fcm_token FROM user_devices WHERE user_id = ${task.userId} ORDER BY id`);
  if (tokens.length === 0) {
    return {
      notifyState: 'skipped',
      notifyAttempts: task.notifyAttempts,
      notifyError: 'the user has no device',
    };
  }
  const sender = await pushSender();
  const results = await sender.send([...tokens], {
    title: '0Box',
    body: pushText(task.amountSas),
    data: { type: 'funding', funding_id: String(task.id), amount_sas: String(task.amountSas) },
  });
  const stale = results.filter((result) => result.outcome === 'prune').map((result) => result.token);
  if (stale.length > 0) {
    await ctx.pool.query(
      sql.unsafe`DELETE FROM user_devices WHERE fcm_token = ANY(${sql.array(stale, 'text')})`,
    );
    ctx.logger.info('stale push tokens pruned', { task_id: String(task.id), count: stale.length });
  }
  const attempts = task.notifyAttempts + 1;
  if (results.some((result) => result.outcome === 'sent')) {
    return { notifyState: 'sent', notifyAttempts: attempts, notifyError: undefined };
  }
  const retry = results.find((result) => result.outcome === 'retry');
  if (retry !== undefined && attempts < maxAttempts) {
    await ctx.pool.query(
      sql.unsafe`UPDATE funding_tasks SET notify_attempts = ${attempts} WHERE id = ${task.id}`,
    );
    throw new TransientError(`push not delivered (${retry.code ?? 'retryable'}): ${retry.reason ?? ''}`, {
      dependency: 'fcm',
    });
  }
  const reason = results.map((result) => `${result.code ?? result.outcome}`).join(', ');
  return {
    notifyState: 'failed',
    notifyAttempts: attempts,
    notifyError: `push failed on every device: ${reason}`,
  };
}
