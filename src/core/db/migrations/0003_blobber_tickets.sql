-- zbox:compatible
-- Auth tickets from restricted (and enterprise) blobbers, one row per (blobber, client), and a
-- per-blobber cooldown shared by every worker that calls blobbers. Older binaries never read
-- these tables, hence compatible.

CREATE TABLE restricted_blobber_tickets (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  blobber_id text NOT NULL CHECK (blobber_id ~ '^[0-9a-f]{64}$'),
  -- The allocation owner the ticket is for.
  client_id text NOT NULL CHECK (client_id ~ '^[0-9a-f]{64}$'),
  -- Refreshed from the chain before each claim; a blobber's URL can change.
  blobber_url text,
  auth_ticket text,
  -- Round the ticket is bound to (auth_round_expiry); NULL for an unbound ticket.
  ticket_round bigint,
  issued_at timestamptz,
  -- Why the row is not worked on now (blobber no longer restricted, killed, not available).
  skip_reason text,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_progress', 'succeeded', 'dead')),
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 10 CHECK (max_attempts > 0),
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  locked_by uuid,
  locked_until timestamptz,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz,
  UNIQUE (blobber_id, client_id)
);
CREATE INDEX restricted_blobber_tickets_due_idx ON restricted_blobber_tickets (next_attempt_at)
  WHERE status IN ('pending', 'in_progress');
CREATE INDEX restricted_blobber_tickets_client_idx ON restricted_blobber_tickets (client_id);

CREATE TABLE blobber_cooldowns (
  blobber_id text PRIMARY KEY,
  consecutive_failures integer NOT NULL,
  cooldown_until timestamptz NOT NULL,
  last_error text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
