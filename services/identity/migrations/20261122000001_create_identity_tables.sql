-- Identity service schema: tenants, certificate authorities, sync services, agents,
-- integration sources and the event outbox. Runs inside the service's own schema
-- (search_path), so no table name is schema-qualified.

CREATE TABLE tenants (
    id          UUID PRIMARY KEY CHECK (id <> '00000000-0000-0000-0000-000000000000'),
    slug        TEXT NOT NULL CHECK (slug ~ '^[a-z0-9-]{1,63}$'),
    name        TEXT NOT NULL,
    is_platform BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tenants_slug_key ON tenants (lower(slug));
-- Exactly one platform tenant can exist.
CREATE UNIQUE INDEX tenants_one_platform ON tenants (is_platform) WHERE is_platform;

CREATE TABLE platform_state (
    singleton          BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    platform_tenant_id UUID NOT NULL REFERENCES tenants (id),
    trust_domain       TEXT NOT NULL,
    admin_token_sha256 TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The root CA has no tenant; every tenant (the platform's too) has one intermediate CA.
CREATE TABLE certificate_authorities (
    id            UUID PRIMARY KEY,
    tenant_id     UUID REFERENCES tenants (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('root', 'tenant')),
    cert_pem      TEXT NOT NULL,
    key_sealed    BYTEA NOT NULL,
    key_id        TEXT NOT NULL UNIQUE,
    not_after     TIMESTAMPTZ NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((kind = 'root') = (tenant_id IS NULL))
);
CREATE UNIQUE INDEX certificate_authorities_one_root ON certificate_authorities (kind) WHERE kind = 'root';
CREATE UNIQUE INDEX certificate_authorities_one_per_tenant ON certificate_authorities (tenant_id) WHERE kind = 'tenant';

CREATE TABLE sync_services (
    id                UUID PRIMARY KEY,
    tenant_id         UUID NOT NULL REFERENCES tenants (id),
    component_id      TEXT NOT NULL,
    partition         TEXT NOT NULL DEFAULT 'default',
    name              TEXT NOT NULL,
    service_type      TEXT NOT NULL CHECK (service_type IN ('saas', 'on_prem')),
    endpoint          TEXT,
    status            TEXT NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline', 'degraded')),
    is_platform_sync  BOOLEAN NOT NULL DEFAULT FALSE,
    capabilities      TEXT[] NOT NULL DEFAULT '{}',
    version           TEXT NOT NULL DEFAULT '',
    last_heartbeat_at TIMESTAMPTZ,
    registered_at     TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, component_id),
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX sync_services_one_platform ON sync_services (is_platform_sync) WHERE is_platform_sync;
CREATE INDEX sync_services_heartbeat ON sync_services (status, last_heartbeat_at);

CREATE TABLE agents (
    id           UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants (id),
    component_id TEXT NOT NULL,
    partition    TEXT NOT NULL,
    last_seen_at TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, component_id)
);

CREATE TABLE integration_sources (
    id                      UUID PRIMARY KEY,
    tenant_id               UUID NOT NULL REFERENCES tenants (id),
    name                    TEXT NOT NULL,
    source_type             TEXT NOT NULL CHECK (source_type IN ('armis', 'netbox')),
    endpoint                TEXT NOT NULL,
    credentials_sealed      BYTEA NOT NULL,
    credential_keys         TEXT[] NOT NULL DEFAULT '{}',
    enabled                 BOOLEAN NOT NULL DEFAULT TRUE,
    sync_service_id         UUID NOT NULL REFERENCES sync_services (id),
    agent_id                TEXT NOT NULL DEFAULT '',
    partition               TEXT NOT NULL DEFAULT 'default',
    poll_interval_secs      INTEGER NOT NULL DEFAULT 300 CHECK (poll_interval_secs > 0),
    discovery_interval_secs INTEGER NOT NULL DEFAULT 3600 CHECK (discovery_interval_secs > 0),
    sweep_interval_secs     INTEGER NOT NULL DEFAULT 3600 CHECK (sweep_interval_secs > 0),
    page_size               INTEGER NOT NULL DEFAULT 100 CHECK (page_size BETWEEN 1 AND 1000),
    network_blacklist       TEXT[] NOT NULL DEFAULT '{}',
    queries                 JSONB NOT NULL DEFAULT '[]',
    settings                JSONB NOT NULL DEFAULT '{}',
    insecure_skip_verify    BOOLEAN NOT NULL DEFAULT FALSE,
    last_sync_at            TIMESTAMPTZ,
    last_sync_result        TEXT,
    last_device_count       BIGINT,
    consecutive_failures    INTEGER NOT NULL DEFAULT 0,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
CREATE INDEX integration_sources_sync ON integration_sources (sync_service_id) WHERE enabled;

-- Events are written here in the same transaction as the change they describe, then
-- published to JetStream (Nats-Msg-Id = uid) by the outbox worker: none is lost if NATS
-- is down at commit time.
CREATE TABLE event_outbox (
    uid          UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL,
    kind         TEXT NOT NULL,
    payload      JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE INDEX event_outbox_pending ON event_outbox (created_at, uid) WHERE published_at IS NULL;
