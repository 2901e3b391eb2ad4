//! Sync configuration: defaults, then `--config` TOML, then `SR_SYNC__…` env.
//!
//! This is the local configuration only: where the bootstrap file and the state live, how hard
//! to retry, how to cut chunks. The integrations themselves arrive from the gateway
//! (`GetConfig`), never from here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sr_runtime::config::ConfigError;
use sr_runtime::telemetry::TelemetryConfig;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The bootstrap file written by identity (`sync.json`: component id, gateway address,
    /// certificate paths relative to the file). `SR_SYNC__BOOTSTRAP_FILE`.
    pub bootstrap_file: PathBuf,
    /// Directory for `state.json` (cached source configs) and `spool/` (result sets waiting to
    /// be pushed). `SR_SYNC__STATE_DIR`.
    pub state_dir: PathBuf,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Ops endpoints.
    pub http: HttpConfig,
    /// The gateway connection.
    pub gateway: GatewayConfig,
    /// Result pushes.
    pub push: PushConfig,
    /// Integration HTTP clients.
    pub integrations: IntegrationsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bootstrap_file: PathBuf::from("/etc/serviceradar/sync/sync.json"),
            state_dir: PathBuf::from("/var/lib/serviceradar/sync"),
            telemetry: TelemetryConfig::default(),
            http: HttpConfig::default(),
            gateway: GatewayConfig::default(),
            push: PushConfig::default(),
            integrations: IntegrationsConfig::default(),
        }
    }
}

/// Ops HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `/healthz`, `/readyz`, `/metrics`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8096)),
        }
    }
}

/// The gateway connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// TCP + TLS connect timeout, milliseconds.
    pub connect_timeout_ms: u64,
    /// Timeout of unary calls (Hello, GetConfig, PushStatus), seconds.
    pub request_timeout_secs: u64,
    /// Timeout of one StreamStatus call (one stream segment), seconds.
    pub stream_timeout_secs: u64,
    /// HTTP/2 keepalive ping interval, seconds (detects a dead gateway between calls).
    pub keepalive_secs: u64,
    /// First reconnect delay, milliseconds; doubles per failed attempt, with jitter.
    pub reconnect_initial_ms: u64,
    /// Longest reconnect delay, milliseconds.
    pub reconnect_max_ms: u64,
    /// Partition sent in Hello (the certificate's partition wins at the gateway).
    pub partition: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            request_timeout_secs: 30,
            stream_timeout_secs: 300,
            keepalive_secs: 30,
            reconnect_initial_ms: 500,
            reconnect_max_ms: 60_000,
            partition: String::new(),
        }
    }
}

impl GatewayConfig {
    /// Reconnect backoff.
    #[must_use]
    pub fn reconnect_backoff(&self) -> crate::backoff::Backoff {
        crate::backoff::Backoff::new(
            Duration::from_millis(self.reconnect_initial_ms),
            Duration::from_millis(self.reconnect_max_ms),
        )
    }
}

/// How result sets are cut and pushed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Byte budget of one chunk's JSON array (hard cap 3.5 MiB, below the 4 MiB gRPC limit).
    pub max_chunk_bytes: usize,
    /// Devices per chunk.
    pub max_devices_per_chunk: usize,
    /// Bytes per StreamStatus call: a larger result set is pushed as several streams (segments),
    /// each below the gateway's per-stream limit (64 MiB by default there).
    pub max_stream_bytes: usize,
    /// Devices per StreamStatus call (the gateway accepts 1 000 000 by default).
    pub max_stream_devices: usize,
    /// First retry delay of a failed push, milliseconds; doubles per attempt, with jitter.
    pub retry_initial_ms: u64,
    /// Longest retry delay, milliseconds. A result set is retried until the source's next run
    /// is due; only then is it dropped for the fresh one.
    pub retry_max_ms: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            max_chunk_bytes: sr_chunking::DEFAULT_MAX_CHUNK_BYTES,
            max_devices_per_chunk: sr_chunking::DEFAULT_MAX_DEVICES_PER_CHUNK,
            max_stream_bytes: 32 * 1024 * 1024,
            max_stream_devices: 200_000,
            retry_initial_ms: 1_000,
            retry_max_ms: 60_000,
        }
    }
}

impl PushConfig {
    /// Retry backoff of a failed push.
    #[must_use]
    pub fn retry_backoff(&self) -> crate::backoff::Backoff {
        crate::backoff::Backoff::new(
            Duration::from_millis(self.retry_initial_ms),
            Duration::from_millis(self.retry_max_ms),
        )
    }
}

/// Integration HTTP clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrationsConfig {
    /// Timeout of one HTTP request, seconds.
    pub http_timeout_secs: u64,
    /// Connect timeout, seconds.
    pub connect_timeout_secs: u64,
    /// Attempts per HTTP request on transient failures (connect errors, timeouts, 5xx, 429).
    pub max_attempts: u32,
    /// First retry delay, milliseconds (doubles, with jitter).
    pub retry_initial_ms: u64,
    /// Longest retry delay, milliseconds.
    pub retry_max_ms: u64,
    /// Consecutive failed runs of a source that open its circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker skips runs before one trial run, seconds.
    pub breaker_cooldown_secs: u64,
    /// How long an Armis access token is reused, seconds (~45 min; less when the token says so).
    pub armis_token_ttl_secs: u64,
    /// Page size when a source sets none.
    pub default_page_size: u32,
    /// Discovery interval of a source that sets none, seconds.
    pub default_discovery_interval_secs: u64,
}

impl Default for IntegrationsConfig {
    fn default() -> Self {
        Self {
            http_timeout_secs: 60,
            connect_timeout_secs: 10,
            max_attempts: 3,
            retry_initial_ms: 500,
            retry_max_ms: 10_000,
            breaker_failures: 3,
            breaker_cooldown_secs: 300,
            armis_token_ttl_secs: 45 * 60,
            default_page_size: 100,
            default_discovery_interval_secs: 3_600,
        }
    }
}

impl IntegrationsConfig {
    /// Retry backoff of HTTP requests.
    #[must_use]
    pub fn retry_backoff(&self) -> crate::backoff::Backoff {
        crate::backoff::Backoff::new(
            Duration::from_millis(self.retry_initial_ms),
            Duration::from_millis(self.retry_max_ms),
        )
    }
}

impl Config {
    /// Checks what serde cannot, reporting every problem.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.bootstrap_file.as_os_str().is_empty() {
            problems.push("bootstrap_file is required".to_owned());
        }
        if self.state_dir.as_os_str().is_empty() {
            problems.push("state_dir is required".to_owned());
        }
        let p = &self.push;
        if let Err(e) = sr_chunking::ChunkLimits::new(p.max_chunk_bytes, p.max_devices_per_chunk) {
            problems.push(format!("push: {e}"));
        }
        if p.max_stream_bytes < p.max_chunk_bytes {
            problems.push("push.max_stream_bytes must be at least push.max_chunk_bytes".to_owned());
        }
        if p.max_stream_devices == 0 {
            problems.push("push.max_stream_devices must be positive".to_owned());
        }
        if p.retry_initial_ms == 0 || p.retry_max_ms < p.retry_initial_ms {
            problems.push(
                "push.retry_initial_ms must be positive and at most push.retry_max_ms".to_owned(),
            );
        }
        let g = &self.gateway;
        if g.reconnect_initial_ms == 0 || g.reconnect_max_ms < g.reconnect_initial_ms {
            problems.push(
                "gateway.reconnect_initial_ms must be positive and at most gateway.reconnect_max_ms"
                    .to_owned(),
            );
        }
        if g.connect_timeout_ms == 0 || g.request_timeout_secs == 0 || g.stream_timeout_secs == 0 {
            problems.push("gateway timeouts must be positive".to_owned());
        }
        let i = &self.integrations;
        if i.http_timeout_secs == 0 || i.connect_timeout_secs == 0 {
            problems.push("integrations timeouts must be positive".to_owned());
        }
        if i.max_attempts == 0 {
            problems.push("integrations.max_attempts must be at least 1".to_owned());
        }
        if i.retry_max_ms < i.retry_initial_ms {
            problems.push(
                "integrations.retry_initial_ms must be at most integrations.retry_max_ms"
                    .to_owned(),
            );
        }
        if i.breaker_failures == 0 {
            problems.push("integrations.breaker_failures must be at least 1".to_owned());
        }
        if i.armis_token_ttl_secs == 0 {
            problems.push("integrations.armis_token_ttl_secs must be positive".to_owned());
        }
        if i.default_page_size == 0 || i.default_page_size > 10_000 {
            problems.push("integrations.default_page_size must be between 1 and 10000".to_owned());
        }
        if i.default_discovery_interval_secs == 0 {
            problems
                .push("integrations.default_discovery_interval_secs must be positive".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The chunk limits (validated by [`Config::validate`]).
    ///
    /// # Errors
    /// When the limits are out of range.
    pub fn chunk_limits(&self) -> Result<sr_chunking::ChunkLimits, ConfigError> {
        sr_chunking::ChunkLimits::new(self.push.max_chunk_bytes, self.push.max_devices_per_chunk)
            .map_err(|e| ConfigError::one(format!("push: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn every_problem_is_reported_together() {
        let mut c = Config::default();
        c.push.max_chunk_bytes = 8 * 1024 * 1024;
        c.push.max_stream_devices = 0;
        c.integrations.max_attempts = 0;
        let e = c.validate().unwrap_err();
        assert_eq!(e.problems.len(), 3, "{e}");
        assert!(e.to_string().contains("max_chunk_bytes must be at most"));
    }

    #[test]
    fn env_sets_the_bootstrap_file_and_nested_keys() {
        let c: Config = sr_runtime::config::load(
            "sync",
            None,
            [
                (
                    "SR_SYNC__BOOTSTRAP_FILE".to_owned(),
                    "/b/sync.json".to_owned(),
                ),
                (
                    "SR_SYNC__PUSH__MAX_CHUNK_BYTES".to_owned(),
                    "65536".to_owned(),
                ),
            ],
            sr_runtime::config::STANDARD_ALIASES,
        )
        .unwrap();
        assert_eq!(c.bootstrap_file, PathBuf::from("/b/sync.json"));
        assert_eq!(c.push.max_chunk_bytes, 65_536);
    }
}
