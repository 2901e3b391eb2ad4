//! Events service configuration: defaults, then `--config` TOML, then `SR_EVENTS__…` env.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sr_core::duration;
use sr_runtime::db::DatabaseConfig;
use sr_runtime::jetstream::NatsConfig;
use sr_runtime::telemetry::TelemetryConfig;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Postgres (schema `events`).
    pub database: DatabaseConfig,
    /// NATS.
    pub nats: NatsConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Read API and ops endpoints.
    pub http: HttpConfig,
    /// Read API access.
    pub api: ApiConfig,
    /// The durable JetStream consumer.
    pub consumer: ConsumerConfig,
    /// How long events are kept.
    pub retention: RetentionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database: DatabaseConfig::for_schema("events"),
            nats: NatsConfig::default(),
            telemetry: TelemetryConfig::default(),
            http: HttpConfig::default(),
            api: ApiConfig::default(),
            consumer: ConsumerConfig::default(),
            retention: RetentionConfig::default(),
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
            listen: SocketAddr::from(([0, 0, 0, 0], 8093)),
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
        f.debug_struct("ApiConfig")
            .field("token", &if self.token.is_empty() { "" } else { "***" })
            .finish()
    }
}

/// The durable consumer on `SR_EVENTS`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Durable consumer name, shared by every replica.
    pub durable: String,
    /// Most messages stored by one insert statement and one transaction.
    pub batch_size: usize,
    /// How long a batch waits for more messages once the first one arrived, in milliseconds.
    pub batch_linger_ms: u64,
    /// Batches written concurrently by one replica (each on its own connection).
    pub writers: usize,
    /// How long JetStream waits for an ack before redelivering (`30s`, `2m`).
    pub ack_wait: String,
    /// Redelivery delay after a transient database error (`5s`).
    pub nak_delay: String,
    /// Most unacknowledged messages the server hands out to all replicas together.
    pub max_ack_pending: i64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            durable: "events".to_owned(),
            batch_size: 1_000,
            batch_linger_ms: 20,
            writers: 2,
            ack_wait: "30s".to_owned(),
            nak_delay: "5s".to_owned(),
            max_ack_pending: 20_000,
        }
    }
}

impl ConsumerConfig {
    /// `ack_wait` as a duration (30 s when unparsable; [`Config::validate`] reports it).
    #[must_use]
    pub fn ack_wait(&self) -> Duration {
        secs_or(&self.ack_wait, 30)
    }

    /// `nak_delay` as a duration (5 s when unparsable).
    #[must_use]
    pub fn nak_delay(&self) -> Duration {
        secs_or(&self.nak_delay, 5)
    }
}

/// Retention of stored and quarantined events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Events whose `time` is older than this are deleted (`30d`).
    pub max_age: String,
    /// How often retention runs (`10m`).
    pub interval: String,
    /// Rows removed per DELETE statement; retention loops until nothing old is left.
    pub delete_batch: i64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_age: "30d".to_owned(),
            interval: "10m".to_owned(),
            delete_batch: 10_000,
        }
    }
}

impl RetentionConfig {
    /// `max_age` as a duration (30 days when unparsable).
    #[must_use]
    pub fn max_age(&self) -> Duration {
        secs_or(&self.max_age, 30 * 86_400)
    }

    /// `interval` as a duration (10 minutes when unparsable).
    #[must_use]
    pub fn interval(&self) -> Duration {
        secs_or(&self.interval, 600)
    }
}

fn secs_or(text: &str, fallback: u64) -> Duration {
    Duration::from_secs(duration::parse_secs(text).unwrap_or(fallback))
}

impl Config {
    /// Checks what serde cannot: every problem, at once.
    ///
    /// # Errors
    /// [`sr_runtime::config::ConfigError`] listing each problem.
    pub fn validate(&self) -> Result<(), sr_runtime::config::ConfigError> {
        let mut problems = Vec::new();
        if self.api.token.trim().is_empty() {
            problems.push(
                "api.token is required: the read API only answers requests with this bearer token \
                 (set SR_EVENTS__API__TOKEN)"
                    .to_owned(),
            );
        }
        let c = &self.consumer;
        if c.durable.is_empty()
            || !c
                .durable
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            problems.push(format!(
                "consumer.durable: {:?} is not a valid consumer name (letters, digits, _ and -)",
                c.durable
            ));
        }
        if !(1..=10_000).contains(&c.batch_size) {
            problems.push("consumer.batch_size must be between 1 and 10000".to_owned());
        }
        if !(1..=16).contains(&c.writers) {
            problems.push("consumer.writers must be between 1 and 16".to_owned());
        }
        if c.max_ack_pending < i64::try_from(c.batch_size).unwrap_or(i64::MAX) {
            problems
                .push("consumer.max_ack_pending must be at least consumer.batch_size".to_owned());
        }
        let r = &self.retention;
        for (key, text) in [
            ("consumer.ack_wait", &c.ack_wait),
            ("consumer.nak_delay", &c.nak_delay),
            ("retention.max_age", &r.max_age),
            ("retention.interval", &r.interval),
        ] {
            match duration::parse_secs(text) {
                Ok(0) => problems.push(format!("{key} must be positive")),
                Ok(_) => {}
                Err(e) => problems.push(format!("{key}: {e}")),
            }
        }
        if r.delete_batch <= 0 {
            problems.push("retention.delete_batch must be positive".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(sr_runtime::config::ConfigError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.http.listen.to_string(), "0.0.0.0:8093");
        assert_eq!(c.database.schema, "events");
        assert_eq!(c.consumer.durable, "events");
        assert_eq!(c.retention.max_age(), Duration::from_secs(30 * 86_400));
        assert_eq!(c.retention.delete_batch, 10_000);
    }

    #[test]
    fn every_section_is_settable_from_the_environment() {
        let c: Config = sr_runtime::config::load(
            "events",
            None,
            env(&[
                ("SR_EVENTS__API__TOKEN", "t0k"),
                ("SR_EVENTS__HTTP__LISTEN", "127.0.0.1:9000"),
                ("SR_EVENTS__CONSUMER__BATCH_SIZE", "250"),
                ("SR_EVENTS__CONSUMER__ACK_WAIT", "1m"),
                ("SR_EVENTS__RETENTION__MAX_AGE", "7d"),
                ("SR_EVENTS__DATABASE__SCHEMA", "ev"),
                ("NATS_URL", "nats://nats:4222"),
            ]),
            sr_runtime::config::STANDARD_ALIASES,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.api.token, "t0k");
        assert_eq!(c.http.listen.port(), 9000);
        assert_eq!(c.consumer.batch_size, 250);
        assert_eq!(c.consumer.ack_wait(), Duration::from_secs(60));
        assert_eq!(c.retention.max_age(), Duration::from_secs(7 * 86_400));
        assert_eq!(c.database.schema, "ev");
        assert_eq!(c.nats.url, "nats://nats:4222");
    }

    #[test]
    fn every_problem_is_reported_together() {
        let mut c = Config::default();
        c.consumer.batch_size = 0;
        c.consumer.nak_delay = "soon".into();
        c.retention.max_age = "0".into();
        let err = c.validate().unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
        let text = err.to_string();
        for needle in [
            "api.token",
            "batch_size",
            "consumer.nak_delay",
            "retention.max_age",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }

    #[test]
    fn the_token_never_appears_in_debug_output() {
        let mut c = Config::default();
        c.api.token = "very-secret".into();
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
