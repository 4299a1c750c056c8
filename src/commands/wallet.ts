import { type Environment, readVariable, requireVariable } from '../core/config.js';
import { EXIT } from '../core/exit-codes.js';
import { createLogger, toJson } from '../core/output/logger.js';
import { formatZcn } from '../core/zus/amounts.js';
import { fetchWalletState } from '../core/zus/chain.js';
import { connectSharders } from '../core/zus/connect.js';
import { loadWallet } from '../core/zus/wallet.js';

/**
 * wallet: prints the team wallet's client id, public key, balance in ZCN and SAS, and the next
 * nonce the chain expects. It prints nothing secret and changes nothing.
 */
export async function runWallet(
  options: { json: boolean },
  io: { env: Environment; writeOut: (text: string) => void },
): Promise<number> {
  const logger = createLogger(
    {
      json: options.json,
      level: readVariable(io.env, 'ZBOX_LOG_LEVEL') ?? 'info',
      write: (line) => io.writeOut(`${line}\n`),
    },
    { worker: 'wallet' },
  );
  const wallet = await loadWallet(requireVariable(io.env, 'ZBOX_TEAM_WALLET'), {
    scheme: requireVariable(io.env, 'ZUS_SIGNATURE_SCHEME'),
    variable: 'ZBOX_TEAM_WALLET',
  });
  const sharders = await connectSharders(io.env, logger);
  const state = await fetchWalletState(sharders, wallet.clientId);
  const report = {
    client_id: wallet.clientId,
    public_key: wallet.publicKey,
    signature_scheme: wallet.scheme,
    balance_zcn: formatZcn(state.balanceSas),
    balance_sas: state.balanceSas,
    next_nonce: state.nonce + 1,
  };
  if (options.json) {
    io.writeOut(`${toJson(report)}\n`);
  } else {
    const rows = Object.entries(report).map(
      ([key, value]) => `  ${key.replaceAll('_', ' ').padEnd(16)}  ${String(value)}`,
    );
    io.writeOut(`${rows.join('\n')}\n`);
  }
  return EXIT.ok;
}
