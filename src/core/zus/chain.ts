import { z } from 'zod';
import { TransientError } from '../errors.js';
import { NotFoundOnChainError, type ShardersClient } from './sharders.js';

/**
 * Chain-state reads from the sharders: a wallet's balance and nonce, the latest finalized block
 * (the chain's own clock and round), and transaction confirmations.
 */

const balanceSchema = z.object({
  balance: z.union([z.number(), z.string()]).transform((value) => BigInt(value)),
  nonce: z.number().int().nonnegative().optional().default(0),
  round: z.number().int().optional(),
});

export interface WalletState {
  balanceSas: bigint;
  /** Nonce of the last transaction the chain applied for this wallet; the next one is nonce + 1. */
  nonce: number;
}

/** The chain returns "value not present" for a wallet it has never seen, which has balance 0 and nonce 0. */
function isUnknownWallet(_status: number, body: unknown): boolean {
  return (body as { error?: unknown } | null)?.error === 'value not present';
}

export async function fetchWalletState(sharders: ShardersClient, clientId: string): Promise<WalletState> {
  try {
    const body = await sharders.getJson(
      '/v1/client/get/balance',
      { client_id: clientId },
      {
        notFound: isUnknownWallet,
        compareBy: (answer) => {
          const parsed = balanceSchema.parse(answer);
          return { balance: parsed.balance.toString(), nonce: parsed.nonce };
        },
      },
    );
    const parsed = balanceSchema.parse(body);
    return { balanceSas: parsed.balance, nonce: parsed.nonce };
  } catch (error) {
    if (error instanceof NotFoundOnChainError) {
      return { balanceSas: 0n, nonce: 0 };
    }
    throw error;
  }
}

const blockSchema = z.object({ creation_date: z.number().int(), round: z.number().int() });

export interface ChainClock {
  /** Unix seconds of the latest finalized block that at least the consensus share has reached. */
  timeSeconds: number;
  round: number;
}

/**
 * Reads the chain's clock from the latest finalized block. Sharders legitimately differ by a few
 * blocks, so the value returned is the newest one that at least `required` sharders have
 * reached: a lower bound of the chain's time that a lagging or lying minority cannot move forward.
 */
export async function fetchChainClock(sharders: ShardersClient): Promise<ChainClock> {
  const answers = await sharders.getFromEach('/v1/block/get/latest_finalized');
  const blocks = answers.flatMap(({ body }) => {
    const parsed = blockSchema.safeParse(body);
    return parsed.success ? [parsed.data] : [];
  });
  if (blocks.length < sharders.required) {
    throw new TransientError(
      `latest finalized block: only ${blocks.length} of ${sharders.sharders.length} sharders returned one, ${sharders.required} needed`,
      { dependency: 'sharders' },
    );
  }
  const byTime = [...blocks].sort((a, b) => b.creation_date - a.creation_date);
  const byRound = [...blocks].sort((a, b) => b.round - a.round);
  const timeSeconds = (byTime[sharders.required - 1] as { creation_date: number }).creation_date;
  const round = (byRound[sharders.required - 1] as { round: number }).round;
  return { timeSeconds, round };
}

const confirmationSchema = z.object({
  confirmation: z
    .object({
      hash: z.string(),
      transaction_status: z.number().int(),
      txn: z
        .object({ transaction_output: z.string().optional().default('') })
        .loose()
        .optional(),
      round: z.number().int().optional(),
    })
    .loose(),
});

export type Confirmation =
  | { kind: 'applied'; status: 1; output: string; round: number | undefined }
  | { kind: 'failed'; status: 2 | 3; output: string; round: number | undefined }
  | { kind: 'not_found' };

function isConfirmationMissing(_status: number, body: unknown): boolean {
  return (body as { error?: { code?: unknown } } | null)?.error?.code === 'entity_not_found';
}

/**
 * Asks the sharders whether a transaction is in a finalized block. Status 1 is success; 2 and 3
 * are failures whose output text is the chain's reason. `not_found` means not yet finalized by
 * the consensus share (or never accepted).
 */
export async function fetchConfirmation(sharders: ShardersClient, hash: string): Promise<Confirmation> {
  let body: unknown;
  try {
    body = await sharders.getJson(
      '/v1/transaction/get/confirmation',
      { hash, content: 'lfb' },
      {
        notFound: isConfirmationMissing,
        compareBy: (answer) => {
          const { confirmation } = confirmationSchema.parse(answer);
          return [
            confirmation.hash,
            confirmation.transaction_status,
            confirmation.txn?.transaction_output ?? '',
          ];
        },
      },
    );
  } catch (error) {
    if (error instanceof NotFoundOnChainError) {
      return { kind: 'not_found' };
    }
    throw error;
  }
  const { confirmation } = confirmationSchema.parse(body);
  const output = confirmation.txn?.transaction_output ?? '';
  if (confirmation.transaction_status === 1) {
    return { kind: 'applied', status: 1, output, round: confirmation.round };
  }
  if (confirmation.transaction_status === 2 || confirmation.transaction_status === 3) {
    return { kind: 'failed', status: confirmation.transaction_status, output, round: confirmation.round };
  }
  throw new TransientError(
    `confirmation of ${hash}: unknown transaction_status ${confirmation.transaction_status}`,
    {
      dependency: 'sharders',
    },
  );
}
