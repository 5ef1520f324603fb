-- The read model of sources and sync jobs (app/core/read_model.py, app/stream/projections.py).

-- sources: the commit of the last configuration change, and why a source was disconnected.
ALTER TABLE sources ADD COLUMN IF NOT EXISTS config_commit text;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS status_reason text;
CREATE INDEX IF NOT EXISTS sources_status_idx ON sources (status, source_id);

-- sync_jobs: a job's row is made by whichever of its events is projected first
-- (sync.events and sync.completed are two topics: no order between them), so a
-- row may exist before its mode or trigger is known (a job cancelled while queued
-- never says its trigger).
ALTER TABLE sync_jobs ALTER COLUMN mode DROP NOT NULL;
ALTER TABLE sync_jobs ALTER COLUMN trigger DROP NOT NULL;
ALTER TABLE sync_jobs ADD COLUMN IF NOT EXISTS deadline timestamptz;
ALTER TABLE sync_jobs ADD COLUMN IF NOT EXISTS cancelled_at timestamptz;
ALTER TABLE sync_jobs ADD COLUMN IF NOT EXISTS cancel_reason text;
CREATE INDEX IF NOT EXISTS sync_jobs_status_idx ON sync_jobs (status);
CREATE INDEX IF NOT EXISTS sync_jobs_request_ids_idx ON sync_jobs USING gin (request_ids);

-- sync_requests: how each request was answered (the first answer wins).
CREATE TABLE IF NOT EXISTS sync_requests (
    request_id   text PRIMARY KEY,
    source_id    text NOT NULL,
    answer       text NOT NULL CHECK (answer IN ('started', 'queued', 'coalesced', 'deduplicated', 'rejected')),
    job_id       text,
    reason       text,
    answered_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_requests_job_idx ON sync_requests (job_id);
