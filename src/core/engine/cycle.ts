import type { DatabaseTransactionConnection } from 'slonik';
import { ConfigError, errorMessage, HaltError, PermanentError, TransientError } from '../errors.js';
import type { Fields } from '../output/logger.js';
import { backoffSeconds } from './backoff.js';
import type { RunContext } from './context.js';
import {
  claimRows,
  markDead,
  markFailedTransient,
  markSucceeded,
  peekDueRows,
  type Row,
  readIdStates,
  releaseRows,
} from './queue-sql.js';

/**
 * One cycle of a queue worker (claim -> execute with bounded concurrency -> record):
 * - rows are claimed in chunks by one statement each, with a lease and attempts + 1;
 * - no database transaction is open while a task calls out;
 * - every outcome is written in a short transaction guarded by this run's id. The successes of
 *   one execution (one task, or one batch) are marked by a single statement, in autocommit when
 *   the worker records no columns of its own;
 * - after `cooldownFailures` consecutive transient failures of one dependency, no task of that
 *   dependency starts again in this run, and its unstarted claims go back without an attempt;
 * - on a stop (signal or deadline) no task starts; in-flight tasks get the grace period.
 */

export type Outcome<R> =
  | { kind: 'succeeded'; result: R }
  | {
      kind: 'retry';
      error: string;
      dependency?: string | undefined;
      inFlight?: boolean;
      /** The dependency asked not to be called again sooner (HTTP retry-after). */
      retryAfterSeconds?: number | undefined;
    }
  | { kind: 'dead'; reason: string }
  /** Give the task back without an attempt and start no further task (a guard rail). */
  | { kind: 'halt'; reason: string };

/** Every outcome but success. */
type Failure = Exclude<Outcome<unknown>, { kind: 'succeeded' }>;

export interface Succeeded<T, R> {
  task: T;
  result: R;
}

export interface QueueWorker<T extends { id: bigint }, R> {
  name: string;
  table: string;
  /** Turns a claimed row into a task; a thrown error makes that row dead with the message. */
  parseTask(row: Row): T;
  /** Name of the dependency a task calls, the key of its cooldown. */
  dependencyOf(task: T): string;
  /** Producer step before claiming (for example inserting due notices). Not called on a dry run. */
  produce?(ctx: RunContext): Promise<void>;
  /** Does one task; throws TransientError or PermanentError on failure. */
  execute?(task: T, ctx: RunContext): Promise<R>;
  /** Does several tasks at once (for example one bulk request), returning each one's outcome. */
  executeBatch?(tasks: T[], ctx: RunContext): Promise<Map<bigint, Outcome<R>>>;
  /** Tasks handed to one `executeBatch` call. */
  batchSize?: number;
  /** Attempts after which a transient failure is final, when lower than the row's max_attempts. */
  maxAttempts?: number;
  /** Consecutive transient failures of one dependency that stop calls to it in this run; default ZBOX_COOLDOWN_FAILURES. */
  cooldownAfterFailures?: number;
  /** Writes the worker's own columns of a succeeded task, in the transaction that marks it. */
  recordSuccess?(tx: DatabaseTransactionConnection, task: T, result: R): Promise<void>;
  /**
   * Writes the worker's own columns of the succeeded tasks of one execution (a whole batch) in
   * the transaction that marks them, with set-based statements. Gets only the tasks this run still
   * owns; takes the place of `recordSuccess` when both are present.
   */
  recordSuccessMany?(tx: DatabaseTransactionConnection, succeeded: Array<Succeeded<T, R>>): Promise<void>;
  /** Describes what a task would do, for --dry-run; it may make read-only calls. */
  describe(task: T, ctx: RunContext): Promise<{ action: string; fields?: Fields }>;
  /** Adds what the producer step would queue to a dry run's plan; the engine then describes the rows already due. */
  preview?(ctx: RunContext): Promise<void>;
}

export async function runQueueCycle<T extends { id: bigint }, R>(worker: QueueWorker<T, R>, ctx: RunContext) {
  if (ctx.dryRun) {
    await previewCycle(worker, ctx);
    return;
  }
  if (worker.produce !== undefined && !ctx.stop.stopping) {
    await worker.produce(ctx);
  }
  const cycle = new Cycle(worker, ctx);
  await cycle.run();
}

async function previewCycle<T extends { id: bigint }, R>(worker: QueueWorker<T, R>, ctx: RunContext) {
  if (worker.preview !== undefined) {
    await worker.preview(ctx);
  }
  const rows = await peekDueRows(ctx.pool, { table: worker.table, limit: ctx.limit, ids: ctx.ids });
  for (const row of rows) {
    try {
      const task = worker.parseTask(row);
      const described = await worker.describe(task, ctx);
      ctx.plan.push({ task: String(row.id), ...described });
    } catch (error) {
      ctx.plan.push({ task: String(row.id), action: `be marked dead: ${errorMessage(error)}` });
    }
  }
  await reportUnclaimedIds(
    ctx,
    rows.map((row) => row.id),
    worker.table,
  );
}

class Cycle<T extends { id: bigint }, R> {
  readonly #queue: T[] = [];
  readonly #cooledTasks: T[] = [];
  readonly #failures = new Map<string, number>();
  readonly #cooled = new Set<string>();
  readonly #succeededDependencies = new Set<string>();
  readonly #claimedIds: bigint[] = [];
  /** Attempts of each claimed row including the current one, for the backoff of a failure. */
  readonly #attempts = new Map<bigint, number>();
  #claimedTotal = 0;
  #exhausted = false;
  #refill: Promise<void> | undefined;
  /** Reason the run stopped starting tasks after a halt outcome. */
  #halted: string | undefined;
  /** A task's configuration error, raised once the tasks in flight are recorded. */
  #configError: ConfigError | undefined;

  constructor(
    readonly worker: QueueWorker<T, R>,
    readonly ctx: RunContext,
  ) {}

  async run(): Promise<void> {
    const { ctx } = this;
    try {
      const runners = Array.from({ length: ctx.concurrency }, () => this.#runner());
      const finished = await this.#waitWithGrace(Promise.all(runners));
      if (!finished) {
        ctx.logger.warn('grace period over: in-flight tasks abandoned; their leases expire', {
          grace_seconds: ctx.timing.graceSeconds,
        });
        ctx.attention.push('in-flight tasks did not finish within the grace period');
      }
    } finally {
      await this.#releaseUnstarted();
    }
    if (this.#configError !== undefined) {
      throw this.#configError;
    }
    this.#reportCooledDependencies();
    if (ctx.ids !== undefined) {
      await reportUnclaimedIds(ctx, this.#claimedIds, this.worker.table);
    }
  }

  /** Tasks one execution takes: 1, or the batch size of a batch worker. */
  #batchSize(): number {
    return this.worker.executeBatch === undefined ? 1 : (this.worker.batchSize ?? 100);
  }

  async #runner(): Promise<void> {
    const size = this.#batchSize();
    while (!this.ctx.stop.stopping && this.#halted === undefined) {
      const tasks = await this.#take(size);
      if (tasks.length === 0) {
        return;
      }
      await this.#execute(tasks);
    }
  }

  /** Next tasks to start, claiming more when the local queue is empty. Skips cooled dependencies. */
  async #take(size: number): Promise<T[]> {
    const taken: T[] = [];
    while (taken.length < size && !this.ctx.stop.stopping && this.#halted === undefined) {
      if (this.#queue.length === 0) {
        if (this.#exhausted || taken.length > 0) {
          break;
        }
        this.#refill ??= this.#claim().finally(() => {
          this.#refill = undefined;
        });
        await this.#refill;
        continue;
      }
      const task = this.#queue.shift() as T;
      if (this.#cooled.has(this.worker.dependencyOf(task))) {
        this.#cooledTasks.push(task);
        continue;
      }
      taken.push(task);
    }
    return taken;
  }

  async #claim(): Promise<void> {
    const { ctx, worker } = this;
    // A batch worker's batch may be larger than a claim chunk; one claim then fills one batch.
    const chunk = Math.max(ctx.claimBatch, this.#batchSize());
    const limit = Math.min(chunk, ctx.limit - this.#claimedTotal);
    if (limit <= 0) {
      this.#exhausted = true;
      return;
    }
    const rows = await claimRows(ctx.pool, {
      table: worker.table,
      runId: ctx.runId,
      limit,
      leaseSeconds: ctx.timing.leaseSeconds,
      ids: ctx.ids,
    });
    this.#claimedTotal += rows.length;
    ctx.counters.claimed += rows.length;
    if (rows.length < limit || ctx.ids !== undefined) {
      this.#exhausted = true;
    }
    if (rows.length > 0) {
      ctx.logger.info('tasks claimed', { count: rows.length, lease_seconds: ctx.timing.leaseSeconds });
    }
    for (const row of rows) {
      this.#claimedIds.push(row.id);
      this.#attempts.set(row.id, row.attempts);
      await this.#admit(row);
    }
    ctx.onProgress();
  }

  /** Parses a claimed row; a row that does not parse is dead at once and blocks nothing else. */
  async #admit(row: Row): Promise<void> {
    try {
      this.#queue.push(this.worker.parseTask(row));
    } catch (error) {
      await this.#record({ id: row.id } as T, {
        kind: 'dead',
        reason: `invalid task row: ${errorMessage(error)}`,
      });
    }
  }

  async #execute(tasks: T[]): Promise<void> {
    let outcomes: Map<bigint, Outcome<R>>;
    try {
      outcomes = await this.#outcomesOf(tasks);
    } catch (error) {
      if (!(error instanceof ConfigError)) {
        throw error;
      }
      await this.#stopForConfiguration(tasks, error);
      return;
    }
    const succeeded: Array<Succeeded<T, R>> = [];
    const others: Array<[T, Failure]> = [];
    for (const task of tasks) {
      const outcome: Outcome<R> = outcomes.get(task.id) ?? {
        kind: 'retry',
        error: 'the worker returned no outcome for this task',
      };
      if (outcome.kind === 'succeeded') {
        succeeded.push({ task, result: outcome.result });
      } else {
        others.push([task, outcome]);
      }
    }
    if (succeeded.length > 0) {
      await this.#recordSucceeded(succeeded);
    }
    for (const [task, outcome] of others) {
      await this.#record(task, outcome);
    }
  }

  /**
   * Marks the succeeded tasks of one execution with one statement. A worker with columns of its
   * own writes them in the same transaction, for the tasks this run still owns. A worker without
   * them needs no transaction.
   */
  async #recordSucceeded(succeeded: Array<Succeeded<T, R>>): Promise<void> {
    const { ctx, worker } = this;
    const ids = succeeded.map((item) => item.task.id);
    const recordsOwnColumns = worker.recordSuccessMany !== undefined || worker.recordSuccess !== undefined;
    const owned = !recordsOwnColumns
      ? await markSucceeded(ctx.pool, worker.table, ids, ctx.runId)
      : await ctx.pool.transaction(async (tx) => {
          const marked = await markSucceeded(tx, worker.table, ids, ctx.runId);
          const mine = succeeded.filter((item) => marked.has(item.task.id));
          if (mine.length === 0) {
            return marked;
          }
          if (worker.recordSuccessMany !== undefined) {
            await worker.recordSuccessMany(tx, mine);
          } else {
            for (const item of mine) {
              await worker.recordSuccess?.(tx, item.task, item.result);
            }
          }
          return marked;
        });
    for (const { task } of succeeded) {
      this.#count(ctx.logger.child({ task_id: String(task.id) }), owned.has(task.id), 'succeeded');
      this.#noteSuccess(worker.dependencyOf(task));
    }
    ctx.onProgress();
  }

  async #outcomesOf(tasks: T[]): Promise<Map<bigint, Outcome<R>>> {
    const { worker, ctx } = this;
    if (worker.executeBatch !== undefined) {
      try {
        return await worker.executeBatch(tasks, ctx);
      } catch (error) {
        const outcome = outcomeOfError<R>(error);
        return new Map(tasks.map((task) => [task.id, outcome]));
      }
    }
    const task = tasks[0] as T;
    try {
      const result = await (worker.execute as NonNullable<typeof worker.execute>)(task, ctx);
      return new Map([[task.id, { kind: 'succeeded', result }]]);
    } catch (error) {
      return new Map([[task.id, outcomeOfError<R>(error)]]);
    }
  }

  /** Records an outcome other than success, in its own statement. */
  async #record(task: T, outcome: Failure): Promise<void> {
    const { ctx, worker } = this;
    const log = ctx.logger.child({ task_id: String(task.id) });
    if (outcome.kind === 'halt') {
      await this.#halt(task, outcome.reason);
    } else if (outcome.kind === 'dead') {
      const mine = await markDead(ctx.pool, worker.table, task.id, ctx.runId, outcome.reason);
      this.#count(log, mine, 'dead', { reason: outcome.reason });
    } else {
      const attempts = this.#attempts.get(task.id) ?? 1;
      const delay = Math.max(backoffSeconds(attempts, ctx.retry), Math.ceil(outcome.retryAfterSeconds ?? 0));
      const status = await markFailedTransient(
        ctx.pool,
        worker.table,
        task.id,
        ctx.runId,
        outcome.error,
        delay,
        { keepAlive: outcome.inFlight === true, maxAttempts: worker.maxAttempts },
      );
      this.#count(log, status !== undefined, status === 'dead' ? 'dead' : 'retried', {
        error: outcome.error,
        retry_in_seconds: status === 'pending' ? delay : undefined,
      });
      this.#noteFailure(outcome.dependency ?? worker.dependencyOf(task));
    }
    ctx.onProgress();
  }

  #count(
    log: RunContext['logger'],
    mine: boolean,
    kind: 'succeeded' | 'dead' | 'retried',
    fields: Fields = {},
  ) {
    if (!mine) {
      this.ctx.counters.lost += 1;
      log.warn('outcome not recorded: the lease expired and another run took the task', { outcome: kind });
      return;
    }
    this.ctx.counters[kind] += 1;
    const message = { succeeded: 'task succeeded', dead: 'task dead', retried: 'task retry scheduled' }[kind];
    if (kind === 'succeeded') {
      log.debug(message, fields);
    } else {
      log.warn(message, fields);
    }
  }

  /**
   * A configuration error is not the tasks' fault: they go back unspent and due at once, so the
   * run after the fix takes them, and no task starts again. The error ends the run (exit 2) once
   * the tasks in flight are recorded.
   */
  async #stopForConfiguration(tasks: T[], error: ConfigError): Promise<void> {
    const ids = tasks.map((task) => task.id);
    this.ctx.counters.skipped += await releaseRows(this.ctx.pool, this.worker.table, ids, this.ctx.runId, 0);
    if (this.#configError === undefined) {
      this.#configError = error;
      this.#halted = error.message;
      this.ctx.logger.error('configuration error: no further task starts', { error: error.message });
    }
  }

  /** Gives the task back unspent, stops starting tasks and records why, once. */
  async #halt(task: T, reason: string): Promise<void> {
    const released = await releaseRows(this.ctx.pool, this.worker.table, [task.id], this.ctx.runId, 0);
    this.ctx.counters.skipped += released;
    if (this.#halted === undefined) {
      this.#halted = reason;
      this.ctx.attention.push(reason);
      this.ctx.logger.warn('run halted: no further task starts', { reason });
    }
  }

  #noteSuccess(dependency: string): void {
    this.#failures.set(dependency, 0);
    this.#succeededDependencies.add(dependency);
  }

  #noteFailure(dependency: string): void {
    const failures = (this.#failures.get(dependency) ?? 0) + 1;
    this.#failures.set(dependency, failures);
    const limit = this.worker.cooldownAfterFailures ?? this.ctx.retry.cooldownFailures;
    if (failures >= limit && !this.#cooled.has(dependency)) {
      this.#cooled.add(dependency);
      this.ctx.logger.warn('dependency cooling down: no more calls to it in this run', {
        dependency,
        consecutive_failures: failures,
      });
    }
  }

  async #releaseUnstarted(): Promise<void> {
    const { ctx, worker } = this;
    const stopped = this.#queue.splice(0).map((task) => task.id);
    const cooled = this.#cooledTasks.splice(0).map((task) => task.id);
    const released =
      (await releaseRows(ctx.pool, worker.table, stopped, ctx.runId, 0)) +
      (await releaseRows(ctx.pool, worker.table, cooled, ctx.runId, ctx.retry.backoffBaseSeconds));
    if (released > 0) {
      ctx.counters.skipped += released;
      ctx.logger.info('unstarted claims released without spending an attempt', {
        count: released,
        reason: cooled.length > 0 ? 'cooldown' : (ctx.stop.reason ?? 'stop'),
      });
    }
  }

  #reportCooledDependencies(): void {
    for (const dependency of this.#cooled) {
      if (!this.#succeededDependencies.has(dependency)) {
        this.ctx.attention.push(`dependency ${dependency} was unavailable for the whole cycle`);
      }
    }
  }

  /** Resolves true when `work` finished, false when a stop's grace period ran out first. */
  #waitWithGrace(work: Promise<unknown>): Promise<boolean> {
    const { stop, timing } = this.ctx;
    return new Promise((resolve, reject) => {
      let graceTimer: NodeJS.Timeout | undefined;
      const unsubscribe = stop.onStop(() => {
        graceTimer = setTimeout(() => {
          stop.abort();
          resolve(false);
        }, timing.graceSeconds * 1000);
      });
      work.then(
        () => {
          clearTimeout(graceTimer);
          unsubscribe();
          resolve(true);
        },
        (error: unknown) => {
          clearTimeout(graceTimer);
          unsubscribe();
          reject(error);
        },
      );
    });
  }
}

/**
 * Maps a thrown error to an outcome: permanent -> dead, halt -> halt, anything else -> retry. A
 * ConfigError is not a task's fault: it is raised again and ends the run with exit 2.
 */
export function outcomeOfError<R>(error: unknown): Outcome<R> {
  if (error instanceof ConfigError) {
    throw error;
  }
  if (error instanceof PermanentError) {
    return { kind: 'dead', reason: error.message };
  }
  if (error instanceof TransientError) {
    return {
      kind: 'retry',
      error: error.message,
      dependency: error.dependency,
      inFlight: error.inFlight,
      retryAfterSeconds: error.retryAfterSeconds,
    };
  }
  if (error instanceof HaltError) {
    return { kind: 'halt', reason: error.message };
  }
  return { kind: 'retry', error: `unexpected error: ${errorMessage(error)}` };
}

/** Says, for each id asked with --id, why this run did not take it. */
async function reportUnclaimedIds(ctx: RunContext, takenIds: bigint[], table: string): Promise<void> {
  if (ctx.ids === undefined) {
    return;
  }
  const taken = new Set(takenIds);
  const missing = ctx.ids.filter((id) => !taken.has(id));
  if (missing.length === 0) {
    return;
  }
  const states = new Map((await readIdStates(ctx.pool, table, missing)).map((state) => [state.id, state]));
  const reasons: Record<string, string> = {};
  for (const id of missing) {
    const state = states.get(id);
    reasons[String(id)] =
      state === undefined
        ? 'unknown id: no such task'
        : state.status === 'in_progress'
          ? `held by another run until ${state.locked_until?.toISOString()}`
          : `status is ${state.status}${state.status === 'dead' ? ' (use requeue to retry it)' : ''}`;
    ctx.logger.warn('requested task not taken', { task_id: String(id), reason: reasons[String(id)] });
  }
  ctx.details.not_taken = reasons;
}
