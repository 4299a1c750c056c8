-- zbox:compatible
-- OpenAI batch tasks: a prompt run over files users shared on Züs, the shares themselves, and
-- the S3 objects made for batch images. Older binaries never read these tables, hence
-- compatible.

-- A file a user shared, as the platform stores it: the auth ticket (base64 JSON) and the file's
-- lookup hash in its allocation.
CREATE TABLE share_infos (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id text NOT NULL,
  auth_ticket text NOT NULL,
  lookup_hash text NOT NULL,
  file_name text,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE openai_batch_tasks (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id text NOT NULL,
  prompt text NOT NULL,
  system_prompt text,
  model text NOT NULL,
  share_info_ids bigint[] NOT NULL,
  endpoint text NOT NULL DEFAULT '/v1/chat/completions',
  -- Written by the worker as soon as each step returns, so a retry adopts them.
  input_file_id text,
  batch_id text,
  -- Per-file reasons for files left out of the batch (type, size, encoding, download).
  file_reasons jsonb NOT NULL DEFAULT '{}',
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_progress', 'succeeded', 'dead')),
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  locked_by uuid,
  locked_until timestamptz,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz
);
CREATE INDEX openai_batch_tasks_due_idx ON openai_batch_tasks (next_attempt_at) WHERE status IN ('pending', 'in_progress');

-- S3 objects uploaded for batch images; delete-openai-files removes them after delete_after.
CREATE TABLE batch_image_uploads (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  task_id bigint NOT NULL REFERENCES openai_batch_tasks (id) ON DELETE CASCADE,
  share_info_id bigint NOT NULL,
  s3_key text NOT NULL UNIQUE,
  delete_after timestamptz NOT NULL,
  deleted_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX batch_image_uploads_delete_idx ON batch_image_uploads (delete_after) WHERE deleted_at IS NULL;
