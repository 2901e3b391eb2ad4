//! Identity configuration: defaults, then `--config` TOML, then `SR_IDENTITY__…` env.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sr_runtime::db::DatabaseConfig;
use sr_runtime::jetstream::NatsConfig;
use sr_runtime::telemetry::TelemetryConfig;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Postgres (schema `identity`).
    pub database: DatabaseConfig,
    /// NATS.
    pub nats: NatsConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Admin API and ops endpoints.
    pub http: HttpConfig,
    /// Platform bootstrap.
    pub bootstrap: BootstrapConfig,
    /// Encryption of CA keys and integration credentials.
    pub secrets: SecretsConfig,
    /// Sync service liveness.
    pub status: StatusConfig,
    /// Intervals handed to sync services.
    pub sync: SyncConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database: DatabaseConfig::for_schema("identity"),
            nats: NatsConfig::default(),
            telemetry: TelemetryConfig::default(),
            http: HttpConfig::default(),
            bootstrap: BootstrapConfig::default(),
            secrets: SecretsConfig::default(),
            status: StatusConfig::default(),
            sync: SyncConfig::default(),
        }
    }
}

/// HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the admin API, `/healthz`, `/readyz` and `/metrics`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8090)),
        }
    }
}

/// What the platform bootstrap creates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// Where certificates, bundles and the admin token are written.
    pub output_dir: PathBuf,
    /// Reserved slug of the platform tenant.
    pub platform_slug: String,
    /// Platform tenant id to use at first bootstrap (random when empty; never the nil UUID).
    pub platform_tenant_id: String,
    /// SPIFFE trust domain of platform certificates.
    pub trust_domain: String,
    /// Address sync services and agents dial (`host:port`), written into bundles.
    pub gateway_address: String,
    /// TLS server name clients verify the gateway certificate against.
    pub gateway_server_name: String,
    /// DNS names in the gateway certificate.
    pub gateway_dns_names: Vec<String>,
    /// IP addresses in the gateway certificate.
    pub gateway_ip_addresses: Vec<String>,
    /// Whether to create the platform sync service and its certificate.
    pub platform_sync: bool,
    /// Validity of component certificates, in days.
    pub leaf_validity_days: u32,
    /// Certificates expiring within this many days are reissued at start.
    pub renew_before_days: u32,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            output_dir: PathBuf::from("/var/lib/serviceradar/bootstrap"),
            platform_slug: "platform".to_owned(),
            platform_tenant_id: String::new(),
            trust_domain: "serviceradar.local".to_owned(),
            gateway_address: "localhost:50052".to_owned(),
            gateway_server_name: "localhost".to_owned(),
            gateway_dns_names: vec!["localhost".to_owned(), "gateway".to_owned()],
            gateway_ip_addresses: vec!["127.0.0.1".to_owned()],
            platform_sync: true,
            leaf_validity_days: 365,
            renew_before_days: 30,
        }
    }
}

/// Encryption at rest and the admin token.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Base64 of a 32-byte AES-256-GCM key.
    pub encryption_key: String,
    /// File holding the base64 key (used when `encryption_key` is empty).
    pub encryption_key_file: String,
    /// Development mode: without a key, one is generated into the output directory.
    pub dev_mode: bool,
    /// Admin API bearer token; when empty, one is generated at first bootstrap and written to
    /// `<output_dir>/admin-token`.
    pub admin_token: String,
}

impl std::fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |s: &str| if s.is_empty() { "" } else { "***" };
        f.debug_struct("SecretsConfig")
            .field("encryption_key", &shown(&self.encryption_key))
            .field("encryption_key_file", &self.encryption_key_file)
            .field("dev_mode", &self.dev_mode)
            .field("admin_token", &shown(&self.admin_token))
            .finish()
    }
}

/// Sync liveness rules.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// A sync with no heartbeat for longer than this is offline, in seconds.
    pub offline_after_secs: u64,
    /// How often the offline check runs, in seconds.
    pub check_interval_secs: u64,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            offline_after_secs: 120,
            check_interval_secs: 15,
        }
    }
}

/// Intervals handed to sync services in `GetConfig`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Heartbeat interval (clamped to 10 s – 10 min).
    pub heartbeat_interval_secs: i32,
    /// Config poll interval (clamped to 30 s – 24 h).
    pub config_poll_interval_secs: i32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_secs: sr_core::syncconfig::DEFAULT_HEARTBEAT_SECS,
            config_poll_interval_secs: sr_core::syncconfig::DEFAULT_CONFIG_POLL_SECS,
        }
    }
}

impl Config {
    /// Checks what serde cannot: every problem, at once.
    ///
    /// # Errors
    /// [`sr_runtime::config::ConfigError`] listing each problem.
    pub fn validate(&self) -> Result<(), sr_runtime::config::ConfigError> {
        let mut problems = Vec::new();
        let b = &self.bootstrap;
        if let Err(e) = sr_pki::names::validate_slug(&b.platform_slug) {
            problems.push(format!("bootstrap.platform_slug: {e}"));
        }
        if !b.platform_tenant_id.is_empty()
            && let Err(e) = b.platform_tenant_id.parse::<sr_core::TenantId>()
        {
            problems.push(format!("bootstrap.platform_tenant_id: {e}"));
        }
        if b.trust_domain.is_empty()
            || !b
                .trust_domain
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".-_".contains(&c))
        {
            problems.push(format!(
                "bootstrap.trust_domain: invalid trust domain {:?}",
                b.trust_domain
            ));
        }
        for ip in &b.gateway_ip_addresses {
            if ip.parse::<std::net::IpAddr>().is_err() {
                problems.push(format!(
                    "bootstrap.gateway_ip_addresses: {ip:?} is not an IP address"
                ));
            }
        }
        if b.leaf_validity_days == 0 {
            problems.push("bootstrap.leaf_validity_days must be positive".to_owned());
        }
        if b.output_dir.as_os_str().is_empty() {
            problems.push("bootstrap.output_dir is required".to_owned());
        }
        let s = &self.secrets;
        if !s.dev_mode && s.encryption_key.is_empty() && s.encryption_key_file.is_empty() {
            problems.push(
                "secrets.encryption_key or secrets.encryption_key_file is required outside dev mode \
                 (set SR_IDENTITY__SECRETS__DEV_MODE=true for local development)"
                    .to_owned(),
            );
        }
        if !s.encryption_key.is_empty()
            && crate::seal::Sealer::from_base64(&s.encryption_key).is_err()
        {
            problems.push("secrets.encryption_key must be base64 of exactly 32 bytes".to_owned());
        }
        if self.status.offline_after_secs == 0 || self.status.check_interval_secs == 0 {
            problems.push("status intervals must be positive".to_owned());
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
    fn nil_platform_tenant_id_is_a_startup_error() {
        let mut cfg = Config::default();
        cfg.secrets.dev_mode = true;
        cfg.bootstrap.platform_tenant_id = "00000000-0000-0000-0000-000000000000".into();
        let err = cfg.validate().unwrap_err();
        assert!(err.to_string().contains("nil UUID"), "{err}");
    }

    #[test]
    fn missing_encryption_key_outside_dev_mode_is_rejected_with_every_other_problem() {
        let mut cfg = Config::default();
        cfg.bootstrap.platform_slug = "Not A Slug".into();
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.to_string().contains("encryption_key"));
        assert!(err.to_string().contains("platform_slug"));
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let mut cfg = Config::default();
        cfg.secrets.admin_token = "tok-123".into();
        cfg.secrets.encryption_key = "a2V5".into();
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("tok-123") && !shown.contains("a2V5"),
            "{shown}"
        );
    }
}
