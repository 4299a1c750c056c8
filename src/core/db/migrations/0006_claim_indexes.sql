-- zbox:compatible
-- Claim indexes that match the claim's order. The claim picks due rows ORDER BY
-- (next_attempt_at, id); with `id` in the index the scan returns rows already in that order and
-- stops after LIMIT, instead of sorting rows that share a next_attempt_at (a batch queued at once
-- shares one). Older binaries run the same statements, hence compatible. Each index is rebuilt in
-- this migration's transaction, which blocks writes to its queue table for as long as the build
-- takes; the partial predicate keeps that to the open rows.

DROP INDEX allocation_expiry_notices_due_idx;
CREATE INDEX allocation_expiry_notices_due_idx ON allocation_expiry_notices (next_attempt_at, id)
  WHERE status IN ('pending', 'in_progress');

DROP INDEX restricted_blobber_tickets_due_idx;
CREATE INDEX restricted_blobber_tickets_due_idx ON restricted_blobber_tickets (next_attempt_at, id)
  WHERE status IN ('pending', 'in_progress');

DROP INDEX stripe_allocation_tasks_due_idx;
CREATE INDEX stripe_allocation_tasks_due_idx ON stripe_allocation_tasks (next_attempt_at, id)
  WHERE status IN ('pending', 'in_progress');

DROP INDEX funding_tasks_due_idx;
CREATE INDEX funding_tasks_due_idx ON funding_tasks (next_attempt_at, id)
  WHERE status IN ('pending', 'in_progress');

DROP INDEX openai_batch_tasks_due_idx;
CREATE INDEX openai_batch_tasks_due_idx ON openai_batch_tasks (next_attempt_at, id)
  WHERE status IN ('pending', 'in_progress');
