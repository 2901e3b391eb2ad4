-- Skipping re-sync updates that cannot change anything (sr_reconcile::settle).
--
-- `settled`: the content digest (16 bytes) of the update a device row fully reflects, written by
-- the statement that made the row reflect it and cleared (NULL) by every other write of the row.
-- A later update with the same content, seen between the row's first_seen and last_seen plus the
-- last_seen precision, would write nothing, so DIRE skips it without loading the device.
ALTER TABLE devices ADD COLUMN settled BYTEA;

-- Bumped by every transaction that writes a (tenant, partition) scope, under the scope lock. A
-- replica that remembers settled devices of a scope trusts its memory only while the epoch is
-- the one its own last transaction there left.
CREATE TABLE scope_epochs (
    tenant_id UUID   NOT NULL,
    partition TEXT   NOT NULL,
    epoch     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, partition)
);

-- Room on every page for a changed row's new version: an update that changes no indexed column
-- (most re-sync changes: model, metadata, last_seen) then stays on its page (HOT) and writes no
-- index entry.
ALTER TABLE devices SET (fillfactor = 85);
