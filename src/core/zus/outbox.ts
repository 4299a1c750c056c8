import { type DatabasePool, type DatabaseTransactionConnection, sql } from 'slonik';
import { z } from 'zod';
import { TransientError } from '../errors.js';
import type { Logger } from '../output/logger.js';
import { fetchChainClock, fetchConfirmation, fetchWalletState } from './chain.js';
import type { MinersClient } from './miners.js';
import type { ShardersClient } from './sharders.js';
import {
  parseStoredTransaction,
  type SignedTransaction,
  signTransaction,
  type TransactionSigner,
  transactionJson,
} from './transaction.js';

/**
 * The transaction outbox: how a worker moves tokens at most once.
 *
 * `prepare` assigns a nonce under a per-wallet lock, signs the transaction and stores it before
 * anything is sent (the caller may write its own task row in the same database transaction).
 * `settle` then asks the sharders whether that exact transaction applied; while it can still be
 * accepted it resubmits the identical signed transaction, which the chain applies at most once.
 * Only a transaction that provably can no longer be accepted (its creation date is outside the
 * miners' window by the chain's own clock) is marked expired. Its holder's next `prepare` reuses
 * the nonce, so at most one of the two transactions can ever apply.
 */

export interface OutboxOptions {
  pool: DatabasePool;
  sharders: ShardersClient;
  miners: MinersClient;
  wallet: TransactionSigner;
  chainId: string;
  /** Nonces the chain accepts ahead of its state (`future_nonce`, 10 in the chain's default config). */
  futureNonce: number;
  /** The miners' acceptance window for `creation_date`, in seconds (600 in the chain's default config). */
  txnTimeoutSeconds: number;
  /** Extra seconds of chain time before a transaction counts as expired, for clock skew. */
  expiryMarginSeconds: number;
  logger: Logger;
  /** Pod clock in unix seconds, for `creation_date`; injectable for tests. */
  nowSeconds?: () => number;
}

export interface TransactionRequest {
  /** Holder of the transaction, for example `funding:42`; one live transaction per holder. */
  holder: string;
  toClientId: string;
  valueSas: bigint;
  type: number;
  data: string;
  /** Smart-contract function for the fee lookup; undefined for a send. */
  functionName?: string | undefined;
}

export interface PreparedTransaction {
  outboxId: bigint;
  holder: string;
  hash: string;
  nonce: number;
  feeSas: bigint;
  signed: SignedTransaction;
}

/** Cost of a transaction, for the guard rails checked before signing. */
export interface SpendQuote {
  valueSas: bigint;
  feeSas: bigint;
  /** The wallet's balance on chain when `prepare` started. */
  balanceSas: bigint;
  /** Value and fee of the wallet's transactions that are signed but not settled yet. */
  inFlightSas: bigint;
}

export interface PrepareHooks {
  /**
   * Runs under the wallet lock before signing; throw to sign nothing (a guard rail). Several
   * pods serialise on the lock, so a check that sums recent spending counts every reservation.
   */
  check?: (tx: DatabaseTransactionConnection, quote: SpendQuote) => Promise<void>;
  /** Runs in the same database transaction as the outbox insert, for the caller's own rows. */
  persist?: (tx: DatabaseTransactionConnection, prepared: PreparedTransaction) => Promise<void>;
}

export type SettleResult =
  | { kind: 'confirmed'; hash: string; output: string }
  | { kind: 'failed'; hash: string; reason: string }
  | { kind: 'pending'; hash: string; note?: string }
  /** Can never be accepted; `prepare` for the same holder builds the replacement. */
  | { kind: 'expired'; hash: string; nonceReusable: boolean };

const outboxRow = z.object({
  id: z.bigint(),
  holder: z.string(),
  nonce: z.bigint(),
  tx_hash: z.string(),
  signed_transaction: z.string(),
  creation_date: z.bigint(),
  fee_sas: z.bigint(),
  state: z.enum(['prepared', 'confirmed', 'failed', 'expired', 'rejected']),
  output: z.string().nullable(),
});
type OutboxRow = z.infer<typeof outboxRow>;

export class Outbox {
  readonly #options: OutboxOptions;

  constructor(options: OutboxOptions) {
    this.#options = options;
  }

  /** Returns the holder's newest outbox row, whatever its state. */
  async latest(holder: string): Promise<OutboxRow | undefined> {
    const row = await this.#options.pool.maybeOne(sql.type(outboxRow)`
      SELECT id, holder, nonce, tx_hash, signed_transaction, creation_date, fee_sas, state, output
      FROM zus_outbox WHERE holder = ${holder} ORDER BY id DESC LIMIT 1`);
    return row ?? undefined;
  }

  /**
   * Returns the holder's transaction when it is live or confirmed; otherwise (none yet, expired,
   * rejected, or failed on chain) assigns a nonce, signs a new one and stores it. A confirmed
   * holder never gets a second transaction, so a caller that crashed after the transfer and
   * calls `prepare` again pays nothing twice. `persist` runs in the same database transaction
   * as the insert, for the caller's own row. Raises TransientError when the wallet already has
   * `futureNonce` transactions in flight.
   */
  async prepare(request: TransactionRequest, hooks: PrepareHooks = {}): Promise<PreparedTransaction> {
    const latest = await this.latest(request.holder);
    if (latest?.state === 'prepared' || latest?.state === 'confirmed') {
      return toPrepared(latest);
    }
    const { wallet, sharders, miners } = this.#options;
    const chainState = await fetchWalletState(sharders, wallet.clientId);
    const feeSas = await miners.fee(request.toClientId, request.functionName);
    const creationDate = (this.#options.nowSeconds ?? (() => Math.floor(Date.now() / 1000)))();

    return this.#options.pool.transaction(async (tx) => {
      await tx.query(
        sql.unsafe`SELECT pg_advisory_xact_lock(hashtextextended(${`zus-nonce:${wallet.clientId}`}, 0))`,
      );
      if (hooks.check !== undefined) {
        const inFlightSas = await tx.oneFirst(sql.type(z.object({ sum: z.bigint() }))`
          SELECT coalesce(sum(value_sas + fee_sas), 0)::int8 AS sum FROM zus_outbox
          WHERE wallet_client_id = ${wallet.clientId} AND state = 'prepared'`);
        await hooks.check(tx, {
          valueSas: request.valueSas,
          feeSas,
          balanceSas: chainState.balanceSas,
          inFlightSas,
        });
      }
      const nonce = await this.#assignNonce(tx, request.holder, chainState.nonce);
      const signed = signTransaction(wallet, {
        toClientId: request.toClientId,
        chainId: this.#options.chainId,
        data: request.data,
        valueSas: request.valueSas,
        feeSas,
        nonce,
        type: request.type,
        creationDate,
      });
      const outboxId = await tx.oneFirst(sql.type(z.object({ id: z.bigint() }))`
        INSERT INTO zus_outbox (wallet_client_id, holder, nonce, tx_hash, signed_transaction, creation_date,
                                value_sas, fee_sas, replaces)
        VALUES (${wallet.clientId}, ${request.holder}, ${nonce}, ${signed.hash}, ${transactionJson(signed)},
                ${creationDate}, ${request.valueSas}, ${feeSas}, ${latest === undefined ? null : latest.id})
        RETURNING id`);
      const prepared: PreparedTransaction = {
        outboxId,
        holder: request.holder,
        hash: signed.hash,
        nonce,
        feeSas,
        signed,
      };
      await hooks.persist?.(tx, prepared);
      this.#options.logger.info('transaction prepared', {
        holder: request.holder,
        tx_hash: signed.hash,
        nonce,
        value_sas: request.valueSas,
        fee_sas: feeSas,
        replaces: latest?.tx_hash,
      });
      return prepared;
    });
  }

  /**
   * Picks the nonce for a new transaction, under the wallet lock: the holder's own expired nonce
   * first (its replacement fills its gap), then any other free nonce above the chain's, then
   * the next new one. A nonce is free when no prepared, confirmed or failed row has it.
   */
  async #assignNonce(tx: DatabaseTransactionConnection, holder: string, chainNonce: number): Promise<number> {
    const walletId = this.#options.wallet.clientId;
    const lastAssigned =
      (await tx.maybeOneFirst(sql.type(z.object({ last_assigned: z.bigint() }))`
        SELECT last_assigned FROM zus_wallet_nonces WHERE wallet_client_id = ${walletId}`)) ?? 0n;
    const floor = BigInt(chainNonce);
    const top = lastAssigned > floor ? lastAssigned : floor;
    const free = await tx.maybeOneFirst(sql.type(z.object({ nonce: z.bigint() }))`
      SELECT n AS nonce FROM generate_series(${floor + 1n}::int8, ${top}::int8) AS n
      WHERE NOT EXISTS (SELECT 1 FROM zus_outbox o WHERE o.wallet_client_id = ${walletId} AND o.nonce = n
                          AND o.state IN ('prepared', 'confirmed', 'failed'))
      ORDER BY (SELECT count(*) FROM zus_outbox o WHERE o.holder = ${holder} AND o.nonce = n AND o.state = 'expired') DESC, n
      LIMIT 1`);
    const nonce = free ?? top + 1n;
    if (nonce > floor + BigInt(this.#options.futureNonce)) {
      throw new TransientError(
        `nonce window full for wallet ${walletId}: chain nonce ${chainNonce}, next ${nonce}, at most ${this.#options.futureNonce} ahead (waiting for transactions in flight to confirm)`,
        { dependency: 'nonce_window' },
      );
    }
    await tx.query(sql.unsafe`
      INSERT INTO zus_wallet_nonces (wallet_client_id, last_assigned) VALUES (${walletId}, ${nonce})
      ON CONFLICT (wallet_client_id) DO UPDATE
      SET last_assigned = greatest(zus_wallet_nonces.last_assigned, EXCLUDED.last_assigned)`);
    return Number(nonce);
  }

  /**
   * Finds out what became of the holder's live transaction and moves it on: confirmed, failed,
   * expired (never accepted), or still pending after resubmitting the identical transaction.
   */
  async settle(holder: string): Promise<SettleResult> {
    const row = await this.latest(holder);
    if (row === undefined) {
      throw new Error(`outbox: no transaction for ${holder}`);
    }
    if (row.state !== 'prepared') {
      return settledResult(row);
    }
    const { sharders } = this.#options;
    const confirmation = await fetchConfirmation(sharders, row.tx_hash);
    if (confirmation.kind === 'applied') {
      await this.#finish(row, 'confirmed', confirmation.output);
      return { kind: 'confirmed', hash: row.tx_hash, output: confirmation.output };
    }
    if (confirmation.kind === 'failed') {
      await this.#finish(row, 'failed', confirmation.output);
      return { kind: 'failed', hash: row.tx_hash, reason: confirmation.output };
    }

    const clock = await fetchChainClock(sharders);
    const acceptableUntil =
      Number(row.creation_date) + this.#options.txnTimeoutSeconds + this.#options.expiryMarginSeconds;
    if (clock.timeSeconds > acceptableUntil) {
      return this.#expire(row, clock.timeSeconds);
    }
    return this.#resubmit(row);
  }

  async #expire(row: OutboxRow, chainTime: number): Promise<SettleResult> {
    const chainState = await fetchWalletState(this.#options.sharders, this.#options.wallet.clientId);
    const nonceReusable = BigInt(chainState.nonce) < row.nonce;
    await this.#finish(row, nonceReusable ? 'expired' : 'rejected', null);
    this.#options.logger.warn('transaction expired: it can no longer be accepted', {
      holder: row.holder,
      tx_hash: row.tx_hash,
      nonce: row.nonce,
      chain_time: chainTime,
      nonce_reusable: nonceReusable,
    });
    return { kind: 'expired', hash: row.tx_hash, nonceReusable };
  }

  async #resubmit(row: OutboxRow): Promise<SettleResult> {
    const signed = parseStoredTransaction(row.signed_transaction);
    const result = await this.#options.miners.submit(signed);
    await this.#options.pool.query(sql.unsafe`
      UPDATE zus_outbox SET submissions = submissions + 1, updated_at = now() WHERE id = ${row.id}`);
    if (result.kind === 'accepted') {
      this.#options.logger.info('transaction submitted', {
        holder: row.holder,
        tx_hash: row.tx_hash,
        nonce: row.nonce,
      });
      return { kind: 'pending', hash: row.tx_hash };
    }
    // A used nonce may be this very transaction applied but not yet confirmed by the share; an
    // early nonce waits for the ones before it. Both settle later by confirmation or expiry.
    this.#options.logger.warn('transaction not accepted now', {
      holder: row.holder,
      tx_hash: row.tx_hash,
      nonce: row.nonce,
      reason: result.message,
    });
    return { kind: 'pending', hash: row.tx_hash, note: result.message };
  }

  async #finish(
    row: OutboxRow,
    state: 'confirmed' | 'failed' | 'expired' | 'rejected',
    output: string | null,
  ) {
    await this.#options.pool.query(sql.unsafe`
      UPDATE zus_outbox SET state = ${state}, output = ${output}, settled_at = now(), updated_at = now()
      WHERE id = ${row.id} AND state = 'prepared'`);
    if (state === 'confirmed' || state === 'failed') {
      this.#options.logger.info(
        state === 'confirmed' ? 'transaction confirmed' : 'transaction failed on chain',
        {
          holder: row.holder,
          tx_hash: row.tx_hash,
          nonce: row.nonce,
          output: output ?? undefined,
        },
      );
    }
  }
}

function toPrepared(row: OutboxRow): PreparedTransaction {
  return {
    outboxId: row.id,
    holder: row.holder,
    hash: row.tx_hash,
    nonce: Number(row.nonce),
    feeSas: row.fee_sas,
    signed: parseStoredTransaction(row.signed_transaction),
  };
}

function settledResult(row: OutboxRow): SettleResult {
  switch (row.state) {
    case 'confirmed':
      return { kind: 'confirmed', hash: row.tx_hash, output: row.output ?? '' };
    case 'failed':
      return { kind: 'failed', hash: row.tx_hash, reason: row.output ?? '' };
    default:
      return { kind: 'expired', hash: row.tx_hash, nonceReusable: row.state === 'expired' };
  }
}
