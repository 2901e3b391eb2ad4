//! Postgres access of the ingest path: take the scope lock, load the stored state a batch needs,
//! write a decided [`Outcome`] and enqueue outbox rows. Every statement is scoped by
//! (tenant_id, partition) and moves whole arrays (`UNNEST`), never one row per round trip.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Connection as _, PgConnection, Row};
use sr_core::TenantId;
use sr_core::inventory::SweepHint;
use sr_reconcile::{
    ContentDigest, DeviceRecord, DeviceUid, Identifier, KnownState, Lookups, Memo, Observation,
    Outcome, ReconcileConfig, Settled, Stamps, content_digest,
};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ingest::Growth;

/// Separator of list values packed into one text element (source names, evidence).
const SEP: char = '\u{1f}';

/// The identifiers each written device holds, by uid ([`KnownState::held_after`]); stored on
/// the device row as a JSON list of `[type, value]` pairs.
pub type Held<'a> = BTreeMap<DeviceUid, BTreeSet<&'a Identifier>>;

/// A value written to a `json` column (or element of a `json[]` argument): serialised straight
/// into the statement's arguments as JSON text, which Postgres only checks and stores as it is.
///
/// `sqlx::types::Json` binds `jsonb`, which Postgres decomposes on every write and recomposes
/// into text on every read. DIRE reads and writes its device rows' JSON columns whole and never
/// indexes into them, so they are `json`: in a profile of the initial ingest, decoding the
/// `jsonb` arguments took about a seventh of Postgres' time.
struct JsonText<T>(T);

impl<T> sqlx::Type<sqlx::Postgres> for JsonText<T> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_oid(sqlx::postgres::types::Oid(JSON_OID))
    }
}

impl<T> sqlx::postgres::PgHasArrayType for JsonText<T> {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_oid(sqlx::postgres::types::Oid(JSON_ARRAY_OID))
    }
}

impl<T: serde::Serialize> sqlx::Encode<'_, sqlx::Postgres> for JsonText<T> {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        serde_json::to_writer(&mut **buf, &self.0)?;
        Ok(sqlx::encode::IsNull::No)
    }
}

/// Postgres' type oids of `json` and `json[]` (fixed in `pg_type`).
const JSON_OID: u32 = 114;
const JSON_ARRAY_OID: u32 = 199;

/// The JSON list of a device's identifiers, as stored in `devices.identifiers`.
fn held_json<'a>(held: &'a Held<'_>, uid: &DeviceUid) -> JsonText<Vec<[&'a str; 2]>> {
    JsonText(
        held.get(uid)
            .into_iter()
            .flatten()
            .map(|id| [id.kind().as_str(), id.value()])
            .collect(),
    )
}

/// Makes the rest of the transaction plan its statements generically (index probes whose cost
/// grows with the batch) or for their actual arguments.
///
/// The batch statements join arrays of a thousand or more keys against tables of up to
/// millions of rows. A custom plan sees the array sizes and, on a large table, picks a
/// sequential scan and a hash join (measured: 147 ms against 45 ms for the index plan, per
/// 1 000 devices on 300 000 rows); the generic plan always probes the indexes, whose cost grows
/// with the batch, not with the table. Postgres uses custom plans for the first five executions
/// on every connection, so the choice is made per transaction.
async fn plan_generically(conn: &mut PgConnection, generic: bool) -> Result<()> {
    let sql = if generic {
        "SET LOCAL plan_cache_mode = force_generic_plan"
    } else {
        "SET LOCAL plan_cache_mode = force_custom_plan"
    };
    sqlx::query(sql).execute(conn).await?;
    Ok(())
}

/// Serialises every writer of one (tenant, partition) until the transaction ends, so replicas
/// decide against committed state and never interleave writes of one scope; the transaction's
/// statements use generic (index-probing) plans.
///
/// # Errors
/// Database failure.
pub async fn lock_scope(conn: &mut PgConnection, tenant: TenantId, partition: &str) -> Result<()> {
    plan_generically(conn, true).await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/' || $1 || '/' || $2, 0))",
    )
    .bind(tenant.to_string())
    .bind(partition)
    .execute(conn)
    .await?;
    Ok(())
}

/// The scope's epoch (0 before its first write); read under the scope lock.
///
/// # Errors
/// Database failure.
pub async fn scope_epoch(
    conn: &mut PgConnection,
    tenant: TenantId,
    partition: &str,
) -> Result<i64> {
    let epoch: Option<i64> = sqlx::query_scalar(
        "SELECT epoch FROM scope_epochs WHERE tenant_id = $1 AND partition = $2",
    )
    .bind(tenant.as_uuid())
    .bind(partition)
    .fetch_optional(conn)
    .await?;
    Ok(epoch.unwrap_or(0))
}

/// Bumps the scope's epoch (every writing transaction does, under the scope lock); returns the
/// new value.
///
/// # Errors
/// Database failure.
pub async fn bump_epoch(conn: &mut PgConnection, tenant: TenantId, partition: &str) -> Result<i64> {
    let epoch: i64 = sqlx::query_scalar(
        "INSERT INTO scope_epochs (tenant_id, partition, epoch) VALUES ($1, $2, 1)
         ON CONFLICT (tenant_id, partition) DO UPDATE SET epoch = scope_epochs.epoch + 1
         RETURNING epoch",
    )
    .bind(tenant.as_uuid())
    .bind(partition)
    .fetch_one(conn)
    .await?;
    Ok(epoch)
}

/// Adds the scope's settled devices to `memo`: every one (`uids` = `None`, streamed) or those
/// among `uids`. Returns how many were added.
///
/// # Errors
/// Database failure, or rows that do not decode ([`Error::Corrupt`]).
pub async fn load_settled(
    conn: &mut PgConnection,
    tenant: TenantId,
    partition: &str,
    uids: Option<&[DeviceUid]>,
    cfg: &ReconcileConfig,
    memo: &mut Memo,
) -> Result<usize> {
    // Two statements: one generic plan for both would not know whether to probe or scan.
    const ALL: &str = "SELECT d.uid, d.settled, d.first_seen, d.last_seen, ${STAMPS} FROM devices d
         WHERE tenant_id = $1 AND partition = $2 AND settled IS NOT NULL";
    const SOME: &str = "SELECT d.uid, d.settled, d.first_seen, d.last_seen, ${STAMPS}
         FROM UNNEST($3::text[]) AS k(uid)
         JOIN devices d ON d.tenant_id = $1 AND d.partition = $2 AND d.uid = k.uid
        WHERE d.settled IS NOT NULL";
    let uids: Option<Vec<String>> = uids.map(|u| u.iter().map(ToString::to_string).collect());
    // Most rows have no stamp older than `last_seen`; only the others send theirs, and the
    // oldest (see `DeviceRecord::oldest_stamp`) is taken here. Taking it in SQL with a
    // subquery over the stamps' elements doubled the statement's time (1 000 000 rows).
    const STAMPS: &str = "CASE WHEN json_array_length(d.stamps) = 0 THEN NULL ELSE d.stamps END";
    let sql = if uids.is_some() { SOME } else { ALL }.replace("${STAMPS}", STAMPS);
    type SettledRow = (
        String,
        Vec<u8>,
        DateTime<Utc>,
        DateTime<Utc>,
        Option<Json<Stamps>>,
    );
    let query = sqlx::query_as::<_, SettledRow>(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_uuid())
        .bind(partition);
    let query = match uids {
        Some(u) => query.bind(u),
        None => query,
    };
    // Added in chunks: merged into the memo's arrays in one pass each, in little memory.
    const CHUNK: usize = 65_536;
    let mut rows = query.fetch(conn);
    let mut added = 0;
    let mut chunk = Vec::new();
    while let Some((uid, digest, first_seen, last_seen, stamps)) = rows.try_next().await? {
        let oldest = stamps.map_or(last_seen, |s| s.0.oldest(last_seen));
        let digest: ContentDigest = digest
            .try_into()
            .map_err(|d: Vec<u8>| Error::Corrupt(format!("settled digest of {} bytes", d.len())))?;
        if let Some(s) = Settled::new(digest, first_seen, oldest, cfg) {
            chunk.push((parse_uid(&uid)?, s));
            if chunk.len() == CHUNK {
                added += chunk.len();
                memo.insert_many(chunk.drain(..));
            }
        }
    }
    added += chunk.len();
    memo.insert_many(chunk);
    Ok(added)
}

/// A scope's first load: every settled device into `memo` (see [`load_settled`]); returns
/// whether the scope holds no device at all.
///
/// Both statements run with custom plans: a generic plan cannot tell a scope of a million
/// rows from an empty one beside a million rows of another tenant, and scanned the whole table
/// for the latter (450 ms per million rows measured).
///
/// # Errors
/// Database failure, or rows that do not decode ([`Error::Corrupt`]).
pub async fn load_scope(
    conn: &mut PgConnection,
    tenant: TenantId,
    partition: &str,
    cfg: &ReconcileConfig,
    memo: &mut Memo,
) -> Result<bool> {
    plan_generically(conn, false).await?;
    let added = load_settled(conn, tenant, partition, None, cfg, memo).await?;
    let empty = added == 0
        && sqlx::query_scalar::<_, bool>(
            "SELECT NOT EXISTS (SELECT 1 FROM devices WHERE tenant_id = $1 AND partition = $2)",
        )
        .bind(tenant.as_uuid())
        .bind(partition)
        .fetch_one(&mut *conn)
        .await?;
    // Back to the transaction's generic plans (see [`lock_scope`]).
    plan_generically(conn, true).await?;
    Ok(empty)
}

const LOAD_DEVICES: &str = r"
WITH wanted AS (
    SELECT i.device_uid AS uid
      FROM UNNEST($3::text[], $4::text[]) AS k(type, value)
      JOIN identifiers i
        ON i.tenant_id = $1 AND i.partition = $2 AND i.type = k.type AND i.value = k.value
    UNION
    SELECT UNNEST($5::text[])
    UNION
    SELECT d.uid
      FROM UNNEST($6::inet[]) AS x(ip)
      JOIN devices d ON d.tenant_id = $1 AND d.partition = $2 AND d.ip = x.ip
)
SELECT d.uid, d.ip, d.mac, d.hostname, d.type, d.vendor, d.model, d.os, d.agent_id,
       d.discovery_sources, d.is_available, d.first_seen, d.last_seen, d.metadata, d.sweep_hints,
       d.stamps, d.identifiers
  FROM wanted w
  JOIN devices d ON d.tenant_id = $1 AND d.partition = $2 AND d.uid = w.uid";

/// Loads what [`sr_reconcile::required_lookups`] asks for, in one statement: devices named by
/// the batch's identifiers, candidate uids or IPs, each with every identifier it holds.
///
/// # Errors
/// Database failure, or rows that do not decode ([`Error::Corrupt`]).
pub async fn load_state(
    conn: &mut PgConnection,
    tenant: TenantId,
    partition: &str,
    lookups: &Lookups,
) -> Result<KnownState> {
    let (types, values): (Vec<&str>, Vec<&str>) = lookups
        .identifiers
        .iter()
        .map(|i| (i.kind().as_str(), i.value()))
        .unzip();
    let uids: Vec<String> = lookups.uids.iter().map(ToString::to_string).collect();
    let ips: Vec<IpAddr> = lookups.ips.iter().copied().collect();
    let rows = sqlx::query(LOAD_DEVICES)
        .bind(tenant.as_uuid())
        .bind(partition)
        .bind(&types)
        .bind(&values)
        .bind(&uids)
        .bind(&ips)
        .fetch_all(&mut *conn)
        .await?;
    let mut devices = Vec::with_capacity(rows.len());
    let mut identifiers = Vec::with_capacity(rows.len() * 2);
    for row in &rows {
        let device = device_from_row(row)?;
        let held: Json<Vec<(String, String)>> = row.try_get("identifiers")?;
        for (kind, value) in held.0 {
            let kind = kind
                .parse()
                .map_err(|e: sr_reconcile::IdentifierError| Error::Corrupt(e.to_string()))?;
            let id = Identifier::new(kind, &value).map_err(|e| Error::Corrupt(e.to_string()))?;
            identifiers.push((id, device.uid));
        }
        devices.push(device);
    }
    KnownState::from_rows(partition, devices, identifiers)
        .map_err(|e| Error::Corrupt(e.to_string()))
}

/// What [`load_snapshot`] found, and the scope's epoch when it did.
#[derive(Debug)]
pub struct Snapshot {
    /// The scope's epoch in the snapshot the state was loaded from.
    pub epoch: i64,
    /// The stored state found.
    pub state: KnownState,
}

/// [`load_state`] without the scope lock, on a connection of its own, in one snapshot that
/// also reads the scope's epoch: the caller knows which writes of the scope it saw.
///
/// # Errors
/// As [`load_state`].
pub async fn load_snapshot(
    pool: &sqlx::PgPool,
    tenant: TenantId,
    partition: &str,
    lookups: &Lookups,
) -> Result<Snapshot> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    // The same index-probing plans as under the scope lock.
    plan_generically(&mut tx, true).await?;
    let epoch = scope_epoch(&mut tx, tenant, partition).await?;
    let state = load_state(&mut tx, tenant, partition, lookups).await?;
    tx.commit().await?;
    Ok(Snapshot { epoch, state })
}

fn parse_uid(s: &str) -> Result<DeviceUid> {
    DeviceUid::parse(s).map_err(|e| Error::Corrupt(e.to_string()))
}

fn device_from_row(row: &PgRow) -> Result<DeviceRecord> {
    let uid: String = row.try_get("uid")?;
    let sources: Vec<String> = row.try_get("discovery_sources")?;
    let metadata: sqlx::types::Json<BTreeMap<String, String>> = row.try_get("metadata")?;
    let hints: sqlx::types::Json<Vec<SweepHint>> = row.try_get("sweep_hints")?;
    let stamps: sqlx::types::Json<Stamps> = row.try_get("stamps")?;
    let mut record = DeviceRecord {
        uid: parse_uid(&uid)?,
        ip: row.try_get("ip")?,
        mac: row.try_get("mac")?,
        hostname: row.try_get("hostname")?,
        device_type: row.try_get("type")?,
        vendor: row.try_get("vendor")?,
        model: row.try_get("model")?,
        os: row.try_get("os")?,
        agent_id: row.try_get("agent_id")?,
        discovery_sources: sources.into_iter().collect(),
        is_available: row.try_get("is_available")?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
        metadata: metadata.0,
        sweep_hints: hints.0,
        stamps: stamps.0,
    };
    record.compress();
    Ok(record)
}

/// Device rows as column arrays for `UNNEST`, borrowing from the records (the JSON columns
/// are serialised straight into the statement's arguments).
#[derive(Default)]
struct Columns<'s> {
    uid: Vec<String>,
    ip: Vec<Option<IpAddr>>,
    mac: Vec<Option<&'s str>>,
    hostname: Vec<Option<&'s str>>,
    name: Vec<Option<String>>,
    device_type: Vec<Option<&'s str>>,
    vendor: Vec<Option<&'s str>>,
    model: Vec<Option<&'s str>>,
    os: Vec<Option<&'s str>>,
    agent_id: Vec<Option<&'s str>>,
    sources: Vec<String>,
    is_available: Vec<Option<bool>>,
    first_seen: Vec<DateTime<Utc>>,
    last_seen: Vec<DateTime<Utc>>,
    metadata: Vec<JsonText<&'s BTreeMap<String, String>>>,
    hints: Vec<JsonText<&'s Vec<SweepHint>>>,
    settled: Vec<Option<&'s [u8]>>,
    stamps: Vec<JsonText<&'s Stamps>>,
    identifiers: Vec<JsonText<Vec<[&'s str; 2]>>>,
    revision: &'s [i64],
}

impl<'s> Columns<'s> {
    /// The columns of `records`, with their new `revisions`; `settled` names the rows that
    /// reflect an update entirely (every other row is written with `settled = NULL`), `held`
    /// their identifiers.
    fn of(
        records: impl ExactSizeIterator<Item = &'s DeviceRecord>,
        revisions: &'s [i64],
        settled: &'s HashMap<DeviceUid, ContentDigest>,
        held: &'s Held<'_>,
    ) -> Self {
        let n = records.len();
        debug_assert_eq!(n, revisions.len());
        let mut c = Columns {
            uid: Vec::with_capacity(n),
            revision: revisions,
            ..Columns::default()
        };
        for r in records {
            c.uid.push(r.uid.to_string());
            c.ip.push(r.ip);
            c.mac.push(r.mac.as_deref());
            c.hostname.push(r.hostname.as_deref());
            c.name.push(r.name());
            c.device_type.push(r.device_type.as_deref());
            c.vendor.push(r.vendor.as_deref());
            c.model.push(r.model.as_deref());
            c.os.push(r.os.as_deref());
            c.agent_id.push(r.agent_id.as_deref());
            c.sources.push(join(r.discovery_sources.iter()));
            c.is_available.push(r.is_available);
            c.first_seen.push(r.first_seen);
            c.last_seen.push(r.last_seen);
            c.metadata.push(JsonText(&r.metadata));
            c.hints.push(JsonText(&r.sweep_hints));
            c.settled
                .push(settled.get(&r.uid).map(<[u8; 16]>::as_slice));
            c.stamps.push(JsonText(&r.stamps));
            c.identifiers.push(held_json(held, &r.uid));
        }
        c
    }

    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.uid)
            .bind(&self.ip)
            .bind(&self.mac)
            .bind(&self.hostname)
            .bind(&self.name)
            .bind(&self.device_type)
            .bind(&self.vendor)
            .bind(&self.model)
            .bind(&self.os)
            .bind(&self.agent_id)
            .bind(&self.sources)
            .bind(&self.is_available)
            .bind(&self.first_seen)
            .bind(&self.last_seen)
            .bind(&self.metadata)
            .bind(&self.hints)
            .bind(&self.settled)
            .bind(&self.stamps)
            .bind(&self.identifiers)
            .bind(self.revision)
    }
}

fn join<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let mut out = String::new();
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push(SEP);
        }
        out.push_str(s);
    }
    out
}

const UNNEST_DEVICES: &str = r"UNNEST($3::text[], $4::inet[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::bool[],
    $15::timestamptz[], $16::timestamptz[], $17::json[], $18::json[], $19::bytea[],
    $20::json[], $21::json[], $22::int8[])
    AS u(uid, ip, mac, hostname, name, type, vendor, model, os, agent_id, sources, is_available,
         first_seen, last_seen, metadata, hints, settled, stamps, identifiers, revision)";

const SOURCES: &str = r"COALESCE(string_to_array(NULLIF(u.sources, ''), E'\x1f'), '{}')";

/// Inserts identifier rows, each with the uid of the device it points at (sorted by key).
///
/// # Errors
/// Database failure.
async fn insert_identifiers<'a, U: std::fmt::Display + 'a>(
    conn: &mut PgConnection,
    tenant: TenantId,
    partition: &str,
    rows: impl IntoIterator<Item = (&'a Identifier, &'a U)>,
) -> Result<()> {
    let (mut types, mut values, mut owners) = (Vec::new(), Vec::new(), Vec::new());
    for (id, uid) in rows {
        types.push(id.kind().as_str());
        values.push(id.value());
        owners.push(uid.to_string());
    }
    if types.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO identifiers (tenant_id, partition, type, value, device_uid)
         SELECT $1, $2, u.type, u.value, u.device_uid
           FROM UNNEST($3::text[], $4::text[], $5::text[]) AS u(type, value, device_uid)",
    )
    .bind(tenant.as_uuid())
    .bind(partition)
    .bind(&types)
    .bind(&values)
    .bind(&owners)
    .execute(conn)
    .await?;
    Ok(())
}

/// The rows an ingest writes for observations of devices nobody has seen yet: one canonical
/// device record per observation (sorted by uid) and one identifier row per strong identifier
/// (sorted by identifier, paired with the owning uid), and the content digest each record
/// reflects. No reconciliation happens: two observations of one device give two records.
#[must_use]
pub fn new_device_rows(observations: &[Observation]) -> NewRows {
    let mut records: Vec<DeviceRecord> = observations
        .iter()
        .map(|o| {
            let mut r = DeviceRecord::new(o.canonical_id(), o.timestamp);
            r.ip = Some(o.ip);
            r.mac = o.mac.map(|m| m.to_string());
            r.hostname.clone_from(&o.hostname);
            r.agent_id.clone_from(&o.agent_id);
            r.discovery_sources.extend(o.source.clone());
            r.metadata.clone_from(&o.metadata);
            r.sweep_hints.extend(o.sweep_hint());
            r
        })
        .collect();
    records.sort_by_key(|r| r.uid);
    let mut ids: Vec<(Identifier, DeviceUid)> = observations
        .iter()
        .flat_map(|o| {
            let uid = o.canonical_id();
            o.identifiers().into_iter().map(move |id| (id, uid))
        })
        .collect();
    ids.sort();
    let settled = observations
        .iter()
        .map(|o| (o.canonical_id(), content_digest(o)))
        .collect();
    NewRows {
        records,
        identifiers: ids,
        settled,
    }
}

/// What [`new_device_rows`] gives.
#[derive(Debug)]
pub struct NewRows {
    /// Device rows, by uid.
    pub records: Vec<DeviceRecord>,
    /// Identifier rows with their owner, by identifier.
    pub identifiers: Vec<(Identifier, DeviceUid)>,
    /// The content digest each row reflects.
    pub settled: HashMap<DeviceUid, ContentDigest>,
}

/// A plain bulk insert of `observations` as new devices with DIRE's own insert statements:
/// no scope lock, no lookups, no reconciliation, no outbox; planner statistics are refreshed
/// on `growth`'s schedule, as the ingest does. This is what the database alone
/// takes for the rows an initial ingest writes, the yardstick the benchmarks hold the ingest
/// against. The caller owns the transaction. Returns the number of device rows inserted.
///
/// # Errors
/// Database failure (for example a uid or identifier that exists already).
pub async fn plain_insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    partition: &str,
    observations: &[Observation],
    growth: &mut Growth,
) -> Result<usize> {
    let NewRows {
        records,
        identifiers: ids,
        settled,
    } = new_device_rows(observations);
    let mut held = Held::new();
    for (id, uid) in &ids {
        held.entry(*uid).or_default().insert(id);
    }
    let revisions = next_revisions(conn, records.len()).await?;
    insert_devices(
        conn, tenant, partition, &records, &revisions, &settled, &held,
    )
    .await?;
    insert_identifiers(
        conn,
        tenant,
        partition,
        ids.iter().map(|(id, uid)| (id, uid)),
    )
    .await?;
    if growth.add((records.len() + ids.len()) as u64) {
        analyze(conn).await?;
    }
    Ok(records.len())
}

/// Refreshes the planner statistics of `devices` and `identifiers` (see [`Growth`]).
///
/// Only the key columns DIRE's statements join and filter on are analyzed, from a sample of
/// 3 000 rows (statistics target 10): their statistics only need to tell the planner that
/// uids, IPs and identifier values are (nearly) unique. With every column at the default
/// target this took 600–770 ms on a scope of 200 000 devices, most of it sorting the JSON
/// columns' sample, and it runs after the commit of the batch that doubled the tables, before
/// the next; restricted it took 32–34 ms. The periodic `VACUUM (ANALYZE)` of the outbox task
/// still gathers every column's statistics for the read API.
///
/// # Errors
/// Database failure.
pub async fn analyze(conn: &mut PgConnection) -> Result<()> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET LOCAL default_statistics_target = 10")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "ANALYZE devices (tenant_id, partition, uid, ip),
                 identifiers (tenant_id, partition, type, value)",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// `n` new device revisions, in the order Postgres handed them out.
///
/// # Errors
/// Database failure.
pub async fn next_revisions(conn: &mut PgConnection, n: usize) -> Result<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let revisions: Vec<i64> = sqlx::query_scalar(
        "SELECT array_agg(nextval('device_revisions')) FROM generate_series(1, $1::int8)",
    )
    .bind(n)
    .fetch_one(conn)
    .await?;
    Ok(revisions)
}

/// Inserts device rows (sorted by uid) with their `revisions`, the content digests of the rows
/// in `settled` and the identifiers in `held`.
///
/// # Errors
/// Database failure.
async fn insert_devices(
    conn: &mut PgConnection,
    tenant: TenantId,
    partition: &str,
    records: &[DeviceRecord],
    revisions: &[i64],
    settled: &HashMap<DeviceUid, ContentDigest>,
    held: &Held<'_>,
) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let cols = Columns::of(records.iter(), revisions, settled, held);
    let sql = format!(
        "INSERT INTO devices (tenant_id, partition, uid, ip, mac, hostname, name, type, vendor,
             model, os, agent_id, discovery_sources, is_available, first_seen, last_seen,
             metadata, sweep_hints, settled, stamps, identifiers, revision)
         SELECT $1, $2, u.uid, u.ip, u.mac, u.hostname, u.name, u.type, u.vendor, u.model, u.os,
                u.agent_id, {SOURCES}, u.is_available, u.first_seen, u.last_seen, u.metadata,
                u.hints, u.settled, u.stamps, u.identifiers, u.revision
           FROM {UNNEST_DEVICES}"
    );
    let q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_uuid())
        .bind(partition);
    cols.bind(q).execute(&mut *conn).await?;
    Ok(())
}

/// Rewrites changed device rows in place (sorted by uid) with their new `revisions`, the
/// content digests of the rows in `settled` (every other row's is cleared) and the identifiers
/// in `held`.
///
/// # Errors
/// Database failure, or a row that vanished ([`Error::Corrupt`]).
async fn update_devices(
    conn: &mut PgConnection,
    tenant: TenantId,
    partition: &str,
    records: &[&DeviceRecord],
    revisions: &[i64],
    settled: &HashMap<DeviceUid, ContentDigest>,
    held: &Held<'_>,
) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let cols = Columns::of(records.iter().copied(), revisions, settled, held);
    let sql = format!(
        "UPDATE devices AS d
            SET ip = u.ip, mac = u.mac, hostname = u.hostname, name = u.name, type = u.type,
                vendor = u.vendor, model = u.model, os = u.os, agent_id = u.agent_id,
                discovery_sources = {SOURCES}, is_available = u.is_available,
                first_seen = u.first_seen, last_seen = u.last_seen, metadata = u.metadata,
                sweep_hints = u.hints, settled = u.settled, stamps = u.stamps,
                identifiers = u.identifiers, revision = u.revision, updated_at = now()
           FROM {UNNEST_DEVICES}
          WHERE d.tenant_id = $1 AND d.partition = $2 AND d.uid = u.uid"
    );
    let q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_uuid())
        .bind(partition);
    let done = cols.bind(q).execute(&mut *conn).await?.rows_affected();
    if done != records.len() as u64 {
        return Err(Error::Corrupt(format!(
            "updated {done} of {} device rows",
            records.len()
        )));
    }
    Ok(())
}

/// The new revision of every device an outcome inserts, updates or deletes, taken from the
/// sequence ([`next_revisions`]) in one statement under the scope lock before anything is
/// written: the writes carry them and return nothing. Writes to one device are serialised by
/// that lock, so a device's revisions only grow.
#[derive(Debug, Default)]
pub struct Revisions {
    /// Of the outcome's inserts, in its order.
    pub inserts: Vec<i64>,
    /// Of the outcome's updates, in its order.
    pub updates: Vec<i64>,
    /// Of the outcome's deletes, in its order.
    pub deletes: Vec<i64>,
}

impl Revisions {
    /// How many revisions `outcome` needs.
    #[must_use]
    pub fn needed(outcome: &Outcome) -> usize {
        outcome.inserts.len() + outcome.updates.len() + outcome.deletes.len()
    }

    /// Assigns `revisions` ([`Revisions::needed`] of them) to the outcome's inserts, updates and
    /// deletes, in that order.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when there are not as many revisions as the outcome needs.
    pub fn assign(outcome: &Outcome, mut revisions: Vec<i64>) -> Result<Self> {
        if revisions.len() != Self::needed(outcome) {
            return Err(Error::Corrupt(format!(
                "got {} revisions for {} device writes",
                revisions.len(),
                Self::needed(outcome)
            )));
        }
        let deletes = revisions.split_off(outcome.inserts.len() + outcome.updates.len());
        let updates = revisions.split_off(outcome.inserts.len());
        Ok(Self {
            inserts: revisions,
            updates,
            deletes,
        })
    }
}

/// Writes an outcome with its `revisions`, in the order that keeps every identifier pointing at
/// a stored device and uniqueness satisfied at every statement: device inserts, device updates,
/// the identifier lists of devices whose row is otherwise unchanged, identifier re-points,
/// identifier inserts, merge audit rows, deletes of merged-away devices. Every list is already sorted by key. Rows
/// named in `settled` get its content digest, every other written row none; every written row
/// gets its identifiers from `held` ([`KnownState::held_after`] of the state the outcome was
/// decided on).
///
/// # Errors
/// Database failure, or a device row that vanished ([`Error::Corrupt`]).
pub async fn write_outcome(
    conn: &mut PgConnection,
    tenant: TenantId,
    partition: &str,
    outcome: &Outcome,
    revisions: &Revisions,
    settled: &HashMap<DeviceUid, ContentDigest>,
    held: &Held<'_>,
) -> Result<()> {
    let t = tenant.as_uuid();
    insert_devices(
        conn,
        tenant,
        partition,
        &outcome.inserts,
        &revisions.inserts,
        settled,
        held,
    )
    .await?;
    let updates: Vec<&DeviceRecord> = outcome.updates.iter().map(|w| &w.record).collect();
    update_devices(
        conn,
        tenant,
        partition,
        &updates,
        &revisions.updates,
        settled,
        held,
    )
    .await?;
    let rewritten: BTreeSet<DeviceUid> = outcome
        .inserts
        .iter()
        .chain(updates.iter().copied())
        .map(|r| r.uid)
        .collect();
    let (uids, lists): (Vec<String>, Vec<_>) = held
        .keys()
        .filter(|uid| !rewritten.contains(uid))
        .map(|uid| (uid.to_string(), held_json(held, uid)))
        .unzip();
    if !uids.is_empty() {
        // Only the identifiers changed: no new revision, and the row still reflects whatever
        // update it reflected.
        let done = sqlx::query(
            "UPDATE devices AS d SET identifiers = u.identifiers
               FROM UNNEST($3::text[], $4::json[]) AS u(uid, identifiers)
              WHERE d.tenant_id = $1 AND d.partition = $2 AND d.uid = u.uid",
        )
        .bind(t)
        .bind(partition)
        .bind(&uids)
        .bind(&lists)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if done != uids.len() as u64 {
            return Err(Error::Corrupt(format!(
                "rewrote the identifiers of {done} of {} devices",
                uids.len()
            )));
        }
    }
    if !outcome.identifier_repoints.is_empty() {
        let (mut types, mut values, mut to) = (Vec::new(), Vec::new(), Vec::new());
        for (id, r) in &outcome.identifier_repoints {
            types.push(id.kind().as_str());
            values.push(id.value());
            to.push(r.to.to_string());
        }
        sqlx::query(
            "UPDATE identifiers AS i SET device_uid = u.to_uid, updated_at = now()
               FROM UNNEST($3::text[], $4::text[], $5::text[]) AS u(type, value, to_uid)
              WHERE i.tenant_id = $1 AND i.partition = $2 AND i.type = u.type AND i.value = u.value",
        )
        .bind(t)
        .bind(partition)
        .bind(&types)
        .bind(&values)
        .bind(&to)
        .execute(&mut *conn)
        .await?;
    }
    insert_identifiers(conn, tenant, partition, &outcome.identifier_inserts).await?;
    if !outcome.merges.is_empty() {
        let mut ids = Vec::new();
        let (mut from, mut to, mut reason, mut evidence) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for m in &outcome.merges {
            ids.push(Uuid::now_v7());
            from.push(m.from.to_string());
            to.push(m.to.to_string());
            reason.push(m.reason());
            let ev: Vec<String> = m.evidence.iter().map(ToString::to_string).collect();
            evidence.push(join(ev.iter()));
        }
        sqlx::query(
            r"INSERT INTO merge_audit (tenant_id, id, partition, from_uid, to_uid, reason, evidence)
              SELECT $1, u.id, $2, u.from_uid, u.to_uid, u.reason,
                     COALESCE(string_to_array(NULLIF(u.evidence, ''), E'\x1f'), '{}')
                FROM UNNEST($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[])
                  AS u(id, from_uid, to_uid, reason, evidence)",
        )
        .bind(t)
        .bind(partition)
        .bind(&ids)
        .bind(&from)
        .bind(&to)
        .bind(&reason)
        .bind(&evidence)
        .execute(&mut *conn)
        .await?;
    }
    if !outcome.deletes.is_empty() {
        let uids: Vec<String> = outcome.deletes.iter().map(ToString::to_string).collect();
        sqlx::query(
            "DELETE FROM devices WHERE tenant_id = $1 AND partition = $2 AND uid = ANY($3)",
        )
        .bind(t)
        .bind(partition)
        .bind(&uids)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// One outbox message to store.
#[derive(Debug)]
pub struct OutboxMessage {
    /// `Nats-Msg-Id`.
    pub id: Uuid,
    /// Serialised body.
    pub payload: Vec<u8>,
    /// Devices in it.
    pub devices: i32,
}

/// Stores inventory change messages for publication after commit.
///
/// # Errors
/// Database failure.
pub async fn enqueue_inventory(
    conn: &mut PgConnection,
    tenant: TenantId,
    messages: &[OutboxMessage],
    traceparent: Option<&str>,
) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
    let payloads: Vec<&[u8]> = messages.iter().map(|m| m.payload.as_slice()).collect();
    let counts: Vec<i32> = messages.iter().map(|m| m.devices).collect();
    sqlx::query(
        "INSERT INTO inventory_outbox (tenant_id, id, payload, devices, traceparent)
         SELECT $1, u.id, u.payload, u.devices, $5
           FROM UNNEST($2::uuid[], $3::bytea[], $4::int4[]) AS u(id, payload, devices)",
    )
    .bind(tenant.as_uuid())
    .bind(&ids)
    .bind(&payloads)
    .bind(&counts)
    .bind(traceparent)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores OCSF events of one tenant for publication on `events(tenant, kind)`.
///
/// # Errors
/// Database or encoding failure.
pub async fn enqueue_events(
    conn: &mut PgConnection,
    tenant: TenantId,
    kind: &str,
    events: &[sr_core::ocsf::OcsfEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let uids: Vec<Uuid> = events.iter().map(|e| e.metadata.uid).collect();
    let payloads = events
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(
        "INSERT INTO event_outbox (tenant_id, uid, kind, payload)
         SELECT $1, u.uid, $2, u.payload FROM UNNEST($3::uuid[], $4::jsonb[]) AS u(uid, payload)",
    )
    .bind(tenant.as_uuid())
    .bind(kind)
    .bind(&uids)
    .bind(&payloads)
    .execute(conn)
    .await?;
    Ok(())
}
