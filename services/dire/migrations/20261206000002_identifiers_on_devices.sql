-- A device row lists the identifiers that point at it (`identifiers`: a JSON list of
-- [type, value] pairs, in no particular order), written by the same statement as the rest of
-- the row (or, when only the identifiers changed, by one that touches nothing else). DIRE
-- reads a device's identifiers from its row, so the identifier rows need no index on their
-- owner, and DIRE's own writes keep every identifier row pointing at an existing device that
-- lists it (checked by the service's tests after every scenario), so no foreign key is checked
-- per row either. Together these were half the time of a bulk insert of new devices (measured
-- on 400 000 faker devices: 15 300–16 400 devices/s with both, 32 700 without).
ALTER TABLE devices ADD COLUMN identifiers JSONB NOT NULL DEFAULT '[]';

UPDATE devices AS d
   SET identifiers = h.identifiers
  FROM (SELECT tenant_id, partition, device_uid,
               jsonb_agg(jsonb_build_array(type, value) ORDER BY type, value) AS identifiers
          FROM identifiers
         GROUP BY tenant_id, partition, device_uid) AS h
 WHERE d.tenant_id = h.tenant_id AND d.partition = h.partition AND d.uid = h.device_uid;

ALTER TABLE identifiers DROP CONSTRAINT identifiers_tenant_id_partition_device_uid_fkey;
DROP INDEX identifiers_device;
