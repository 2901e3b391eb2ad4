//! Prometheus metrics of the sync service (`/metrics`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One source: its tenant's slug and its key in the config.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// Tenant slug.
    pub tenant: String,
    /// Source key (`<name>` or `<tenant_slug>/<name>`).
    pub source: String,
}

/// A run outcome of one source.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabel {
    /// Tenant slug.
    pub tenant: String,
    /// Source key.
    pub source: String,
    /// `success`, `failure` or `skipped` (circuit breaker open).
    pub result: String,
}

/// Devices dropped before pushing.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabel {
    /// Tenant slug.
    pub tenant: String,
    /// Source key.
    pub source: String,
    /// `no_ip` or `blacklist`.
    pub reason: String,
}

/// Outcome label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: String,
}

/// All metrics (cheap to clone: handles share their values).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Runs by outcome.
    pub source_runs: Family<RunLabel, Counter>,
    /// Unix time of the end of the last run.
    pub source_last_run: Family<SourceLabel, Gauge>,
    /// Duration of the last run (fetch and push), seconds.
    pub source_last_duration: Family<SourceLabel, Gauge<f64, AtomicU64>>,
    /// Devices pushed by the last successful run.
    pub source_devices: Family<SourceLabel, Gauge>,
    /// Failed runs.
    pub source_errors: Family<SourceLabel, Counter>,
    /// Whether the source's circuit breaker is open.
    pub source_breaker_open: Family<SourceLabel, Gauge>,
    /// Devices dropped before pushing.
    pub dropped_devices: Family<DropLabel, Counter>,
    /// Result bytes (chunk JSON) accepted by the gateway.
    pub push_bytes: Family<SourceLabel, Counter>,
    /// Chunks accepted by the gateway.
    pub push_chunks: Family<SourceLabel, Counter>,
    /// Push attempts that failed and were retried.
    pub push_retries: Family<SourceLabel, Counter>,
    /// Source loops running.
    pub active_sources: Gauge,
    /// Heartbeats sent.
    pub heartbeats: Family<ResultLabel, Counter>,
    /// Gateway connections made (each followed by Hello).
    pub gateway_connections: Counter,
    /// Hello calls answered.
    pub hellos: Counter,
    /// Failed connection attempts.
    pub gateway_connect_failures: Counter,
    /// Config changes applied.
    pub config_applies: Counter,
    /// 1 while running from the cached state file (gateway not reached yet).
    pub config_stale: Gauge,
    /// Source run reports that could not be delivered.
    pub report_failures: Counter,
}

impl Metrics {
    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sr_sync");
        r.register(
            "source_runs",
            "Source runs by outcome",
            self.source_runs.clone(),
        );
        r.register(
            "source_last_run_timestamp_seconds",
            "Unix time the last run of the source finished",
            self.source_last_run.clone(),
        );
        r.register(
            "source_last_run_duration_seconds",
            "Duration of the last run of the source (fetch and push)",
            self.source_last_duration.clone(),
        );
        r.register(
            "source_devices",
            "Devices pushed by the last successful run",
            self.source_devices.clone(),
        );
        r.register(
            "source_errors",
            "Failed source runs",
            self.source_errors.clone(),
        );
        r.register(
            "source_breaker_open",
            "1 while the source's circuit breaker is open",
            self.source_breaker_open.clone(),
        );
        r.register(
            "dropped_devices",
            "Devices dropped before pushing (no IP, blacklisted)",
            self.dropped_devices.clone(),
        );
        r.register(
            "push_bytes",
            "Result bytes accepted by the gateway",
            self.push_bytes.clone(),
        );
        r.register(
            "push_chunks",
            "Result chunks accepted by the gateway",
            self.push_chunks.clone(),
        );
        r.register(
            "push_retries",
            "Failed push attempts that were retried",
            self.push_retries.clone(),
        );
        r.register(
            "active_sources",
            "Source loops running",
            self.active_sources.clone(),
        );
        r.register("heartbeats", "Heartbeats sent", self.heartbeats.clone());
        r.register(
            "gateway_connections",
            "Gateway connections made (each followed by Hello)",
            self.gateway_connections.clone(),
        );
        r.register("hellos", "Hello calls answered", self.hellos.clone());
        r.register(
            "gateway_connect_failures",
            "Failed gateway connection attempts",
            self.gateway_connect_failures.clone(),
        );
        r.register(
            "config_applies",
            "Config changes applied",
            self.config_applies.clone(),
        );
        r.register(
            "config_stale",
            "1 while running from the cached state file",
            self.config_stale.clone(),
        );
        r.register(
            "report_failures",
            "Source run reports that could not be delivered",
            self.report_failures.clone(),
        );
    }
}
