//! Prometheus metrics of DIRE (prefix `sr_dire_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label of the device outcome counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `created`, `updated`, `merged` or `unchanged`.
    pub outcome: String,
}

/// Label of the counter of group decisions taken ahead.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpeculationLabel {
    /// `decided` (the whole decision was used), `preloaded` (the updates to skip and the rows
    /// of the first lookup, loaded meanwhile, were used), `planned` (the updates to skip and
    /// the first lookup were used), `stale` (another writer changed the scope first) or `found` (a key
    /// assumed new was held by a stored device); the last two were decided again.
    pub result: String,
}

/// All metrics (cheap to clone: handles share their values).
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Pull rounds processed (each a batch of messages).
    pub batches: Counter,
    /// Committed (tenant, partition) transactions.
    pub transactions: Counter,
    /// Devices by outcome.
    pub devices: Family<OutcomeLabel, Counter>,
    /// Merges refused for lack of strong evidence (MAC only).
    pub merges_blocked: Counter,
    /// IPs that moved from one device to another.
    pub ip_churn: Counter,
    /// Conflicting identifier claims kept apart.
    pub identifier_conflicts: Counter,
    /// Messages terminated as undecodable (or failing permanently).
    pub poison_messages: Counter,
    /// Single updates rejected inside otherwise valid messages.
    pub updates_rejected: Counter,
    /// Updates skipped without loading their device: it already holds what they state.
    pub updates_skipped: Counter,
    /// Settled devices remembered, over every scope.
    pub settled_devices: Gauge,
    /// Scopes whose settled devices were loaded from Postgres (first use, or after an error).
    pub settled_loads: Counter,
    /// Lookup keys (identifiers, IPs, uids) left out of state loads: no stored device can hold
    /// them (see [`sr_reconcile::KeyFilter`]).
    pub lookup_keys_skipped: Counter,
    /// Groups decided (or planned) ahead, while the scope's previous group was written, by
    /// result.
    pub speculations: Family<SpeculationLabel, Counter>,
    /// Messages nak'd for a retry.
    pub naks: Counter,
    /// Messages left for this consumer in the stream (`num_pending`).
    pub consumer_lag: Gauge,
    /// Seconds from pull to acknowledgement of a batch.
    pub batch_latency: Histogram,
    /// Inventory change messages published.
    pub inventory_published: Counter,
    /// Events published.
    pub events_published: Counter,
    /// Failed outbox publish rounds.
    pub publish_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            batches: Counter::default(),
            transactions: Counter::default(),
            devices: Family::default(),
            merges_blocked: Counter::default(),
            ip_churn: Counter::default(),
            identifier_conflicts: Counter::default(),
            poison_messages: Counter::default(),
            updates_rejected: Counter::default(),
            updates_skipped: Counter::default(),
            settled_devices: Gauge::default(),
            settled_loads: Counter::default(),
            lookup_keys_skipped: Counter::default(),
            speculations: Family::default(),
            naks: Counter::default(),
            consumer_lag: Gauge::default(),
            batch_latency: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            inventory_published: Counter::default(),
            events_published: Counter::default(),
            publish_failures: Counter::default(),
        }
    }
}

impl Metrics {
    /// Counts `n` devices with `outcome`.
    pub fn count_devices(&self, outcome: &str, n: usize) {
        self.devices
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc_by(n as u64);
    }

    /// Devices counted with `outcome` so far.
    #[must_use]
    pub fn devices_with(&self, outcome: &str) -> u64 {
        self.devices
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .get()
    }

    /// Counts a decision taken ahead with `result`.
    pub fn speculated(&self, result: &str) {
        self.speculations
            .get_or_create(&SpeculationLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Decisions taken ahead counted with `result` so far.
    #[must_use]
    pub fn speculations_with(&self, result: &str) -> u64 {
        self.speculations
            .get_or_create(&SpeculationLabel {
                result: result.to_owned(),
            })
            .get()
    }

    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sr_dire");
        r.register("batches", "Pull rounds processed", self.batches.clone());
        r.register(
            "transactions",
            "Committed (tenant, partition) transactions",
            self.transactions.clone(),
        );
        r.register("devices", "Devices by outcome", self.devices.clone());
        r.register(
            "merges_blocked",
            "Merges refused for lack of strong evidence",
            self.merges_blocked.clone(),
        );
        r.register(
            "ip_churn",
            "IPs that moved between devices",
            self.ip_churn.clone(),
        );
        r.register(
            "identifier_conflicts",
            "Conflicting identifier claims kept apart",
            self.identifier_conflicts.clone(),
        );
        r.register(
            "poison_messages",
            "Messages terminated as undecodable or permanently failing",
            self.poison_messages.clone(),
        );
        r.register(
            "updates_rejected",
            "Single device updates rejected (no IP, bad timestamp, malformed)",
            self.updates_rejected.clone(),
        );
        r.register(
            "updates_skipped",
            "Updates skipped without loading their device, which already holds what they state",
            self.updates_skipped.clone(),
        );
        r.register(
            "settled_devices",
            "Settled devices remembered, over every scope",
            self.settled_devices.clone(),
        );
        r.register(
            "settled_loads",
            "Scopes whose settled devices were loaded from Postgres",
            self.settled_loads.clone(),
        );
        r.register(
            "lookup_keys_skipped",
            "Lookup keys left out of state loads: no stored device can hold them",
            self.lookup_keys_skipped.clone(),
        );
        r.register(
            "speculations",
            "Groups decided or planned while the scope's previous group was written, by result",
            self.speculations.clone(),
        );
        r.register("naks", "Messages nak'd for a retry", self.naks.clone());
        r.register(
            "consumer_lag",
            "Messages pending for the durable consumer",
            self.consumer_lag.clone(),
        );
        r.register(
            "batch_latency_seconds",
            "Seconds from pull to acknowledgement of a batch",
            self.batch_latency.clone(),
        );
        r.register(
            "inventory_changes_published",
            "Inventory change messages published",
            self.inventory_published.clone(),
        );
        r.register(
            "events_published",
            "OCSF events published",
            self.events_published.clone(),
        );
        r.register(
            "outbox_publish_failures",
            "Failed outbox publish rounds",
            self.publish_failures.clone(),
        );
    }
}
