//! The durable consumer of DIRE's inventory changes (`SR_INVENTORY`, durable `sweepgen`,
//! shared by every replica). Each message is applied to the projection in one transaction and
//! acknowledged only after the commit; a transient failure is nak'd with a delay; a message
//! that can never be applied (undecodable, tenant mismatch) is reported as an OCSF event,
//! counted and terminated.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use futures::StreamExt as _;
use sr_core::inventory::InventoryChange;
use sr_core::ocsf::{Activity, OcsfEvent, ResourceRef};
use sr_core::{Subjects, TenantId};
use sr_runtime::jetstream::headers;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::ConsumerConfig;
use crate::configs::Configs;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::projection;
use crate::store::{Applied, Store};

/// Event kind: events go to `<prefix>.events.<tenant>.sweepgen`.
pub const EVENT_KIND: &str = "sweepgen";
/// Product name in events and the `sr-origin` header.
pub const PRODUCT: &str = "sr-sweepgen";

/// Creates (or binds to) the durable consumer.
///
/// # Errors
/// [`Error::Nats`] when JetStream refuses.
pub async fn durable(
    stream: &jetstream::stream::Stream,
    subjects: &Subjects,
    cfg: &ConsumerConfig,
) -> Result<PullConsumer> {
    stream
        .get_or_create_consumer(
            &cfg.durable,
            PullConfig {
                durable_name: Some(cfg.durable.clone()),
                filter_subject: subjects.inventory_changed_all(),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: Duration::from_secs(cfg.ack_wait_secs),
                max_ack_pending: cfg.max_ack_pending,
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| Error::Nats(format!("cannot create consumer {}: {e}", cfg.durable)))
}

/// The consumer loop and what it needs.
pub struct Consumer {
    /// The durable consumer.
    pub consumer: PullConsumer,
    /// For poison reports.
    pub js: jetstream::Context,
    /// Names.
    pub subjects: Subjects,
    /// Settings.
    pub cfg: ConsumerConfig,
    /// Projection.
    pub store: Store,
    /// In-memory configs to refresh after a commit.
    pub configs: Arc<Configs>,
    /// Metrics.
    pub metrics: Metrics,
}

/// What became of one message.
enum Fate {
    Applied(TenantId, Applied),
    Poison(Option<TenantId>, String),
    Retry(Error),
}

impl Consumer {
    /// Pulls and applies messages until `token` is cancelled; the message in hand is finished
    /// (or left for redelivery) first.
    pub async fn run(self, token: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !token.is_cancelled() {
            let messages = self
                .consumer
                .stream()
                .max_messages_per_batch(self.cfg.batch)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await;
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot pull inventory changes; retrying");
                    tokio::select! {
                        () = token.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    () = token.cancelled() => break,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(msg)) => {
                        backoff = Duration::from_millis(100);
                        self.handle(&msg).await;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "Inventory consumer error");
                    }
                    None => break,
                }
            }
        }
        sr_runtime::jetstream::confirm_unsubscribed(&self.consumer, Duration::from_secs(2)).await;
        tracing::debug!("Inventory consumer stopped");
    }

    async fn handle(&self, msg: &jetstream::Message) {
        let span = tracing::info_span!(
            "sweepgen.inventory_change",
            subject = %msg.subject,
            tenant_id = tracing::field::Empty,
            devices = tracing::field::Empty,
        );
        sr_runtime::telemetry::set_parent_from_nats(&span, msg.headers.as_ref());
        let fate = self.process(msg).instrument(span.clone()).await;
        match fate {
            Fate::Applied(tenant, applied) => {
                if let Err(e) = msg.ack().await {
                    // Redelivery is harmless: the projection ignores what it already holds.
                    tracing::warn!(error = %e, "Cannot acknowledge inventory change");
                }
                self.metrics.message("applied");
                self.metrics.changes_applied.inc_by(applied.changed as u64);
                self.metrics.changes_stale.inc_by(applied.stale as u64);
                for (partition, generation) in &applied.partitions {
                    if let Err(e) = self.configs.refresh(tenant, partition, *generation).await {
                        tracing::warn!(%tenant, partition, error = %e, "Cannot refresh partition after a change; the next request catches up");
                    }
                }
            }
            Fate::Retry(e) => {
                tracing::warn!(error = %e, "Inventory change failed; will retry");
                self.metrics.message("retried");
                let delay = Duration::from_millis(self.cfg.nak_delay_ms);
                if let Err(e) = msg.ack_with(AckKind::Nak(Some(delay))).await {
                    tracing::warn!(error = %e, "Cannot nak inventory change");
                }
            }
            Fate::Poison(tenant, reason) => self.poison(msg, tenant, &reason).await,
        }
    }

    async fn process(&self, msg: &jetstream::Message) -> Fate {
        let subject_tenant = self.subjects.tenant_of(msg.subject.as_str());
        let change: InventoryChange = match serde_json::from_slice(&msg.payload) {
            Ok(c) => c,
            Err(e) => {
                return Fate::Poison(subject_tenant, format!("undecodable inventory change: {e}"));
            }
        };
        let span = tracing::Span::current();
        span.record("tenant_id", tracing::field::display(change.tenant_id));
        span.record("devices", change.devices.len());
        match subject_tenant {
            Some(t) if t == change.tenant_id => {}
            Some(t) => {
                return Fate::Poison(
                    Some(t),
                    format!(
                        "the message names tenant {} but was published for tenant {t}",
                        change.tenant_id
                    ),
                );
            }
            None => {
                return Fate::Poison(
                    Some(change.tenant_id),
                    "the subject names no tenant".to_owned(),
                );
            }
        }
        let batch = projection::normalise(&change);
        if batch.invalid_addresses > 0 || batch.missing_uids > 0 {
            self.metrics
                .invalid_addresses
                .inc_by(batch.invalid_addresses as u64);
            tracing::warn!(
                invalid_addresses = batch.invalid_addresses,
                missing_uids = batch.missing_uids,
                "Inventory change carried unusable entries; they were dropped"
            );
        }
        match self.store.apply(change.tenant_id, &batch).await {
            Ok(applied) => Fate::Applied(change.tenant_id, applied),
            Err(e) if e.is_poison() => Fate::Poison(Some(change.tenant_id), e.to_string()),
            Err(e) => Fate::Retry(e),
        }
    }

    /// Reports and terminates a message that can never be applied. When the report cannot be
    /// published the message is nak'd instead, so none disappears unreported. A message whose
    /// tenant is unknowable is terminated with a log line only (no tenant to file it under).
    async fn poison(&self, msg: &jetstream::Message, tenant: Option<TenantId>, reason: &str) {
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
        let subject = msg.subject.as_str();
        tracing::warn!(%subject, stream_sequence = seq, %reason, "Terminating poison inventory change");
        if let Some(tenant) = tenant
            && let Err(e) = self.report(tenant, subject, seq, reason).await
        {
            tracing::warn!(error = %e, "Cannot publish the poison report; will retry");
            self.metrics.message("retried");
            let delay = Duration::from_millis(self.cfg.nak_delay_ms);
            let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
            return;
        }
        self.metrics.poison.inc();
        self.metrics.message("poison");
        if let Err(e) = msg.ack_with(AckKind::Term).await {
            tracing::warn!(error = %e, "Cannot terminate poison inventory change");
        }
    }

    async fn report(&self, tenant: TenantId, subject: &str, seq: u64, reason: &str) -> Result<()> {
        let event = poison_event(tenant, subject, seq, reason);
        let body = serde_json::to_vec(&event).map_err(|e| Error::Nats(e.to_string()))?;
        let mut h = async_nats::HeaderMap::new();
        // One report per stream message, however often it is redelivered.
        h.insert(
            headers::MSG_ID,
            format!("sweepgen-poison-{subject}-{seq}").as_str(),
        );
        h.insert(headers::TENANT_ID, tenant.to_string().as_str());
        h.insert(headers::ORIGIN, PRODUCT);
        self.js
            .publish_with_headers(self.subjects.events(tenant, EVENT_KIND), h, body.into())
            .await
            .map_err(|e| Error::Nats(e.to_string()))?
            .await
            .map_err(|e| Error::Nats(e.to_string()))?;
        Ok(())
    }
}

/// The OCSF event for a terminated inventory change: class 1008, activity 99 (other),
/// severity medium, status failure.
#[must_use]
pub fn poison_event(tenant: TenantId, subject: &str, seq: u64, reason: &str) -> OcsfEvent {
    let id = format!("{subject}#{seq}");
    let mut e = OcsfEvent::lifecycle(
        tenant,
        PRODUCT,
        Activity::Update,
        &ResourceRef {
            resource_type: "inventory_change",
            id,
            name: subject,
        },
        "Inventory change",
        "poison_message",
        serde_json::json!({ "subject": subject, "stream_sequence": seq, "reason": reason }),
        Utc::now(),
    );
    e.message =
        format!("Inventory change {seq} on {subject} was terminated without processing: {reason}");
    e.activity_id = 99;
    e.type_uid = i64::from(e.class_uid) * 100 + 99;
    e.severity_id = sr_core::ocsf::SEVERITY_MEDIUM;
    e.status_id = sr_core::ocsf::STATUS_FAILURE;
    e
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn poison_events_are_valid_ocsf() {
        let e = poison_event(TenantId::random(), "sr.inventory.changed.x", 7, "not JSON");
        e.validate().unwrap();
        assert_eq!(e.type_uid, 100_899);
        assert!(e.message.contains("not JSON"));
    }
}
