-- The fast save's guard ("no event arrived since the worker folded the record") compared
-- the highest childseq, which a late event with a lower seq leaves unchanged. It compares
-- the number of events folded instead, which every recorded event changes.
ALTER TABLE children ADD COLUMN events_folded integer NOT NULL DEFAULT 0;
UPDATE children c SET events_folded = (SELECT count(*) FROM child_events e WHERE e.child_id = c.child_id);
