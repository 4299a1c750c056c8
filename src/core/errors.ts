/**
 * The error taxonomy of the CLI. Every error a command can raise is one of these kinds, and the
 * CLI maps each kind to one exit code in one place (src/cli.ts).
 *
 * - ConfigError: bad flag, missing or invalid environment, unreadable wallet. Exit 2.
 * - StartupError: the run could not start (database unreachable, schema mismatch). Exit 3.
 * - TransientError: a task or dependency failed in a way a later attempt may fix.
 * - PermanentError: the task's input is invalid; the platform must fix it before a retry helps.
 * Anything else is a bug and exits 70.
 */

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export class StartupError extends Error {
  override name = 'StartupError';
}

export interface TaskErrorOptions {
  /** Name of the external dependency that failed (for example `sharders`, `elasticsearch`, a blobber id). */
  dependency?: string;
  /**
   * A signed transaction of this task may still apply. The task then stays pending however many
   * attempts it used, until the chain reports that the transaction applied, failed or can never apply.
   */
  inFlight?: boolean;
  /** The dependency must not be called again sooner than this (an HTTP retry-after, a cooldown). */
  retryAfterSeconds?: number;
  cause?: unknown;
}

/** A failure a later attempt may fix: timeouts, 5xx responses, refused connections, 429. */
export class TransientError extends Error {
  override name = 'TransientError';
  readonly dependency: string | undefined;
  readonly inFlight: boolean;
  readonly retryAfterSeconds: number | undefined;

  constructor(message: string, options: TaskErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.dependency = options.dependency;
    this.inFlight = options.inFlight === true;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/**
 * Stops the run's work: a guard rail was breached or the team wallet is too low. The task is
 * given back without spending an attempt, no further task starts, and the run exits 4 with this
 * message, which carries the figures.
 */
export class HaltError extends Error {
  override name = 'HaltError';
}

/** A failure no retry fixes: invalid input, a rejected request. The task goes `dead` with this reason. */
export class PermanentError extends Error {
  override name = 'PermanentError';
  readonly dependency: string | undefined;

  constructor(message: string, options: TaskErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.dependency = options.dependency;
  }
}

/**
 * Returns the text of any thrown value, for logs and `last_error`. A zod validation error becomes
 * one line, `<path>: <message>` per issue joined with "; ", in place of its JSON dump of the issues.
 */
export function errorMessage(error: unknown): string {
  if (isZodError(error)) {
    return error.issues.map(issueText).join('; ');
  }
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}

interface ValidationIssue {
  path?: ReadonlyArray<PropertyKey>;
  message?: unknown;
}

/**
 * Recognises a ZodError by its shape, so that this module, which the plain `--help` path loads,
 * does not load zod.
 */
function isZodError(error: unknown): error is Error & { issues: ValidationIssue[] } {
  if (!(error instanceof Error) || error.name !== 'ZodError') {
    return false;
  }
  const issues: unknown = (error as { issues?: unknown }).issues;
  return Array.isArray(issues) && issues.length > 0;
}

function issueText(issue: ValidationIssue): string {
  const message = String(issue.message ?? 'invalid value');
  const path = Array.isArray(issue.path) ? issue.path.map(String).join('.') : '';
  return path === '' ? message : `${path}: ${message}`;
}
