import { type Environment, readVariable, requireVariable } from '../config.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../output/logger.js';
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
