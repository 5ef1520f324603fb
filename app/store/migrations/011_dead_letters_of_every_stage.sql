-- Every agent dead-letters the records it cannot apply (app/core/poison.py), not only the
-- dedup/routing stage: a record of another topic is kept as `raw`, and one too large for a
-- dead letter keeps only its first bytes (`truncated`: it cannot be redriven).
ALTER TABLE dlq ADD COLUMN IF NOT EXISTS truncated boolean NOT NULL DEFAULT false;
-- `dlq list --stage` and the retention prune (retired rows by retirement time).
CREATE INDEX IF NOT EXISTS dlq_stage_idx ON dlq (stage, last_failed_at DESC);
CREATE INDEX IF NOT EXISTS dlq_retired_idx ON dlq (retired_at) WHERE status = 'retired';
