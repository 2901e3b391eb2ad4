//! Postgres access of the `sweepgen` schema: applying inventory changes to the projection
//! (one transaction per message, serialised per (tenant, partition) by a row lock on its
//! generation), loading a partition, fetching what changed since a generation, and the
//! per-agent version record that makes every replica answer the same `config_timestamp`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use sr_core::TenantId;
use sr_core::inventory::SweepHint;
use sr_sweep::{SourcePolicies, SweepDevice};

use crate::error::Result;
use crate::projection::{self, Decision, DeviceRow, Normalised};

/// The Postgres side of sweepgen.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

/// What applying one message did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Partitions whose content changed, with their new generation.
    pub partitions: Vec<(String, i64)>,
    /// Device rows inserted or replaced with new content.
    pub changed: usize,
    /// Rows whose revision moved without a content change (or tombstones of unknown devices).
    pub touched: usize,
    /// Changes ignored: the projection held the same or a newer revision.
    pub stale: usize,
}

/// A partition's generation counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generation {
    /// Bumped by every transaction that changes a device of the partition.
    pub current: i64,
    /// Tombstones at or below this generation were purged.
    pub purged: i64,
}

/// A whole partition as of one generation.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The generation the rows belong to.
    pub generation: i64,
    /// Live devices.
    pub devices: Vec<SweepDevice>,
    /// Source policies (intervals).
    pub policies: SourcePolicies,
}

/// What changed in a partition since a generation.
#[derive(Debug, Clone)]
pub enum Delta {
    /// Tombstones the caller may not have seen were purged: reload the partition.
    Reload,
    /// The changed devices (`None` = removed) and the policies as of `generation`.
    Changes {
        /// The generation the changes bring the caller to.
        generation: i64,
        /// Device uid and its new state.
        changes: Vec<(String, Option<SweepDevice>)>,
        /// Source policies (intervals).
        policies: SourcePolicies,
    },
}

#[derive(sqlx::FromRow)]
struct StoredRow {
    uid: String,
    agent_id: Option<String>,
    ips: Vec<String>,
    hints: Json<Vec<SweepHint>>,
    removed: bool,
    revision: i64,
    generation: i64,
}

impl StoredRow {
    fn into_row(self) -> (DeviceRow, i64) {
        (
            DeviceRow {
                uid: self.uid,
                agent_id: self.agent_id,
                ips: self.ips,
                hints: self.hints.0,
                removed: self.removed,
                revision: self.revision,
            },
            self.generation,
        )
    }
}

/// One row of a write batch.
struct Write<'a> {
    row: &'a DeviceRow,
    generation: i64,
}

impl Store {
    /// A store on a migrated pool.
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool (readiness probe, shutdown).
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies one normalised message in one transaction. Per partition (in name order, so
    /// concurrent messages cannot deadlock) it locks the generation row, reads the stored
    /// rows of the message's devices, keeps only changes with a newer revision, writes them
    /// (tagged with the next generation when their content changed), maintains the interval
    /// counts, and bumps the generation when any content changed. Redelivering a message
    /// changes nothing.
    ///
    /// # Errors
    /// Database failure (nothing is applied).
    pub async fn apply(&self, tenant: TenantId, batch: &Normalised) -> Result<Applied> {
        let t = tenant.as_uuid();
        let mut applied = Applied::default();
        let mut tx = self.pool.begin().await?;
        for (partition, rows) in &batch.partitions {
            sqlx::query(
                "INSERT INTO partition_generations (tenant_id, partition) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(t)
            .bind(partition)
            .execute(&mut *tx)
            .await?;
            let generation: i64 = sqlx::query_scalar(
                "SELECT generation FROM partition_generations
                 WHERE tenant_id = $1 AND partition = $2 FOR UPDATE",
            )
            .bind(t)
            .bind(partition)
            .fetch_one(&mut *tx)
            .await?;
            let uids: Vec<&str> = rows.iter().map(|r| r.uid.as_str()).collect();
            let stored: HashMap<String, (DeviceRow, i64)> = sqlx::query_as::<_, StoredRow>(
                // One primary-key lookup per uid (the OFFSET keeps the planner from flattening
                // it): with `uid = ANY($3)` a generic plan on stale statistics of a growing
                // table scanned the whole partition for every message.
                "SELECT d.uid, d.agent_id, d.ips, d.hints, d.removed, d.revision, d.generation
                 FROM UNNEST($3::text[]) AS u(uid)
                 CROSS JOIN LATERAL (
                     SELECT * FROM sweep_devices s
                     WHERE s.tenant_id = $1 AND s.partition = $2 AND s.uid = u.uid
                     OFFSET 0
                 ) AS d",
            )
            .bind(t)
            .bind(partition)
            .bind(&uids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| (r.uid.clone(), r.into_row()))
            .collect();

            let next = generation + 1;
            let mut writes = Vec::with_capacity(rows.len());
            let mut intervals: BTreeMap<(String, u32), i64> = BTreeMap::new();
            let mut changed = false;
            for row in rows {
                let old = stored.get(&row.uid);
                match projection::decide(old.map(|(r, _)| r), row) {
                    Decision::Stale => applied.stale += 1,
                    Decision::Touch => {
                        applied.touched += 1;
                        let generation = old.map_or(generation, |(_, g)| *g);
                        writes.push(Write { row, generation });
                    }
                    // Nothing to remove from any index: record the tombstone only.
                    Decision::Insert if row.removed => {
                        applied.touched += 1;
                        writes.push(Write { row, generation });
                    }
                    Decision::Insert | Decision::Replace => {
                        applied.changed += 1;
                        changed = true;
                        if let Some((old, _)) = old {
                            for key in old.intervals() {
                                *intervals.entry(key).or_default() -= 1;
                            }
                        }
                        for key in row.intervals() {
                            *intervals.entry(key).or_default() += 1;
                        }
                        writes.push(Write {
                            row,
                            generation: next,
                        });
                    }
                }
            }
            write_rows(&mut tx, t, partition, &writes).await?;
            write_intervals(&mut tx, t, partition, &intervals).await?;
            if changed {
                sqlx::query(
                    "UPDATE partition_generations SET generation = $3, changed_at = now()
                     WHERE tenant_id = $1 AND partition = $2",
                )
                .bind(t)
                .bind(partition)
                .bind(next)
                .execute(&mut *tx)
                .await?;
                applied.partitions.push((partition.clone(), next));
            }
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// The partition's generation counters (zero for a partition never seen).
    ///
    /// # Errors
    /// Database failure.
    pub async fn generation(&self, tenant: TenantId, partition: &str) -> Result<Generation> {
        let mut conn = self.pool.acquire().await?;
        generation_of(&mut conn, tenant, partition).await
    }

    /// Every live device of the partition and its policies, as of one consistent snapshot.
    ///
    /// # Errors
    /// Database failure.
    pub async fn load(&self, tenant: TenantId, partition: &str) -> Result<Snapshot> {
        let t = tenant.as_uuid();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let generation = generation_of(&mut tx, tenant, partition).await?;
        let devices: Vec<SweepDevice> =
            sqlx::query_as::<_, (String, Option<String>, Vec<String>, Json<Vec<SweepHint>>)>(
                "SELECT uid, agent_id, ips, hints FROM sweep_devices
                 WHERE tenant_id = $1 AND partition = $2 AND NOT removed",
            )
            .bind(t)
            .bind(partition)
            .fetch(&mut *tx)
            .map_ok(|(uid, agent, ips, hints)| {
                projection::sweep_device(&uid, agent.as_deref(), &ips, &hints.0)
            })
            .try_collect()
            .await?;
        let policies = policies_of(&mut tx, tenant, partition).await?;
        tx.commit().await?;
        Ok(Snapshot {
            generation: generation.current,
            devices,
            policies,
        })
    }

    /// The devices of the partition changed after generation `since`, as of one consistent
    /// snapshot, or [`Delta::Reload`] when tombstones newer than `since` were purged.
    ///
    /// # Errors
    /// Database failure.
    pub async fn delta(&self, tenant: TenantId, partition: &str, since: i64) -> Result<Delta> {
        let t = tenant.as_uuid();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let generation = generation_of(&mut tx, tenant, partition).await?;
        if since < generation.purged || since > generation.current {
            tx.commit().await?;
            return Ok(Delta::Reload);
        }
        let changes: Vec<(String, Option<SweepDevice>)> = sqlx::query_as::<_, StoredRow>(
            "SELECT uid, agent_id, ips, hints, removed, revision, generation FROM sweep_devices
             WHERE tenant_id = $1 AND partition = $2 AND generation > 0 AND generation > $3
             ORDER BY uid",
        )
        .bind(t)
        .bind(partition)
        .bind(since)
        .fetch(&mut *tx)
        .map_ok(|r| {
            let (row, _) = r.into_row();
            let device = row.to_sweep_device();
            (row.uid, device)
        })
        .try_collect()
        .await?;
        let policies = policies_of(&mut tx, tenant, partition).await?;
        tx.commit().await?;
        Ok(Delta::Changes {
            generation: generation.current,
            changes,
            policies,
        })
    }

    /// Records that `agent_id` is answered with `version` as of `generation` and returns the
    /// time that version was first answered (the same on every replica).
    ///
    /// # Errors
    /// Database failure.
    pub async fn record_version(
        &self,
        tenant: TenantId,
        partition: &str,
        agent_id: &str,
        version: &str,
        generation: i64,
    ) -> Result<DateTime<Utc>> {
        let t = tenant.as_uuid();
        let updated: Option<DateTime<Utc>> = sqlx::query_scalar(
            "INSERT INTO agent_configs AS a
                 (tenant_id, partition, agent_id, config_version, generation, changed_at)
             VALUES ($1, $2, $3, $4, $5, now())
             ON CONFLICT (tenant_id, partition, agent_id) DO UPDATE SET
                 changed_at = CASE WHEN a.config_version = excluded.config_version
                                   THEN a.changed_at ELSE excluded.changed_at END,
                 config_version = excluded.config_version,
                 generation = excluded.generation
             WHERE a.generation <= excluded.generation
             RETURNING changed_at",
        )
        .bind(t)
        .bind(partition)
        .bind(agent_id)
        .bind(version)
        .bind(generation)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(at) = updated {
            return Ok(at);
        }
        // Another replica already recorded a newer generation; this answer is about to be
        // superseded, so its timestamp is as good as any.
        Ok(sqlx::query_scalar(
            "SELECT changed_at FROM agent_configs
             WHERE tenant_id = $1 AND partition = $2 AND agent_id = $3",
        )
        .bind(t)
        .bind(partition)
        .bind(agent_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Deletes tombstones older than `before` and raises each affected partition's purged
    /// generation, so a replica that never saw them reloads instead of missing a removal.
    ///
    /// # Errors
    /// Database failure.
    pub async fn purge_tombstones(&self, before: DateTime<Utc>) -> Result<u64> {
        let purged: i64 = sqlx::query_scalar(
            "WITH purged AS (
                 DELETE FROM sweep_devices WHERE removed AND updated_at < $1
                 RETURNING tenant_id, partition, generation
             ), per_partition AS (
                 SELECT tenant_id, partition, max(generation) AS generation, count(*) AS n
                 FROM purged GROUP BY tenant_id, partition
             ), raised AS (
                 UPDATE partition_generations g
                 SET purged_generation = GREATEST(g.purged_generation, p.generation)
                 FROM per_partition p
                 WHERE g.tenant_id = p.tenant_id AND g.partition = p.partition
             )
             SELECT COALESCE(sum(n), 0)::bigint FROM per_partition",
        )
        .bind(before)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(purged).unwrap_or_default())
    }
}

async fn generation_of(
    conn: &mut PgConnection,
    tenant: TenantId,
    partition: &str,
) -> Result<Generation> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT generation, purged_generation FROM partition_generations
         WHERE tenant_id = $1 AND partition = $2",
    )
    .bind(tenant.as_uuid())
    .bind(partition)
    .fetch_optional(conn)
    .await?;
    Ok(
        row.map_or_else(Generation::default, |(current, purged)| Generation {
            current,
            purged,
        }),
    )
}

async fn policies_of(
    conn: &mut PgConnection,
    tenant: TenantId,
    partition: &str,
) -> Result<SourcePolicies> {
    let rows: Vec<(String, i32)> = sqlx::query_as(
        "SELECT source, interval_secs FROM source_intervals
         WHERE tenant_id = $1 AND partition = $2 AND devices > 0",
    )
    .bind(tenant.as_uuid())
    .bind(partition)
    .fetch_all(conn)
    .await?;
    Ok(projection::policies(rows.iter().map(|(s, secs)| {
        (s.as_str(), u32::try_from(*secs).unwrap_or_default())
    })))
}

async fn write_rows(
    conn: &mut PgConnection,
    tenant: uuid::Uuid,
    partition: &str,
    writes: &[Write<'_>],
) -> Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut uids = Vec::with_capacity(writes.len());
    let mut agents = Vec::with_capacity(writes.len());
    let mut ips = Vec::with_capacity(writes.len());
    let mut hints = Vec::with_capacity(writes.len());
    let mut removed = Vec::with_capacity(writes.len());
    let mut revisions = Vec::with_capacity(writes.len());
    let mut generations = Vec::with_capacity(writes.len());
    for w in writes {
        uids.push(w.row.uid.as_str());
        agents.push(w.row.agent_id.as_deref());
        ips.push(serde_json::to_value(&w.row.ips).unwrap_or_default());
        hints.push(serde_json::to_value(&w.row.hints).unwrap_or_default());
        removed.push(w.row.removed);
        revisions.push(w.row.revision);
        generations.push(w.generation);
    }
    // The revision guard repeats the decision made under the lock (defence in depth).
    sqlx::query(
        "INSERT INTO sweep_devices AS d
             (tenant_id, partition, uid, agent_id, ips, hints, removed, revision, generation, updated_at)
         SELECT $1, $2, u.uid, u.agent_id,
                ARRAY(SELECT e FROM jsonb_array_elements_text(u.ips) WITH ORDINALITY AS x(e, n)
                      ORDER BY n),
                u.hints, u.removed, u.revision, u.generation, now()
         FROM UNNEST($3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::bool[], $8::int8[], $9::int8[])
              AS u(uid, agent_id, ips, hints, removed, revision, generation)
         ON CONFLICT (tenant_id, partition, uid) DO UPDATE SET
             agent_id = excluded.agent_id, ips = excluded.ips, hints = excluded.hints,
             removed = excluded.removed, revision = excluded.revision,
             generation = excluded.generation, updated_at = excluded.updated_at
         WHERE d.revision < excluded.revision",
    )
    .bind(tenant)
    .bind(partition)
    .bind(&uids)
    .bind(&agents)
    .bind(&ips)
    .bind(&hints)
    .bind(&removed)
    .bind(&revisions)
    .bind(&generations)
    .execute(conn)
    .await?;
    Ok(())
}

async fn write_intervals(
    conn: &mut PgConnection,
    tenant: uuid::Uuid,
    partition: &str,
    deltas: &BTreeMap<(String, u32), i64>,
) -> Result<()> {
    let (mut sources, mut secs, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for ((source, interval), delta) in deltas {
        if *delta == 0 {
            continue;
        }
        sources.push(source.as_str());
        secs.push(i32::try_from(*interval).unwrap_or(i32::MAX));
        counts.push(*delta);
    }
    if sources.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO source_intervals AS s (tenant_id, partition, source, interval_secs, devices)
         SELECT $1, $2, u.source, u.secs, u.delta
         FROM UNNEST($3::text[], $4::int4[], $5::int8[]) AS u(source, secs, delta)
         ON CONFLICT (tenant_id, partition, source, interval_secs)
         DO UPDATE SET devices = s.devices + excluded.devices",
    )
    .bind(tenant)
    .bind(partition)
    .bind(&sources)
    .bind(&secs)
    .bind(&counts)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM source_intervals WHERE tenant_id = $1 AND partition = $2 AND devices <= 0",
    )
    .bind(tenant)
    .bind(partition)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
