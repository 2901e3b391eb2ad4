//! Prometheus metrics of the sweepgen service (prefix `sr_sweepgen_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of a request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    /// `rpc` (gateway agent config) or `api` (read API).
    pub via: String,
    /// `ok`, `not_modified` or `error`.
    pub outcome: String,
}

/// Label of an inventory message counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabel {
    /// `applied`, `retried` or `poison`.
    pub outcome: String,
}

fn compile_histogram() -> Histogram {
    // 100 µs … ~1.6 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 15))
}

/// All metrics (cheap to clone: handles share their values).
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Inventory messages handled, by outcome.
    pub messages: Family<MessageLabel, Counter>,
    /// Device changes written to the projection.
    pub changes_applied: Counter,
    /// Device changes ignored because the projection already held that or a newer revision.
    pub changes_stale: Counter,
    /// Poison messages terminated.
    pub poison: Counter,
    /// Addresses in inventory changes that are not IP addresses (dropped).
    pub invalid_addresses: Counter,
    /// Sweep configs compiled.
    pub compiles: Counter,
    /// Compile latency (index walk, version, serialisation), seconds.
    pub compile_seconds: Histogram,
    /// Config requests answered from the cache.
    pub cache_hits: Counter,
    /// Config requests, by channel and outcome.
    pub requests: Family<RequestLabel, Counter>,
    /// `not_modified` answers.
    pub not_modified: Counter,
    /// Partitions loaded from Postgres into memory.
    pub partition_loads: Counter,
    /// Incremental catch-ups of a loaded partition from Postgres.
    pub catch_ups: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            messages: Family::default(),
            changes_applied: Counter::default(),
            changes_stale: Counter::default(),
            poison: Counter::default(),
            invalid_addresses: Counter::default(),
            compiles: Counter::default(),
            compile_seconds: compile_histogram(),
            cache_hits: Counter::default(),
            requests: Family::default(),
            not_modified: Counter::default(),
            partition_loads: Counter::default(),
            catch_ups: Counter::default(),
        }
    }
}

impl Metrics {
    /// Counts a request.
    pub fn request(&self, via: &str, outcome: &str) {
        self.requests
            .get_or_create(&RequestLabel {
                via: via.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts an inventory message.
    pub fn message(&self, outcome: &str) {
        self.messages
            .get_or_create(&MessageLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sr_sweepgen");
        r.register(
            "inventory_messages",
            "Inventory change messages handled, by outcome",
            self.messages.clone(),
        );
        r.register(
            "changes_applied",
            "Device changes written to the sweep projection",
            self.changes_applied.clone(),
        );
        r.register(
            "changes_stale",
            "Device changes ignored as redelivered or older than the projection",
            self.changes_stale.clone(),
        );
        r.register(
            "poison_messages",
            "Undecodable inventory messages terminated",
            self.poison.clone(),
        );
        r.register(
            "invalid_addresses",
            "Device addresses that are not IP addresses (dropped)",
            self.invalid_addresses.clone(),
        );
        r.register("compiles", "Sweep configs compiled", self.compiles.clone());
        r.register(
            "compile_seconds",
            "Sweep config compile latency",
            self.compile_seconds.clone(),
        );
        r.register(
            "cache_hits",
            "Config requests answered from the compiled-config cache",
            self.cache_hits.clone(),
        );
        r.register(
            "requests",
            "Config requests by channel and outcome",
            self.requests.clone(),
        );
        r.register(
            "not_modified",
            "not_modified answers",
            self.not_modified.clone(),
        );
        r.register(
            "partition_loads",
            "Partitions loaded from Postgres",
            self.partition_loads.clone(),
        );
        r.register(
            "catch_ups",
            "Incremental catch-ups of loaded partitions",
            self.catch_ups.clone(),
        );
    }
}
