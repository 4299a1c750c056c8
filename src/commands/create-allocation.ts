import { type DatabaseTransactionConnection, sql } from 'slonik';
import { z } from 'zod';
import { requestAuthTicket } from '../core/blobber/auth-ticket.js';
import { readTicketSettings, type TicketSettings, ticketRoundFor } from '../core/blobber/ticket-rounds.js';
import { createGuardedFetch, type GuardedFetch } from '../core/blobber/url-guard.js';
import { requireVariable } from '../core/config.js';
import { readActiveCooldowns } from '../core/db/queries/blobber-cooldowns.js';
import { readOwnerTickets, requestTicket, saveFetchedTicket } from '../core/db/queries/blobber-tickets.js';
import type { RunContext } from '../core/engine/context.js';
import { type QueueWorker, runQueueCycle } from '../core/engine/cycle.js';
import type { Row } from '../core/engine/queue-sql.js';
import type { WorkerSpec } from '../core/engine/runtime.js';
import { PermanentError, TransientError } from '../core/errors.js';
import { type AllocationInfo, fetchAllocation } from '../core/zus/allocations.js';
import { formatZcn } from '../core/zus/amounts.js';
import {
  type BlobberInfo,
  fetchBlobbers,
  fetchCurrentRound,
  fetchUpdateMinLock,
  selectAllocationBlobbers,
} from '../core/zus/blobbers.js';
import { allocationLockSas } from '../core/zus/costs.js';
import { payOnce } from '../core/zus/payments.js';
import { NotFoundOnChainError } from '../core/zus/sharders.js';
import { clientIdOf } from '../core/zus/signature.js';
import { fetchStorageConfig, STORAGE_SC_ADDRESS, type StorageConfig } from '../core/zus/storage-config.js';
import { openTeamWallet, type TeamWallet } from '../core/zus/team-wallet.js';
import { smartContractData, TXN_TYPE_SMART_CONTRACT, transactionJson } from '../core/zus/transaction.js';
import { loadWallet, type Wallet } from '../core/zus/wallet.js';

/**
 * create-allocation: fulfils paid Stripe allocation tasks whose chain transaction has not
 * succeeded. A task without an allocation id creates one that the user owns and the team wallet
 * pays for (`new_allocation_request`). A task with one extends it (`update_allocation_request`),
 * which a third party may only do on a third-party-extendable allocation.
 *
 * Per task it plans the request (blobbers, auth tickets at one round, lock from the chain's
 * cost) and checks the caps. It stores the signed transaction with its spending reservation
 * before sending and settles it. Then it records the allocation, the funding record, the final
 * spending row and `tx_success` in one transaction. A task whose transaction may still apply is
 * never dead on attempts alone.
 */

interface AllocationTask {
  id: bigint;
  userId: string;
  ownerClientId: string;
  ownerPublicKey: string;
  allocationId: string | undefined;
  sizeBytes: bigint | undefined;
  sizeIncreaseBytes: bigint | undefined;
  dataShards: number | undefined;
  parityShards: number | undefined;
  preferredBlobbers: string[];
  ownerUpdateTicket: string | undefined;
  addBlobberId: string | undefined;
  removeBlobberId: string | undefined;
  amountPaidCents: bigint | undefined;
}

/** A request ready to sign: the storage SC function, its input and the lock in SAS. */
interface Plan {
  kind: 'new' | 'upgrade';
  functionName: 'new_allocation_request' | 'update_allocation_request';
  input: Record<string, unknown>;
  lockSas: bigint;
  blobbers: Array<{ id: string; restricted: boolean; ticket: 'stored' | 'fetched' | 'missing' | 'none' }>;
}

interface Deps {
  teamWallet: TeamWallet;
  config: StorageConfig;
  tickets: TicketSettings;
  thirdPartyExtendable: boolean;
  fetch: GuardedFetch;
  operator: () => Promise<Wallet>;
}

export function createAllocation(): WorkerSpec {
  return { name: 'create-allocation', singleton: false, body: run };
}

async function run(ctx: RunContext): Promise<void> {
  const teamWallet = await openTeamWallet(ctx);
  const { config } = await fetchStorageConfig(teamWallet.sharders);
  const fetch = createGuardedFetch({
    allowPrivateAddresses: requireVariable(ctx.env, 'ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES'),
    timeoutMs: requireVariable(ctx.env, 'ZBOX_BLOBBER_TIMEOUT_MS'),
    logger: ctx.logger,
  });
  let operator: Promise<Wallet> | undefined;
  const deps: Deps = {
    teamWallet,
    config,
    tickets: readTicketSettings(ctx.env),
    thirdPartyExtendable: requireVariable(ctx.env, 'ZBOX_THIRD_PARTY_EXTENDABLE'),
    fetch,
    operator: () => {
      operator ??= loadWallet(requireVariable(ctx.env, 'ZBOX_OPERATOR_WALLET'), {
        scheme: requireVariable(ctx.env, 'ZUS_SIGNATURE_SCHEME'),
        variable: 'ZBOX_OPERATOR_WALLET',
      });
      return operator;
    },
  };
  try {
    await runQueueCycle(allocationWorker(deps), ctx);
  } finally {
    fetch.close();
  }
}

function allocationWorker(deps: Deps): QueueWorker<AllocationTask, void> {
  return {
    name: 'create-allocation',
    table: 'stripe_allocation_tasks',
    parseTask,
    dependencyOf: () => 'chain',

    execute: async (task, ctx) => {
      validateTask(task, deps.config);
      const plan =
        task.allocationId === undefined
          ? await planNew(task, deps, ctx, true)
          : await planUpgrade(task, deps);
      checkTaskCap(plan.lockSas, deps.teamWallet);
      const result = await payOnce(deps.teamWallet, {
        holder: `allocation:${task.id}`,
        purpose: 'allocation',
        toClientId: STORAGE_SC_ADDRESS,
        valueSas: plan.lockSas,
        type: TXN_TYPE_SMART_CONTRACT,
        functionName: plan.functionName,
        data: smartContractData(plan.functionName, plan.input),
        persist: async (tx, prepared) => {
          await tx.query(sql.unsafe`
            UPDATE stripe_allocation_tasks SET tx_hash = ${prepared.hash},
              signed_transaction = ${transactionJson(prepared.signed)}
            WHERE id = ${task.id}`);
        },
        onConfirmed: (tx, confirmed) => recordAllocation(tx, task, plan, confirmed, deps.config),
      });
      if (result.kind === 'failed') {
        throw new PermanentError(`the chain rejected ${plan.functionName} ${result.hash}: ${result.reason}`);
      }
      ctx.logger.info('allocation paid', {
        task_id: String(task.id),
        tx_hash: result.hash,
        lock_sas: plan.lockSas,
      });
    },

    describe: async (task, ctx) => {
      validateTask(task, deps.config);
      const plan =
        task.allocationId === undefined
          ? await planNew(task, deps, ctx, false)
          : await planUpgrade(task, deps);
      const fee = await deps.teamWallet.miners.fee(STORAGE_SC_ADDRESS, plan.functionName);
      return {
        action: `${plan.kind === 'new' ? 'create' : `upgrade ${task.allocationId}`} for owner ${task.ownerClientId}: lock ${formatZcn(plan.lockSas)} ZCN + fee ${formatZcn(fee)} ZCN`,
        fields: {
          kind: plan.kind,
          owner: task.ownerClientId,
          data_shards: task.dataShards,
          parity_shards: task.parityShards,
          size_bytes: task.sizeBytes ?? task.sizeIncreaseBytes,
          blobbers: plan.blobbers.map(
            (blobber) =>
              `${blobber.id}${blobber.restricted ? ` (restricted, ticket ${blobber.ticket})` : ''}`,
          ),
          lock_sas: plan.lockSas,
          lock_zcn: formatZcn(plan.lockSas),
          fee_sas: fee,
          fee_zcn: formatZcn(fee),
        },
      };
    },
  };
}

const allocationRow = z.object({
  id: z.bigint(),
  user_id: z.string().min(1),
  owner_client_id: z.string(),
  owner_public_key: z.string().nullable(),
  allocation_id: z.string().nullable(),
  size_bytes: z.bigint().nullable(),
  size_increase_bytes: z.bigint().nullable(),
  data_shards: z.number().nullable(),
  parity_shards: z.number().nullable(),
  preferred_blobbers: z.array(z.string()),
  owner_update_ticket: z.string().nullable(),
  add_blobber_id: z.string().nullable(),
  remove_blobber_id: z.string().nullable(),
  amount_paid_cents: z.bigint().nullable(),
});

function parseTask(row: Row): AllocationTask {
  const parsed = allocationRow.parse(row);
  return {
    id: parsed.id,
    userId: parsed.user_id,
    ownerClientId: parsed.owner_client_id,
    ownerPublicKey: parsed.owner_public_key ?? '',
    allocationId: parsed.allocation_id ?? undefined,
    sizeBytes: parsed.size_bytes ?? undefined,
    sizeIncreaseBytes: parsed.size_increase_bytes ?? undefined,
    dataShards: parsed.data_shards ?? undefined,
    parityShards: parsed.parity_shards ?? undefined,
    preferredBlobbers: parsed.preferred_blobbers,
    ownerUpdateTicket: parsed.owner_update_ticket ?? undefined,
    addBlobberId: parsed.add_blobber_id ?? undefined,
    removeBlobberId: parsed.remove_blobber_id ?? undefined,
    amountPaidCents: parsed.amount_paid_cents ?? undefined,
  };
}

/** Rejects input the platform must fix, with a reason an operator can act on. */
function validateTask(task: AllocationTask, config: StorageConfig): void {
  if (!/^[0-9a-f]{64}$/.test(task.ownerClientId)) {
    throw new PermanentError(
      `owner_client_id "${task.ownerClientId}" is not a client id (64 lowercase hexadecimal characters)`,
    );
  }
  if (
    task.ownerPublicKey === '' ||
    !/^[0-9a-f]+$/.test(task.ownerPublicKey) ||
    clientIdOf(task.ownerPublicKey) !== task.ownerClientId
  ) {
    throw new PermanentError(
      `owner_public_key is missing or does not match owner_client_id ${task.ownerClientId} (its sha3-256 must equal the client id)`,
    );
  }
  if (task.allocationId !== undefined) {
    if (task.sizeIncreaseBytes === undefined) {
      throw new PermanentError('size_increase_bytes is missing for an upgrade');
    }
    return;
  }
  const data = task.dataShards ?? 0;
  const parity = task.parityShards ?? 0;
  if (data < 1 || parity < 1) {
    throw new PermanentError(
      `data_shards ${task.dataShards} and parity_shards ${task.parityShards} must both be at least 1`,
    );
  }
  if (data + parity > config.maxBlobbersPerAllocation) {
    throw new PermanentError(
      `data_shards + parity_shards = ${data + parity} is more than the chain allows per allocation (${config.maxBlobbersPerAllocation})`,
    );
  }
  if (task.sizeBytes === undefined || task.sizeBytes < config.minAllocSizeBytes) {
    throw new PermanentError(
      `size_bytes ${task.sizeBytes ?? 'missing'} is below the chain's minimum allocation size of ${config.minAllocSizeBytes} bytes`,
    );
  }
}

function checkTaskCap(lockSas: bigint, teamWallet: TeamWallet): void {
  const cap = teamWallet.spending.caps.perTaskSas;
  if (lockSas > cap) {
    throw new PermanentError(
      `lock ${formatZcn(lockSas)} ZCN is above the per-task cap of ${formatZcn(cap)} ZCN (ZBOX_MAX_LOCK_PER_TASK_ZCN)`,
    );
  }
}

/**
 * Plans a new allocation. Blobbers come from the preferred list, filled from the chain's
 * selection. The restricted ones get auth tickets at one round, and the lock follows the chain's
 * cost formula.
 */
async function planNew(
  task: AllocationTask,
  deps: Deps,
  ctx: RunContext,
  fetchMissing: boolean,
): Promise<Plan> {
  const size = task.sizeBytes as bigint;
  const data = task.dataShards as number;
  const parity = task.parityShards as number;
  const writeRange = { min: 0n, max: deps.config.maxWritePriceSas };
  const readRange = { min: 0n, max: deps.config.maxReadPriceSas };
  const chosen = await chooseBlobbers(task, deps, { size, data, parity, readRange, writeRange });
  const restricted = chosen.filter((blobber) => blobber.isRestricted || blobber.isEnterprise);
  const tickets = await ticketsFor(task.ownerClientId, restricted, deps, ctx, fetchMissing);
  const input: Record<string, unknown> = {
    data_shards: data,
    parity_shards: parity,
    size,
    owner_id: task.ownerClientId,
    owner_public_key: task.ownerPublicKey,
    blobbers: chosen.map((blobber) => blobber.id),
    blobber_auth_tickets: chosen.map((blobber) => tickets.byBlobber.get(blobber.id) ?? ''),
    read_price_range: readRange,
    write_price_range: writeRange,
    third_party_extendable: deps.thirdPartyExtendable,
    file_options_changed: false,
    file_options: 63,
    is_enterprise: false,
    storage_version: 1,
  };
  if (tickets.round !== undefined) {
    input.auth_round_expiry = tickets.round;
  }
  return {
    kind: 'new',
    functionName: 'new_allocation_request',
    input,
    lockSas: allocationLockSas(
      size,
      data,
      chosen.map((blobber) => blobber.writePriceSas),
      deps.config.maxWritePriceSas,
    ),
    blobbers: chosen.map((blobber) => ({
      id: blobber.id,
      restricted: blobber.isRestricted || blobber.isEnterprise,
      ticket: tickets.status.get(blobber.id) ?? 'none',
    })),
  };
}

async function chooseBlobbers(
  task: AllocationTask,
  deps: Deps,
  shape: {
    size: bigint;
    data: number;
    parity: number;
    readRange: { min: bigint; max: bigint };
    writeRange: { min: bigint; max: bigint };
  },
): Promise<BlobberInfo[]> {
  const needed = shape.data + shape.parity;
  const ids = [...new Set(task.preferredBlobbers)];
  if (ids.length < needed) {
    const selected = await selectAllocationBlobbers(deps.teamWallet.sharders, {
      dataShards: shape.data,
      parityShards: shape.parity,
      sizeBytes: shape.size,
      readPriceRangeSas: shape.readRange,
      writePriceRangeSas: shape.writeRange,
    }).catch((error: unknown) => {
      throw new TransientError(`too few blobbers available right now: ${(error as Error).message}`, {
        dependency: 'sharders',
      });
    });
    ids.push(...selected.filter((id) => !ids.includes(id)));
  }
  if (ids.length < needed) {
    throw new TransientError(`too few blobbers available right now: ${ids.length} of ${needed} needed`, {
      dependency: 'sharders',
    });
  }
  const infos = await fetchBlobbers(deps.teamWallet.sharders, ids.slice(0, needed));
  const chosen = ids.slice(0, needed).map((id) => infos.get(id));
  const missing = ids.slice(0, needed).filter((id) => !infos.has(id));
  if (missing.length > 0) {
    throw new PermanentError(`preferred blobber(s) not found on chain: ${missing.join(', ')}`);
  }
  return chosen as BlobberInfo[];
}

/**
 * Auth tickets of the restricted blobbers for this owner, all bound to one round: stored ones
 * when they share a valid round, otherwise fresh ones fetched now for all of them at one round.
 * A blobber that is failing or cooling down makes the task wait; authorized-blobbers keeps
 * trying its ticket.
 */
async function ticketsFor(
  ownerId: string,
  restricted: BlobberInfo[],
  deps: Deps,
  ctx: RunContext,
  fetchMissing: boolean,
) {
  const byBlobber = new Map<string, string>();
  const status = new Map<string, 'stored' | 'fetched' | 'missing'>();
  if (restricted.length === 0) {
    return { byBlobber, status, round: undefined };
  }
  const ids = restricted.map((blobber) => blobber.id);
  const currentRound = deps.tickets.roundBound
    ? await fetchCurrentRound(deps.teamWallet.sharders)
    : undefined;
  const stored = await readOwnerTickets(ctx.pool, ownerId, ids);
  const storedRounds = new Set(ids.map((id) => stored.get(id)?.round));
  const allStored = ids.every((id) => stored.get(id)?.ticket);
  const sharedValid =
    storedRounds.size === 1 &&
    (currentRound === undefined ||
      (stored.get(ids[0] as string)?.round ?? 0) > currentRound + deps.tickets.refreshRounds);
  if (allStored && sharedValid) {
    for (const id of ids) {
      byBlobber.set(id, stored.get(id)?.ticket as string);
      status.set(id, 'stored');
    }
    return { byBlobber, status, round: stored.get(ids[0] as string)?.round };
  }
  if (!fetchMissing) {
    for (const id of ids) {
      status.set(id, stored.get(id)?.ticket ? 'stored' : 'missing');
    }
    return { byBlobber, status, round: undefined };
  }
  const round =
    currentRound === undefined
      ? undefined
      : await ticketRoundFor(ctx.pool, ownerId, currentRound, deps.tickets);
  await fetchTicketsAtRound(ownerId, restricted, round, deps, ctx, byBlobber);
  for (const id of ids) {
    status.set(id, 'fetched');
  }
  return { byBlobber, status, round };
}

async function fetchTicketsAtRound(
  ownerId: string,
  restricted: BlobberInfo[],
  round: number | undefined,
  deps: Deps,
  ctx: RunContext,
  into: Map<string, string>,
): Promise<void> {
  const cooling = await readActiveCooldowns(
    ctx.pool,
    restricted.map((blobber) => blobber.id),
  );
  for (const blobber of restricted) {
    if (cooling.has(blobber.id)) {
      await requestTicket(ctx.pool, blobber.id, ownerId, blobber.url);
      throw new TransientError(`waiting for an auth ticket: blobber ${blobber.id} is cooling down`, {
        dependency: blobber.id,
      });
    }
    try {
      const ticket = await requestAuthTicket({
        fetch: deps.fetch,
        blobberUrl: blobber.url,
        blobberId: blobber.id,
        clientId: ownerId,
        ...(round === undefined ? {} : { round }),
        operator: await deps.operator(),
        logger: ctx.logger,
      });
      await saveFetchedTicket(ctx.pool, {
        blobberId: blobber.id,
        clientId: ownerId,
        blobberUrl: blobber.url,
        ticket,
        round,
      });
      into.set(blobber.id, ticket);
    } catch (error) {
      if (error instanceof TransientError) {
        await requestTicket(ctx.pool, blobber.id, ownerId, blobber.url);
        throw new TransientError(`waiting for an auth ticket from blobber ${blobber.id}: ${error.message}`, {
          dependency: blobber.id,
        });
      }
      throw error;
    }
  }
}

/** Plans an upgrade: the allocation must exist, belong to the task's owner and accept the change. */
async function planUpgrade(task: AllocationTask, deps: Deps): Promise<Plan> {
  const allocationId = task.allocationId as string;
  const allocation = await fetchAllocation(deps.teamWallet.sharders, allocationId).catch((error: unknown) => {
    if (error instanceof NotFoundOnChainError) {
      throw new PermanentError(`allocation ${allocationId} does not exist on chain`);
    }
    throw error;
  });
  checkUpgradeAllowed(task, allocation);
  const sizeIncrease = task.sizeIncreaseBytes as bigint;
  const lockSas = await fetchUpdateMinLock(deps.teamWallet.sharders, {
    ownerId: task.ownerClientId,
    allocationId,
    sizeBytes: sizeIncrease,
    extend: true,
    ...(task.addBlobberId === undefined ? {} : { addBlobberId: task.addBlobberId }),
    ...(task.removeBlobberId === undefined ? {} : { removeBlobberId: task.removeBlobberId }),
  });
  const input: Record<string, unknown> = {
    id: allocationId,
    owner_id: task.ownerClientId,
    owner_public_key: '',
    size: sizeIncrease,
    extend: true,
    add_blobber_id: task.addBlobberId ?? '',
    add_blobber_auth_ticket: '',
    remove_blobber_id: task.removeBlobberId ?? '',
  };
  if (task.ownerUpdateTicket !== undefined) {
    input.update_ticket = JSON.parse(task.ownerUpdateTicket);
  }
  return { kind: 'upgrade', functionName: 'update_allocation_request', input, lockSas, blobbers: [] };
}

function checkUpgradeAllowed(task: AllocationTask, allocation: AllocationInfo): void {
  if (allocation.ownerId !== task.ownerClientId) {
    throw new PermanentError(
      `allocation ${allocation.id} belongs to ${allocation.ownerId}, not to the task's owner ${task.ownerClientId}`,
    );
  }
  if (allocation.finalized || allocation.canceled) {
    throw new PermanentError(
      `allocation ${allocation.id} is ${allocation.finalized ? 'finalized' : 'canceled'}`,
    );
  }
  const changesBlobbers = task.addBlobberId !== undefined || task.removeBlobberId !== undefined;
  if (changesBlobbers && task.ownerUpdateTicket === undefined) {
    throw new PermanentError(
      "adding or removing a blobber needs the owner's signed update ticket (owner_update_ticket), which the task does not have",
    );
  }
  if (task.ownerUpdateTicket !== undefined && !isJson(task.ownerUpdateTicket)) {
    throw new PermanentError('owner_update_ticket is not valid JSON');
  }
  if (!changesBlobbers && !allocation.thirdPartyExtendable) {
    throw new PermanentError(
      `allocation ${allocation.id} is not third-party extendable: only its owner can extend it, not the team wallet`,
    );
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Records the result in the transaction that settles the spending row. */
async function recordAllocation(
  tx: DatabaseTransactionConnection,
  task: AllocationTask,
  plan: Plan,
  confirmed: { hash: string; feeSas: bigint },
  config: StorageConfig,
): Promise<void> {
  const allocationId = plan.kind === 'new' ? confirmed.hash : (task.allocationId as string);
  if (plan.kind === 'new') {
    await tx.query(sql.unsafe`
      INSERT INTO allocations (id, owner_client_id, user_id, size_bytes, data_shards, parity_shards, expires_at)
      VALUES (${allocationId}, ${task.ownerClientId}, ${task.userId}, ${task.sizeBytes as bigint},
              ${task.dataShards as number}, ${task.parityShards as number},
              now() + make_interval(secs => ${config.timeUnitSeconds}))
      ON CONFLICT (id) DO NOTHING`);
  } else {
    await tx.query(sql.unsafe`
      UPDATE allocations SET size_bytes = size_bytes + ${task.sizeIncreaseBytes as bigint},
        expires_at = now() + make_interval(secs => ${config.timeUnitSeconds}), updated_at = now()
      WHERE id = ${allocationId}`);
  }
  await tx.query(sql.unsafe`
    INSERT INTO allocation_fundings (stripe_task_id, allocation_id, lock_sas, fee_sas, amount_paid_cents, tx_hash)
    VALUES (${task.id}, ${allocationId}, ${plan.lockSas}, ${confirmed.feeSas}, ${task.amountPaidCents ?? null}, ${confirmed.hash})
    ON CONFLICT (stripe_task_id) DO NOTHING`);
  await tx.query(sql.unsafe`
    UPDATE stripe_allocation_tasks SET tx_success = true, tx_hash = ${confirmed.hash}, result_allocation_id = ${allocationId}
    WHERE id = ${task.id}`);
}
