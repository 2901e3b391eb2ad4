//! Publication of the outboxes: inventory changes on `<prefix>.inventory.changed.<tenant>` and
//! OCSF events on `<prefix>.events.<tenant>.<kind>`, after the commit that wrote them. Each row
//! is published with `Nats-Msg-Id` = its id and deleted only once JetStream acknowledged it, so
//! a crash or a NATS outage delays messages but loses none (a re-publish inside the duplicate
//! window is dropped by JetStream). Replicas share the work with `FOR UPDATE SKIP LOCKED`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use sqlx::PgPool;
use sr_core::{Subjects, TenantId};
use sr_runtime::jetstream::headers;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::inventory::PRODUCT;
use crate::metrics::Metrics;

/// The publisher.
#[derive(Clone)]
pub struct Outbox {
    /// Pool on the `dire` schema.
    pub pool: PgPool,
    /// JetStream.
    pub js: jetstream::Context,
    /// Subject names.
    pub subjects: Subjects,
    /// Rows per publish transaction.
    pub batch: i64,
    /// Metrics.
    pub metrics: Metrics,
}

fn tenant(id: Uuid) -> Result<TenantId> {
    TenantId::new(id).map_err(|e| Error::Corrupt(e.to_string()))
}

fn header_map(id: Uuid, tenant: TenantId, traceparent: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(headers::MSG_ID, id.to_string().as_str());
    h.insert(headers::TENANT_ID, tenant.to_string().as_str());
    h.insert(headers::ORIGIN, PRODUCT);
    if let Some(tp) = traceparent {
        h.insert("traceparent", tp);
    }
    h
}

async fn await_acks(acks: Vec<jetstream::context::PublishAckFuture>) -> Result<()> {
    for ack in acks {
        ack.await
            .map_err(|e| Error::Publish(format!("not acknowledged by JetStream: {e}")))?;
    }
    Ok(())
}

/// How often the outbox (and inventory) tables are vacuumed.
const VACUUM_EVERY: Duration = Duration::from_secs(300);

impl Outbox {
    /// Reclaims the rows the outboxes deleted and the versions updates left behind, and
    /// refreshes statistics. Autovacuum normally does this; DIRE does it too so a server
    /// with autovacuum off keeps its queues and indexes small.
    pub async fn vacuum(&self) {
        if let Err(e) = sqlx::query(
            "VACUUM (ANALYZE) inventory_outbox, event_outbox, devices, identifiers, merge_audit",
        )
        .execute(&self.pool)
        .await
        {
            tracing::warn!(error = %e, "Vacuum of the DIRE tables failed");
        }
    }

    /// Publishes one round of pending inventory changes; returns how many.
    ///
    /// # Errors
    /// Database or JetStream failure (the rows stay pending).
    pub async fn publish_inventory(&self) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(Uuid, Uuid, Vec<u8>, Option<String>)> = sqlx::query_as(
            "SELECT tenant_id, id, payload, traceparent FROM inventory_outbox
              ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut acks = Vec::with_capacity(rows.len());
        for (t, id, payload, tp) in &rows {
            let t = tenant(*t)?;
            let ack = self
                .js
                .publish_with_headers(
                    self.subjects.inventory_changed(t),
                    header_map(*id, t, tp.as_deref()),
                    payload.clone().into(),
                )
                .await
                .map_err(|e| Error::Publish(e.to_string()))?;
            acks.push(ack);
        }
        await_acks(acks).await?;
        let tenants: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
        let ids: Vec<Uuid> = rows.iter().map(|r| r.1).collect();
        sqlx::query(
            "DELETE FROM inventory_outbox
              WHERE (tenant_id, id) IN (SELECT * FROM UNNEST($1::uuid[], $2::uuid[]))",
        )
        .bind(&tenants)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.metrics.inventory_published.inc_by(rows.len() as u64);
        Ok(rows.len())
    }

    /// Publishes one round of pending events; returns how many.
    ///
    /// # Errors
    /// Database or JetStream failure (the rows stay pending).
    pub async fn publish_events(&self) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(Uuid, Uuid, String, serde_json::Value)> = sqlx::query_as(
            "SELECT tenant_id, uid, kind, payload FROM event_outbox
              ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut acks = Vec::with_capacity(rows.len());
        for (t, uid, kind, payload) in &rows {
            let t = tenant(*t)?;
            let body = serde_json::to_vec(payload)?;
            let ack = self
                .js
                .publish_with_headers(
                    self.subjects.events(t, kind),
                    header_map(*uid, t, None),
                    body.into(),
                )
                .await
                .map_err(|e| Error::Publish(e.to_string()))?;
            acks.push(ack);
        }
        await_acks(acks).await?;
        let tenants: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
        let uids: Vec<Uuid> = rows.iter().map(|r| r.1).collect();
        sqlx::query(
            "DELETE FROM event_outbox
              WHERE (tenant_id, uid) IN (SELECT * FROM UNNEST($1::uuid[], $2::uuid[]))",
        )
        .bind(&tenants)
        .bind(&uids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.metrics.events_published.inc_by(rows.len() as u64);
        Ok(rows.len())
    }

    /// Publishes until both outboxes are empty; returns how many messages went out.
    ///
    /// # Errors
    /// As [`Outbox::publish_inventory`].
    pub async fn drain(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let n = self.publish_inventory().await? + self.publish_events().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Runs until `token` is cancelled: drains on every notification and at least every
    /// `poll`, then makes one last attempt.
    pub async fn run(self, notify: Arc<Notify>, poll: Duration, token: CancellationToken) {
        let mut last_vacuum = tokio::time::Instant::now();
        loop {
            if let Err(e) = self.drain().await {
                self.metrics.publish_failures.inc();
                tracing::warn!(error = %e, "Outbox publish failed; will retry");
            }
            if last_vacuum.elapsed() >= VACUUM_EVERY {
                last_vacuum = tokio::time::Instant::now();
                self.vacuum().await;
            }
            tokio::select! {
                () = token.cancelled() => break,
                () = notify.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
        let _ = self.drain().await;
    }
}
