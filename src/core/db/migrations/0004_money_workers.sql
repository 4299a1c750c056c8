-- zbox:compatible
-- The two workers that spend the team wallet: paid allocations (written by the platform's
-- Stripe webhook) and token grants, their funding records, and the users' push devices.
-- Older binaries never read these tables, hence compatible.

CREATE TABLE stripe_allocation_tasks (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stripe_payment_id text NOT NULL UNIQUE,
  user_id text NOT NULL,
  owner_client_id text NOT NULL,
  owner_public_key text,
  -- Set for an upgrade of an existing allocation; NULL for a new allocation.
  allocation_id text,
  size_bytes bigint CHECK (size_bytes > 0),
  size_increase_bytes bigint CHECK (size_increase_bytes > 0),
  data_shards integer,
  parity_shards integer,
  preferred_blobbers text[] NOT NULL DEFAULT '{}',
  -- Owner-signed update ticket for changes only the owner may make (adding or removing a blobber).
  owner_update_ticket text,
  add_blobber_id text,
  remove_blobber_id text,
  amount_paid_cents bigint CHECK (amount_paid_cents >= 0),
  currency text,
  payment_received boolean NOT NULL DEFAULT true,
  tx_success boolean NOT NULL DEFAULT false,
  tx_hash text,
  -- The signed transaction, stored before it is sent (the outbox keeps the same text).
  signed_transaction text,
  result_allocation_id text,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_progress', 'succeeded', 'dead')),
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 10 CHECK (max_attempts > 0),
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  locked_by uuid,
  locked_until timestamptz,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz
);
CREATE INDEX stripe_allocation_tasks_due_idx ON stripe_allocation_tasks (next_attempt_at)
  WHERE status IN ('pending', 'in_progress');

-- What a paid allocation cost the team wallet, one row per Stripe task.
CREATE TABLE allocation_fundings (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stripe_task_id bigint NOT NULL UNIQUE REFERENCES stripe_allocation_tasks (id),
  allocation_id text NOT NULL,
  lock_sas bigint NOT NULL CHECK (lock_sas >= 0),
  fee_sas bigint NOT NULL CHECK (fee_sas >= 0),
  amount_paid_cents bigint,
  tx_hash text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE funding_tasks (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id text NOT NULL,
  recipient_client_id text NOT NULL,
  amount_sas bigint NOT NULL,
  reason text,
  tx_success boolean NOT NULL DEFAULT false,
  tx_hash text,
  -- The push after the transfer: its own state, so its failure never touches the transfer.
  notify_state text NOT NULL DEFAULT 'pending' CHECK (notify_state IN ('pending', 'sent', 'failed', 'skipped')),
  notify_attempts integer NOT NULL DEFAULT 0,
  notify_last_error text,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_progress', 'succeeded', 'dead')),
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 10 CHECK (max_attempts > 0),
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  locked_by uuid,
  locked_until timestamptz,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz
);
CREATE INDEX funding_tasks_due_idx ON funding_tasks (next_attempt_at) WHERE status IN ('pending', 'in_progress');

-- Push tokens of users' devices, written by the apps; a token FCM reports as gone is deleted.
CREATE TABLE user_devices (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id text NOT NULL,
  fcm_token text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_devices_user_idx ON user_devices (user_id);

-- Spending rows point at the transaction they reserve for; the guard rails sum the last day.
CREATE INDEX team_wallet_spending_tx_hash_idx ON team_wallet_spending (tx_hash);
CREATE INDEX team_wallet_spending_wallet_created_idx ON team_wallet_spending (wallet_client_id, created_at);
