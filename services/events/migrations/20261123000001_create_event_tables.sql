-- Events service schema: the OCSF event store and the quarantine of messages that could not
-- be stored. Runs inside the service's own schema (search_path), so nothing is qualified.

-- One row per (tenant, event uid): redelivery and duplicate publishes insert nothing
-- (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE ocsf_events (
    tenant_id       UUID NOT NULL CHECK (tenant_id <> '00000000-0000-0000-0000-000000000000'),
    uid             UUID NOT NULL,
    origin          TEXT NOT NULL,
    class_uid       INTEGER NOT NULL,
    category_uid    INTEGER NOT NULL,
    activity_id     INTEGER NOT NULL,
    type_uid        BIGINT NOT NULL,
    severity_id     INTEGER NOT NULL,
    status_id       INTEGER NOT NULL,
    time            TIMESTAMPTZ NOT NULL,
    message         TEXT NOT NULL,
    correlation_uid TEXT,
    observables     JSONB NOT NULL,
    unmapped        JSONB NOT NULL,
    -- The event's JSON exactly as published. The service has parsed and validated it, so
    -- it is kept as text: a json/jsonb column would make Postgres parse it a second time
    -- (about a fifth of the insert cost). Query it with raw::jsonb.
    raw             TEXT NOT NULL,
    subject         TEXT NOT NULL,
    stored_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, uid)
);
-- Read API: newest first per tenant, keyset pagination on (time, uid).
CREATE INDEX ocsf_events_tenant_time ON ocsf_events (tenant_id, time, uid);
-- Retention deletes by age; rows arrive roughly in time order, so a BRIN index finds the old
-- ones for almost no cost on the insert path.
CREATE INDEX ocsf_events_time_brin ON ocsf_events USING brin (time);

-- Messages that were terminated instead of stored. The id is derived from the message's
-- stream position and bytes, so a redelivery does not add a second row. The tenant is the
-- one named by the subject, and is unknown when the subject names none.
CREATE TABLE quarantined_events (
    id          UUID PRIMARY KEY,
    tenant_id   UUID,
    subject     TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('subject', 'malformed', 'invalid', 'tenant_mismatch', 'rejected')),
    reason      TEXT NOT NULL,
    raw         BYTEA NOT NULL,
    stream      TEXT NOT NULL,
    stream_seq  BIGINT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX quarantined_events_tenant ON quarantined_events (tenant_id, received_at, id);
CREATE INDEX quarantined_events_received ON quarantined_events (received_at);
