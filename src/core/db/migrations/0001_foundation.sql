-- Foundation: the runs record, team-wallet spending, storage config, allocations and the
-- expiry-notice queue.
--
-- Queue tables carry the engine's columns (status, attempts, max_attempts, next_attempt_at,
-- locked_by, locked_until, last_error, created_at, updated_at, completed_at). Every timestamp
-- is timestamptz and every due, lease and retention comparison uses the database's now().

-- One row per real (not dry) run of a worker: what `status` shows as the last run.
CREATE TABLE zbox_runs (
  run_id uuid PRIMARY KEY,
  worker text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  exit_code integer,
  summary jsonb
);
CREATE INDEX zbox_runs_worker_started_idx ON zbox_runs (worker, started_at DESC);

-- Spending of the team wallet, one row per chain transaction it pays for. Amounts are SAS.
CREATE TABLE team_wallet_spending (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  wallet_client_id text NOT NULL,
  purpose text NOT NULL,
  task_ref text,
  amount_sas bigint NOT NULL CHECK (amount_sas >= 0),
  fee_sas bigint NOT NULL DEFAULT 0 CHECK (fee_sas >= 0),
  tx_hash text,
  state text NOT NULL DEFAULT 'reserved' CHECK (state IN ('reserved', 'settled', 'released')),
  created_at timestamptz NOT NULL DEFAULT now(),
  settled_at timestamptz
);
CREATE INDEX team_wallet_spending_created_at_idx ON team_wallet_spending (created_at);

-- The storage smart contract's config as the platform reads it: one current row.
CREATE TABLE storage_config (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  free_allocation_size_bytes bigint NOT NULL,
  free_allocation_data_shards integer NOT NULL,
  free_allocation_parity_shards integer NOT NULL,
  max_write_price_sas bigint NOT NULL,
  min_write_price_sas bigint NOT NULL,
  max_read_price_sas bigint NOT NULL,
  cancellation_charge numeric NOT NULL,
  min_alloc_size_bytes bigint NOT NULL,
  max_blobbers_per_allocation integer NOT NULL,
  time_unit_seconds bigint NOT NULL,
  raw_fields jsonb NOT NULL,
  fetched_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every change of the stored config: field -> {from, to} of the raw text, plus the whole answer.
CREATE TABLE storage_config_history (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  changed_at timestamptz NOT NULL DEFAULT now(),
  changes jsonb NOT NULL,
  raw_fields jsonb NOT NULL
);

-- Allocations the platform knows; `expires_at` is refreshed from the sharders before a notice.
CREATE TABLE allocations (
  id text PRIMARY KEY,
  owner_client_id text NOT NULL,
  user_id text NOT NULL,
  size_bytes bigint NOT NULL,
  data_shards integer NOT NULL,
  parity_shards integer NOT NULL,
  expires_at timestamptz,
  finalized boolean NOT NULL DEFAULT false,
  canceled boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX allocations_expires_at_idx ON allocations (expires_at)
  WHERE NOT finalized AND NOT canceled;

-- Expiry notices: one row per (allocation, expiry instant, window). The row is the queue task
-- that writes the Elasticsearch document and the record that the notice was sent.
CREATE TABLE allocation_expiry_notices (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  allocation_id text NOT NULL REFERENCES allocations (id) ON DELETE CASCADE,
  user_id text NOT NULL,
  expires_at timestamptz NOT NULL,
  window_days integer NOT NULL CHECK (window_days > 0),
  document_id text NOT NULL UNIQUE,
  -- created: document written; already_sent: it existed (409); superseded: the expiry date or
  -- the tightest window changed before sending; expired or closed: nothing to notify any more.
  outcome text CHECK (outcome IN ('created', 'already_sent', 'superseded', 'expired', 'closed')),
  sent_at timestamptz,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_progress', 'succeeded', 'dead')),
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 8 CHECK (max_attempts > 0),
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  locked_by uuid,
  locked_until timestamptz,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz,
  UNIQUE (allocation_id, expires_at, window_days)
);
CREATE INDEX allocation_expiry_notices_due_idx ON allocation_expiry_notices (next_attempt_at)
  WHERE status IN ('pending', 'in_progress');
