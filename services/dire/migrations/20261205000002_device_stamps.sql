-- A time per stated value (sr_reconcile::Stamps): a value of a device is replaced only by a
-- newer statement of it, whichever source makes it, so batches applied out of order end in the
-- row they give in order.
--
-- `stamps`: the values stated before `last_seen`, as a JSON list of [key, time] pairs (keys:
-- "hostname", "mac", "agent_id", "device_type", "vendor", "model", "os", "is_available",
-- {"metadata": key}, {"hint": [source, query_label]}). Every other value of the row was stated
-- at `last_seen`, which is what the rows written before this column existed assumed.
ALTER TABLE devices ADD COLUMN stamps JSONB NOT NULL DEFAULT '[]';
