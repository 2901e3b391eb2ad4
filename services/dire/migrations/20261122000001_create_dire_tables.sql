-- DIRE: the canonical device inventory per (tenant, partition), the identifiers that point at
-- it, the merge audit, and the outboxes of inventory changes and OCSF events. Runs inside the
-- service's own schema (search_path), so no name is schema-qualified. Every unique key starts
-- with tenant_id.

-- Device revisions. No CACHE: values are handed out in call order, and writes to one device are
-- serialised by the per-(tenant, partition) advisory lock, so a device's revisions only grow,
-- even across a merge-away and a later re-creation of the same uid.
CREATE SEQUENCE device_revisions;

CREATE TABLE devices (
    tenant_id         UUID        NOT NULL,
    partition         TEXT        NOT NULL,
    uid               TEXT        NOT NULL,
    ip                INET,
    mac               TEXT,
    hostname          TEXT,
    name              TEXT,
    type              TEXT,
    vendor            TEXT,
    model             TEXT,
    os                TEXT,
    agent_id          TEXT,
    discovery_sources TEXT[]      NOT NULL DEFAULT '{}',
    is_available      BOOLEAN,
    first_seen        TIMESTAMPTZ NOT NULL,
    last_seen         TIMESTAMPTZ NOT NULL,
    metadata          JSONB       NOT NULL DEFAULT '{}',
    -- Latest sweep hint per (source, query_label): [{source, query_label, sweep_modes, ports,
    -- sweep_interval_secs}], sorted by that key.
    sweep_hints       JSONB       NOT NULL DEFAULT '[]',
    revision          BIGINT      NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, partition, uid),
    -- One holder per IP in a scope. Deferred: a DHCP swap inside one batch exchanges the IPs of
    -- two rows, which is only consistent once both are written.
    CONSTRAINT devices_ip_key UNIQUE (tenant_id, partition, ip) DEFERRABLE INITIALLY DEFERRED
);
-- The read API pages a tenant's devices by uid across partitions.
CREATE INDEX devices_tenant_uid ON devices (tenant_id, uid);

CREATE TABLE identifiers (
    tenant_id  UUID        NOT NULL,
    partition  TEXT        NOT NULL,
    type       TEXT        NOT NULL,
    value      TEXT        NOT NULL,
    device_uid TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, partition, type, value),
    -- Not deferred on purpose: DIRE writes a device row before its identifiers.
    FOREIGN KEY (tenant_id, partition, device_uid) REFERENCES devices (tenant_id, partition, uid)
);
CREATE INDEX identifiers_device ON identifiers (tenant_id, partition, device_uid);

CREATE TABLE merge_audit (
    tenant_id UUID        NOT NULL,
    id        UUID        NOT NULL,
    partition TEXT        NOT NULL,
    from_uid  TEXT        NOT NULL,
    to_uid    TEXT        NOT NULL,
    reason    TEXT        NOT NULL,
    -- The merged-away device's identifiers the batch reported ("type=value").
    evidence  TEXT[]      NOT NULL DEFAULT '{}',
    merged_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX merge_audit_to ON merge_audit (tenant_id, to_uid);
CREATE INDEX merge_audit_from ON merge_audit (tenant_id, from_uid);

-- InventoryChange messages written in the transaction that changed the devices and published
-- afterwards (Nats-Msg-Id = id), so none is lost if NATS fails after the commit.
CREATE TABLE inventory_outbox (
    tenant_id   UUID        NOT NULL,
    id          UUID        NOT NULL,
    seq         BIGINT      GENERATED ALWAYS AS IDENTITY,
    payload     BYTEA       NOT NULL,
    devices     INTEGER     NOT NULL,
    traceparent TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX inventory_outbox_seq ON inventory_outbox (seq);

-- OCSF events (merges, IP churn, poison messages), published on <prefix>.events.<tenant>.dire.
CREATE TABLE event_outbox (
    tenant_id  UUID        NOT NULL,
    uid        UUID        NOT NULL,
    seq        BIGINT      GENERATED ALWAYS AS IDENTITY,
    kind       TEXT        NOT NULL,
    payload    JSONB       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, uid)
);
CREATE INDEX event_outbox_seq ON event_outbox (seq);
