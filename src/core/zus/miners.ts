import { z } from 'zod';
import { errorMessage, TransientError } from '../errors.js';
import type { Logger } from '../output/logger.js';
import { describeFetchError, normaliseNodeUrl, shortenBody } from './network.js';
import { canonicalJson } from './sharders.js';
import { type SignedTransaction, transactionJson } from './transaction.js';

/**
 * Miner requests: transaction submission and the fee table. A transaction goes to every miner
 * at once, as the Go SDK does; one acceptance is enough because miners share their pools.
 */

export type SubmitResult =
  | { kind: 'accepted' }
  /** The nonce is at or below the wallet's chain nonce: it was used (maybe by this very transaction). */
  | { kind: 'nonce_used'; message: string }
  /** The nonce is more than the accepted distance ahead of the chain's state. */
  | { kind: 'nonce_ahead'; message: string }
  /** Every miner that responded rejected the transaction for another reason. */
  | { kind: 'rejected'; message: string };

const errorSchema = z.object({ error: z.string() }).loose();

/** Chain error texts (0chain chaincore/transaction/entity.go); matched as substrings. */
const NONCE_USED = 'invalid transaction nonce';
const NONCE_AHEAD = 'invalid future transaction';

type MinerAnswer =
  | { miner: string; ok: true }
  | { miner: string; ok: false; status?: number; message: string };

export class MinersClient {
  readonly miners: readonly string[];
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  #feeTable: Promise<Record<string, Record<string, bigint>>> | undefined;

  constructor(options: { miners: string[]; timeoutMs: number; logger: Logger }) {
    this.miners = [...new Set(options.miners.map(normaliseNodeUrl))];
    this.#timeoutMs = options.timeoutMs;
    this.#logger = options.logger;
  }

  /** Posts the transaction to every miner. Raises TransientError when no miner responded at all. */
  async submit(transaction: SignedTransaction): Promise<SubmitResult> {
    const body = transactionJson(transaction);
    const answers = await Promise.all(this.miners.map((miner) => this.#post(miner, body)));
    if (answers.some((answer) => answer.ok)) {
      return { kind: 'accepted' };
    }
    const rejections = answers.filter((answer): answer is Extract<MinerAnswer, { ok: false }> => !answer.ok);
    const answered = rejections.filter((answer) => answer.status !== undefined && answer.status < 500);
    const summary = rejections.map((answer) => `${answer.miner}: ${answer.message}`).join('; ');
    if (answered.length === 0) {
      throw new TransientError(`no miner accepted transaction ${transaction.hash}: ${summary}`, {
        dependency: 'miners',
      });
    }
    const texts = answered.map((answer) => answer.message);
    if (texts.some((text) => text.includes(NONCE_USED))) {
      return { kind: 'nonce_used', message: summary };
    }
    if (texts.some((text) => text.includes(NONCE_AHEAD))) {
      return { kind: 'nonce_ahead', message: summary };
    }
    return { kind: 'rejected', message: summary };
  }

  async #post(miner: string, body: string): Promise<MinerAnswer> {
    try {
      const response = await fetch(`${miner}/v1/transaction/put`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      const text = await response.text();
      if (response.ok) {
        return { miner, ok: true };
      }
      const parsed = errorSchema.safeParse(safeJson(text));
      const message = parsed.success ? parsed.data.error : `HTTP ${response.status}: ${shortenBody(text)}`;
      this.#logger.debug('miner rejected the transaction', { miner, status: response.status, message });
      return { miner, ok: false, status: response.status, message };
    } catch (error) {
      const message =
        error instanceof DOMException && error.name === 'TimeoutError'
          ? `timed out after ${this.#timeoutMs} ms`
          : describeFetchError(error);
      return { miner, ok: false, message };
    }
  }

  /**
   * Fee in SAS of a call: the miners' fee table (`GET /v1/fees_table`) looked up by smart-contract
   * address and function name, `transfer` for sends. The table is read once per client (one run)
   * and the table most miners return wins.
   */
  async fee(toClientId: string, functionName: string | undefined): Promise<bigint> {
    const table = await this.#readFeeTable();
    const fee =
      functionName === undefined
        ? table.transfer?.transfer
        : (table[toClientId]?.[functionName] ?? undefined);
    if (fee === undefined) {
      throw new TransientError(
        `fee table has no entry for ${functionName === undefined ? 'transfer' : `${toClientId}/${functionName}`}`,
        { dependency: 'miners' },
      );
    }
    return fee;
  }

  #readFeeTable(): Promise<Record<string, Record<string, bigint>>> {
    this.#feeTable ??= this.#fetchFeeTable().catch((error: unknown) => {
      this.#feeTable = undefined;
      throw error;
    });
    return this.#feeTable;
  }

  async #fetchFeeTable(): Promise<Record<string, Record<string, bigint>>> {
    const tables = await Promise.all(this.miners.map((miner) => this.#getFeeTable(miner)));
    const counts = new Map<string, { count: number; table: Record<string, Record<string, bigint>> }>();
    for (const table of tables) {
      if (table === undefined) {
        continue;
      }
      const key = canonicalJson(
        JSON.parse(
          JSON.stringify(table, (_name, value) => (typeof value === 'bigint' ? value.toString() : value)),
        ),
      );
      const entry = counts.get(key) ?? { count: 0, table };
      entry.count += 1;
      counts.set(key, entry);
    }
    const best = [...counts.values()].sort((a, b) => b.count - a.count)[0];
    const majority = Math.floor(this.miners.length / 2) + 1;
    if (best === undefined || best.count < majority) {
      throw new TransientError(
        `fee table: no response agreed on by a majority of ${this.miners.length} miners (best agreement ${best?.count ?? 0})`,
        { dependency: 'miners' },
      );
    }
    return best.table;
  }

  async #getFeeTable(miner: string): Promise<Record<string, Record<string, bigint>> | undefined> {
    try {
      const response = await fetch(`${miner}/v1/fees_table`, {
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      if (!response.ok) {
        return undefined;
      }
      return parseFeeTable(await response.text());
    } catch (error) {
      this.#logger.debug('fee table read failed', { miner, error: errorMessage(error) });
      return undefined;
    }
  }
}

/** Parses `{ "<address>": { "<function>": fee } }`, keeping every fee as an exact bigint. */
export function parseFeeTable(text: string): Record<string, Record<string, bigint>> {
  const quoted = text.replace(/:\s*(\d+)(\s*[,}])/g, ':"$1"$2');
  const parsed = z
    .record(z.string(), z.record(z.string(), z.string().regex(/^\d+$/)))
    .parse(JSON.parse(quoted));
  const table: Record<string, Record<string, bigint>> = {};
  for (const [address, fees] of Object.entries(parsed)) {
    table[address] = Object.fromEntries(Object.entries(fees).map(([name, fee]) => [name, BigInt(fee)]));
  }
  return table;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
