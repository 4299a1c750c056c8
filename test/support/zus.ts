import { generateMnemonic } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import type { DatabasePool } from 'slonik';
import { createMemoryLogger, type Logger } from '../../src/core/output/logger.js';
import { MinersClient } from '../../src/core/zus/miners.js';
import { Outbox } from '../../src/core/zus/outbox.js';
import { ShardersClient } from '../../src/core/zus/sharders.js';
import { type Wallet, walletFromMnemonic } from '../../src/core/zus/wallet.js';
import type { ZusNetworkFake } from '../../src/sandbox/zus-network.js';

/** Creates a wallet from a fresh random 24-word mnemonic. */
export async function freshWallet(scheme: 'bls0chain' | 'ed25519' = 'bls0chain'): Promise<Wallet> {
  return walletFromMnemonic(generateMnemonic(wordlist, 256), scheme);
}

/** Builds the sharder and miner clients and an outbox over a fake network. */
export function outboxFor(
  network: ZusNetworkFake,
  pool: DatabasePool,
  wallet: Wallet,
  options: { logger?: Logger; timeoutMs?: number } = {},
) {
  const logger = options.logger ?? createMemoryLogger();
  const timeoutMs = options.timeoutMs ?? 3_000;
  const sharders = new ShardersClient({
    sharders: network.sharderUrls,
    timeoutMs,
    consensusShare: 0.51,
    logger,
  });
  const miners = new MinersClient({ miners: network.minerUrls, timeoutMs, logger });
  const outbox = new Outbox({
    pool,
    sharders,
    miners,
    wallet,
    chainId: network.chainId,
    futureNonce: 10,
    txnTimeoutSeconds: 600,
    expiryMarginSeconds: 60,
    logger,
    nowSeconds: () => network.now(),
  });
  return { outbox, sharders, miners, logger };
}
