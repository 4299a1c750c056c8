import { type Environment, readVariable, requireVariable } from '../config.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../output/logger.js';
import { MinersClient } from './miners.js';
import { resolveNetwork } from './network.js';
import { ShardersClient } from './sharders.js';

/**
 * Builds the sharder client from the environment: ZUS_SHARDERS when set, otherwise the list the
 * block worker (ZUS_BLOCK_WORKER) returns from `/network`.
 */
export async function connectSharders(env: Environment, logger: Logger): Promise<ShardersClient> {
  const sharders = readVariable(env, 'ZUS_SHARDERS');
  const blockWorker = readVariable(env, 'ZUS_BLOCK_WORKER');
  const timeoutMs = requireVariable(env, 'ZUS_TIMEOUT_MS');
  if (sharders === undefined && blockWorker === undefined) {
    throw new ConfigError(
      'ZUS_SHARDERS: missing, and ZUS_BLOCK_WORKER is not set either (set ZUS_SHARDERS to comma-separated sharder URLs, or ZUS_BLOCK_WORKER to the network block worker URL)',
    );
  }
  const nodes = await resolveNetwork({
    ...(sharders === undefined ? {} : { sharders }),
    ...(blockWorker === undefined ? {} : { blockWorker }),
    miners: [],
    timeoutMs,
  });
  logger.debug('sharders resolved', { sharders: nodes.sharders });
  return new ShardersClient({
    sharders: nodes.sharders,
    timeoutMs,
    consensusShare: requireVariable(env, 'ZUS_CONSENSUS_SHARE'),
    logger,
  });
}

/**
 * Builds the sharder and miner clients for workers that send transactions: ZUS_SHARDERS and
 * ZUS_MINERS when set, otherwise the lists the block worker returns from `/network`.
 */
export async function connectChain(
  env: Environment,
  logger: Logger,
): Promise<{ sharders: ShardersClient; miners: MinersClient }> {
  const sharders = readVariable(env, 'ZUS_SHARDERS');
  const miners = readVariable(env, 'ZUS_MINERS');
  const blockWorker = readVariable(env, 'ZUS_BLOCK_WORKER');
  const timeoutMs = requireVariable(env, 'ZUS_TIMEOUT_MS');
  if ((sharders === undefined || miners === undefined) && blockWorker === undefined) {
    const missing = sharders === undefined ? 'ZUS_SHARDERS' : 'ZUS_MINERS';
    throw new ConfigError(
      `${missing}: missing, and ZUS_BLOCK_WORKER is not set either (set ZUS_SHARDERS and ZUS_MINERS to comma-separated node URLs, or ZUS_BLOCK_WORKER to the network block worker URL)`,
    );
  }
  const nodes = await resolveNetwork({
    ...(sharders === undefined ? {} : { sharders }),
    ...(miners === undefined ? {} : { miners }),
    ...(blockWorker === undefined ? {} : { blockWorker }),
    timeoutMs,
  });
  if (nodes.miners.length === 0) {
    throw new ConfigError(
      'ZUS_MINERS: the network lists no miner (set ZUS_MINERS to comma-separated miner URLs)',
    );
  }
  return {
    sharders: new ShardersClient({
      sharders: nodes.sharders,
      timeoutMs,
      consensusShare: requireVariable(env, 'ZUS_CONSENSUS_SHARE'),
      logger,
    }),
    miners: new MinersClient({ miners: nodes.miners, timeoutMs, logger }),
  };
}
