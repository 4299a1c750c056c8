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
  return {
    name: 'authorized-blobbers',
    table: 'restricted_blobber_tickets',
    parseTask,
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

    describe: async (task, ctx) => {
      const ticketRound =
        round === undefined ? undefined : await ticketRoundFor(ctx.pool, task.clientId, round, settings);
      return {
        action: `request a ticket for client ${task.clientId} from blobber ${task.blobberId} at ${task.blobberUrl}`,
        fields: { blobber_id: task.blobberId, client_id: task.clientId, round: ticketRound },
      };
    },

    preview: async (ctx) => {
      const ids = await blobbersToRefresh(ctx.pool, round, settings.refreshRounds);
      const infos = await fetchBlobbers(deps.sharders, ids);
      for (const id of ids) {
        const reason = skipReason(infos.get(id));
        if (reason !== undefined) {
          ctx.plan.push({ task: `blobber ${id}`, action: `skip its rows: ${reason}` });
        }
      }
    },
  };
}

const ticketRow = z.object({
  id: z.bigint(),
  blobber_id: z.string(),
  client_id: z.string(),
  blobber_url: z.string({ error: 'the blobber URL is not known yet' }).min(1),
});

function parseTask(row: Row): TicketTask {
  const parsed = ticketRow.parse(row);
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
    const info = infos.get(id);
    const reason = skipReason(info);
    if (info !== undefined && !info.isRestricted && !info.isEnterprise) {
      const count = await markTicketsNotNeeded(ctx.pool, id, reason as string);
      logSkip(ctx, id, reason as string, count);
    } else if (reason !== undefined || info === undefined) {
      const count = await skipTicketsOfBlobber(ctx.pool, id, reason as string, SKIPPED_BLOBBER_DELAY_SECONDS);
      logSkip(ctx, id, reason as string, count);
    } else {
      await armTicketsOfBlobber(
        ctx.pool,
        { id, url: info.url, notBefore: cooldowns.get(id)?.cooldown_until },
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

/** Returns why a blobber's rows are not worked on now, or undefined when tickets can be requested. */
function skipReason(info: BlobberInfo | undefined): string | undefined {
  if (info === undefined) {
    return 'blobber not found on chain';
  }
  if (!info.isRestricted && !info.isEnterprise) {
    return 'blobber is no longer restricted: no ticket needed';
  }
  if (info.isKilled) {
    return 'blobber is killed';
  }
  if (info.isShutdown) {
    return 'blobber is shut down';
  }
  if (info.notAvailable) {
    return 'blobber is not available';
  }
  return undefined;
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
