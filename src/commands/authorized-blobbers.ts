import { z } from 'zod';
import { requestAuthTicket } from '../core/blobber/auth-ticket.js';
import { readTicketSettings, type TicketSettings, ticketRoundFor } from '../core/blobber/ticket-rounds.js';
import { createGuardedFetch, type GuardedFetch } from '../core/blobber/url-guard.js';
import { requireVariable } from '../core/config.js';
import {
  clearBlobberCooldown,
  readActiveCooldowns,
  recordBlobberFailure,
} from '../core/db/queries/blobber-cooldowns.js';
import {
  armTicketsOfBlobber,
  blobbersToRefresh,
  deferTicketsOfBlobber,
  markTicketsNotNeeded,
  skipTicketsOfBlobber,
  storeTicket,
} from '../core/db/queries/blobber-tickets.js';
import type { RunContext } from '../core/engine/context.js';
import { type QueueWorker, runQueueCycle } from '../core/engine/cycle.js';
import type { Row } from '../core/engine/queue-sql.js';
import type { WorkerSpec } from '../core/engine/runtime.js';
import { TransientError } from '../core/errors.js';
import { type BlobberInfo, fetchBlobbers, fetchCurrentRound } from '../core/zus/blobbers.js';
import { connectSharders } from '../core/zus/connect.js';
import type { ShardersClient } from '../core/zus/sharders.js';
import { loadWallet, type Wallet } from '../core/zus/wallet.js';

/**
 * authorized-blobbers: obtains auth tickets from restricted and enterprise blobbers for the
 * clients that need them. Before claiming, it refreshes each involved blobber from the chain.
 * Rows of a blobber that is no longer restricted leave the queue. Rows of a killed, shut-down or
 * unavailable one wait with that reason. The rest become due when their ticket is missing or
 * near its round. Per task it requests the ticket with the operator's Zbox-Signature; a failing
 * blobber cools down for all its rows at once (stored, so across runs and pods), and a blobber
 * that rejects our key makes the task dead. It records the ticket and its round.
 */

interface TicketTask {
  id: bigint;
  blobberId: string;
  clientId: string;
  blobberUrl: string;
}

/** Rows of an unusable blobber are looked at again after this long. */
const SKIPPED_BLOBBER_DELAY_SECONDS = 3600;

export function authorizedBlobbers(): WorkerSpec {
  return { name: 'authorized-blobbers', singleton: false, body: run };
}

async function run(ctx: RunContext): Promise<void> {
  const settings = readTicketSettings(ctx.env);
  const allowPrivateAddresses = requireVariable(ctx.env, 'ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES');
  if (allowPrivateAddresses) {
    ctx.logger.warn('blobber URL guard allows loopback and private addresses (tests and local demo only)');
  }
  const operator = await loadWallet(requireVariable(ctx.env, 'ZBOX_OPERATOR_WALLET'), {
    scheme: requireVariable(ctx.env, 'ZUS_SIGNATURE_SCHEME'),
    variable: 'ZBOX_OPERATOR_WALLET',
  });
  const sharders = await connectSharders(ctx.env, ctx.logger);
  const fetch = createGuardedFetch({
    allowPrivateAddresses,
    timeoutMs: requireVariable(ctx.env, 'ZBOX_BLOBBER_TIMEOUT_MS'),
    logger: ctx.logger,
  });
  try {
    const round = settings.roundBound ? await fetchCurrentRound(sharders) : undefined;
    ctx.details.current_round = round;
    await runQueueCycle(ticketWorker({ settings, round, sharders, fetch, operator }), ctx);
  } finally {
    fetch.close();
  }
}

function ticketWorker(deps: {
  settings: TicketSettings;
  round: number | undefined;
  sharders: ShardersClient;
  fetch: GuardedFetch;
  operator: Wallet;
}): QueueWorker<TicketTask, { ticket: string; round: number | undefined }> {
  const { settings, round } = deps;
  // Filled by a dry run's preview only: what the producer step would do with each blobber's rows.
  const previewed = new Map<string, PreviewedBlobber>();
  return {
    name: 'authorized-blobbers',
    table: 'restricted_blobber_tickets',
    parseTask: (row) => parseTask(row, previewed),
    dependencyOf: (task) => task.blobberId,
    // One failure of a blobber stops calls to it for the rest of the run.
    cooldownAfterFailures: 1,

    produce: async (ctx) => {
      const blobbers = await refreshBlobbers(ctx, deps.sharders, round, settings.refreshRounds);
      ctx.details.blobbers_refreshed = blobbers.length;
    },

    execute: async (task, ctx) => {
      const ticketRound =
        round === undefined ? undefined : await ticketRoundFor(ctx.pool, task.clientId, round, settings);
      try {
        const ticket = await requestAuthTicket({
          fetch: deps.fetch,
          blobberUrl: task.blobberUrl,
          blobberId: task.blobberId,
          clientId: task.clientId,
          ...(ticketRound === undefined ? {} : { round: ticketRound }),
          operator: deps.operator,
          logger: ctx.logger,
        });
        await clearBlobberCooldown(ctx.pool, task.blobberId);
        return { ticket, round: ticketRound };
      } catch (error) {
        if (error instanceof TransientError) {
          // This task waits for the blobber's cooldown like the blobber's other rows.
          const until = await coolDownBlobber(ctx, task.blobberId, error.message);
          throw new TransientError(error.message, {
            dependency: task.blobberId,
            retryAfterSeconds: Math.max(0, Math.ceil((until.getTime() - Date.now()) / 1000)),
            cause: error,
          });
        }
        throw error;
      }
    },

    recordSuccess: async (tx, task, result) => {
      await storeTicket(tx, task.id, result.ticket, result.round);
    },

    // The real run refreshes a blobber before it claims, so a row of a blobber the preview read
    // is described by what the refresh does to it.
    describe: async (task, ctx) => {
      const fields = { blobber_id: task.blobberId, client_id: task.clientId };
      const blobber = previewed.get(task.blobberId);
      if (blobber !== undefined && blobber.plan.kind !== 'request') {
        return { action: describeSkip(blobber.plan), fields };
      }
      if (blobber?.cooldownUntil !== undefined) {
        return {
          action: `wait until ${blobber.cooldownUntil.toISOString()}: blobber ${task.blobberId} is cooling down after failures`,
          fields,
        };
      }
      const ticketRound =
        round === undefined ? undefined : await ticketRoundFor(ctx.pool, task.clientId, round, settings);
      const action =
        blobber === undefined
          ? `request a ticket for client ${task.clientId} from blobber ${task.blobberId} at ${task.blobberUrl}`
          : `refresh blobber ${task.blobberId} from the chain, then request a ticket for client ${task.clientId} at ${task.blobberUrl}`;
      return { action, fields: { ...fields, round: ticketRound } };
    },

    // Makes only read-only calls: the blobbers' state from the sharders and the stored cooldowns.
    preview: async (ctx) => {
      const ids = await blobbersToRefresh(ctx.pool, round, settings.refreshRounds);
      const infos = await fetchBlobbers(deps.sharders, ids);
      const cooldowns = await readActiveCooldowns(ctx.pool, ids);
      for (const id of ids) {
        const plan = planOfBlobber(infos.get(id));
        previewed.set(id, { plan, cooldownUntil: cooldowns.get(id)?.cooldown_until });
        if (plan.kind !== 'request') {
          ctx.plan.push({ task: `blobber ${id}`, action: `skip its rows: ${plan.reason}` });
        }
      }
    },
  };
}

/** Action of the producer step on the rows of one blobber, chosen by the blobber's state on the chain. */
type BlobberPlan =
  /** Usable: the rows get the blobber's current URL and become due when they need a ticket. */
  | { kind: 'request'; url: string }
  /** Killed, shut down, not available or not found: the rows wait with the reason. */
  | { kind: 'wait'; reason: string; url: string | undefined }
  /** No longer restricted: the pending rows leave the queue without a ticket. */
  | { kind: 'leave'; reason: string; url: string };

interface PreviewedBlobber {
  plan: BlobberPlan;
  /** End of the blobber's stored cooldown, until which its rows wait. */
  cooldownUntil: Date | undefined;
}

function planOfBlobber(info: BlobberInfo | undefined): BlobberPlan {
  if (info === undefined) {
    return { kind: 'wait', reason: 'blobber not found on chain', url: undefined };
  }
  if (!info.isRestricted && !info.isEnterprise) {
    return { kind: 'leave', reason: 'blobber is no longer restricted: no ticket needed', url: info.url };
  }
  if (info.isKilled) {
    return { kind: 'wait', reason: 'blobber is killed', url: info.url };
  }
  if (info.isShutdown) {
    return { kind: 'wait', reason: 'blobber is shut down', url: info.url };
  }
  if (info.notAvailable) {
    return { kind: 'wait', reason: 'blobber is not available', url: info.url };
  }
  return { kind: 'request', url: info.url };
}

function describeSkip(plan: Exclude<BlobberPlan, { kind: 'request' }>): string {
  return plan.kind === 'leave'
    ? `leave the queue: ${plan.reason}`
    : `wait: ${plan.reason} (looked at again in ${SKIPPED_BLOBBER_DELAY_SECONDS / 60} min)`;
}

const ticketRow = z.object({
  id: z.bigint(),
  blobber_id: z.string(),
  client_id: z.string(),
  blobber_url: z.string({ error: 'the blobber URL is not known yet' }).min(1),
});

/**
 * Turns a row into a task. On a dry run, `previewed` contains the blobbers the real run would refresh
 * before it claims: their rows take the URL from the chain, so a row whose URL is not stored yet
 * is no error there. It is empty on a real run, which claims after the refresh.
 */
function parseTask(row: Row, previewed: ReadonlyMap<string, PreviewedBlobber>): TicketTask {
  const blobber = previewed.get(String(row.blobber_id));
  if (blobber === undefined) {
    return taskOf(ticketRow.parse(row));
  }
  const parsed = previewedTicketRow.parse(row);
  // Empty only for a blobber the chain did not return, whose rows the real run does not claim.
  const blobberUrl = blobber.plan.url ?? parsed.blobber_url ?? '';
  return taskOf({ ...parsed, blobber_url: blobberUrl });
}

const previewedTicketRow = ticketRow.extend({ blobber_url: z.string().nullable() });

function taskOf(parsed: z.infer<typeof ticketRow>): TicketTask {
  return {
    id: parsed.id,
    blobberId: parsed.blobber_id,
    clientId: parsed.client_id,
    blobberUrl: parsed.blobber_url,
  };
}

/**
 * Brings each involved blobber's rows in line with the chain. A usable restricted blobber's rows
 * get its current URL and become due when they need a ticket. Other blobbers' rows are skipped
 * or leave the queue.
 */
async function refreshBlobbers(
  ctx: RunContext,
  sharders: ShardersClient,
  round: number | undefined,
  refreshRounds: number,
) {
  const ids = await blobbersToRefresh(ctx.pool, round, refreshRounds);
  const infos = await fetchBlobbers(sharders, ids);
  const cooldowns = await readActiveCooldowns(ctx.pool, ids);
  for (const id of ids) {
    const plan = planOfBlobber(infos.get(id));
    if (plan.kind === 'leave') {
      const count = await markTicketsNotNeeded(ctx.pool, id, plan.reason);
      logSkip(ctx, id, plan.reason, count);
    } else if (plan.kind === 'wait') {
      const count = await skipTicketsOfBlobber(ctx.pool, id, plan.reason, SKIPPED_BLOBBER_DELAY_SECONDS);
      logSkip(ctx, id, plan.reason, count);
    } else {
      await armTicketsOfBlobber(
        ctx.pool,
        { id, url: plan.url, notBefore: cooldowns.get(id)?.cooldown_until },
        round,
        refreshRounds,
      );
    }
  }
  return ids;
}

function logSkip(ctx: RunContext, blobberId: string, reason: string, rows: number): void {
  if (rows > 0) {
    ctx.logger.info('blobber rows skipped', { blobber_id: blobberId, reason, rows });
  }
}

async function coolDownBlobber(ctx: RunContext, blobberId: string, error: string): Promise<Date> {
  const until = await recordBlobberFailure(ctx.pool, blobberId, error, {
    baseSeconds: ctx.retry.backoffBaseSeconds,
    maxSeconds: ctx.retry.backoffMaxSeconds,
  });
  await deferTicketsOfBlobber(ctx.pool, blobberId, until);
  ctx.logger.warn('blobber cooling down', { blobber_id: blobberId, until: until.toISOString(), error });
  return until;
}
