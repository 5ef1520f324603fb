-- Fences that keep a source's documents right when a sync stage re-consumes records
-- after a crash or a rebalance. Job ids are `<sourceId>:<control offset>`: the offset
-- orders a source's jobs (app.core.jobs.job_sequence).

-- The newest job that has written each source's documents. A batch of an older job
-- (re-consumed once a later job already wrote) must not overwrite newer rows or bring
-- back deleted ones: its write is skipped (app.store.documents.claim_writes).
CREATE TABLE IF NOT EXISTS document_write_fences (
    source_id   text PRIMARY KEY,
    job_seq     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The plan of each source's latest job: planning the same job again (the planner stopped
-- before committing its request) publishes the same batches (app.store.plans).
CREATE TABLE IF NOT EXISTS sync_plans (
    source_id   text PRIMARY KEY,
    job_id      text NOT NULL,
    job_seq     bigint NOT NULL,
    commit      text,
    files       jsonb NOT NULL,
    planned_at  timestamptz NOT NULL DEFAULT now()
);
