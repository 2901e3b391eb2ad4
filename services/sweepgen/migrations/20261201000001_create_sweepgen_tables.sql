-- The sweep projection: what sweepgen knows of each canonical device, fed by DIRE's
-- inventory changes. Every unique key includes tenant_id.

-- One row per (tenant, partition): bumped (under a row lock) by every transaction that
-- changes a device of the partition, so a replica can tell whether its in-memory index is
-- current and fetch only the rows changed since (those carry the generation that wrote them).
CREATE TABLE partition_generations (
    tenant_id uuid NOT NULL,
    partition text NOT NULL,
    generation bigint NOT NULL DEFAULT 0,
    -- Tombstones written at or below this generation were purged: a replica behind it reloads.
    purged_generation bigint NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, partition)
);

CREATE TABLE sweep_devices (
    tenant_id uuid NOT NULL,
    partition text NOT NULL,
    uid text NOT NULL,
    -- NULL: every agent of the partition sweeps the device.
    agent_id text,
    -- Canonical addresses, in address order.
    ips text[] NOT NULL DEFAULT '{}',
    -- sr_core::inventory::SweepHint values, normalised and sorted.
    hints jsonb NOT NULL DEFAULT '[]',
    -- A tombstone: kept so that an older, redelivered change cannot resurrect the device.
    removed boolean NOT NULL DEFAULT false,
    -- DIRE's monotonic per-device revision.
    revision bigint NOT NULL,
    -- partition_generations.generation of the transaction that last changed the content.
    generation bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, partition, uid)
);

-- Partial, so that it never competes with the primary key for lookups by uid (a generic plan
-- with stale statistics would otherwise scan a whole partition); delta queries repeat the
-- predicate. Every row a delta needs has a generation above 0.
CREATE INDEX sweep_devices_by_generation ON sweep_devices (tenant_id, partition, generation)
    WHERE generation > 0;
CREATE INDEX sweep_devices_tombstones ON sweep_devices (updated_at) WHERE removed;

-- How many live devices of a partition carry each (source, sweep interval): a source's
-- interval is the smallest one still held, without scanning the devices.
CREATE TABLE source_intervals (
    tenant_id uuid NOT NULL,
    partition text NOT NULL,
    source text NOT NULL,
    interval_secs integer NOT NULL,
    devices bigint NOT NULL,
    PRIMARY KEY (tenant_id, partition, source, interval_secs)
);

-- The config version each agent was last answered with, and since when: every replica
-- answers the same config_timestamp.
CREATE TABLE agent_configs (
    tenant_id uuid NOT NULL,
    partition text NOT NULL,
    agent_id text NOT NULL,
    config_version text NOT NULL,
    generation bigint NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, partition, agent_id)
);
