//! The `config_json` payload a sync service receives in `GetConfig` (CONTRACT §1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::TenantId;

/// Default heartbeat interval in seconds.
pub const DEFAULT_HEARTBEAT_SECS: i32 = 30;
/// Default `GetConfig` poll interval in seconds.
pub const DEFAULT_CONFIG_POLL_SECS: i32 = 300;

/// Clamps a heartbeat interval to 10 s – 10 min.
#[must_use]
pub fn clamp_heartbeat_secs(secs: i32) -> i32 {
    secs.clamp(10, 600)
}

/// Clamps a config poll interval to 30 s – 24 h.
#[must_use]
pub fn clamp_config_poll_secs(secs: i32) -> i32 {
    secs.clamp(30, 86_400)
}

/// Whether the payload is for a tenant's own sync or the platform sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The platform sync: sources of many tenants, keyed `<tenant_slug>/<name>`.
    Platform,
    /// An edge sync: its tenant's sources, keyed `<name>`.
    Tenant,
}

/// The whole payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncConfigPayload {
    /// The SyncService record.
    pub sync_service_id: Uuid,
    /// Its component id.
    pub component_id: String,
    /// Platform or tenant scope.
    pub scope: Scope,
    /// Sources by key; empty means "stop every source".
    pub sources: BTreeMap<String, SourceConfig>,
}

impl SyncConfigPayload {
    /// Content hash: lower-case hex sha256 of the payload with keys sorted recursively.
    #[must_use]
    pub fn config_version(&self) -> String {
        crate::content_hash(self)
    }

    /// The map key of a source in a payload of `scope`.
    #[must_use]
    pub fn source_key(scope: Scope, tenant_slug: &str, name: &str) -> String {
        match scope {
            Scope::Platform => format!("{tenant_slug}/{name}"),
            Scope::Tenant => name.to_owned(),
        }
    }
}

/// One Armis AQL query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceQuery {
    /// Label reported on devices it finds.
    pub label: String,
    /// The AQL text.
    pub query: String,
    /// Sweep modes for devices it finds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep_modes: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One integration source as the sync runs it. Empty values are omitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceConfig {
    /// `armis` or `netbox`.
    #[serde(rename = "type")]
    pub source_type: String,
    /// Base URL.
    pub endpoint: String,
    /// Decrypted credentials (only ever here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, String>,
    /// Armis queries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<SourceQuery>,
    /// e.g. `5m`.
    pub poll_interval: String,
    /// e.g. `1h`.
    pub discovery_interval: String,
    /// e.g. `1h`.
    pub sweep_interval: String,
    /// Agent that should sweep the devices.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent_id: String,
    /// Partition (default `default`).
    pub partition: String,
    /// CIDRs whose devices are dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_blacklist: Vec<String>,
    /// Page size for the integration's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// Skip TLS verification of the integration endpoint.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_skip_verify: bool,
    /// Source-specific settings (`tcp_ports`, `expand_subnets`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Owning tenant's slug.
    pub tenant_slug: String,
    /// The IntegrationSource record.
    pub integration_source_id: Uuid,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn source(name: &str) -> SourceConfig {
        SourceConfig {
            source_type: "armis".into(),
            endpoint: format!("https://{name}.example"),
            credentials: BTreeMap::from([("secret_key".into(), "s".into())]),
            queries: vec![],
            poll_interval: "5m".into(),
            discovery_interval: "1h".into(),
            sweep_interval: "1h".into(),
            agent_id: String::new(),
            partition: "default".into(),
            network_blacklist: vec![],
            page_size: Some(100),
            insecure_skip_verify: false,
            settings: BTreeMap::new(),
            tenant_id: "7a2b1e40-1111-4222-8333-444455556666".parse().unwrap(),
            tenant_slug: "acme".into(),
            integration_source_id: Uuid::from_u128(7),
        }
    }

    #[test]
    fn config_version_ignores_insertion_order_and_tracks_content() {
        let mut a = SyncConfigPayload {
            sync_service_id: Uuid::from_u128(1),
            component_id: "platform-sync".into(),
            scope: Scope::Platform,
            sources: BTreeMap::new(),
        };
        a.sources.insert("acme/one".into(), source("one"));
        a.sources.insert("acme/two".into(), source("two"));
        let mut b = a.clone();
        b.sources = BTreeMap::new();
        b.sources.insert("acme/two".into(), source("two"));
        b.sources.insert("acme/one".into(), source("one"));
        assert_eq!(a.config_version(), b.config_version());
        assert_eq!(a.config_version().len(), 64);
        b.sources.get_mut("acme/one").unwrap().endpoint = "https://changed".into();
        assert_ne!(a.config_version(), b.config_version());
    }

    #[test]
    fn empty_values_are_omitted_from_the_payload() {
        let v = serde_json::to_value(source("x")).unwrap();
        for absent in [
            "queries",
            "agent_id",
            "network_blacklist",
            "insecure_skip_verify",
            "settings",
        ] {
            assert!(v.get(absent).is_none(), "{absent} present");
        }
        assert_eq!(v["type"], "armis");
    }

    #[test]
    fn intervals_are_clamped_to_their_bounds() {
        assert_eq!(clamp_heartbeat_secs(1), 10);
        assert_eq!(clamp_heartbeat_secs(30), 30);
        assert_eq!(clamp_heartbeat_secs(10_000), 600);
        assert_eq!(clamp_config_poll_secs(5), 30);
        assert_eq!(clamp_config_poll_secs(1_000_000), 86_400);
    }

    #[test]
    fn source_keys_depend_on_scope() {
        assert_eq!(
            SyncConfigPayload::source_key(Scope::Platform, "acme", "armis"),
            "acme/armis"
        );
        assert_eq!(
            SyncConfigPayload::source_key(Scope::Tenant, "acme", "armis"),
            "armis"
        );
    }
}
