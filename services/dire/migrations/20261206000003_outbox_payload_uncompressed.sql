-- An inventory outbox row holds one protobuf message of up to a few hundred devices and lives
-- only until the outbox task publishes it. Compressing it (pglz, the default for a value this
-- large) cost the writing transaction more than the few pages it saves; it is stored out of
-- line as it is.
ALTER TABLE inventory_outbox ALTER COLUMN payload SET STORAGE EXTERNAL;
