import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { type DatabasePool, sql } from 'slonik';
import {
  type Environment,
  readRetryPolicy,
  readRunTiming,
  readVariable,
  requireVariable,
  unmetRequirements,
  type VariableName,
} from '../config.js';
import { assertSchemaUsable, migrate } from '../db/migrate.js';
import { openPool } from '../db/pool.js';
import { ConfigError, errorMessage } from '../errors.js';
import { EXIT, exitCodeOfError } from '../exit-codes.js';
import { createLogger, type Logger, toJson } from '../output/logger.js';
import type { Spinner } from '../output/spinner.js';
import { type RunSummary, summaryJsonLine } from '../output/summary.js';
import { emptyCounters, type RunContext } from './context.js';
import type { StopController } from './stop.js';

/** Options every worker command takes (see `addWorkerOptions` in src/cli.ts). */
export interface WorkerOptions {
  dryRun: boolean;
  limit?: number | undefined;
  ids?: bigint[] | undefined;
  concurrency?: number | undefined;
  json: boolean;
  verbose: boolean;
  quiet: boolean;
  embedded: boolean;
}

export interface WorkerSpec {
  name: string;
  /** Singleton workers hold a session advisory lock named after the worker for the whole run. */
  singleton: boolean;
  /** Variables checked before the database opens (the worker catalog's list); an inner list is met by any one name. */
  requires?: ReadonlyArray<readonly VariableName[]>;
  body: (ctx: RunContext) => Promise<void>;
}

export interface RuntimeIo {
  env: Environment;
  stop: StopController;
  /** Whether standard output is a terminal (human output) or not (JSON lines). */
  isTty: boolean;
  writeOut: (text: string) => void;
}

/** Opens the database a command asked for: DATABASE_URL, or the embedded server with --embedded. */
export async function openDatabase(
  env: Environment,
  embedded: boolean,
  logger: Logger,
): Promise<{ pool: DatabasePool; close: () => Promise<void> }> {
  if (embedded) {
    const { openEmbeddedDatabase } = await import('../db/embedded.js');
    const dataDir = resolve(readVariable(env, 'ZBOX_DATA_DIR') ?? '.zbox-data');
    const database = await openEmbeddedDatabase({ dataDir, logger });
    try {
      await migrate(database.url, logger);
      const pool = await openPool(database.url);
      return {
        pool,
        close: async () => {
          await pool.end();
          await database.release();
        },
      };
    } catch (error) {
      await database.release();
      throw error;
    }
  }
  if (readVariable(env, 'DATABASE_URL') === undefined) {
    throw new ConfigError(
      'DATABASE_URL: missing (set it to postgres://USER:PASSWORD@HOST:5432/DATABASE, or pass --embedded to use the embedded database)',
    );
  }
  const pool = await openPool(requireVariable(env, 'DATABASE_URL'));
  try {
    await assertSchemaUsable(pool, logger);
  } catch (error) {
    await pool.end();
    throw error;
  }
  return { pool, close: () => pool.end() };
}

/**
 * Runs one cycle of a worker: configuration, database, optional singleton lock, the runs record,
 * the worker's body, the summary and its exit code. Configuration and start-up errors propagate
 * to the CLI, which maps them to exit codes 2 and 3.
 */
export async function runWorker(
  spec: WorkerSpec,
  options: WorkerOptions,
  io: RuntimeIo,
): Promise<RunSummary> {
  const started = performance.now();
  const runId = randomUUID();
  const json = options.json || !io.isTty;
  // ora and chalk load only for human output, so a JSON run (every CronJob run) skips them.
  const spinner =
    json || options.quiet ? undefined : (await import('../output/spinner.js')).createSpinner(spec.name);
  const level = options.verbose
    ? 'debug'
    : options.quiet
      ? 'warn'
      : (readVariable(io.env, 'ZBOX_LOG_LEVEL') ?? 'info');
  const logger = createLogger(
    { json, level, write: (line) => io.writeOut(`${line}\n`), aroundHumanLine: spinner?.around },
    { worker: spec.name, run_id: runId },
  );
  if (spec.singleton && options.ids !== undefined) {
    throw new ConfigError(`--id: ${spec.name} is a singleton worker with no task ids (run it without --id)`);
  }
  const timing = readRunTiming(io.env);
  const retry = readRetryPolicy(io.env);
  const ctx: Omit<RunContext, 'pool'> = {
    runId,
    worker: spec.name,
    logger,
    env: io.env,
    dryRun: options.dryRun,
    limit: options.limit ?? requireVariable(io.env, 'ZBOX_LIMIT'),
    ids: options.ids,
    concurrency: options.concurrency ?? requireVariable(io.env, 'ZBOX_CONCURRENCY'),
    claimBatch: requireVariable(io.env, 'ZBOX_CLAIM_BATCH'),
    timing,
    retry,
    stop: io.stop,
    counters: emptyCounters(),
    attention: [],
    details: {},
    plan: [],
    onProgress: () => spinner?.update(ctx.counters),
  };

  checkRequirements(spec, options.embedded, io.env);
  const database = await openDatabase(io.env, options.embedded, logger);
  try {
    const full: RunContext = { ...ctx, pool: database.pool };
    spinner?.start();
    const deadline = setTimeout(() => io.stop.stop('deadline'), timing.deadlineSeconds * 1000);
    deadline.unref();
    try {
      await runBody(spec, full);
    } catch (error) {
      if (!full.dryRun) {
        await closeFailedRunRecord(full.pool, runId, error);
      }
      throw error;
    } finally {
      clearTimeout(deadline);
      spinner?.stop();
    }
    if (io.stop.reason === 'deadline') {
      full.details.stopped_at_deadline = true;
      logger.warn('run deadline reached: stopped starting work', {
        deadline_seconds: timing.deadlineSeconds,
      });
    }
    const summary = summarise(full, performance.now() - started);
    if (!full.dryRun) {
      await finishRunRecord(full.pool, summary.run_id, summary.exit_code, summary);
    }
    await printOutcome(full, summary, json, io);
    return summary;
  } finally {
    await database.close();
  }
}

async function runBody(spec: WorkerSpec, ctx: RunContext): Promise<void> {
  if (!ctx.dryRun) {
    await ctx.pool.query(
      sql.unsafe`INSERT INTO zbox_runs (run_id, worker) VALUES (${ctx.runId}, ${ctx.worker})`,
    );
  }
  ctx.logger.info(ctx.dryRun ? 'dry run started: nothing will be changed' : 'run started');
  if (!spec.singleton) {
    await spec.body(ctx);
    return;
  }
  await ctx.pool.connect(async (connection) => {
    const acquired = await connection.oneFirst(
      sql.unsafe`SELECT pg_try_advisory_lock(hashtextextended(${`zbox-workers:${ctx.worker}`}, 0))`,
    );
    if (acquired !== true) {
      ctx.logger.info('singleton lock held by another run: exiting without work', { lock: ctx.worker });
      ctx.details.lock = 'held by another run';
      return;
    }
    try {
      await spec.body(ctx);
    } finally {
      await connection.query(
        sql.unsafe`SELECT pg_advisory_unlock(hashtextextended(${`zbox-workers:${ctx.worker}`}, 0))`,
      );
    }
  });
}

function summarise(ctx: RunContext, durationMs: number): RunSummary {
  if (ctx.counters.dead > 0) {
    ctx.attention.push(`${ctx.counters.dead} task(s) went dead`);
  }
  return {
    worker: ctx.worker,
    run_id: ctx.runId,
    dry_run: ctx.dryRun,
    ...ctx.counters,
    duration_ms: Math.round(durationMs),
    exit_code: exitCodeOf(ctx),
    attention: ctx.attention,
    details: ctx.details,
  };
}

export function exitCodeOf(ctx: Pick<RunContext, 'stop' | 'attention'>): number {
  if (ctx.stop.reason === 'SIGTERM') {
    return EXIT.sigterm;
  }
  if (ctx.stop.reason === 'SIGINT') {
    return EXIT.sigint;
  }
  return ctx.attention.length > 0 ? EXIT.attention : EXIT.ok;
}

/**
 * Checks, before anything starts, that the variables the worker needs are set, and names every
 * missing one in one error. DATABASE_URL is among them unless the run uses the embedded database.
 */
function checkRequirements(spec: WorkerSpec, embedded: boolean, env: Environment): void {
  const missing = unmetRequirements(env, spec.requires ?? []);
  if (!embedded) {
    if (readVariable(env, 'DATABASE_URL') === undefined) {
      missing.unshift('DATABASE_URL (postgres://USER:PASSWORD@HOST:5432/DATABASE, or pass --embedded)');
    }
  }
  if (missing.length > 0) {
    throw new ConfigError(
      `${spec.name}: missing ${missing.join('; ')}. Set ${missing.length === 1 ? 'it' : 'them'} (\`zbox-workers doctor\` lists what each worker needs)`,
    );
  }
}

/**
 * Closes the run record of a run that ended with an error, with the exit code the CLI will return
 * and the message, so `status` does not show the run as still going. A failure to write is
 * ignored, because the error that ended the run is the one to report.
 */
async function closeFailedRunRecord(pool: DatabasePool, runId: string, error: unknown): Promise<void> {
  await finishRunRecord(pool, runId, exitCodeOfError(error), { error: errorMessage(error) }).catch(
    () => undefined,
  );
}

/** Records the end of a run: its exit code and summary. */
async function finishRunRecord(
  pool: DatabasePool,
  runId: string,
  exitCode: number,
  summary: object,
): Promise<void> {
  await pool.query(sql.unsafe`
    UPDATE zbox_runs SET finished_at = now(), exit_code = ${exitCode}, summary = ${toJson(summary)}::jsonb
    WHERE run_id = ${runId} AND finished_at IS NULL`);
}

async function printOutcome(
  ctx: RunContext,
  summary: RunSummary,
  json: boolean,
  io: RuntimeIo,
): Promise<void> {
  for (const item of ctx.plan) {
    ctx.logger.info(`would ${item.action}`, { task_id: item.task, ...item.fields });
  }
  if (json) {
    io.writeOut(`${summaryJsonLine(summary)}\n`);
    return;
  }
  const { summaryTable } = await import('../output/summary-table.js');
  io.writeOut(`${summaryTable(summary)}\n`);
}

export type { Spinner };
