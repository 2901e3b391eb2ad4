//! DIRE configuration: defaults, then `--config` TOML, then `SR_DIRE__…` env.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use sr_runtime::config::ConfigError;
use sr_runtime::db::DatabaseConfig;
use sr_runtime::jetstream::NatsConfig;
use sr_runtime::telemetry::TelemetryConfig;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Postgres (schema `dire`).
    pub database: DatabaseConfig,
    /// NATS.
    pub nats: NatsConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Read API and ops endpoints.
    pub http: HttpConfig,
    /// Read API access.
    pub api: ApiConfig,
    /// The JetStream consumer of device updates.
    pub consumer: ConsumerConfig,
    /// Reconciliation tunables.
    pub reconcile: ReconcileSettings,
    /// Publication of inventory changes and events.
    pub outbox: OutboxConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database: DatabaseConfig::for_schema("dire"),
            nats: NatsConfig::default(),
            telemetry: TelemetryConfig::default(),
            http: HttpConfig::default(),
            api: ApiConfig::default(),
            consumer: ConsumerConfig::default(),
            reconcile: ReconcileSettings::default(),
            outbox: OutboxConfig::default(),
        }
    }
}

/// HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the read API, `/healthz`, `/readyz` and `/metrics`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8091)),
        }
    }
}

/// Read API access.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Bearer token every `/api/v1` request must present (required).
    pub token: String,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.token.is_empty() { "" } else { "***" };
        f.debug_struct("ApiConfig").field("token", &shown).finish()
    }
}

/// The durable pull consumer on the devices stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Durable consumer name, shared by every replica.
    pub durable: String,
    /// Most messages pulled (and reconciled together) per round.
    pub batch_size: usize,
    /// Most payload bytes pulled per round. This is what bounds memory: the gateway fills
    /// messages up to the NATS `max_payload` (about 2 000 devices per MiB), and the decoded
    /// updates of a round take roughly 25 times their payload (4 MiB keeps DIRE near 250 MB).
    pub max_bytes: usize,
    /// How long an idle pull waits for the first message, in milliseconds.
    pub idle_wait_ms: u64,
    /// Server-side ack wait: an unacknowledged message is redelivered after this, in seconds.
    pub ack_wait_secs: u64,
    /// Redelivery delay after a failure (nak), in milliseconds.
    pub nak_delay_ms: u64,
    /// A message that keeps failing for a non-transient reason is terminated and reported as
    /// poison on this delivery. Transient failures (database unavailable) never terminate a
    /// message: the JetStream consumer itself redelivers without limit.
    pub max_deliver: i64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            durable: "dire".to_owned(),
            batch_size: 8,
            max_bytes: 4 * 1024 * 1024,
            idle_wait_ms: 1_000,
            ack_wait_secs: 60,
            nak_delay_ms: 2_000,
            max_deliver: 10,
        }
    }
}

/// Reconciliation tunables.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSettings {
    /// A re-sighting refreshes `last_seen` only when the stored value is at least this old, in
    /// seconds (so re-syncing an unchanged inventory writes no rows).
    pub last_seen_precision_secs: u64,
    /// Skip updates whose device already holds exactly what they state (a re-sync of an
    /// unchanged device, within the `last_seen` precision) without loading the device; see
    /// docs/architecture.md. Off: every update is reconciled against the stored state.
    pub skip_settled: bool,
    /// Most keys (device uids, IPs, identifiers) remembered, over all scopes, of the scopes that
    /// were empty when this replica first used them, so that devices nobody has seen yet are
    /// not looked up in Postgres (2 to 8 bytes a key; see docs/architecture.md). A scope whose
    /// keys would pass it, and every scope at 0, has its lookups go to Postgres. Only used with
    /// `skip_settled`.
    pub key_filter_max_keys: usize,
    /// While a group of updates is written, decide the next pulled batch's group of the same
    /// scope, from what this replica remembers of the scope; the decision is used only if
    /// nobody else wrote the scope meanwhile (see docs/architecture.md). Only used with
    /// `skip_settled`.
    pub decide_ahead: bool,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            last_seen_precision_secs: 900,
            skip_settled: true,
            key_filter_max_keys: 8_000_000,
            decide_ahead: true,
        }
    }
}

/// Publication of the outboxes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Most devices per `InventoryChange` message (keeps messages far below NATS's payload limit).
    pub max_devices_per_message: usize,
    /// How often pending rows are retried without a notification, in milliseconds.
    pub poll_interval_ms: u64,
    /// Rows published per outbox transaction.
    pub publish_batch: i64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_devices_per_message: 500,
            poll_interval_ms: 1_000,
            publish_batch: 64,
        }
    }
}

impl Config {
    /// Checks what serde cannot: every problem, at once.
    ///
    /// # Errors
    /// [`ConfigError`] listing each problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.api.token.trim().is_empty() {
            problems.push("api.token is required (the read API's bearer token)".to_owned());
        }
        let c = &self.consumer;
        if c.durable.is_empty()
            || !c
                .durable
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            problems.push(format!(
                "consumer.durable: {:?} must be letters, digits, '-' or '_'",
                c.durable
            ));
        }
        if c.batch_size == 0 {
            problems.push("consumer.batch_size must be positive".to_owned());
        }
        if c.max_bytes < 1024 * 1024 {
            problems.push("consumer.max_bytes must be at least 1 MiB (one full chunk)".to_owned());
        }
        if c.ack_wait_secs == 0 || c.idle_wait_ms == 0 {
            problems.push("consumer.ack_wait_secs and idle_wait_ms must be positive".to_owned());
        }
        if c.max_deliver < 1 {
            problems.push("consumer.max_deliver must be at least 1".to_owned());
        }
        if self.outbox.max_devices_per_message == 0 || self.outbox.publish_batch <= 0 {
            problems.push(
                "outbox.max_devices_per_message and publish_batch must be positive".to_owned(),
            );
        }
        if self.database.schema.is_empty() {
            problems.push("database.schema is required".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The reconciliation config.
    #[must_use]
    pub fn reconcile_config(&self) -> sr_reconcile::ReconcileConfig {
        sr_reconcile::ReconcileConfig {
            last_seen_precision: chrono::TimeDelta::seconds(
                i64::try_from(self.reconcile.last_seen_precision_secs).unwrap_or(i64::MAX / 1000),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_need_only_a_token() {
        let mut cfg = Config::default();
        assert_eq!(cfg.database.schema, "dire");
        assert_eq!(cfg.http.listen.port(), 8091);
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        cfg.api.token = "t".into();
        cfg.validate().unwrap();
    }

    #[test]
    fn every_problem_is_reported_and_the_token_is_never_shown() {
        let mut cfg = Config::default();
        cfg.api.token = "s3cret".into();
        cfg.consumer.batch_size = 0;
        cfg.consumer.durable = "a b".into();
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn env_overrides_use_the_dire_prefix() {
        let cfg: Config = sr_runtime::config::load(
            "dire",
            None,
            [
                ("SR_DIRE__API__TOKEN".to_owned(), "x".to_owned()),
                ("SR_DIRE__CONSUMER__BATCH_SIZE".to_owned(), "7".to_owned()),
                (
                    "SR_DIRE__RECONCILE__LAST_SEEN_PRECISION_SECS".to_owned(),
                    "60".to_owned(),
                ),
            ],
            sr_runtime::config::STANDARD_ALIASES,
        )
        .unwrap();
        assert_eq!(cfg.api.token, "x");
        assert_eq!(cfg.consumer.batch_size, 7);
        assert_eq!(
            cfg.reconcile_config().last_seen_precision,
            chrono::TimeDelta::minutes(1)
        );
    }
}
