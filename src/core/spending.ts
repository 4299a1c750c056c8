import { type CommonQueryMethods, type DatabaseTransactionConnection, sql } from 'slonik';
import { z } from 'zod';
import { type Environment, requireVariable } from './config.js';
import { HaltError } from './errors.js';
import type { Logger } from './output/logger.js';
import { formatZcn, zcnToSas } from './zus/amounts.js';
import type { PreparedTransaction, SpendQuote } from './zus/outbox.js';

/**
 * Team-wallet spending and its guard rails. Every transaction the team wallet pays for gets a
 * `team_wallet_spending` row, reserved in the same database transaction that stores the signed
 * transaction, then settled or released. Before signing, the caps per run and per day and the
 * wallet's balance are checked under the outbox's wallet lock. The check counts transactions
 * still in flight in every pod, so two pods cannot both pass a cap that only one of them fits
 * under.
 */

export interface SpendingCaps {
  perTaskSas: bigint;
  perRunSas: bigint;
  perDaySas: bigint;
}

export function readSpendingCaps(env: Environment): SpendingCaps {
  return {
    perTaskSas: zcnToSas(requireVariable(env, 'ZBOX_MAX_LOCK_PER_TASK_ZCN')),
    perRunSas: zcnToSas(requireVariable(env, 'ZBOX_MAX_SPEND_PER_RUN_ZCN')),
    perDaySas: zcnToSas(requireVariable(env, 'ZBOX_MAX_SPEND_PER_DAY_ZCN')),
  };
}

export class TeamWalletSpending {
  readonly #walletClientId: string;
  readonly #caps: SpendingCaps;
  readonly #logger: Logger;
  /** Value and fee reserved by this run. */
  #runSpentSas = 0n;

  constructor(options: { walletClientId: string; caps: SpendingCaps; logger: Logger }) {
    this.#walletClientId = options.walletClientId;
    this.#caps = options.caps;
    this.#logger = options.logger;
  }

  get caps(): SpendingCaps {
    return this.#caps;
  }

  get runSpentSas(): bigint {
    return this.#runSpentSas;
  }

  /** Raises HaltError, with the figures, when the next transaction breaches a cap or the balance. */
  async check(tx: DatabaseTransactionConnection, quote: SpendQuote): Promise<void> {
    const costSas = quote.valueSas + quote.feeSas;
    if (this.#runSpentSas + costSas > this.#caps.perRunSas) {
      this.#breach(
        `per-run spend cap of ${formatZcn(this.#caps.perRunSas)} ZCN reached: ${formatZcn(this.#runSpentSas)} ZCN spent in this run, the next transaction needs ${formatZcn(costSas)} ZCN`,
      );
    }
    const daySpentSas = await spentInLastDay(tx, this.#walletClientId);
    if (daySpentSas + costSas > this.#caps.perDaySas) {
      this.#breach(
        `daily spend cap of ${formatZcn(this.#caps.perDaySas)} ZCN reached: ${formatZcn(daySpentSas)} ZCN spent or in flight in the last 24 h, the next transaction needs ${formatZcn(costSas)} ZCN`,
      );
    }
    const availableSas = quote.balanceSas - quote.inFlightSas;
    if (availableSas < costSas) {
      this.#breach(
        `team wallet balance too low: ${formatZcn(quote.balanceSas)} ZCN on chain, ${formatZcn(quote.inFlightSas)} ZCN in flight, the next transaction needs ${formatZcn(costSas)} ZCN (top up ${this.#walletClientId})`,
      );
    }
  }

  #breach(reason: string): never {
    this.#logger.error('guard rail stopped spending', { reason });
    throw new HaltError(reason);
  }

  /** Reserves the spending row of a prepared transaction, in the transaction that stores it. */
  async reserve(
    tx: DatabaseTransactionConnection,
    prepared: PreparedTransaction,
    purpose: 'allocation' | 'funding',
    valueSas: bigint,
  ): Promise<void> {
    await tx.query(sql.unsafe`
      INSERT INTO team_wallet_spending (wallet_client_id, purpose, task_ref, amount_sas, fee_sas, tx_hash, state)
      VALUES (${this.#walletClientId}, ${purpose}, ${prepared.holder}, ${valueSas}, ${prepared.feeSas},
              ${prepared.hash}, 'reserved')`);
    this.#runSpentSas += valueSas + prepared.feeSas;
  }
}

/** Value and fee of the wallet's spending rows of the last 24 hours, reserved ones included. */
export async function spentInLastDay(db: CommonQueryMethods, walletClientId: string): Promise<bigint> {
  return db.oneFirst(sql.type(z.object({ spent: z.bigint() }))`
    SELECT coalesce(sum(amount_sas + fee_sas), 0)::int8 AS spent FROM team_wallet_spending
    WHERE wallet_client_id = ${walletClientId} AND created_at > now() - interval '1 day'`);
}

/**
 * Moves the spending row of a settled transaction on. `confirmed` makes it final. `failed` means
 * the chain applied it with an error and charged the fee, so only the value is returned.
 * `expired` (never accepted) returns value and fee, and the replacement reserves its own row.
 */
export async function settleSpending(
  db: CommonQueryMethods,
  txHash: string,
  outcome: 'confirmed' | 'failed' | 'expired',
): Promise<void> {
  if (outcome === 'confirmed') {
    await db.query(sql.unsafe`
      UPDATE team_wallet_spending SET state = 'settled', settled_at = now()
      WHERE tx_hash = ${txHash} AND state = 'reserved'`);
    return;
  }
  const fee = outcome === 'failed' ? sql.fragment`fee_sas` : sql.fragment`0`;
  await db.query(sql.unsafe`
    UPDATE team_wallet_spending SET state = 'released', amount_sas = 0, fee_sas = ${fee}, settled_at = now()
    WHERE tx_hash = ${txHash} AND state = 'reserved'`);
}
