import { z } from 'zod';
import { ConfigError } from './errors.js';

/**
 * The whole environment of zbox-workers, in one place. Each variable has a zod schema, its
 * meaning, its unit and its default; `README.md` lists the same table (a test keeps them equal).
 * A command reads only the variables it declares, so `free-storage` never needs an Elasticsearch
 * URL. Values of secret variables are never printed, not even inside error messages.
 */

export interface VariableSpec<T> {
  schema: z.ZodType<T>;
  meaning: string;
  /** Default as shown to people; `undefined` means required by the commands that use it. */
  shownDefault?: string;
  secret?: boolean;
  /** How to fix a missing or invalid value. */
  fix: string;
}

function variable<T>(spec: VariableSpec<T>): VariableSpec<T> {
  return spec;
}

const positiveInt = (max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(1).max(max);
const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });
const urlList = z
  .string()
  .transform((text) =>
    text
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== ''),
  )
  .pipe(z.array(httpUrl).min(1, 'must list at least one URL'));

export const VARIABLES = {
  DATABASE_URL: variable({
    schema: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// connection URL'),
    meaning: 'PostgreSQL connection URL of the platform database',
    secret: true,
    fix: 'set it to postgres://USER:PASSWORD@HOST:5432/DATABASE, or pass --embedded to use the embedded database',
  }),
  ZBOX_DATA_DIR: variable({
    schema: z.string().min(1),
    meaning:
      'folder of the embedded PostgreSQL, used with --embedded and by demo (the tests use .zbox-data/test)',
    shownDefault: '.zbox-data (under the working directory)',
    fix: 'set it to a writable folder',
  }),
  ZBOX_RUN_DEADLINE_SECONDS: variable({
    schema: positiveInt(86_400),
    meaning: 'seconds after start at which a run stops starting tasks and drains',
    shownDefault: '240',
    fix: 'set it to whole seconds between 1 and 86400',
  }),
  ZBOX_GRACE_SECONDS: variable({
    schema: z.coerce.number().int().min(0).max(3_600),
    meaning: 'seconds in-flight tasks get to finish after the deadline or a SIGTERM/SIGINT',
    shownDefault: '30',
    fix: 'set it to whole seconds between 0 and 3600 (match terminationGracePeriodSeconds)',
  }),
  ZBOX_LEASE_SECONDS: variable({
    schema: positiveInt(7 * 86_400),
    meaning: 'seconds a claim is held before another run may take the task; at least deadline + grace + 30',
    shownDefault: 'deadline + grace + 60',
    fix: 'set it to at least ZBOX_RUN_DEADLINE_SECONDS + ZBOX_GRACE_SECONDS + 30, or leave it unset',
  }),
  ZBOX_CONCURRENCY: variable({
    schema: positiveInt(1_000),
    meaning: 'tasks executed at once (--concurrency)',
    shownDefault: '8',
    fix: 'set it to a whole number between 1 and 1000',
  }),
  ZBOX_LIMIT: variable({
    schema: positiveInt(),
    meaning: 'maximum tasks claimed in one run (--limit)',
    shownDefault: '1000',
    fix: 'set it to a whole number of at least 1',
  }),
  ZBOX_CLAIM_BATCH: variable({
    schema: positiveInt(10_000),
    meaning: 'tasks claimed by one claim statement',
    shownDefault: '100',
    fix: 'set it to a whole number between 1 and 10000',
  }),
  ZBOX_BACKOFF_BASE_SECONDS: variable({
    schema: positiveInt(86_400),
    meaning: 'backoff after the first transient failure; doubles per attempt, full jitter',
    shownDefault: '30',
    fix: 'set it to whole seconds between 1 and 86400',
  }),
  ZBOX_BACKOFF_MAX_SECONDS: variable({
    schema: positiveInt(30 * 86_400),
    meaning: 'cap of the retry backoff',
    shownDefault: '3600',
    fix: 'set it to whole seconds, at least ZBOX_BACKOFF_BASE_SECONDS',
  }),
  ZBOX_COOLDOWN_FAILURES: variable({
    schema: positiveInt(1_000),
    meaning: 'consecutive transient failures of one dependency after which a run stops calling it',
    shownDefault: '3',
    fix: 'set it to a whole number of at least 1',
  }),
  ZBOX_RETENTION_DAYS: variable({
    schema: positiveInt(36_500),
    meaning: 'age in days after which team-wallet spending rows are deleted (--retention-days)',
    shownDefault: '90',
    fix: 'set it to whole days of at least 1',
  }),
  ZBOX_DELETE_BATCH_SIZE: variable({
    schema: positiveInt(1_000_000),
    meaning:
      "rows of the table (expired or not) per range transaction of delete-wallet-transactions, by the planner's rows-per-block estimate (--batch-size)",
    shownDefault: '5000',
    fix: 'set it to a whole number between 1 and 1000000',
  }),
  ZBOX_LOCK_TIMEOUT_MS: variable({
    schema: positiveInt(600_000),
    meaning:
      'lock_timeout of each delete-wallet-transactions range, in milliseconds; a range that waits longer is retried',
    shownDefault: '2000',
    fix: 'set it to whole milliseconds of at least 1',
  }),
  ZUS_SHARDERS: variable({
    schema: urlList,
    meaning: 'comma-separated sharder URLs; when unset they come from ZUS_BLOCK_WORKER',
    shownDefault: 'from ZUS_BLOCK_WORKER',
    fix: 'set it to comma-separated http(s) URLs, or unset it and set ZUS_BLOCK_WORKER',
  }),
  ZUS_BLOCK_WORKER: variable({
    schema: httpUrl,
    meaning: "URL of the network's block worker, whose /network lists miners and sharders",
    fix: 'set it to the block worker URL (for mainnet the one in the Züs CLI config), or set ZUS_SHARDERS',
  }),
  ZUS_TIMEOUT_MS: variable({
    schema: positiveInt(600_000),
    meaning: 'timeout of one request to one sharder or block worker, in milliseconds',
    shownDefault: '10000',
    fix: 'set it to whole milliseconds of at least 1',
  }),
  ZUS_CONSENSUS_SHARE: variable({
    schema: z.coerce.number().gt(0).max(1),
    meaning: 'share of sharders that must return the same answer for a read to be accepted',
    shownDefault: '0.51',
    fix: 'set it to a fraction above 0 and at most 1',
  }),
  ZUS_MINERS: variable({
    schema: urlList,
    meaning: 'comma-separated miner URLs; when unset they come from ZUS_BLOCK_WORKER',
    shownDefault: 'from ZUS_BLOCK_WORKER',
    fix: 'set it to comma-separated http(s) URLs, or unset it and set ZUS_BLOCK_WORKER',
  }),
  ZUS_CHAIN_ID: variable({
    schema: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hexadecimal characters'),
    meaning: "chain id that every transaction names; miners reject another network's id",
    shownDefault: '0afc093ffb509f059c55478bc1a60351cef7b4e9c008a53a6cc8241ca8617dfe (mainnet)',
    fix: 'set it to the 64-hex chain id of the network',
  }),
  ZUS_SIGNATURE_SCHEME: variable({
    schema: z.enum(['bls0chain', 'ed25519'], { error: 'must be bls0chain or ed25519' }),
    meaning: 'signature scheme of the wallets (bls0chain on mainnet)',
    shownDefault: 'bls0chain',
    fix: 'set it to bls0chain or ed25519',
  }),
  ZBOX_TEAM_WALLET: variable({
    schema: z.string().min(1),
    meaning: 'team wallet that pays for transactions: a path to the mounted wallet JSON, or the JSON itself',
    secret: true,
    fix: 'mount the team wallet secret and set the variable to its path, or set it to the wallet JSON',
  }),
  ZUS_TXN_TIMEOUT_SECONDS: variable({
    schema: positiveInt(86_400),
    meaning: "miners' acceptance window for a transaction's creation date, in seconds",
    shownDefault: '600',
    fix: "set it to the chain's transaction timeout in whole seconds",
  }),
  ZUS_FUTURE_NONCE: variable({
    schema: positiveInt(1_000),
    meaning: "nonces the chain accepts ahead of a wallet's state; the most transactions in flight per wallet",
    shownDefault: '10',
    fix: "set it to the chain's future_nonce setting",
  }),
  ZUS_EXPIRY_MARGIN_SECONDS: variable({
    schema: z.coerce.number().int().min(0).max(86_400),
    meaning: 'chain-time seconds past the acceptance window before a transaction counts as never accepted',
    shownDefault: '60',
    fix: 'set it to whole seconds of at least 0',
  }),
  ZBOX_OPERATOR_WALLET: variable({
    schema: z.string().min(1),
    meaning:
      '0Box operator wallet whose key blobbers trust (`0box.public_key`); signs the Zbox-Signature header: a path to the wallet JSON, or the JSON itself',
    secret: true,
    fix: 'mount the 0Box operator wallet secret and set the variable to its path, or set it to the wallet JSON',
  }),
  ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES: variable({
    schema: z
      .enum(['true', 'false'], { error: 'must be true or false' })
      .transform((value) => value === 'true'),
    meaning:
      'lets blobber URLs resolve to loopback and private addresses; only for tests and the local demo (logged at start)',
    shownDefault: 'false',
    fix: 'set it to false in production, or true for a local demo',
  }),
  ZBOX_BLOBBER_TIMEOUT_MS: variable({
    schema: positiveInt(600_000),
    meaning: 'timeout of one request to a blobber, in milliseconds',
    shownDefault: '15000',
    fix: 'set it to whole milliseconds of at least 1',
  }),
  ZBOX_AUTH_TICKET_MODE: variable({
    schema: z.enum(['round', 'unbound'], { error: 'must be round or unbound' }),
    meaning: 'round: tickets bound to an auth_round_expiry (current chains); unbound: the older tickets',
    shownDefault: 'round',
    fix: 'set it to round or unbound',
  }),
  ZBOX_AUTH_TICKET_HORIZON_ROUNDS: variable({
    schema: positiveInt(1_000_000_000),
    meaning: 'rounds ahead of the current round a new ticket is bound to (before rounding up to the epoch)',
    shownDefault: '200000',
    fix: 'set it to a whole number of rounds',
  }),
  ZBOX_AUTH_TICKET_EPOCH_ROUNDS: variable({
    schema: positiveInt(1_000_000_000),
    meaning: 'ticket rounds are rounded up to a multiple of this, so tickets fetched apart share a round',
    shownDefault: '50000',
    fix: 'set it to a whole number of rounds',
  }),
  ZBOX_AUTH_TICKET_REFRESH_ROUNDS: variable({
    schema: positiveInt(1_000_000_000),
    meaning: 'a ticket whose round is within this many rounds of the current round is fetched again',
    shownDefault: '50000',
    fix: 'set it to a whole number of rounds, below ZBOX_AUTH_TICKET_HORIZON_ROUNDS',
  }),
  ZBOX_MAX_LOCK_PER_TASK_ZCN: variable({
    schema: z.string().regex(/^\d+(\.\d{1,10})?$/, 'must be a decimal amount of ZCN, for example 50 or 2.5'),
    meaning: 'largest value one task may send or lock, in ZCN; a task above it is dead with the figures',
    shownDefault: '100',
    fix: 'set it to a decimal amount of ZCN',
  }),
  ZBOX_MAX_SPEND_PER_RUN_ZCN: variable({
    schema: z.string().regex(/^\d+(\.\d{1,10})?$/, 'must be a decimal amount of ZCN, for example 500'),
    meaning:
      'most the team wallet may spend in one run (value plus fees), in ZCN; a breach stops spending and exits 4',
    shownDefault: '1000',
    fix: 'set it to a decimal amount of ZCN',
  }),
  ZBOX_MAX_SPEND_PER_DAY_ZCN: variable({
    schema: z.string().regex(/^\d+(\.\d{1,10})?$/, 'must be a decimal amount of ZCN, for example 5000'),
    meaning:
      'most the team wallet may spend in 24 hours across all pods (value plus fees, in-flight transactions included), in ZCN; a breach stops spending and exits 4',
    shownDefault: '10000',
    fix: 'set it to a decimal amount of ZCN',
  }),
  ZUS_CONFIRMATION_WAIT_SECONDS: variable({
    schema: z.coerce.number().int().min(0).max(3_600),
    meaning: 'seconds a run waits for a transaction to confirm before leaving the task for a later run',
    shownDefault: '30',
    fix: 'set it to whole seconds between 0 and 3600',
  }),
  ZUS_CONFIRMATION_POLL_MS: variable({
    schema: positiveInt(60_000),
    meaning: 'milliseconds between two confirmation checks of a transaction a run waits for',
    shownDefault: '1000',
    fix: 'set it to whole milliseconds between 1 and 60000',
  }),
  ZBOX_THIRD_PARTY_EXTENDABLE: variable({
    schema: z
      .enum(['true', 'false'], { error: 'must be true or false' })
      .transform((value) => value === 'true'),
    meaning:
      'creates allocations third-party extendable, so the platform can extend them later for the owner',
    shownDefault: 'true',
    fix: 'set it to true or false',
  }),
  ZBOX_NOTIFY_MAX_ATTEMPTS: variable({
    schema: positiveInt(100),
    meaning: 'pushes tried per funding task before its notification counts as failed',
    shownDefault: '5',
    fix: 'set it to a whole number between 1 and 100',
  }),
  ZBOX_FIREBASE_CREDENTIALS: variable({
    schema: z.string().min(1),
    meaning: 'Firebase service-account JSON used to send push notifications (funding-zbox)',
    secret: true,
    fix: 'set it to the service-account JSON of the Firebase project (mount it from the Secret)',
  }),
  ZBOX_FIREBASE_PROJECT_ID: variable({
    schema: z.string().regex(/^[a-z0-9-]+$/, 'must be a Firebase project id'),
    meaning: 'Firebase project id; by default the project_id of ZBOX_FIREBASE_CREDENTIALS',
    shownDefault: 'from the credentials',
    fix: 'set it to the Firebase project id, or unset it',
  }),
  ZBOX_PUSH_CONCURRENCY: variable({
    schema: positiveInt(100),
    meaning: 'push requests in flight at once',
    shownDefault: '10',
    fix: 'set it to a whole number between 1 and 100',
  }),
  OPENAI_API_KEY: variable({
    schema: z.string().min(1),
    meaning:
      'OpenAI API key of the project that runs the batches (openai-batch-request, delete-openai-files)',
    secret: true,
    fix: 'set it to an OpenAI API key (mount it from the Secret)',
  }),
  OPENAI_BASE_URL: variable({
    schema: httpUrl,
    meaning: 'OpenAI API base URL including /v1',
    shownDefault: 'https://api.openai.com/v1',
    fix: 'set it to the API base URL, for example https://api.openai.com/v1, or unset it',
  }),
  ZBOX_OPENAI_TIMEOUT_MS: variable({
    schema: positiveInt(3_600_000),
    meaning: 'timeout of one OpenAI request, in milliseconds (an upload needs headroom)',
    shownDefault: '120000',
    fix: 'set it to whole milliseconds of at least 1',
  }),
  ZBOX_OPENAI_BATCH_MAX_ATTEMPTS: variable({
    schema: positiveInt(100),
    meaning: "attempts of a batch task before it is dead (1 keeps the platform's old fail-once behaviour)",
    shownDefault: '3',
    fix: 'set it to a whole number of at least 1',
  }),
  ZBOX_OPENAI_FILE_MAX_AGE_HOURS: variable({
    schema: positiveInt(24 * 365),
    meaning: 'age in hours after which delete-openai-files deletes an unprotected OpenAI file',
    shownDefault: '24',
    fix: 'set it to whole hours of at least 1',
  }),
  ZBOX_OPENAI_PROTECTED_PURPOSES: variable({
    schema: z.string().transform((text) =>
      text
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item !== ''),
    ),
    meaning: 'comma-separated OpenAI file purposes delete-openai-files never deletes',
    shownDefault: 'batch',
    fix: 'set it to comma-separated purposes, for example batch,batch_output',
  }),
  ZBOX_BATCH_IMAGES: variable({
    schema: z.enum(['s3', 'inline'], { error: 'must be s3 or inline' }),
    meaning: 'how batch images reach OpenAI: s3 (presigned URLs) or inline (data: URLs in the .jsonl)',
    shownDefault: 's3',
    fix: 'set it to s3 or inline',
  }),
  ZBOX_BATCH_URL_MARGIN_HOURS: variable({
    schema: positiveInt(144),
    meaning: 'hours a presigned image URL outlives the 24 h batch window (the total is at most 7 days)',
    shownDefault: '24',
    fix: 'set it to whole hours between 1 and 144',
  }),
  ZBOX_S3_BUCKET: variable({
    schema: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name'),
    meaning: 'S3 bucket of the batch images',
    fix: 'set it to the bucket name',
  }),
  ZBOX_S3_REGION: variable({
    schema: z.string().min(1),
    meaning: 'S3 signing region',
    shownDefault: 'us-east-1',
    fix: 'set it to the bucket region, for example eu-central-1',
  }),
  ZBOX_S3_ENDPOINT: variable({
    schema: httpUrl,
    meaning: 'endpoint of an S3-compatible server; AWS when unset',
    shownDefault: 'AWS',
    fix: 'set it to the server URL, or unset it for AWS',
  }),
  ZBOX_S3_FORCE_PATH_STYLE: variable({
    schema: z
      .enum(['true', 'false'], { error: 'must be true or false' })
      .transform((value) => value === 'true'),
    meaning: 'puts the bucket in the path instead of the host name (most S3-compatible servers need it)',
    shownDefault: 'false',
    fix: 'set it to true or false',
  }),
  AWS_ACCESS_KEY_ID: variable({
    schema: z.string().min(1),
    meaning: 'static S3 access key id; unset uses the AWS default credential chain (an IAM role)',
    shownDefault: 'default chain',
    secret: true,
    fix: 'set it with AWS_SECRET_ACCESS_KEY, or unset both',
  }),
  AWS_SECRET_ACCESS_KEY: variable({
    schema: z.string().min(1),
    meaning: 'static S3 secret access key',
    shownDefault: 'default chain',
    secret: true,
    fix: 'set it with AWS_ACCESS_KEY_ID, or unset both',
  }),
  ZBOX_TMP_DIR: variable({
    schema: z.string().min(1),
    meaning: 'folder for temporary files (downloaded shares, batch files); an emptyDir in Kubernetes',
    shownDefault: 'the system temporary folder',
    fix: 'set it to a writable folder',
  }),
  ELASTICSEARCH_URL: variable({
    schema: httpUrl,
    meaning: 'Elasticsearch node URL for expiry notifications',
    fix: 'set it to the cluster URL, for example https://es.internal:9200',
  }),
  ELASTICSEARCH_API_KEY: variable({
    schema: z.string().min(1),
    meaning: 'Elasticsearch API key (base64 id:key); optional',
    shownDefault: 'none',
    secret: true,
    fix: 'set it to the encoded API key, or unset it',
  }),
  ZBOX_EXPIRY_INDEX: variable({
    schema: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'must be a lower-case Elasticsearch index name'),
    meaning: 'Elasticsearch index the expiry notification documents are written to',
    shownDefault: 'zbox-notifications',
    fix: 'set it to a lower-case index name',
  }),
  ZBOX_EXPIRY_WINDOWS_DAYS: variable({
    schema: z
      .string()
      .transform((text) => text.split(',').map((item) => Number(item.trim())))
      .pipe(z.array(z.number().int().min(1).max(365)).min(1))
      .transform((days) => [...new Set(days)].sort((a, b) => a - b)),
    meaning: 'comma-separated notice windows in days before an allocation expires',
    shownDefault: '1,3,7',
    fix: 'set it to comma-separated whole days between 1 and 365, for example 1,3,7',
  }),
  ZBOX_LOG_LEVEL: variable({
    schema: z.enum(['debug', 'info', 'warn', 'error']),
    meaning: 'lowest log level written (--verbose sets debug, --quiet sets warn)',
    shownDefault: 'info',
    fix: 'set it to debug, info, warn or error',
  }),
} as const;

export type VariableName = keyof typeof VARIABLES;
export type VariableValue<K extends VariableName> = z.output<(typeof VARIABLES)[K]['schema']>;

const DEFAULTS: Partial<Record<VariableName, string>> = {
  ZBOX_DATA_DIR: '.zbox-data',
  ZBOX_RUN_DEADLINE_SECONDS: '240',
  ZBOX_GRACE_SECONDS: '30',
  ZBOX_CONCURRENCY: '8',
  ZBOX_LIMIT: '1000',
  ZBOX_CLAIM_BATCH: '100',
  ZBOX_BACKOFF_BASE_SECONDS: '30',
  ZBOX_BACKOFF_MAX_SECONDS: '3600',
  ZBOX_COOLDOWN_FAILURES: '3',
  ZBOX_RETENTION_DAYS: '90',
  ZBOX_DELETE_BATCH_SIZE: '5000',
  ZBOX_LOCK_TIMEOUT_MS: '2000',
  ZUS_TIMEOUT_MS: '10000',
  ZUS_CONSENSUS_SHARE: '0.51',
  ZUS_CHAIN_ID: '0afc093ffb509f059c55478bc1a60351cef7b4e9c008a53a6cc8241ca8617dfe',
  ZUS_SIGNATURE_SCHEME: 'bls0chain',
  ZUS_TXN_TIMEOUT_SECONDS: '600',
  ZUS_FUTURE_NONCE: '10',
  ZUS_EXPIRY_MARGIN_SECONDS: '60',
  ZBOX_BLOBBER_ALLOW_PRIVATE_ADDRESSES: 'false',
  ZBOX_MAX_LOCK_PER_TASK_ZCN: '100',
  ZUS_CONFIRMATION_WAIT_SECONDS: '30',
  ZUS_CONFIRMATION_POLL_MS: '1000',
  ZBOX_THIRD_PARTY_EXTENDABLE: 'true',
  ZBOX_NOTIFY_MAX_ATTEMPTS: '5',
  ZBOX_PUSH_CONCURRENCY: '10',
  OPENAI_BASE_URL: 'https://api.openai.com/v1',
  ZBOX_OPENAI_TIMEOUT_MS: '120000',
  ZBOX_OPENAI_BATCH_MAX_ATTEMPTS: '3',
  ZBOX_OPENAI_FILE_MAX_AGE_HOURS: '24',
  ZBOX_OPENAI_PROTECTED_PURPOSES: 'batch',
  ZBOX_BATCH_IMAGES: 's3',
  ZBOX_BATCH_URL_MARGIN_HOURS: '24',
  ZBOX_S3_REGION: 'us-east-1',
  ZBOX_S3_FORCE_PATH_STYLE: 'false',
  ZBOX_MAX_SPEND_PER_RUN_ZCN: '1000',
  ZBOX_MAX_SPEND_PER_DAY_ZCN: '10000',
  ZBOX_BLOBBER_TIMEOUT_MS: '15000',
  ZBOX_AUTH_TICKET_MODE: 'round',
  ZBOX_AUTH_TICKET_HORIZON_ROUNDS: '200000',
  ZBOX_AUTH_TICKET_EPOCH_ROUNDS: '50000',
  ZBOX_AUTH_TICKET_REFRESH_ROUNDS: '50000',
  ZBOX_EXPIRY_INDEX: 'zbox-notifications',
  ZBOX_EXPIRY_WINDOWS_DAYS: '1,3,7',
  ZBOX_LOG_LEVEL: 'info',
};

export type Environment = Record<string, string | undefined>;

/**
 * Returns the requirements `env` does not meet, each as its variable names joined by " or ". An
 * inner list is met when any one of its variables is set to a non-empty value.
 */
export function unmetRequirements(
  env: Environment,
  requires: ReadonlyArray<readonly VariableName[]>,
): string[] {
  return requires
    .filter((names) => !names.some((name) => isSet(env, name)))
    .map((names) => names.join(' or '));
}

/** Returns whether a variable is set to a non-empty value. */
export function isSet(env: Environment, name: VariableName): boolean {
  return env[name] !== undefined && env[name] !== '';
}

/**
 * Reads one variable: the environment's value, else its default. Returns `undefined` for an
 * unset optional variable. Raises ConfigError naming the variable, the problem and the fix; the
 * value itself is shown only for variables that are not secret.
 */
export function readVariable<K extends VariableName>(
  env: Environment,
  name: K,
): VariableValue<K> | undefined {
  const spec = VARIABLES[name];
  const raw = env[name] === undefined || env[name] === '' ? DEFAULTS[name] : env[name];
  if (raw === undefined) {
    return undefined;
  }
  const result = spec.schema.safeParse(raw);
  if (!result.success) {
    const problem = result.error.issues.map(problemOfIssue).join('; ');
    const shown = 'secret' in spec && spec.secret ? '' : ` (value ${JSON.stringify(raw)})`;
    throw new ConfigError(`${name}: invalid value${shown}: ${problem} (${spec.fix})`);
  }
  return result.data as VariableValue<K>;
}

/**
 * Returns an issue's problem in plain words. zod reports text that does not parse as a number as
 * "Invalid input: expected number, received NaN", which becomes "not a number".
 */
function problemOfIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type' && issue.expected === 'number') {
    return 'not a number';
  }
  return issue.message;
}

/** Reads a variable a command cannot work without. */
export function requireVariable<K extends VariableName>(env: Environment, name: K): VariableValue<K> {
  const value = readVariable(env, name);
  if (value === undefined) {
    throw new ConfigError(`${name}: missing (${VARIABLES[name].fix})`);
  }
  return value;
}

/** Timing of one run: deadline, grace and lease, with the lease checked against the other two. */
export interface RunTiming {
  deadlineSeconds: number;
  graceSeconds: number;
  leaseSeconds: number;
}

/** Minimum gap between the end of a run's grace period and the end of its leases. */
export const LEASE_MARGIN_SECONDS = 30;

export function readRunTiming(env: Environment): RunTiming {
  const deadlineSeconds = requireVariable(env, 'ZBOX_RUN_DEADLINE_SECONDS');
  const graceSeconds = requireVariable(env, 'ZBOX_GRACE_SECONDS');
  const leaseSeconds = readVariable(env, 'ZBOX_LEASE_SECONDS') ?? deadlineSeconds + graceSeconds + 60;
  const minimum = deadlineSeconds + graceSeconds + LEASE_MARGIN_SECONDS;
  if (leaseSeconds < minimum) {
    throw new ConfigError(
      `ZBOX_LEASE_SECONDS: ${leaseSeconds} is shorter than the run deadline (${deadlineSeconds}) + grace (${graceSeconds}) + ${LEASE_MARGIN_SECONDS} s margin, so a second run could take a task a live run still works on (set it to at least ${minimum}, or leave it unset)`,
    );
  }
  return { deadlineSeconds, graceSeconds, leaseSeconds };
}

/** Backoff and cooldown settings of the engine. */
export interface RetryPolicy {
  backoffBaseSeconds: number;
  backoffMaxSeconds: number;
  cooldownFailures: number;
}

export function readRetryPolicy(env: Environment): RetryPolicy {
  const backoffBaseSeconds = requireVariable(env, 'ZBOX_BACKOFF_BASE_SECONDS');
  const backoffMaxSeconds = requireVariable(env, 'ZBOX_BACKOFF_MAX_SECONDS');
  if (backoffMaxSeconds < backoffBaseSeconds) {
    throw new ConfigError(
      `ZBOX_BACKOFF_MAX_SECONDS: ${backoffMaxSeconds} is below ZBOX_BACKOFF_BASE_SECONDS (${backoffBaseSeconds}) (raise the cap or lower the base)`,
    );
  }
  return {
    backoffBaseSeconds,
    backoffMaxSeconds,
    cooldownFailures: requireVariable(env, 'ZBOX_COOLDOWN_FAILURES'),
  };
}

/** Rows of the configuration table in README.md: name, meaning, default. */
export function describeVariables(): Array<{
  name: VariableName;
  meaning: string;
  shownDefault: string;
  secret: boolean;
}> {
  return (Object.keys(VARIABLES) as VariableName[]).map((name) => {
    const spec: VariableSpec<unknown> = VARIABLES[name];
    return {
      name,
      meaning: spec.meaning,
      shownDefault: spec.shownDefault ?? 'required by the commands that use it',
      secret: spec.secret === true,
    };
  });
}
