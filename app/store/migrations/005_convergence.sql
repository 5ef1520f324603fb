-- Level-triggered syncs (docs/architecture.md, convergence).

-- How each job listed its changes: full, diff (from the commit the documents were at) or
-- unchanged (they were at the branch head already: "already synced").
ALTER TABLE sync_jobs ADD COLUMN IF NOT EXISTS listing text;

-- A push to a branch the source does not track is answered "ignored" (by a counted rule).
ALTER TABLE sync_requests DROP CONSTRAINT IF EXISTS sync_requests_answer_check;
ALTER TABLE sync_requests ADD CONSTRAINT sync_requests_answer_check
    CHECK (answer IN ('started', 'queued', 'coalesced', 'deduplicated', 'rejected', 'ignored'));

-- The listing of the kept plan, published again with it when a job is planned again.
ALTER TABLE sync_plans ADD COLUMN IF NOT EXISTS listing text;
