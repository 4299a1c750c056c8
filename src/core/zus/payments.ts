import type { DatabasePool, DatabaseTransactionConnection } from 'slonik';
import { TransientError } from '../errors.js';
import type { Logger } from '../output/logger.js';
import { settleSpending, type TeamWalletSpending } from '../spending.js';
import type { Outbox, PreparedTransaction, SettleResult, TransactionRequest } from './outbox.js';

/**
 * One payment from the team wallet, effectively once: prepare (or find) the holder's signed
 * transaction with its spending reservation, settle it, replace it when it provably expired,
 * and record the outcome together with the caller's own rows. A transaction still pending when
 * the wait ends raises TransientError marked in flight, so the task is retried later and never
 * goes dead on attempts alone.
 */

export interface PaymentDeps {
  pool: DatabasePool;
  outbox: Outbox;
  spending: TeamWalletSpending;
  logger: Logger;
  /** How long one run waits for a confirmation before leaving the task for a later run. */
  confirmationWaitMs: number;
  pollIntervalMs: number;
}

export interface PaymentRequest extends TransactionRequest {
  purpose: 'allocation' | 'funding';
  /** Writes the caller's rows (for example the task's tx hash) with the stored transaction. */
  persist?: (tx: DatabaseTransactionConnection, prepared: PreparedTransaction) => Promise<void>;
  /** Records the caller's completion in the transaction that settles the spending row. */
  onConfirmed: (tx: DatabaseTransactionConnection, confirmed: ConfirmedPayment) => Promise<void>;
}

export interface ConfirmedPayment {
  hash: string;
  output: string;
  feeSas: bigint;
}

export type PaymentResult =
  | ({ kind: 'confirmed' } & ConfirmedPayment)
  | { kind: 'failed'; hash: string; reason: string };

/** Replacements of an expired transaction tried within one call. */
const MAX_REPLACEMENTS = 2;

export async function payOnce(deps: PaymentDeps, request: PaymentRequest): Promise<PaymentResult> {
  for (let replacement = 0; replacement <= MAX_REPLACEMENTS; replacement++) {
    const prepared = await deps.outbox.prepare(request, {
      check: (tx, quote) => deps.spending.check(tx, quote),
      persist: async (tx, created) => {
        await deps.spending.reserve(tx, created, request.purpose, request.valueSas);
        await request.persist?.(tx, created);
      },
    });
    const result = await waitForSettlement(deps, request.holder);
    if (result.kind === 'confirmed') {
      const confirmed = { hash: result.hash, output: result.output, feeSas: prepared.feeSas };
      await deps.pool.transaction(async (tx) => {
        await settleSpending(tx, result.hash, 'confirmed');
        await request.onConfirmed(tx, confirmed);
      });
      return { kind: 'confirmed', ...confirmed };
    }
    if (result.kind === 'failed') {
      await settleSpending(deps.pool, result.hash, 'failed');
      return result;
    }
    if (result.kind === 'pending') {
      throw new TransientError(
        `transaction ${result.hash} not confirmed yet${result.note === undefined ? '' : `: ${result.note}`}`,
        { dependency: 'chain', inFlight: true },
      );
    }
    await settleSpending(deps.pool, result.hash, 'expired');
    deps.logger.warn('transaction replaced after it expired', {
      holder: request.holder,
      tx_hash: result.hash,
    });
  }
  throw new TransientError(`transactions for ${request.holder} keep expiring without being accepted`, {
    dependency: 'chain',
  });
}

/** Settles until the transaction is final or the wait is over; submission failures are retried. */
async function waitForSettlement(deps: PaymentDeps, holder: string): Promise<SettleResult> {
  const deadline = Date.now() + deps.confirmationWaitMs;
  let last: SettleResult | undefined;
  for (;;) {
    try {
      last = await deps.outbox.settle(holder);
      if (last.kind !== 'pending') {
        return last;
      }
    } catch (error) {
      if (!(error instanceof TransientError) || Date.now() >= deadline) {
        throw new TransientError(`settling ${holder} failed: ${(error as Error).message}`, {
          dependency: 'chain',
          inFlight: true,
          cause: error,
        });
      }
    }
    if (Date.now() >= deadline) {
      return last ?? { kind: 'pending', hash: '', note: 'no answer from the chain' };
    }
    await new Promise((resolve) => setTimeout(resolve, deps.pollIntervalMs));
  }
}
