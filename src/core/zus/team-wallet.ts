import { requireVariable } from '../config.js';
import type { RunContext } from '../engine/context.js';
import { readSpendingCaps, TeamWalletSpending } from '../spending.js';
import { connectChain } from './connect.js';
import { Outbox } from './outbox.js';
import type { PaymentDeps } from './payments.js';
import { loadWallet, type Wallet } from './wallet.js';

/** Everything a worker needs to pay from the team wallet in one run. */
export interface TeamWallet extends PaymentDeps {
  wallet: Wallet;
  sharders: Awaited<ReturnType<typeof connectChain>>['sharders'];
  miners: Awaited<ReturnType<typeof connectChain>>['miners'];
}

/** Loads the team wallet and builds the chain clients, the outbox and the guard rails of a run. */
export async function openTeamWallet(ctx: RunContext): Promise<TeamWallet> {
  const wallet = await loadWallet(requireVariable(ctx.env, 'ZBOX_TEAM_WALLET'), {
    scheme: requireVariable(ctx.env, 'ZUS_SIGNATURE_SCHEME'),
    variable: 'ZBOX_TEAM_WALLET',
  });
  const caps = readSpendingCaps(ctx.env);
  const { sharders, miners } = await connectChain(ctx.env, ctx.logger);
  const outbox = new Outbox({
    pool: ctx.pool,
    sharders,
    miners,
    wallet,
    chainId: requireVariable(ctx.env, 'ZUS_CHAIN_ID'),
    futureNonce: requireVariable(ctx.env, 'ZUS_FUTURE_NONCE'),
    txnTimeoutSeconds: requireVariable(ctx.env, 'ZUS_TXN_TIMEOUT_SECONDS'),
    expiryMarginSeconds: requireVariable(ctx.env, 'ZUS_EXPIRY_MARGIN_SECONDS'),
    logger: ctx.logger,
  });
  ctx.logger.info('team wallet loaded', { client_id: wallet.clientId });
  return {
    wallet,
    sharders,
    miners,
    pool: ctx.pool,
    outbox,
    spending: new TeamWalletSpending({ walletClientId: wallet.clientId, caps, logger: ctx.logger }),
    logger: ctx.logger,
    confirmationWaitMs: requireVariable(ctx.env, 'ZUS_CONFIRMATION_WAIT_SECONDS') * 1000,
    pollIntervalMs: requireVariable(ctx.env, 'ZUS_CONFIRMATION_POLL_MS'),
  };
}
