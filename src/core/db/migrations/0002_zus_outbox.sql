-- zbox:compatible
-- The Züs transaction outbox: every signed transaction of a team wallet, stored before it is
-- sent. A row is the only record that a nonce is in use, so nonce assignment, resubmission and
-- replacement all read it. Binaries without this table never touch it, hence compatible.

CREATE TABLE zus_wallet_nonces (
  wallet_client_id text PRIMARY KEY,
  -- Highest nonce ever handed out for this wallet by this platform.
  last_assigned bigint NOT NULL
);

CREATE TABLE zus_outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  wallet_client_id text NOT NULL,
  -- Who the transaction is for, for example `funding:42`: a holder has at most one live row.
  holder text NOT NULL,
  nonce bigint NOT NULL CHECK (nonce > 0),
  tx_hash text NOT NULL UNIQUE,
  -- The exact JSON sent to the miners, as text so that amounts above 2^53 keep every digit.
  signed_transaction text NOT NULL,
  creation_date bigint NOT NULL,
  value_sas bigint NOT NULL CHECK (value_sas >= 0),
  fee_sas bigint NOT NULL CHECK (fee_sas >= 0),
  -- prepared: signed, maybe sent, maybe in a miner pool; confirmed: applied with status 1;
  -- failed: applied with status 2 or 3 (the nonce is used, the fee charged); expired: provably
  -- never accepted (its nonce is free again); rejected: its nonce was used by another transaction.
  state text NOT NULL DEFAULT 'prepared'
    CHECK (state IN ('prepared', 'confirmed', 'failed', 'expired', 'rejected')),
  output text,
  replaces bigint REFERENCES zus_outbox (id),
  submissions integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  settled_at timestamptz
);
-- One live or applied transaction per nonce: no nonce is handed out twice while it may apply.
CREATE UNIQUE INDEX zus_outbox_live_nonce_idx ON zus_outbox (wallet_client_id, nonce)
  WHERE state IN ('prepared', 'confirmed', 'failed');
CREATE UNIQUE INDEX zus_outbox_live_holder_idx ON zus_outbox (holder) WHERE state = 'prepared';
CREATE INDEX zus_outbox_holder_idx ON zus_outbox (holder, id DESC);
