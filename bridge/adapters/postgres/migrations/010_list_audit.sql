-- A list page was audited with one row per child shown: 100 rows per page, and when 200
-- schools' nightly jobs list at once, those rows were most of the database's work and
-- every download waited behind them. A page is now one row naming all the children it
-- showed; a child's reads are found through this index as well as by student_number.
-- fastupdate is off: its pending list is flushed by whichever insert finds it full,
-- which stalls that request for 100-200 ms (autovacuum is not there to do it first).
ALTER TABLE audit_log ADD COLUMN student_numbers text[];
CREATE INDEX audit_log_children ON audit_log USING gin (student_numbers)
    WITH (fastupdate = off) WHERE student_numbers IS NOT NULL;
