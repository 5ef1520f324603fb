-- Live progress and the records behind every job (app/core/read_model.py,
-- app/stream/projections.py), for `syncs list/show`, the console and `hookstream trace`.

-- sync_jobs: what the plan said, and the counts so far while a job runs (its batch
-- completions, each index once); the completion's counts replace them.
ALTER TABLE sync_jobs ADD COLUMN IF NOT EXISTS batches_planned integer;
ALTER TABLE sync_jobs ADD COLUMN IF NOT EXISTS planned_at timestamptz;

-- sync_batches: the first completion of each batch index of a job, where it is on the
-- control topic.
CREATE TABLE IF NOT EXISTS sync_batches (
    batch_id           text PRIMARY KEY,  -- <jobId>/<batchIndex>, the batch's key on hookstream.files.batches
    job_id             text NOT NULL,
    batch_index        integer NOT NULL,
    source_id          text NOT NULL,
    processed          integer NOT NULL DEFAULT 0,
    failed             integer NOT NULL DEFAULT 0,
    deleted            integer NOT NULL DEFAULT 0,
    skipped            integer NOT NULL DEFAULT 0,
    documents_written  integer NOT NULL DEFAULT 0,
    bytes              bigint NOT NULL DEFAULT 0,
    cancelled          boolean NOT NULL DEFAULT false,
    error              text,
    completed_at       timestamptz NOT NULL,
    topic              text NOT NULL,
    partition          integer NOT NULL,
    "offset"           bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_batches_job_idx ON sync_batches (job_id, batch_index);
CREATE INDEX IF NOT EXISTS sync_batches_completed_idx ON sync_batches (completed_at);  -- retention

-- sync_records: every other record a job or request left on the sync topics (its
-- request on the control topic, its plan, lifecycle events, its completion), by
-- position: what `hookstream trace` reads, at those offsets only.
CREATE TABLE IF NOT EXISTS sync_records (
    record_id      text PRIMARY KEY,  -- <topic>/<partition>/<offset>
    topic          text NOT NULL,
    partition      integer NOT NULL,
    "offset"       bigint NOT NULL,
    type           text NOT NULL,
    source_id      text NOT NULL,
    job_id         text,
    request_ids    text[] NOT NULL DEFAULT '{}',
    delivery_key   text,
    occurred_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_records_job_idx ON sync_records (job_id);
CREATE INDEX IF NOT EXISTS sync_records_request_ids_idx ON sync_records USING gin (request_ids);
CREATE INDEX IF NOT EXISTS sync_records_delivery_idx ON sync_records (delivery_key);
CREATE INDEX IF NOT EXISTS sync_records_occurred_idx ON sync_records (occurred_at);  -- retention
