import { ConfigError, StartupError } from './errors.js';

/** Exit codes of every command. The CronJobs' podFailurePolicy and alerts rely on these values. */
export const EXIT = {
  /** Cycle completed; nothing needs a person (retries scheduled within budget count as fine). */
  ok: 0,
  /** Usage or configuration error: bad flag, missing or invalid environment, unreadable wallet. */
  config: 2,
  /** Could not start: database unreachable, schema behind or incompatibly ahead of the binary. */
  startup: 3,
  /** Cycle completed but work needs attention: a dead task, a guard rail, an unavailable dependency. */
  attention: 4,
  /** Internal error caught by the CLI: a bug. */
  internal: 70,
  /** Interrupted by SIGINT after draining. */
  sigint: 130,
  /** Interrupted by SIGTERM after draining. */
  sigterm: 143,
} as const;

/** Exit code of an error that escaped a command. */
export function exitCodeOfError(error: unknown): number {
  if (error instanceof ConfigError) {
    return EXIT.config;
  }
  if (error instanceof StartupError) {
    return EXIT.startup;
  }
  return EXIT.internal;
}
