import { type CommonQueryMethods, sql } from 'slonik';
import { z } from 'zod';

/**
 * Per-blobber cooldown, stored so that it lasts across runs and pods. Every worker that calls a
 * blobber reads it before calling and writes it after a transient failure or a success.
 */

const cooldownRow = z.object({ blobber_id: z.string(), cooldown_until: z.date(), last_error: z.string() });
export type BlobberCooldown = z.infer<typeof cooldownRow>;

/** Blobbers among `ids` still cooling down, by the database clock. */
export async function readActiveCooldowns(
  db: CommonQueryMethods,
  ids: readonly string[],
): Promise<Map<string, BlobberCooldown>> {
  if (ids.length === 0) {
    return new Map();
  }
  const rows = await db.any(sql.type(cooldownRow)`
    SELECT blobber_id, cooldown_until, last_error FROM blobber_cooldowns
    WHERE blobber_id = ANY(${sql.array([...ids], 'text')}) AND cooldown_until > now()`);
  return new Map(rows.map((row) => [row.blobber_id, row]));
}

/**
 * Records a transient failure: the blobber cools down for a fully jittered exponential delay
 * (base × 2^(failures − 1), capped), and returns the end of the cooldown.
 */
export async function recordBlobberFailure(
  db: CommonQueryMethods,
  blobberId: string,
  error: string,
  policy: { baseSeconds: number; maxSeconds: number; random?: () => number },
): Promise<Date> {
  const failures = await db.oneFirst(sql.type(z.object({ consecutive_failures: z.number() }))`
    INSERT INTO blobber_cooldowns (blobber_id, consecutive_failures, cooldown_until, last_error)
    VALUES (${blobberId}, 1, now(), ${error})
    ON CONFLICT (blobber_id) DO UPDATE
    SET consecutive_failures = blobber_cooldowns.consecutive_failures + 1, last_error = EXCLUDED.last_error,
        updated_at = now()
    RETURNING consecutive_failures`);
  const ceiling = Math.min(policy.maxSeconds, policy.baseSeconds * 2 ** Math.min(failures - 1, 30));
  const delaySeconds = Math.max(1, Math.round((policy.random ?? Math.random)() * ceiling));
  return db.oneFirst(sql.type(z.object({ cooldown_until: z.date() }))`
    UPDATE blobber_cooldowns SET cooldown_until = now() + make_interval(secs => ${delaySeconds})
    WHERE blobber_id = ${blobberId} RETURNING cooldown_until`);
}

/** Ends a blobber's cooldown after a successful call. */
export async function clearBlobberCooldown(db: CommonQueryMethods, blobberId: string): Promise<void> {
  await db.query(sql.unsafe`DELETE FROM blobber_cooldowns WHERE blobber_id = ${blobberId}`);
}
