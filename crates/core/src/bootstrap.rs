//! The minimal bootstrap file a sync service or agent starts from (written by identity at
//! platform bootstrap or onboarding). It names the gateway and the certificate files; it
//! carries no integrations and no tenant: those come from `Hello` and `GetConfig`.

use serde::{Deserialize, Serialize};

/// `sync.json` / `agent.json` in an enrollment bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientBootstrap {
    /// Component id (the CN's first part).
    pub component_id: String,
    /// `host:port` of the gateway.
    pub gateway_address: String,
    /// Name the gateway certificate is verified against.
    pub gateway_server_name: String,
    /// Client certificate chain (PEM), relative to this file's directory unless absolute.
    pub cert_file: String,
    /// Client private key (PEM).
    pub key_file: String,
    /// Root CA that signed the gateway certificate (PEM).
    pub ca_file: String,
}

/// File names used inside a bundle directory.
pub mod files {
    /// Certificate chain.
    pub const CERT: &str = "cert.pem";
    /// Private key.
    pub const KEY: &str = "key.pem";
    /// Root CA.
    pub const CA: &str = "ca.pem";
    /// Bootstrap config of a sync service.
    pub const SYNC_CONFIG: &str = "sync.json";
    /// Bootstrap config of an agent.
    pub const AGENT_CONFIG: &str = "agent.json";
}
