import { createRequire } from 'node:module';

type ConsolaModule = typeof import('consola');

/**
 * Loads consola when a human logger is created, so JSON mode, which every CronJob run uses, never
 * loads it. require() gets consola's CommonJS build and keeps createLogger synchronous. This is
 * the only module that loads consola, so the process never loads its ES module build as well.
 */
function loadConsola(): ConsolaModule {
  return createRequire(import.meta.url)('consola') as ConsolaModule;
}

/** Structured fields attached to a log line. `bigint` values are written as decimal strings. */
export type Fields = Record<string, unknown>;

export type Level = 'debug' | 'info' | 'warn' | 'error';

/** A scoped logger: a human message plus fields. `child` adds fields (worker, run_id, task_id) to every line. */
export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

export interface LoggerOptions {
  /** One JSON object per line (off a terminal or with `--json`) instead of human lines. */
  json: boolean;
  /** Lowest level written. */
  level: Level;
  /** Destination of JSON lines; standard output by default. */
  write?: (line: string) => void;
  /** Wraps each human line, so a spinner can clear itself before and redraw after. */
  aroundHumanLine?: (print: () => void) => void;
}

const LEVEL_ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/**
 * Field names whose values are never written, whatever the level: keys, signatures, wallets,
 * tokens and passwords. The value is replaced by `[redacted]`.
 */
const SECRET_FIELD =
  /(private|secret|password|passwd|mnemonic|signature|api_?key|token|wallet_json|credential)/i;

/** Replace secret-looking fields and make `bigint` and `Error` values serialisable. */
export function sanitizeFields(fields: Fields): Fields {
  const out: Fields = {};
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) {
      continue;
    }
    out[key] = SECRET_FIELD.test(key) ? '[redacted]' : sanitizeValue(value);
  }
  return out;
}

function sanitizeValue(value: unknown): unknown {
  if (typeof value === 'bigint') {
    return value.toString();
  }
  if (value instanceof Error) {
    return value.message;
  }
  if (value instanceof Date) {
    return value.toISOString();
  }
  if (Array.isArray(value)) {
    return value.map(sanitizeValue);
  }
  if (value !== null && typeof value === 'object') {
    return sanitizeFields(value as Fields);
  }
  return value;
}

/** JSON text of a value that may contain `bigint`s. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, item) => (typeof item === 'bigint' ? item.toString() : item));
}

export function createLogger(options: LoggerOptions, scope: Fields = {}): Logger {
  const minimum = LEVEL_ORDER[options.level];
  const write = options.write ?? ((line: string) => process.stdout.write(`${line}\n`));
  const human = options.json
    ? undefined
    : loadConsola().createConsola({
        level: options.level === 'debug' ? 4 : 3,
        stdout: process.stderr,
        stderr: process.stderr,
      });

  const emit = (level: Level, msg: string, fields: Fields = {}) => {
    if (LEVEL_ORDER[level] < minimum) {
      return;
    }
    const merged = sanitizeFields({ ...scope, ...fields });
    if (human === undefined) {
      write(toJson({ level, time: new Date().toISOString(), msg, ...merged }));
      return;
    }
    const suffix = formatHumanFields(merged);
    const print = () => human[level](suffix === '' ? msg : `${msg} ${suffix}`);
    if (options.aroundHumanLine === undefined) {
      print();
    } else {
      options.aroundHumanLine(print);
    }
  };

  return {
    debug: (msg, fields) => emit('debug', msg, fields),
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
    child: (fields) => createLogger(options, { ...scope, ...fields }),
  };
}

/** `key=value` pairs for a human line; the run id is left out because the summary shows it once. */
function formatHumanFields(fields: Fields): string {
  return Object.entries(fields)
    .filter(([key]) => key !== 'run_id' && key !== 'worker')
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : toJson(value)}`)
    .join(' ');
}

/** Creates a logger that keeps every line in memory, for tests and for callers that print later. */
export function createMemoryLogger(): Logger & { lines: Array<{ level: Level; msg: string } & Fields> } {
  const lines: Array<{ level: Level; msg: string } & Fields> = [];
  const make = (scope: Fields): Logger => {
    const push =
      (level: Level) =>
      (msg: string, fields: Fields = {}) => {
        lines.push({ level, msg, ...sanitizeFields({ ...scope, ...fields }) });
      };
    return {
      debug: push('debug'),
      info: push('info'),
      warn: push('warn'),
      error: push('error'),
      child: (fields) => make({ ...scope, ...fields }),
    };
  };
  return Object.assign(make({}), { lines });
}
