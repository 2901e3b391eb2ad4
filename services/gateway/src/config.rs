//! Gateway configuration: defaults, then `--config` TOML, then `SR_GATEWAY__…` env.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sr_runtime::jetstream::NatsConfig;
use sr_runtime::telemetry::TelemetryConfig;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// NATS.
    pub nats: NatsConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Ops endpoints.
    pub http: HttpConfig,
    /// The gRPC listener and its TLS files.
    pub grpc: GrpcConfig,
    /// Identity rules.
    pub identity: IdentityConfig,
    /// Input limits.
    pub limits: LimitsConfig,
    /// Values handed to clients.
    pub clients: ClientsConfig,
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
            listen: SocketAddr::from(([0, 0, 0, 0], 8092)),
        }
    }
}

/// gRPC listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// mTLS gRPC address.
    pub listen: SocketAddr,
    /// Server certificate chain (PEM), from identity's bootstrap output.
    pub cert_file: PathBuf,
    /// Server key (PEM).
    pub key_file: PathBuf,
    /// Root CA client certificates must chain to (PEM).
    pub client_ca_file: PathBuf,
    /// Name of this gateway in responses and published messages.
    pub gateway_id: String,
    /// HTTP/2 stream window, bytes (large for WAN clients).
    pub stream_window_bytes: u32,
    /// HTTP/2 connection window, bytes.
    pub connection_window_bytes: u32,
    /// A stream with no message for this long is cancelled and nothing of it is published.
    pub idle_stream_timeout_secs: u64,
    /// TCP keepalive / HTTP2 keepalive interval, seconds.
    pub keepalive_secs: u64,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        let dir = PathBuf::from("/var/lib/serviceradar/bootstrap/gateway");
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50052)),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server-key.pem"),
            client_ca_file: dir.join("client-ca.pem"),
            gateway_id: "gateway".to_owned(),
            stream_window_bytes: 4 * 1024 * 1024,
            connection_window_bytes: 16 * 1024 * 1024,
            idle_stream_timeout_secs: 60,
            keepalive_secs: 30,
        }
    }
}

/// Identity rules shared with the identity service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Reserved slug of the platform tenant.
    pub platform_slug: String,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// How long tenant and component lookups are cached, seconds.
    pub cache_ttl_secs: u64,
    /// How long a negative platform-assignment answer is cached, seconds.
    pub negative_cache_ttl_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            platform_slug: sr_pki::DEFAULT_PLATFORM_SLUG.to_owned(),
            trust_domain: sr_pki::DEFAULT_TRUST_DOMAIN.to_owned(),
            cache_ttl_secs: 30,
            negative_cache_ttl_secs: 2,
        }
    }
}

/// Input limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest gRPC message accepted, bytes.
    pub max_decode_bytes: usize,
    /// Largest gRPC message sent (an agent's sweep config), bytes.
    pub max_response_bytes: usize,
    /// Largest reassembled stream, bytes (beyond: RESOURCE_EXHAUSTED).
    pub max_stream_bytes: usize,
    /// Most service statuses per request or stream.
    pub max_services: usize,
    /// Status messages are truncated to this many bytes.
    pub max_status_message_bytes: usize,
    /// Most devices in one stream.
    pub max_stream_elements: usize,
    /// Streams reassembled at once (beyond: RESOURCE_EXHAUSTED).
    pub max_concurrent_streams: usize,
    /// Bytes buffered by all streams together (beyond: RESOURCE_EXHAUSTED).
    pub max_buffered_bytes: usize,
    /// Bytes kept free in each published message for headers.
    pub header_reserve_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_decode_bytes: 4 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            max_stream_bytes: 64 * 1024 * 1024,
            max_services: 5_000,
            max_status_message_bytes: 4 * 1024,
            max_stream_elements: 1_000_000,
            max_concurrent_streams: 64,
            max_buffered_bytes: 512 * 1024 * 1024,
            header_reserve_bytes: 4 * 1024,
        }
    }
}

/// Values handed to clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientsConfig {
    /// Heartbeat interval for agents (syncs get identity's), seconds.
    pub heartbeat_interval_secs: i32,
    /// Config poll interval for agents, seconds.
    pub config_poll_interval_secs: i32,
}

impl Default for ClientsConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_secs: 30,
            config_poll_interval_secs: 300,
        }
    }
}

impl Config {
    /// Checks what serde cannot, reporting every problem.
    ///
    /// # Errors
    /// [`sr_runtime::config::ConfigError`].
    pub fn validate(&self) -> Result<(), sr_runtime::config::ConfigError> {
        let mut problems = Vec::new();
        let l = &self.limits;
        if l.max_decode_bytes < 1024 || l.max_decode_bytes > 64 * 1024 * 1024 {
            problems.push("limits.max_decode_bytes must be between 1 KiB and 64 MiB".to_owned());
        }
        if l.max_response_bytes < 1024 || l.max_response_bytes > 256 * 1024 * 1024 {
            problems.push("limits.max_response_bytes must be between 1 KiB and 256 MiB".to_owned());
        }
        if l.max_stream_bytes == 0
            || l.max_services == 0
            || l.max_concurrent_streams == 0
            || l.max_stream_elements == 0
        {
            problems.push("limits must be positive".to_owned());
        }
        if l.max_buffered_bytes < l.max_stream_bytes {
            problems.push(
                "limits.max_buffered_bytes must be at least limits.max_stream_bytes".to_owned(),
            );
        }
        if self.grpc.gateway_id.is_empty() {
            problems.push("grpc.gateway_id is required".to_owned());
        }
        if self.grpc.idle_stream_timeout_secs == 0 {
            problems.push("grpc.idle_stream_timeout_secs must be positive".to_owned());
        }
        if let Err(e) = sr_pki::validate_slug(&self.identity.platform_slug) {
            problems.push(format!("identity.platform_slug: {e}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(sr_runtime::config::ConfigError { problems })
        }
    }
}
