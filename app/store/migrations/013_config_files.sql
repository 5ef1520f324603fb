-- Config files (.hookstream.yml) read by the planner at the synced commit (docs/architecture.md, the config file).

-- sources: the status names are the orchestrator's: configured, unconfigured, invalid (NULL:
-- no plan has read it yet). The error of an invalid file, the path rules in effect, and the
-- job whose plan found them (a late plan of an older job never replaces a newer finding).
ALTER TABLE sources ADD COLUMN IF NOT EXISTS config_error text;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS config_rules jsonb;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS config_job_id text;
-- The read model of earlier versions called a config file named in a push `changed`, and one
-- with an empty path `removed`, without reading either: those rows say nothing true.
UPDATE sources SET config_status = NULL, config_path = NULL, config_commit = NULL
    WHERE config_status IN ('changed', 'removed');

-- The config file a kept plan found, published again with it when the job is planned again.
ALTER TABLE sync_plans ADD COLUMN IF NOT EXISTS config jsonb;
