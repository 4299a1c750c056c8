import type { RetryPolicy } from '../config.js';

/**
 * Seconds until the next attempt after a transient failure: "full jitter" exponential backoff.
 * The ceiling doubles per attempt from the base up to the cap, and the delay is drawn uniformly
 * from [0, ceiling], so rows that failed together spread over the window instead of returning
 * at one instant. `attempts` counts the attempt that just failed (1 for the first).
 */
export function backoffSeconds(
  attempts: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
): number {
  const exponent = Math.max(0, attempts - 1);
  const ceiling = Math.min(policy.backoffMaxSeconds, policy.backoffBaseSeconds * 2 ** Math.min(exponent, 30));
  return Math.max(1, Math.round(random() * ceiling));
}
