//! Postgres side of the event store: batched idempotent inserts, the quarantine, retention
//! and the read queries. Every statement runs in the service's own schema.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use sr_core::TenantId;
use sr_core::ocsf::{self, Metadata, Observable, OcsfEvent, Product};
use uuid::Uuid;

use crate::decode::{self, EventRow, Incoming, QuarantineRow, RejectKind};
use crate::error::{Result, is_data_error};
use crate::metrics::Metrics;

/// Product name of the events the service writes about itself.
pub const PRODUCT: &str = "sr-events";

/// `activity_id` Other, for the quarantine reports.
const ACTIVITY_OTHER: i32 = 99;
/// Medium.
const SEVERITY_MEDIUM: i32 = 3;
/// Failure.
const STATUS_FAILURE: i32 = 2;

/// One statement for a whole batch: arrays in, rows out, duplicates skipped. Public so the
/// benchmark can measure the same statement without the service around it.
pub const INSERT_EVENTS: &str = "INSERT INTO ocsf_events (tenant_id, uid, origin, class_uid, category_uid, activity_id,
        type_uid, severity_id, status_id, time, message, correlation_uid, observables, unmapped, raw, subject)
    SELECT t, u, o, c, cat, a, ty, sev, st, tm, m, corr, obs::jsonb, unm::jsonb, r, s
    FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::int4[], $6::int4[], $7::int8[],
                $8::int4[], $9::int4[], $10::timestamptz[], $11::text[], $12::text[], $13::text[],
                $14::text[], $15::text[], $16::text[])
        AS x(t, u, o, c, cat, a, ty, sev, st, tm, m, corr, obs, unm, r, s)
    ON CONFLICT (tenant_id, uid) DO NOTHING";

const INSERT_QUARANTINE: &str = "INSERT INTO quarantined_events (id, tenant_id, subject, kind, reason, raw, stream, stream_seq, received_at)
    SELECT id, t, s, k, r, b, st, seq, $9
    FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::text[], $8::int8[])
        AS x(id, t, s, k, r, b, st, seq)
    ON CONFLICT (id) DO NOTHING
    RETURNING id";

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stored {
    /// New event rows.
    pub inserted: u64,
    /// Valid events that were already stored.
    pub duplicates: u64,
    /// Indexes (into the batch's events) that Postgres refused; they were quarantined
    /// instead and their messages must be terminated.
    pub rejected: Vec<usize>,
    /// Kinds of the quarantine rows this batch added (not counting redeliveries).
    pub newly_quarantined: Vec<RejectKind>,
}

/// What one retention run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// Event rows.
    pub events: u64,
    /// Quarantine rows.
    pub quarantined: u64,
}

/// A page query on a tenant's events, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Tenant.
    pub tenant: TenantId,
    /// Only this class.
    pub class_uid: Option<i32>,
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events strictly before this (time, uid) position (the cursor).
    pub before: Option<(DateTime<Utc>, Uuid)>,
    /// Page size.
    pub limit: i64,
}

/// A stored event as the read API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StoredEvent {
    /// `metadata.uid`.
    pub uid: Uuid,
    /// Tenant.
    pub tenant_id: Uuid,
    /// Emitting service.
    pub origin: String,
    /// Class.
    pub class_uid: i32,
    /// Category.
    pub category_uid: i32,
    /// Activity.
    pub activity_id: i32,
    /// Type.
    pub type_uid: i64,
    /// Severity.
    pub severity_id: i32,
    /// Status.
    pub status_id: i32,
    /// Event time.
    pub time: DateTime<Utc>,
    /// Message.
    pub message: String,
    /// Correlation uid.
    pub correlation_uid: Option<String>,
    /// Observables.
    pub observables: serde_json::Value,
    /// Unmapped fields.
    pub unmapped: serde_json::Value,
    /// Subject it arrived on.
    pub subject: String,
    /// When it was stored.
    pub stored_at: DateTime<Utc>,
    /// The event as published.
    #[sqlx(rename = "raw")]
    pub event: serde_json::Value,
}

/// A quarantined message as the read API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct QuarantinedEvent {
    /// Quarantine id (stable across redeliveries).
    pub id: Uuid,
    /// Tenant named by the subject.
    pub tenant_id: Option<Uuid>,
    /// Subject.
    pub subject: String,
    /// `subject`, `malformed`, `invalid`, `tenant_mismatch` or `rejected`.
    pub kind: String,
    /// Why.
    pub reason: String,
    /// Stream.
    pub stream: String,
    /// Stream sequence.
    pub stream_seq: i64,
    /// When it was quarantined.
    pub received_at: DateTime<Utc>,
    /// The body, as (lossy) UTF-8 text.
    #[sqlx(skip)]
    pub raw: String,
    /// The body, base64.
    #[sqlx(skip)]
    pub raw_base64: String,
    #[serde(skip)]
    #[sqlx(rename = "raw")]
    raw_bytes: Vec<u8>,
}

/// The event store (cheap to clone).
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    metrics: Metrics,
    stream: String,
    max_age: Duration,
    delete_batch: i64,
}

impl Store {
    /// A store on `pool` for messages of `stream`.
    #[must_use]
    pub fn new(
        pool: PgPool,
        metrics: Metrics,
        stream: String,
        max_age: Duration,
        delete_batch: i64,
    ) -> Self {
        Self {
            pool,
            metrics,
            stream,
            max_age,
            delete_batch: delete_batch.max(1),
        }
    }

    /// The pool.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Stores `events` (each once per tenant and uid) and `quarantined` in one transaction.
    /// Rows are written in (tenant, uid) order so that concurrent batches of several
    /// replicas cannot deadlock on each other. When Postgres refuses a value, the batch is
    /// retried row by row and the refused rows are quarantined instead.
    ///
    /// # Errors
    /// Database failure (transient: nothing was committed).
    pub async fn store_batch(
        &self,
        events: &[EventRow<'_>],
        quarantined: &[QuarantineRow],
        now: DateTime<Utc>,
    ) -> Result<Stored> {
        let mut order: Vec<usize> = (0..events.len()).collect();
        order.sort_by_key(|&i| (events[i].tenant_id, events[i].uid));
        let mut tx = self.pool.begin().await?;
        let mut stored = Stored::default();
        let mut quarantine: Vec<QuarantineRow> = quarantined.to_vec();
        if !events.is_empty() {
            let rows: Vec<&EventRow<'_>> = order.iter().map(|&i| &events[i]).collect();
            match insert_events(&mut tx, &rows).await {
                Ok(n) => stored.inserted = n,
                Err(e) if is_data_error(&e) => {
                    // The whole statement was refused because of some row: start over and
                    // find it with one savepoint per row.
                    tx.rollback().await?;
                    tx = self.pool.begin().await?;
                    tracing::warn!(error = %e, "Batch refused by Postgres; storing row by row");
                    for &i in &order {
                        sqlx::query("SAVEPOINT one_event").execute(&mut *tx).await?;
                        match insert_events(&mut tx, &[&events[i]]).await {
                            Ok(n) => {
                                stored.inserted += n;
                                sqlx::query("RELEASE SAVEPOINT one_event")
                                    .execute(&mut *tx)
                                    .await?;
                            }
                            Err(e) if is_data_error(&e) => {
                                sqlx::query("ROLLBACK TO SAVEPOINT one_event")
                                    .execute(&mut *tx)
                                    .await?;
                                stored.rejected.push(i);
                                quarantine.push(self.refused(&events[i], &e));
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let valid = (events.len() - stored.rejected.len()) as u64;
        stored.duplicates = valid.saturating_sub(stored.inserted);
        if !quarantine.is_empty() {
            let new_ids = insert_quarantine(&mut tx, &quarantine, now).await?;
            let reports: Vec<EventRow<'static>> = quarantine
                .iter()
                .filter(|q| new_ids.contains(&q.id))
                .inspect(|q| stored.newly_quarantined.push(q.kind))
                .filter_map(|q| report_event(q, now))
                .collect();
            if !reports.is_empty() {
                let refs: Vec<&EventRow<'_>> = reports.iter().collect();
                insert_events(&mut tx, &refs).await?;
            }
        }
        tx.commit().await?;
        Ok(stored)
    }

    fn refused(&self, row: &EventRow<'_>, e: &sqlx::Error) -> QuarantineRow {
        let reason = e
            .as_database_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned());
        let Self { stream, .. } = self;
        let decoded = decode::quarantine(
            &Incoming {
                subject: row.subject.as_ref(),
                origin: None,
                payload: row.raw.as_bytes(),
                stream,
                stream_seq: row.stream_seq,
            },
            Some(row.tenant_id),
            RejectKind::Rejected,
            format!("rejected by the database: {reason}"),
        );
        match decoded {
            decode::Decoded::Quarantine(q) => q,
            // `quarantine` only builds quarantine rows.
            decode::Decoded::Event(_) => QuarantineRow {
                id: Uuid::now_v7(),
                tenant_id: Some(row.tenant_id),
                subject: row.subject.to_string(),
                kind: RejectKind::Rejected,
                reason,
                raw: row.raw.as_bytes().to_vec(),
                stream: stream.clone(),
                stream_seq: i64::try_from(row.stream_seq).unwrap_or(i64::MAX),
            },
        }
    }

    /// Deletes events whose `time` is older than `now - max_age`, and quarantine rows
    /// received before then, `delete_batch` rows per statement until none is left. Rows
    /// another replica is deleting at the same time are skipped, not waited for.
    ///
    /// # Errors
    /// Database failure (what was deleted before it stays deleted).
    pub async fn run_retention(&self, now: DateTime<Utc>) -> Result<Removed> {
        let max_age = chrono::Duration::from_std(self.max_age).unwrap_or(chrono::Duration::MAX);
        let cutoff = now
            .checked_sub_signed(max_age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut removed = Removed::default();
        for (table, column, total) in [
            ("ocsf_events", "time", &mut removed.events),
            (
                "quarantined_events",
                "received_at",
                &mut removed.quarantined,
            ),
        ] {
            // Both names are constants above, never input.
            let sql = format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                     SELECT ctid FROM {table} WHERE {column} < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))"
            );
            loop {
                let n = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(cutoff)
                    .bind(self.delete_batch)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                *total += n;
                self.metrics.retention_deleted.inc_by(n);
                if n < u64::try_from(self.delete_batch).unwrap_or(u64::MAX) {
                    break;
                }
            }
        }
        Ok(removed)
    }

    /// A page of a tenant's events, newest first.
    ///
    /// # Errors
    /// Database failure.
    pub async fn list_events(&self, q: &EventQuery) -> Result<Vec<StoredEvent>> {
        // Only fixed fragments are appended; every value is a bind parameter.
        let mut sql = String::from(
            "SELECT uid, tenant_id, origin, class_uid, category_uid, activity_id, type_uid, severity_id,
                    status_id, time, message, correlation_uid, observables, unmapped, subject, stored_at, raw::json AS raw
             FROM ocsf_events WHERE tenant_id = $1",
        );
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        if q.class_uid.is_some() {
            sql.push_str(&format!(" AND class_uid = ${}", next()));
        }
        if q.since.is_some() {
            sql.push_str(&format!(" AND time >= ${}", next()));
        }
        if q.before.is_some() {
            let (a, b) = (next(), next());
            sql.push_str(&format!(" AND (time, uid) < (${a}, ${b})"));
        }
        sql.push_str(&format!(" ORDER BY time DESC, uid DESC LIMIT ${}", next()));
        let mut query =
            sqlx::query_as::<_, StoredEvent>(sqlx::AssertSqlSafe(sql)).bind(q.tenant.as_uuid());
        if let Some(c) = q.class_uid {
            query = query.bind(c);
        }
        if let Some(s) = q.since {
            query = query.bind(s);
        }
        if let Some((t, u)) = q.before {
            query = query.bind(t).bind(u);
        }
        Ok(query.bind(q.limit).fetch_all(&self.pool).await?)
    }

    /// A tenant's most recent quarantined messages.
    ///
    /// # Errors
    /// Database failure.
    pub async fn list_quarantine(
        &self,
        tenant: TenantId,
        limit: i64,
    ) -> Result<Vec<QuarantinedEvent>> {
        use base64::Engine as _;
        let mut rows: Vec<QuarantinedEvent> = sqlx::query_as(
            "SELECT id, tenant_id, subject, kind, reason, raw, stream, stream_seq, received_at
             FROM quarantined_events WHERE tenant_id = $1
             ORDER BY received_at DESC, id DESC LIMIT $2",
        )
        .bind(tenant.as_uuid())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        for r in &mut rows {
            r.raw = String::from_utf8_lossy(&r.raw_bytes).into_owned();
            r.raw_base64 = base64::engine::general_purpose::STANDARD.encode(&r.raw_bytes);
        }
        Ok(rows)
    }
}

async fn insert_events(
    conn: &mut PgConnection,
    rows: &[&EventRow<'_>],
) -> Result<u64, sqlx::Error> {
    let n = rows.len();
    let mut tenant = Vec::with_capacity(n);
    let mut uid = Vec::with_capacity(n);
    let mut origin = Vec::with_capacity(n);
    let mut class = Vec::with_capacity(n);
    let mut category = Vec::with_capacity(n);
    let mut activity = Vec::with_capacity(n);
    let mut type_uid = Vec::with_capacity(n);
    let mut severity = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut time = Vec::with_capacity(n);
    let mut message = Vec::with_capacity(n);
    let mut correlation = Vec::with_capacity(n);
    let mut observables = Vec::with_capacity(n);
    let mut unmapped = Vec::with_capacity(n);
    let mut raw = Vec::with_capacity(n);
    let mut subject = Vec::with_capacity(n);
    for r in rows {
        tenant.push(r.tenant_id.as_uuid());
        uid.push(r.uid);
        origin.push(r.origin.as_ref());
        class.push(r.class_uid);
        category.push(r.category_uid);
        activity.push(r.activity_id);
        type_uid.push(r.type_uid);
        severity.push(r.severity_id);
        status.push(r.status_id);
        time.push(r.time);
        message.push(r.message.as_ref());
        correlation.push(r.correlation_uid.as_deref());
        observables.push(r.observables.as_ref());
        unmapped.push(r.unmapped.as_ref());
        raw.push(r.raw.as_ref());
        subject.push(r.subject.as_ref());
    }
    Ok(sqlx::query(INSERT_EVENTS)
        .bind(tenant)
        .bind(uid)
        .bind(origin)
        .bind(class)
        .bind(category)
        .bind(activity)
        .bind(type_uid)
        .bind(severity)
        .bind(status)
        .bind(time)
        .bind(message)
        .bind(correlation)
        .bind(observables)
        .bind(unmapped)
        .bind(raw)
        .bind(subject)
        .execute(conn)
        .await?
        .rows_affected())
}

async fn insert_quarantine(
    conn: &mut PgConnection,
    rows: &[QuarantineRow],
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut sorted: Vec<&QuarantineRow> = rows.iter().collect();
    sorted.sort_by_key(|q| q.id);
    sqlx::query_scalar(INSERT_QUARANTINE)
        .bind(sorted.iter().map(|q| q.id).collect::<Vec<_>>())
        .bind(
            sorted
                .iter()
                .map(|q| q.tenant_id.map(|t| t.as_uuid()))
                .collect::<Vec<_>>(),
        )
        .bind(
            sorted
                .iter()
                .map(|q| q.subject.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(sorted.iter().map(|q| q.kind.as_str()).collect::<Vec<_>>())
        // Postgres text cannot hold U+0000, and a serde error may quote the input.
        .bind(
            sorted
                .iter()
                .map(|q| q.reason.replace('\0', "\u{FFFD}"))
                .collect::<Vec<_>>(),
        )
        .bind(sorted.iter().map(|q| q.raw.as_slice()).collect::<Vec<_>>())
        .bind(sorted.iter().map(|q| q.stream.as_str()).collect::<Vec<_>>())
        .bind(sorted.iter().map(|q| q.stream_seq).collect::<Vec<_>>())
        .bind(now)
        .fetch_all(conn)
        .await
}

/// The OCSF event that tells a tenant one of its messages was quarantined (uid = the
/// quarantine id, so it is stored once). None when the subject named no tenant.
fn report_event(q: &QuarantineRow, now: DateTime<Utc>) -> Option<EventRow<'static>> {
    let tenant = q.tenant_id?;
    let reason: String = q
        .reason
        .replace('\0', "\u{FFFD}")
        .chars()
        .take(512)
        .collect();
    let subject = q.subject.replace('\0', "\u{FFFD}");
    let event = OcsfEvent {
        class_uid: ocsf::CLASS_EVENT_LOG_ACTIVITY,
        category_uid: ocsf::CATEGORY_SYSTEM,
        activity_id: ACTIVITY_OTHER,
        type_uid: i64::from(ocsf::CLASS_EVENT_LOG_ACTIVITY) * 100 + i64::from(ACTIVITY_OTHER),
        severity_id: SEVERITY_MEDIUM,
        status_id: STATUS_FAILURE,
        time: now.timestamp_millis(),
        message: format!("Event quarantined: {reason}"),
        metadata: Metadata {
            version: ocsf::OCSF_VERSION.to_owned(),
            uid: q.id,
            product: Product {
                name: PRODUCT.to_owned(),
                vendor_name: ocsf::VENDOR_NAME.to_owned(),
            },
            correlation_uid: Some(format!("quarantined_event:{}", q.id)),
        },
        observables: vec![
            Observable {
                name: "resource.type".into(),
                type_id: 99,
                value: "quarantined_event".into(),
            },
            Observable {
                name: "resource.uid".into(),
                type_id: 10,
                value: q.id.to_string(),
            },
        ],
        unmapped: serde_json::json!({
            "resource_type": "quarantined_event",
            "resource_id": q.id,
            "action": "quarantine",
            "details": {
                "kind": q.kind.as_str(),
                "reason": reason,
                "subject": subject,
                "stream": q.stream,
                "stream_seq": q.stream_seq,
            },
        }),
        tenant_id: tenant,
    };
    let raw = serde_json::to_string(&event).ok()?;
    Some(EventRow {
        tenant_id: tenant,
        uid: q.id,
        origin: Cow::Borrowed(PRODUCT),
        class_uid: event.class_uid,
        category_uid: event.category_uid,
        activity_id: event.activity_id,
        type_uid: event.type_uid,
        severity_id: event.severity_id,
        status_id: event.status_id,
        time: now,
        message: Cow::Owned(event.message),
        correlation_uid: event.metadata.correlation_uid.map(Cow::Owned),
        observables: Cow::Owned(serde_json::to_string(&event.observables).ok()?),
        unmapped: Cow::Owned(event.unmapped.to_string()),
        raw: Cow::Owned(raw),
        subject: Cow::Owned(subject),
        stream_seq: u64::try_from(q.stream_seq).unwrap_or_default(),
    })
}
