//! Sweepgen configuration: defaults, then `--config` TOML, then `SR_SWEEPGEN__…` env.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use sr_runtime::db::DatabaseConfig;
use sr_runtime::jetstream::NatsConfig;
use sr_runtime::telemetry::TelemetryConfig;
use sr_sweep::{CompileOptions, KNOWN_MODES};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Postgres (schema `sweepgen`).
    pub database: DatabaseConfig,
    /// NATS.
    pub nats: NatsConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Read API and ops endpoints.
    pub http: HttpConfig,
    /// Read API authentication.
    pub api: ApiConfig,
    /// The durable inventory consumer.
    pub consumer: ConsumerConfig,
    /// Compile defaults.
    pub compile: CompileConfig,
    /// The agent-config responder.
    pub rpc: RpcConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database: DatabaseConfig::for_schema("sweepgen"),
            nats: NatsConfig::default(),
            telemetry: TelemetryConfig::default(),
            http: HttpConfig::default(),
            api: ApiConfig::default(),
            consumer: ConsumerConfig::default(),
            compile: CompileConfig::default(),
            rpc: RpcConfig::default(),
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
            listen: SocketAddr::from(([0, 0, 0, 0], 8094)),
        }
    }
}

/// Read API authentication.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Bearer token of `GET /api/v1/…`. Empty disables the read API (every call gets 401).
    pub token: String,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.token.is_empty() { "" } else { "***" };
        f.debug_struct("ApiConfig").field("token", &shown).finish()
    }
}

/// The durable JetStream consumer on `SR_INVENTORY`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Durable name, shared by every replica.
    pub durable: String,
    /// Messages pulled per request.
    pub batch: usize,
    /// Unacknowledged messages the server hands this consumer at most.
    pub max_ack_pending: i64,
    /// How long the server waits for an ack before redelivering, seconds.
    pub ack_wait_secs: u64,
    /// Redelivery delay after a transient failure (database down), milliseconds.
    pub nak_delay_ms: u64,
    /// Tombstones of removed devices are kept this long (they stop an older, redelivered
    /// change from resurrecting a device); keep it above the stream's max age. Seconds.
    pub tombstone_retention_secs: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            durable: "sweepgen".to_owned(),
            batch: 64,
            max_ack_pending: 1_000,
            ack_wait_secs: 60,
            nak_delay_ms: 2_000,
            tombstone_retention_secs: 14 * 86_400,
        }
    }
}

/// Defaults applied where the inventory says nothing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CompileConfig {
    /// Modes of a target whose sources request none.
    pub default_modes: Vec<String>,
    /// Ports of a target whose sources request none (`[22, 443]` in TOML; `22,443` or
    /// `[22,443]` in the environment).
    #[serde(deserialize_with = "ports_from_numbers_or_strings")]
    pub default_ports: Vec<u16>,
    /// Sweep interval when no reporting source has one, seconds.
    pub default_interval_secs: u32,
}

impl Default for CompileConfig {
    fn default() -> Self {
        let d = CompileOptions::default();
        Self {
            default_modes: d.default_modes,
            default_ports: d.default_ports,
            default_interval_secs: d.default_interval_secs,
        }
    }
}

/// Accepts ports as numbers or numeric strings (a comma list from the environment arrives as
/// strings).
fn ports_from_numbers_or_strings<'de, D>(d: D) -> Result<Vec<u16>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(u16),
        Text(String),
    }
    Vec::<Port>::deserialize(d)?
        .into_iter()
        .map(|p| match p {
            Port::Number(n) => Ok(n),
            Port::Text(t) => t
                .trim()
                .parse::<u16>()
                .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a port number"))),
        })
        .collect()
}

impl CompileConfig {
    /// The options handed to `sr-sweep`.
    #[must_use]
    pub fn options(&self) -> CompileOptions {
        CompileOptions {
            default_modes: self.default_modes.clone(),
            default_ports: self.default_ports.clone(),
            default_interval_secs: self.default_interval_secs,
        }
    }
}

/// The agent-config responder (`sr.rpc.sweepgen.agent_config`, queue group `sweepgen`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// Requests answered at once.
    pub concurrency: usize,
    /// Bytes of a reply kept free below the NATS `max_payload` for the envelope.
    pub reply_reserve_bytes: usize,
    /// The largest sweep config served to one agent, bytes of JSON (a config larger than one
    /// reply is sent in parts; beyond this limit the agent is answered with an error).
    pub max_config_bytes: usize,
    /// How long a request waits for its partition to be loaded into memory before it is
    /// answered `unavailable` (the load goes on; keep it below the gateway's NATS request
    /// timeout), milliseconds.
    pub load_wait_ms: u64,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            reply_reserve_bytes: 1_024,
            max_config_bytes: 64 * 1024 * 1024,
            load_wait_ms: 3_000,
        }
    }
}

impl Config {
    /// Checks what serde cannot, reporting every problem.
    ///
    /// # Errors
    /// [`sr_runtime::config::ConfigError`] listing each problem.
    pub fn validate(&self) -> Result<(), sr_runtime::config::ConfigError> {
        let mut problems = Vec::new();
        let c = &self.consumer;
        if c.durable.is_empty()
            || !c
                .durable
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            problems.push(format!(
                "consumer.durable {:?} must be letters, digits, '_' or '-'",
                c.durable
            ));
        }
        if c.batch == 0 || c.max_ack_pending <= 0 || c.ack_wait_secs == 0 {
            problems.push(
                "consumer.batch, consumer.max_ack_pending and consumer.ack_wait_secs must be positive"
                    .to_owned(),
            );
        }
        if c.tombstone_retention_secs < self.nats.stream_max_age_secs {
            problems.push(format!(
                "consumer.tombstone_retention_secs ({}) must be at least nats.stream_max_age_secs ({}), \
                 or a redelivered old change could resurrect a removed device",
                c.tombstone_retention_secs, self.nats.stream_max_age_secs
            ));
        }
        if self.rpc.max_config_bytes < 1024 {
            problems.push(format!(
                "rpc.max_config_bytes ({}) must be at least 1024",
                self.rpc.max_config_bytes
            ));
        }
        let k = &self.compile;
        for mode in &k.default_modes {
            let m = mode.trim().to_ascii_lowercase();
            if !KNOWN_MODES.contains(&m.as_str()) {
                problems.push(format!(
                    "compile.default_modes: unknown mode {mode:?} (use {})",
                    KNOWN_MODES.join(", ")
                ));
            }
        }
        if k.default_modes.is_empty() {
            problems.push("compile.default_modes must not be empty".to_owned());
        }
        if k.default_ports.contains(&0) {
            problems.push("compile.default_ports: 0 is not a port".to_owned());
        }
        if k.default_interval_secs == 0 || i32::try_from(k.default_interval_secs).is_err() {
            problems
                .push("compile.default_interval_secs must be between 1 and 2147483647".to_owned());
        }
        if self.rpc.concurrency == 0 {
            problems.push("rpc.concurrency must be positive".to_owned());
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

    #[test]
    fn defaults_are_valid_and_match_the_contract() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.database.schema, "sweepgen");
        assert_eq!(c.http.listen.port(), 8094);
        assert_eq!(c.consumer.durable, "sweepgen");
        assert_eq!(c.compile.default_modes, ["icmp", "tcp"]);
        assert_eq!(
            c.compile.default_ports,
            [22, 80, 443, 3389, 445, 5985, 5986, 8080]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut c = Config::default();
        c.consumer.durable = "a b".into();
        c.compile.default_modes = vec!["udp".into()];
        c.compile.default_interval_secs = 0;
        c.consumer.tombstone_retention_secs = 1;
        let err = c.validate().unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
    }

    #[test]
    fn env_keys_reach_every_section() {
        let env = [
            ("SR_SWEEPGEN__API__TOKEN", "t0k"),
            ("SR_SWEEPGEN__HTTP__LISTEN", "127.0.0.1:9999"),
            ("SR_SWEEPGEN__COMPILE__DEFAULT_PORTS", "22,443"),
            ("SR_SWEEPGEN__COMPILE__DEFAULT_MODES", "icmp"),
            ("SR_SWEEPGEN__CONSUMER__BATCH", "8"),
            ("DATABASE_URL", "postgres://x@db/sr"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c: Config =
            sr_runtime::config::load("sweepgen", None, env, sr_runtime::config::STANDARD_ALIASES)
                .unwrap();
        assert_eq!(c.api.token, "t0k");
        assert_eq!(c.http.listen.port(), 9999);
        assert_eq!(c.compile.default_ports, [22, 443]);
        assert_eq!(c.compile.default_modes, ["icmp"]);
        assert_eq!(c.consumer.batch, 8);
        assert_eq!(c.database.url, "postgres://x@db/sr");
        assert!(!format!("{c:?}").contains("t0k"));
    }
}
