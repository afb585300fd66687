-- Names of schools and kindergartens (学校标识码 -> 名称) for the operators' lists. The
-- registries' contracts carry codes only; a data centre loads its names from a file
-- (`xueji schools load names.csv`), and a code without a name is shown as its code.
CREATE TABLE school_names (
    code       text        PRIMARY KEY,
    name       text        NOT NULL,
    source     text,
    loaded_by  text        NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now()
);
-- The lost-child list sorts a run's findings of three categories by their due day.
CREATE INDEX recon_items_lost ON recon_items (run_id, category)
    WHERE category IN ('not_arrived', 'file_not_pulled', 'overdue');
