import { type CommonQueryMethods, sql } from 'slonik';
import { z } from 'zod';

/**
 * The engine's statements over a queue table. Each takes the table name and touches only the
 * engine's columns; the worker's own columns are written by the worker's record step. Every
 * time comparison uses the database clock.
 */

export type Row = Record<string, unknown> & { id: bigint; attempts: number; max_attempts: number };

const rowShape = z.looseObject({ id: z.bigint(), attempts: z.number(), max_attempts: z.number() });

function table(name: string) {
  return sql.identifier([name]);
}

export interface ClaimRequest {
  table: string;
  runId: string;
  limit: number;
  leaseSeconds: number;
  /** Only these ids, due or not, but never rows whose lease another run still holds. */
  ids?: bigint[] | undefined;
}

/** Claims due rows in one statement: in_progress, run id, lease, attempts + 1. */
export async function claimRows(db: CommonQueryMethods, request: ClaimRequest): Promise<Row[]> {
  const due =
    request.ids === undefined
      ? sql.fragment`((status = 'pending' AND next_attempt_at <= now())
          OR (status = 'in_progress' AND locked_until < now()))`
      : sql.fragment`(status = 'pending' OR (status = 'in_progress' AND locked_until < now()))
          AND id = ANY(${sql.array(request.ids, 'int8')})`;
  const rows = await db.any(sql.unsafe`
    UPDATE ${table(request.table)} AS t
    SET status = 'in_progress',
        locked_by = ${request.runId},
        locked_until = now() + make_interval(secs => ${request.leaseSeconds}),
        attempts = t.attempts + 1,
        updated_at = now()
    FROM (
      SELECT id FROM ${table(request.table)}
      WHERE ${due}
      ORDER BY next_attempt_at, id
      LIMIT ${request.limit}
      FOR UPDATE SKIP LOCKED
    ) AS due
    WHERE t.id = due.id
    RETURNING t.*`);
  return rows.map((row) => rowShape.parse(row) as Row);
}

/** Due rows as a claim would pick them, without locking or changing anything (for --dry-run). */
export async function peekDueRows(
  db: CommonQueryMethods,
  request: Omit<ClaimRequest, 'runId' | 'leaseSeconds'>,
): Promise<Row[]> {
  const due =
    request.ids === undefined
      ? sql.fragment`((status = 'pending' AND next_attempt_at <= now())
          OR (status = 'in_progress' AND locked_until < now()))`
      : sql.fragment`id = ANY(${sql.array(request.ids, 'int8')})`;
  const rows = await db.any(sql.unsafe`
    SELECT * FROM ${table(request.table)} WHERE ${due} ORDER BY next_attempt_at, id LIMIT ${request.limit}`);
  return rows.map((row) => rowShape.parse(row) as Row);
}

const idState = z.object({
  id: z.bigint(),
  status: z.string(),
  locked_until: z.date().nullable(),
  next_attempt_at: z.date(),
});
export type IdState = z.infer<typeof idState>;

/** State of requested ids that a claim did not take, so the run can report why. */
export async function readIdStates(
  db: CommonQueryMethods,
  tableName: string,
  ids: bigint[],
): Promise<IdState[]> {
  const rows = await db.any(sql.unsafe`
    SELECT id, status, locked_until, next_attempt_at FROM ${table(tableName)}
    WHERE id = ANY(${sql.array(ids, 'int8')})`);
  return rows.map((row) => idState.parse(row));
}

/**
 * Marks claimed rows succeeded in one statement and returns the ids it marked. An id missing from
 * the result is no longer this run's (its lease expired and another run took it), and nothing
 * was written for it.
 */
export async function markSucceeded(
  db: CommonQueryMethods,
  tableName: string,
  ids: readonly bigint[],
  runId: string,
): Promise<Set<bigint>> {
  const marked = await db.anyFirst(sql.type(z.object({ id: z.bigint() }))`
    UPDATE ${table(tableName)}
    SET status = 'succeeded', locked_by = NULL, locked_until = NULL, last_error = NULL,
        completed_at = now(), updated_at = now()
    WHERE id = ANY(${sql.array([...ids], 'int8')}) AND locked_by = ${runId}
    RETURNING id`);
  return new Set(marked);
}

/**
 * Records a transient failure: back to pending after `delaySeconds`, or dead when the row has
 * used all its attempts, unless `keepAlive` marks that a signed transaction of the task may still
 * apply. Returns the new status, or undefined when the row is no longer this run's.
 */
export async function markFailedTransient(
  db: CommonQueryMethods,
  tableName: string,
  id: bigint,
  runId: string,
  error: string,
  delaySeconds: number,
  options: { keepAlive?: boolean; maxAttempts?: number | undefined } = {},
): Promise<'pending' | 'dead' | undefined> {
  const limit =
    options.maxAttempts === undefined
      ? sql.fragment`max_attempts`
      : sql.fragment`least(max_attempts, ${options.maxAttempts})`;
  const exhausted = options.keepAlive === true ? sql.fragment`FALSE` : sql.fragment`attempts >= ${limit}`;
  const status = await db.maybeOneFirst(sql.unsafe`
    UPDATE ${table(tableName)}
    SET status = CASE WHEN ${exhausted} THEN 'dead' ELSE 'pending' END,
        last_error = CASE WHEN ${exhausted}
          THEN 'attempts exhausted (' || attempts || ' of ' || ${limit} || '): ' || ${error}
          ELSE ${error} END,
        next_attempt_at = now() + make_interval(secs => ${delaySeconds}),
        completed_at = CASE WHEN ${exhausted} THEN now() END,
        locked_by = NULL, locked_until = NULL, updated_at = now()
    WHERE id = ${id} AND locked_by = ${runId}
    RETURNING status`);
  return (status ?? undefined) as 'pending' | 'dead' | undefined;
}

/** Records a permanent failure: dead with a reason a person can act on. */
export async function markDead(
  db: CommonQueryMethods,
  tableName: string,
  id: bigint,
  runId: string,
  reason: string,
) {
  const result = await db.query(sql.unsafe`
    UPDATE ${table(tableName)}
    SET status = 'dead', last_error = ${reason}, completed_at = now(),
        locked_by = NULL, locked_until = NULL, updated_at = now()
    WHERE id = ${id} AND locked_by = ${runId}`);
  return result.rowCount === 1;
}

/**
 * Gives unstarted claims back without spending an attempt. `delaySeconds` keeps a row away from
 * the rest of this run (a dependency in cooldown); 0 makes it due at once (a run that stops).
 */
export async function releaseRows(
  db: CommonQueryMethods,
  tableName: string,
  ids: bigint[],
  runId: string,
  delaySeconds: number,
): Promise<number> {
  if (ids.length === 0) {
    return 0;
  }
  const result = await db.query(sql.unsafe`
    UPDATE ${table(tableName)}
    SET status = 'pending', attempts = greatest(attempts - 1, 0),
        next_attempt_at = greatest(next_attempt_at, now() + make_interval(secs => ${delaySeconds})),
        locked_by = NULL, locked_until = NULL, updated_at = now()
    WHERE id = ANY(${sql.array(ids, 'int8')}) AND locked_by = ${runId}`);
  return result.rowCount;
}
