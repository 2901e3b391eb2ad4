-- Keys compare as bytes (collation "C"): uids, partitions and identifier types and values are
-- machine strings, whatever the database's default collation. Every btree insert and lookup on
-- them then compares with memcmp instead of the locale's strcoll, and rows sort in the same
-- order on every server as in DIRE (Rust's byte order of `str`), which is also the order the
-- API pages devices in.
ALTER TABLE devices
    ALTER COLUMN partition TYPE TEXT COLLATE "C",
    ALTER COLUMN uid TYPE TEXT COLLATE "C";
ALTER TABLE identifiers
    ALTER COLUMN partition TYPE TEXT COLLATE "C",
    ALTER COLUMN type TYPE TEXT COLLATE "C",
    ALTER COLUMN value TYPE TEXT COLLATE "C",
    ALTER COLUMN device_uid TYPE TEXT COLLATE "C";
ALTER TABLE merge_audit
    ALTER COLUMN partition TYPE TEXT COLLATE "C",
    ALTER COLUMN from_uid TYPE TEXT COLLATE "C",
    ALTER COLUMN to_uid TYPE TEXT COLLATE "C";
ALTER TABLE scope_epochs
    ALTER COLUMN partition TYPE TEXT COLLATE "C";
