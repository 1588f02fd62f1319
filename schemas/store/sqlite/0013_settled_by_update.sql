-- Retention finds settled deliveries by age, and only those need an index on it. The index on
-- every row's updated_at moved at each state change (the claim, the record), a page written to
-- the WAL each time, and the planner did not even take it for the purge: it took the status
-- index and read every settled delivery, under the write lock, to find the few expired ones.
-- The purge names this index (INDEXED BY).
DROP INDEX IF EXISTS deliveries_by_update;
CREATE INDEX IF NOT EXISTS deliveries_settled_by_update ON deliveries (updated_at)
    WHERE status IN ('delivered', 'dead_lettered');
