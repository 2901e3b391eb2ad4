//! Prometheus metrics of the events service.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of the quarantine counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `subject`, `malformed`, `invalid`, `tenant_mismatch` or `rejected`.
    pub kind: String,
}

/// All metrics (cheap to clone: handles share their values).
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Events stored (new rows).
    pub stored: Counter,
    /// Valid events that were already stored (redelivery or duplicate publish).
    pub duplicates: Counter,
    /// Messages quarantined and terminated, by kind.
    pub quarantined: Family<ReasonLabel, Counter>,
    /// Messages the durable consumer has not delivered yet (`num_pending`).
    pub consumer_pending: Gauge,
    /// Time to store one pulled batch (insert, commit, ack), in seconds.
    pub batch_seconds: Histogram,
    /// Batches given back to JetStream (nak with delay) after a transient failure.
    pub batch_failures: Counter,
    /// Rows removed by retention.
    pub retention_deleted: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            stored: Counter::default(),
            duplicates: Counter::default(),
            quarantined: Family::default(),
            consumer_pending: Gauge::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            batch_failures: Counter::default(),
            retention_deleted: Counter::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sr_events");
        r.register("stored", "OCSF events stored", self.stored.clone());
        r.register(
            "duplicates",
            "Valid events already stored (redelivered or published twice)",
            self.duplicates.clone(),
        );
        r.register(
            "quarantined",
            "Messages quarantined and terminated, by kind",
            self.quarantined.clone(),
        );
        r.register(
            "consumer_pending",
            "Messages of SR_EVENTS not yet delivered to the durable consumer",
            self.consumer_pending.clone(),
        );
        r.register(
            "batch_seconds",
            "Time to store one pulled batch, from insert to ack",
            self.batch_seconds.clone(),
        );
        r.register(
            "batch_failures",
            "Batches returned to JetStream after a transient failure",
            self.batch_failures.clone(),
        );
        r.register(
            "retention_deleted",
            "Rows removed by retention",
            self.retention_deleted.clone(),
        );
    }

    /// Counts one quarantined message of `kind`.
    pub fn quarantine(&self, kind: &str) {
        self.quarantined
            .get_or_create(&ReasonLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Quarantined messages of every kind.
    #[must_use]
    pub fn quarantined_total(&self) -> u64 {
        [
            "subject",
            "malformed",
            "invalid",
            "tenant_mismatch",
            "rejected",
        ]
        .iter()
        .map(|k| {
            self.quarantined
                .get_or_create(&ReasonLabel {
                    kind: (*k).to_owned(),
                })
                .get()
        })
        .sum()
    }
}
