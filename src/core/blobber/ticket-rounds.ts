import type { CommonQueryMethods } from 'slonik';
import { type Environment, requireVariable } from '../config.js';
import { sharedTicketRound } from '../db/queries/blobber-tickets.js';

/** How auth tickets are bound to rounds; shared by authorized-blobbers and create-allocation. */
export interface TicketSettings {
  roundBound: boolean;
  horizonRounds: number;
  epochRounds: number;
  refreshRounds: number;
}

export function readTicketSettings(env: Environment): TicketSettings {
  return {
    roundBound: requireVariable(env, 'ZBOX_AUTH_TICKET_MODE') === 'round',
    horizonRounds: requireVariable(env, 'ZBOX_AUTH_TICKET_HORIZON_ROUNDS'),
    epochRounds: requireVariable(env, 'ZBOX_AUTH_TICKET_EPOCH_ROUNDS'),
    refreshRounds: requireVariable(env, 'ZBOX_AUTH_TICKET_REFRESH_ROUNDS'),
  };
}

/**
 * Picks the round a new ticket is bound to. It is the owner's existing round when one of its
 * tickets is still good beyond the refresh margin. Otherwise it is the current round plus the
 * horizon, rounded up to the epoch, so that tickets fetched at different times for one owner
 * share it.
 */
export async function ticketRoundFor(
  db: CommonQueryMethods,
  clientId: string,
  currentRound: number,
  settings: TicketSettings,
): Promise<number> {
  const shared = await sharedTicketRound(db, clientId, currentRound + settings.refreshRounds);
  if (shared !== undefined) {
    return shared;
  }
  return Math.ceil((currentRound + settings.horizonRounds) / settings.epochRounds) * settings.epochRounds;
}
