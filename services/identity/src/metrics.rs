//! Prometheus metrics of the identity service.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Label of an RPC counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabel {
    /// Operation.
    pub op: String,
    /// `ok` or an error code.
    pub outcome: String,
}

/// Label of a status change counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// New status.
    pub to: String,
}

/// All metrics (cheap to clone: handles share their values).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Request/reply calls answered.
    pub rpc_requests: Family<RpcLabel, Counter>,
    /// Events published from the outbox.
    pub events_published: Counter,
    /// Failed outbox publish rounds.
    pub publish_failures: Counter,
    /// Sync status changes.
    pub status_changes: Family<StatusLabel, Counter>,
}

impl Metrics {
    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sr_identity");
        r.register(
            "rpc_requests",
            "Request/reply calls answered",
            self.rpc_requests.clone(),
        );
        r.register(
            "events_published",
            "OCSF events published from the outbox",
            self.events_published.clone(),
        );
        r.register(
            "event_publish_failures",
            "Failed outbox publish rounds",
            self.publish_failures.clone(),
        );
        r.register(
            "sync_status_changes",
            "Sync service status changes",
            self.status_changes.clone(),
        );
    }
}
