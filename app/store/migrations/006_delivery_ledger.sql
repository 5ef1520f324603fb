-- The delivery ledger (app/core/ledger.py, app/stream/ledger.py), folded from
-- hookstream.deliveries.outcomes: every copy of every delivery the dedup stage consumed,
-- and one row per delivery key. Rows older than HOOKSTREAM_LEDGER_RETENTION_DAYS are
-- pruned (app/store/ledger.py: prune).

CREATE TABLE IF NOT EXISTS delivery_copies (
    copy_id            text PRIMARY KEY,  -- <deliveries topic>/<partition>/<offset>: where the copy is
    key                text NOT NULL,
    partition          integer NOT NULL,
    "offset"           bigint NOT NULL,
    received_at        timestamptz NOT NULL,
    outcome            text NOT NULL CHECK (outcome IN ('routed', 'duplicate', 'ignored', 'dead_lettered')),
    rule               text,
    reason             text,
    request_ids        text[] NOT NULL DEFAULT '{}',
    source_ids         text[] NOT NULL DEFAULT '{}',
    event_types        text[] NOT NULL DEFAULT '{}',
    replay_epoch       text,
    redrive_of         text,
    outcome_partition  integer NOT NULL,
    outcome_offset     bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS delivery_copies_key_idx ON delivery_copies (key, received_at);
CREATE INDEX IF NOT EXISTS delivery_copies_received_idx ON delivery_copies (received_at);
CREATE INDEX IF NOT EXISTS delivery_copies_request_ids_idx ON delivery_copies USING gin (request_ids);

CREATE TABLE IF NOT EXISTS deliveries (
    key                text PRIMARY KEY,  -- plugin/instance/deliveryId
    plugin             text NOT NULL,
    instance           text NOT NULL,
    delivery_id        text NOT NULL,
    event              text,
    first_received_at  timestamptz NOT NULL,
    last_received_at   timestamptz NOT NULL,
    copies             integer NOT NULL,
    outcome            text NOT NULL CHECK (outcome IN ('routed', 'duplicate', 'ignored', 'dead_lettered')),
    rule               text,
    reason             text,
    request_ids        text[] NOT NULL DEFAULT '{}',
    source_ids         text[] NOT NULL DEFAULT '{}',
    replay_epochs      text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS deliveries_last_received_idx ON deliveries (last_received_at DESC);
CREATE INDEX IF NOT EXISTS deliveries_delivery_id_idx ON deliveries (delivery_id);
CREATE INDEX IF NOT EXISTS deliveries_filter_idx ON deliveries (plugin, instance, outcome, last_received_at DESC);
CREATE INDEX IF NOT EXISTS deliveries_request_ids_idx ON deliveries USING gin (request_ids);
