//! Prometheus metrics of the gateway.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-RPC counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabel {
    /// RPC name.
    pub rpc: String,
    /// gRPC code name (`Ok`, `PermissionDenied`, …).
    pub code: String,
}

/// All metrics (handles share their values).
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Finished RPCs by outcome.
    pub rpcs: Family<RpcLabel, Counter>,
    /// Refused callers by reason code.
    pub refusals: Family<RpcLabel, Counter>,
    /// Result bytes reassembled.
    pub stream_bytes: Counter,
    /// Devices published to JetStream.
    pub devices_published: Counter,
    /// Batches published to JetStream.
    pub batches_published: Counter,
    /// Streams being reassembled.
    pub active_streams: Gauge,
    /// Bytes buffered by streams being reassembled.
    pub buffered_bytes: Gauge,
    /// Seconds from the last chunk to the last JetStream ack of a stream.
    pub publish_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            rpcs: Family::default(),
            refusals: Family::default(),
            stream_bytes: Counter::default(),
            devices_published: Counter::default(),
            batches_published: Counter::default(),
            active_streams: Gauge::default(),
            buffered_bytes: Gauge::default(),
            publish_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
        }
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sr_gateway");
        r.register("rpcs", "Finished RPCs by outcome", self.rpcs.clone());
        r.register(
            "refusals",
            "Callers refused, by RPC and code",
            self.refusals.clone(),
        );
        r.register(
            "stream_bytes",
            "Result bytes reassembled",
            self.stream_bytes.clone(),
        );
        r.register(
            "devices_published",
            "Devices published to JetStream",
            self.devices_published.clone(),
        );
        r.register(
            "batches_published",
            "Batches published to JetStream",
            self.batches_published.clone(),
        );
        r.register(
            "active_streams",
            "Streams being reassembled",
            self.active_streams.clone(),
        );
        r.register(
            "buffered_bytes",
            "Bytes buffered by streams being reassembled",
            self.buffered_bytes.clone(),
        );
        r.register(
            "publish_seconds",
            "Last chunk to last JetStream ack",
            self.publish_seconds.clone(),
        );
    }
}
