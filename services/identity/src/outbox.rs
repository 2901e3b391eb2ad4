//! The event outbox: events are stored with the change they describe and published to
//! JetStream afterwards, with `Nats-Msg-Id` = event uid so a re-publish after a crash is
//! dropped by JetStream's duplicate window.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use sqlx::{PgConnection, PgPool};
use sr_core::Subjects;
use sr_core::ocsf::OcsfEvent;
use sr_runtime::jetstream::headers;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Stores `event` for publication on `sr.events.<tenant>.<kind>`.
///
/// # Errors
/// Database failure.
pub async fn enqueue(conn: &mut PgConnection, event: &OcsfEvent, kind: &str) -> Result<()> {
    let payload = serde_json::to_value(event).map_err(|e| Error::Ca(e.to_string()))?;
    sqlx::query("INSERT INTO event_outbox (uid, tenant_id, kind, payload) VALUES ($1, $2, $3, $4)")
        .bind(event.metadata.uid)
        .bind(event.tenant_id.as_uuid())
        .bind(kind)
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// Publishes pending events until none is left; returns how many were published.
///
/// # Errors
/// Database or JetStream failure (the events stay pending and are retried).
pub async fn publish_pending(
    pool: &PgPool,
    js: &jetstream::Context,
    subjects: &Subjects,
    metrics: &Metrics,
) -> Result<usize> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await?;
        let rows: Vec<(Uuid, Uuid, String, serde_json::Value)> = sqlx::query_as(
            "SELECT uid, tenant_id, kind, payload FROM event_outbox WHERE published_at IS NULL
             ORDER BY created_at, uid LIMIT 256 FOR UPDATE SKIP LOCKED",
        )
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(total);
        }
        let mut acks = Vec::with_capacity(rows.len());
        for (uid, tenant, kind, payload) in &rows {
            let tenant_id =
                sr_core::TenantId::new(*tenant).map_err(|e| Error::Ca(e.to_string()))?;
            let mut h = HeaderMap::new();
            h.insert(headers::MSG_ID, uid.to_string().as_str());
            h.insert(headers::TENANT_ID, tenant.to_string().as_str());
            h.insert(headers::ORIGIN, crate::control::PRODUCT);
            let body = serde_json::to_vec(payload).map_err(|e| Error::Ca(e.to_string()))?;
            let ack = js
                .publish_with_headers(subjects.events(tenant_id, kind), h, body.into())
                .await
                .map_err(|e| Error::Startup(format!("event publish failed: {e}")))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| Error::Startup(format!("event not acknowledged by JetStream: {e}")))?;
        }
        let uids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
        sqlx::query("UPDATE event_outbox SET published_at = now() WHERE uid = ANY($1)")
            .bind(&uids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        metrics.events_published.inc_by(rows.len() as u64);
        total += rows.len();
    }
}

/// Runs the outbox worker until `token` is cancelled: publishes on every notification and
/// at least every second, and prunes events published more than a day ago.
pub async fn run(
    pool: PgPool,
    js: jetstream::Context,
    subjects: Subjects,
    notify: Arc<tokio::sync::Notify>,
    metrics: Metrics,
    token: CancellationToken,
) {
    let mut last_prune = tokio::time::Instant::now();
    loop {
        if let Err(e) = publish_pending(&pool, &js, &subjects, &metrics).await {
            metrics.publish_failures.inc();
            tracing::warn!(error = %e, "Event outbox publish failed; will retry");
        }
        if last_prune.elapsed() > Duration::from_secs(3_600) {
            last_prune = tokio::time::Instant::now();
            let _ = sqlx::query(
                "DELETE FROM event_outbox WHERE published_at < now() - interval '1 day'",
            )
            .execute(&pool)
            .await;
        }
        tokio::select! {
            () = token.cancelled() => break,
            () = notify.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    // One last attempt so events committed just before shutdown go out now.
    let _ = publish_pending(&pool, &js, &subjects, &metrics).await;
}
