-- Reconciliation at the size of a province's cohort (issue 7).

-- A run COPYs one recon_items row per child and category: 1.5 million rows for a large
-- cohort. The foreign key to recon_runs checked each of them with a trigger of its own,
-- which cost PostgreSQL three times as much as storing the rows. Runs are never deleted,
-- and a run writes items only under its own id, which it has just created; a failed run's
-- items and a pruned run's are deleted by run_id as before.
ALTER TABLE recon_items DROP CONSTRAINT IF EXISTS recon_items_run_id_fkey;

-- A run now gathers the identity numbers it sees in a temporary table of its own.
DROP TABLE IF EXISTS recon_identities;
