import { type CommonQueryMethods, sql } from 'slonik';
import { z } from 'zod';

/**
 * Statements over `restricted_blobber_tickets`, one purpose each. A row exists per (blobber,
 * client); the platform and `create-allocation` insert rows, `authorized-blobbers` fills them.
 */

/** Adds a ticket request unless the row exists (the platform and create-allocation call this). */
export async function requestTicket(
  db: CommonQueryMethods,
  blobberId: string,
  clientId: string,
  blobberUrl?: string,
) {
  await db.query(sql.unsafe`
    INSERT INTO restricted_blobber_tickets (blobber_id, client_id, blobber_url)
    VALUES (${blobberId}, ${clientId}, ${blobberUrl ?? null})
    ON CONFLICT (blobber_id, client_id) DO NOTHING`);
}

/** Builds the condition for a row whose ticket is missing or within `marginRounds` of `round`. */
function needsTicket(round: number | undefined, marginRounds: number) {
  return round === undefined
    ? sql.fragment`auth_ticket IS NULL`
    : sql.fragment`(auth_ticket IS NULL OR (ticket_round IS NOT NULL AND ticket_round <= ${round + marginRounds}))`;
}

/** Blobbers with at least one row that is not in progress or dead and may need a ticket. */
export async function blobbersToRefresh(
  db: CommonQueryMethods,
  round: number | undefined,
  marginRounds: number,
) {
  return db.anyFirst(sql.type(z.object({ blobber_id: z.string() }))`
    SELECT DISTINCT blobber_id FROM restricted_blobber_tickets
    WHERE status IN ('pending', 'succeeded') AND (${needsTicket(round, marginRounds)} OR skip_reason IS NOT NULL)
    ORDER BY blobber_id`);
}

/** Rows of a blobber that needs no ticket any more leave the queue with that reason. */
export async function markTicketsNotNeeded(db: CommonQueryMethods, blobberId: string, reason: string) {
  const result = await db.query(sql.unsafe`
    UPDATE restricted_blobber_tickets
    SET status = 'succeeded', skip_reason = ${reason}, completed_at = now(), updated_at = now()
    WHERE blobber_id = ${blobberId} AND status = 'pending'`);
  return result.rowCount;
}

/** Rows of an unusable blobber (killed, shut down, not available) wait, with the reason. */
export async function skipTicketsOfBlobber(
  db: CommonQueryMethods,
  blobberId: string,
  reason: string,
  delaySeconds: number,
) {
  const result = await db.query(sql.unsafe`
    UPDATE restricted_blobber_tickets
    SET skip_reason = ${reason}, last_error = ${reason},
        next_attempt_at = greatest(next_attempt_at, now() + make_interval(secs => ${delaySeconds})), updated_at = now()
    WHERE blobber_id = ${blobberId} AND status = 'pending'`);
  return result.rowCount;
}

/**
 * Makes the rows of a usable restricted blobber due when their ticket is missing or near its
 * round, with the blobber's current URL; rows of a cooling blobber wait until `notBefore`.
 */
export async function armTicketsOfBlobber(
  db: CommonQueryMethods,
  blobber: { id: string; url: string; notBefore: Date | undefined },
  round: number | undefined,
  marginRounds: number,
) {
  const notBefore = blobber.notBefore?.toISOString() ?? null;
  const result = await db.query(sql.unsafe`
    UPDATE restricted_blobber_tickets
    SET blobber_url = ${blobber.url}, skip_reason = NULL,
        status = 'pending',
        attempts = CASE WHEN status = 'succeeded' THEN 0 ELSE attempts END,
        next_attempt_at = CASE WHEN status = 'succeeded' THEN now() ELSE next_attempt_at END,
        completed_at = NULL, updated_at = now()
    WHERE blobber_id = ${blobber.id} AND status IN ('pending', 'succeeded') AND ${needsTicket(round, marginRounds)}`);
  if (notBefore !== null) {
    await db.query(sql.unsafe`
      UPDATE restricted_blobber_tickets
      SET next_attempt_at = greatest(next_attempt_at, ${notBefore}::timestamptz), updated_at = now()
      WHERE blobber_id = ${blobber.id} AND status = 'pending'`);
  }
  return result.rowCount;
}

/** Keeps every pending row of a failing blobber away until its cooldown ends. */
export async function deferTicketsOfBlobber(db: CommonQueryMethods, blobberId: string, until: Date) {
  await db.query(sql.unsafe`
    UPDATE restricted_blobber_tickets
    SET next_attempt_at = greatest(next_attempt_at, ${until.toISOString()}::timestamptz), updated_at = now()
    WHERE blobber_id = ${blobberId} AND status = 'pending'`);
}

/**
 * Returns the round an owner's tickets are already bound to, when one of them is still good
 * beyond `minRound`. One allocation request carries a single `auth_round_expiry` for all its
 * tickets, so an owner's tickets must share it.
 */
export async function sharedTicketRound(db: CommonQueryMethods, clientId: string, minRound: number) {
  const round = await db.maybeOneFirst(sql.type(z.object({ round: z.bigint().nullable() }))`
    SELECT max(ticket_round) AS round FROM restricted_blobber_tickets
    WHERE client_id = ${clientId} AND auth_ticket IS NOT NULL AND ticket_round > ${minRound}`);
  return round === null || round === undefined ? undefined : Number(round);
}

/** Stores an issued ticket on its row (in the transaction that marks the task succeeded). */
export async function storeTicket(
  db: CommonQueryMethods,
  id: bigint,
  ticket: string,
  round: number | undefined,
) {
  await db.query(sql.unsafe`
    UPDATE restricted_blobber_tickets
    SET auth_ticket = ${ticket}, ticket_round = ${round ?? null}, issued_at = now(), skip_reason = NULL
    WHERE id = ${id}`);
}

const storedTicketRow = z.object({
  blobber_id: z.string(),
  auth_ticket: z.string().nullable(),
  ticket_round: z.bigint().nullable(),
});

/** The stored tickets of one owner for the given blobbers (rows without a ticket included). */
export async function readOwnerTickets(
  db: CommonQueryMethods,
  clientId: string,
  blobberIds: readonly string[],
) {
  const rows = await db.any(sql.type(storedTicketRow)`
    SELECT blobber_id, auth_ticket, ticket_round FROM restricted_blobber_tickets
    WHERE client_id = ${clientId} AND blobber_id = ANY(${sql.array([...blobberIds], 'text')})`);
  return new Map(
    rows.map((row) => [
      row.blobber_id,
      { ticket: row.auth_ticket, round: row.ticket_round === null ? undefined : Number(row.ticket_round) },
    ]),
  );
}

/**
 * Stores a ticket fetched outside the queue (by create-allocation) as a finished row, so that
 * authorized-blobbers refreshes it later like any other.
 */
export async function saveFetchedTicket(
  db: CommonQueryMethods,
  ticket: {
    blobberId: string;
    clientId: string;
    blobberUrl: string;
    ticket: string;
    round: number | undefined;
  },
) {
  await db.query(sql.unsafe`
    INSERT INTO restricted_blobber_tickets (blobber_id, client_id, blobber_url, auth_ticket, ticket_round, issued_at,
                                            status, completed_at)
    VALUES (${ticket.blobberId}, ${ticket.clientId}, ${ticket.blobberUrl}, ${ticket.ticket}, ${ticket.round ?? null},
            now(), 'succeeded', now())
    ON CONFLICT (blobber_id, client_id) DO UPDATE
    SET blobber_url = EXCLUDED.blobber_url, auth_ticket = EXCLUDED.auth_ticket, ticket_round = EXCLUDED.ticket_round,
        issued_at = now(), skip_reason = NULL, updated_at = now(),
        status = CASE WHEN restricted_blobber_tickets.status = 'in_progress' THEN restricted_blobber_tickets.status
                      ELSE 'succeeded' END`);
}
