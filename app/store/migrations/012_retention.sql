-- Retention (app/store/retention.py, `hookstream db prune`): the prune finds old history by
-- these columns without scanning whole tables.
CREATE INDEX IF NOT EXISTS sync_jobs_finished_idx ON sync_jobs (finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled', 'timed_out');
CREATE INDEX IF NOT EXISTS sync_requests_answered_idx ON sync_requests (answered_at);
