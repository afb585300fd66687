-- The hand-over's hot path writes each child's row three or four times (leased, intent,
-- done): every index on `children` is written again on each update that is not HOT.

-- children_school_list (school_code, entry_year, child_id) WHERE school_code IS NOT NULL
-- serves every query by school (they all ask for a school code), so this one only costs.
DROP INDEX IF EXISTS children_school;

-- Room in each page for a row's next version: leasing a child changes no indexed column,
-- so with free space on its page that update is HOT and touches no index at all.
ALTER TABLE children SET (fillfactor = 80);
