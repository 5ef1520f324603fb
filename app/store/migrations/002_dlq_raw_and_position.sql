-- Dead letters whose record did not even decode have no delivery, only raw bytes;
-- every row remembers where its latest failure was consumed.
ALTER TABLE dlq ALTER COLUMN original DROP NOT NULL;
ALTER TABLE dlq ADD COLUMN IF NOT EXISTS raw bytea;
ALTER TABLE dlq ADD COLUMN IF NOT EXISTS source_topic text;
ALTER TABLE dlq ADD COLUMN IF NOT EXISTS source_partition integer;
ALTER TABLE dlq ADD COLUMN IF NOT EXISTS source_offset bigint;
ALTER TABLE dlq ADD CONSTRAINT dlq_original_or_raw CHECK (original IS NOT NULL OR raw IS NOT NULL);
ALTER TABLE dlq ADD CONSTRAINT dlq_status_known CHECK (status IN ('open', 'retired'));
CREATE INDEX IF NOT EXISTS dlq_last_failed_idx ON dlq (last_failed_at DESC);
