-- Offsets applied by each projection: written in the same transaction as the
-- projection's rows, so a replayed message at or below it is skipped.
CREATE TABLE IF NOT EXISTS applied_offsets (
    consumer    text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint  NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

CREATE TABLE IF NOT EXISTS sources (
    source_id      text PRIMARY KEY,
    source_type    text NOT NULL,
    name           text,
    status         text NOT NULL,
    config         jsonb NOT NULL DEFAULT '{}'::jsonb,
    config_status  text,
    config_path    text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS documents (
    source_id     text NOT NULL,
    path          text NOT NULL,
    content       text,
    sha256        text NOT NULL,
    size          bigint NOT NULL,
    language      text,
    title         text,
    is_binary     boolean NOT NULL DEFAULT false,
    commit        text,
    job_id        text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, path)
);

CREATE TABLE IF NOT EXISTS sync_jobs (
    job_id             text PRIMARY KEY,
    source_id          text NOT NULL,
    mode               text NOT NULL,
    trigger            text NOT NULL,
    request_ids        text[] NOT NULL DEFAULT '{}',
    status             text NOT NULL,
    error              text,
    commit             text,
    queued_at          timestamptz,
    started_at         timestamptz,
    finished_at        timestamptz,
    duration_ms        bigint,
    files_listed       integer NOT NULL DEFAULT 0,
    processed          integer NOT NULL DEFAULT 0,
    failed             integer NOT NULL DEFAULT 0,
    deleted            integer NOT NULL DEFAULT 0,
    skipped            integer NOT NULL DEFAULT 0,
    documents_written  integer NOT NULL DEFAULT 0,
    bytes              bigint  NOT NULL DEFAULT 0,
    batches            integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sync_jobs_source_idx ON sync_jobs (source_id, started_at DESC);

CREATE TABLE IF NOT EXISTS dlq (
    dead_letter_id  text PRIMARY KEY,
    key             text NOT NULL,
    plugin          text NOT NULL,
    instance        text NOT NULL,
    stage           text NOT NULL,
    error           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 1,
    status          text NOT NULL DEFAULT 'open',
    original        jsonb NOT NULL,
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    retired_at      timestamptz
);
CREATE INDEX IF NOT EXISTS dlq_status_idx ON dlq (status, last_failed_at);
