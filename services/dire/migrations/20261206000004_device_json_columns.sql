-- The JSON columns of a device row are written and read whole by DIRE and never indexed into:
-- `json` stores the text as sent (after checking it), where `jsonb` decomposed every value on
-- write and recomposed it on every read. That decomposition was about a seventh of Postgres'
-- time during a large initial ingest.
ALTER TABLE devices
    ALTER COLUMN metadata DROP DEFAULT,
    ALTER COLUMN sweep_hints DROP DEFAULT,
    ALTER COLUMN stamps DROP DEFAULT,
    ALTER COLUMN identifiers DROP DEFAULT;
ALTER TABLE devices
    ALTER COLUMN metadata TYPE JSON USING metadata::json,
    ALTER COLUMN sweep_hints TYPE JSON USING sweep_hints::json,
    ALTER COLUMN stamps TYPE JSON USING stamps::json,
    ALTER COLUMN identifiers TYPE JSON USING identifiers::json;
ALTER TABLE devices
    ALTER COLUMN metadata SET DEFAULT '{}',
    ALTER COLUMN sweep_hints SET DEFAULT '[]',
    ALTER COLUMN stamps SET DEFAULT '[]',
    ALTER COLUMN identifiers SET DEFAULT '[]';
