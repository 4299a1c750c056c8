import {
  type Environment,
  isSet,
  readVariable,
  requireVariable,
  unmetRequirements,
  VARIABLES,
  type VariableName,
} from '../core/config.js';
import { readSchemaState } from '../core/db/migrate.js';
import { openDatabase, type RuntimeIo } from '../core/engine/runtime.js';
import { errorMessage } from '../core/errors.js';
import { EXIT } from '../core/exit-codes.js';
import { createMemoryLogger, toJson } from '../core/output/logger.js';
import { readSpendingCaps, spentInLastDay } from '../core/spending.js';
import { formatZcn } from '../core/zus/amounts.js';
import { fetchChainClock, fetchWalletState } from '../core/zus/chain.js';
import { connectChain, connectSharders } from '../core/zus/connect.js';
import { loadWallet } from '../core/zus/wallet.js';
import { WORKER_CATALOG } from './catalog.js';

/**
 * doctor: checks the configuration of every worker and probes each configured dependency
 * read-only (database and schema, sharders and miners, the wallets and the team wallet's balance
 * against the spend caps, Elasticsearch, OpenAI, the S3 bucket and whether its credentials outlive
 * the presigned URLs, the Firebase credential). Prints OK, FAIL or SKIP per
 * check with the reason; exits 0 only when nothing failed, otherwise 4.
 */

export interface CheckResult {
  check: string;
  status: 'OK' | 'FAIL' | 'SKIP';
  detail: string;
}

type Check = { name: string; run: () => Promise<CheckResult['detail'] | { skip: string }> };

export async function runDoctor(
  options: { json: boolean; embedded: boolean },
  io: RuntimeIo,
): Promise<number> {
  const results: CheckResult[] = [];
  for (const check of checks(io.env, options.embedded)) {
    results.push(await runCheck(check));
  }
  io.writeOut(
    options.json ? `${toJson({ msg: 'doctor', checks: results })}\n` : `${formatResults(results)}\n`,
  );
  return results.some((result) => result.status === 'FAIL') ? EXIT.attention : EXIT.ok;
}

async function runCheck(check: Check): Promise<CheckResult> {
  try {
    const outcome = await check.run();
    return typeof outcome === 'string'
      ? { check: check.name, status: 'OK', detail: outcome }
      : { check: check.name, status: 'SKIP', detail: outcome.skip };
  } catch (error) {
    return { check: check.name, status: 'FAIL', detail: errorMessage(error) };
  }
}

function checks(env: Environment, embedded: boolean): Check[] {
  const logger = createMemoryLogger();
  return [
    { name: 'variables', run: async () => checkVariables(env) },
    ...WORKER_CATALOG.map((entry) => ({
      name: `config ${entry.name}`,
      run: async () => {
        const missing = unmetRequirements(env, entry.requires);
        if (missing.length > 0) {
          throw new Error(`missing ${missing.join(', ')}`);
        }
        return 'all required variables are set';
      },
    })),
    {
      name: 'database',
      run: async () => {
        const database = await openDatabase(env, embedded, logger);
        try {
          const state = await readSchemaState(database.pool);
          return `reachable; schema ${state.kind}`;
        } finally {
          await database.close();
        }
      },
    },
    {
      name: 'sharders',
      run: async () => {
        if (!isSet(env, 'ZUS_SHARDERS') && !isSet(env, 'ZUS_BLOCK_WORKER')) {
          return { skip: 'ZUS_SHARDERS and ZUS_BLOCK_WORKER are unset' };
        }
        const sharders = await connectSharders(env, logger);
        const clock = await fetchChainClock(sharders);
        return `${sharders.sharders.length} sharders agree on round ${clock.round}`;
      },
    },
    {
      name: 'miners',
      run: async () => {
        if (!isSet(env, 'ZUS_MINERS') && !isSet(env, 'ZUS_BLOCK_WORKER')) {
          return { skip: 'ZUS_MINERS and ZUS_BLOCK_WORKER are unset' };
        }
        const { miners } = await connectChain(env, logger);
        const fee = await miners.fee('', undefined);
        return `${miners.miners.length} miners; transfer fee ${formatZcn(fee)} ZCN`;
      },
    },
    { name: 'team wallet', run: () => checkTeamWallet(env, embedded) },
    {
      name: 'operator wallet',
      run: async () => {
        if (!isSet(env, 'ZBOX_OPERATOR_WALLET')) {
          return { skip: 'ZBOX_OPERATOR_WALLET is unset' };
        }
        const wallet = await loadWallet(requireVariable(env, 'ZBOX_OPERATOR_WALLET'), {
          scheme: requireVariable(env, 'ZUS_SIGNATURE_SCHEME'),
          variable: 'ZBOX_OPERATOR_WALLET',
        });
        return `loaded; client id ${wallet.clientId}`;
      },
    },
    {
      name: 'elasticsearch',
      run: async () => {
        if (!isSet(env, 'ELASTICSEARCH_URL')) {
          return { skip: 'ELASTICSEARCH_URL is unset' };
        }
        const { createElasticsearchClient } = await import('../core/notify/elasticsearch.js');
        const client = createElasticsearchClient({
          node: requireVariable(env, 'ELASTICSEARCH_URL'),
          apiKey: readVariable(env, 'ELASTICSEARCH_API_KEY'),
          requestTimeoutMs: requireVariable(env, 'ZUS_TIMEOUT_MS'),
        });
        try {
          const info = await client.info();
          return `reachable; version ${info.version.number}`;
        } finally {
          await client.close();
        }
      },
    },
    {
      name: 'openai',
      run: async () => {
        if (!isSet(env, 'OPENAI_API_KEY')) {
          return { skip: 'OPENAI_API_KEY is unset' };
        }
        const { connectOpenAI } = await import('../core/openai/connect.js');
        const { listFiles } = await import('../core/openai/client.js');
        const client = await connectOpenAI(env, logger);
        for await (const _file of listFiles(client, { limit: 1 })) {
          break;
        }
        return `reachable at ${requireVariable(env, 'OPENAI_BASE_URL')}; the key may list files`;
      },
    },
    { name: 's3 bucket', run: () => checkS3(env) },
    {
      name: 'firebase credential',
      run: async () => {
        if (!isSet(env, 'ZBOX_FIREBASE_CREDENTIALS')) {
          return { skip: 'ZBOX_FIREBASE_CREDENTIALS is unset' };
        }
        const parsed = JSON.parse(requireVariable(env, 'ZBOX_FIREBASE_CREDENTIALS')) as Record<
          string,
          unknown
        >;
        const required = ['project_id', 'client_email', 'private_key'].filter(
          (field) => typeof parsed[field] !== 'string',
        );
        if (required.length > 0) {
          throw new Error(`the service-account JSON lacks ${required.join(', ')}`);
        }
        return `service account for project ${String(parsed.project_id)} (not contacted: no network call)`;
      },
    },
  ];
}

/** Every variable that is set must be valid; secrets are reported by name only. */
function checkVariables(env: Environment): string {
  const problems: string[] = [];
  for (const name of Object.keys(VARIABLES) as VariableName[]) {
    try {
      readVariable(env, name);
    } catch (error) {
      problems.push(errorMessage(error));
    }
  }
  if (problems.length > 0) {
    throw new Error(problems.join('; '));
  }
  return 'every set variable is valid';
}

/** Loads the team wallet and compares its balance with what the caps allow to spend next. */
async function checkTeamWallet(env: Environment, embedded: boolean): Promise<string | { skip: string }> {
  if (!isSet(env, 'ZBOX_TEAM_WALLET')) {
    return { skip: 'ZBOX_TEAM_WALLET is unset' };
  }
  const logger = createMemoryLogger();
  const wallet = await loadWallet(requireVariable(env, 'ZBOX_TEAM_WALLET'), {
    scheme: requireVariable(env, 'ZUS_SIGNATURE_SCHEME'),
    variable: 'ZBOX_TEAM_WALLET',
  });
  const sharders = await connectSharders(env, logger);
  const state = await fetchWalletState(sharders, wallet.clientId);
  const caps = readSpendingCaps(env);
  const database = await openDatabase(env, embedded, logger);
  let spentSas: bigint;
  try {
    spentSas = await spentInLastDay(database.pool, wallet.clientId);
  } finally {
    await database.close();
  }
  const dayLeftSas = caps.perDaySas > spentSas ? caps.perDaySas - spentSas : 0n;
  const wantedSas = caps.perRunSas < dayLeftSas ? caps.perRunSas : dayLeftSas;
  const figures = `balance ${formatZcn(state.balanceSas)} ZCN, spent in 24 h ${formatZcn(spentSas)} ZCN, per-run cap ${formatZcn(caps.perRunSas)} ZCN, daily cap ${formatZcn(caps.perDaySas)} ZCN`;
  if (state.balanceSas < wantedSas) {
    throw new Error(`${figures}: the balance is below what one run may spend (top up ${wallet.clientId})`);
  }
  return figures;
}

/** Checks the bucket and that the signing credentials outlive the presigned image URLs. */
async function checkS3(env: Environment): Promise<string | { skip: string }> {
  if (!isSet(env, 'ZBOX_S3_BUCKET')) {
    return { skip: 'ZBOX_S3_BUCKET is unset' };
  }
  const { connectS3 } = await import('../core/openai/connect.js');
  const s3 = await connectS3(env, createMemoryLogger());
  try {
    await s3.headBucket();
    const lifetimeSeconds = 24 * 3600 + requireVariable(env, 'ZBOX_BATCH_URL_MARGIN_HOURS') * 3600;
    const credentials = await s3.client.config.credentials();
    const expiration = (credentials as { expiration?: Date }).expiration;
    if (expiration !== undefined && expiration.getTime() < Date.now() + lifetimeSeconds * 1000) {
      throw new Error(
        `bucket ${s3.bucket} reachable, but the credentials expire at ${expiration.toISOString()}, before presigned URLs of ${lifetimeSeconds / 3600} h would: use long-lived keys or ZBOX_BATCH_IMAGES=inline`,
      );
    }
    return `bucket ${s3.bucket} reachable; credentials ${expiration === undefined ? 'do not expire' : `expire at ${expiration.toISOString()}`}`;
  } finally {
    s3.close();
  }
}

function formatResults(results: CheckResult[]): string {
  const width = Math.max(...results.map((result) => result.check.length));
  return results
    .map((result) => `${result.status.padEnd(4)}  ${result.check.padEnd(width)}  ${result.detail}`)
    .join('\n');
}
