//! The local state file: the last source configs received from the gateway, grouped by tenant,
//! so a sync restarted while the gateway is down still knows its sources (it runs them, marked
//! stale, until the gateway answers again).
//!
//! Format (`<state_dir>/state.json`, written atomically with mode 0600 because it holds the
//! decrypted integration credentials):
//! ```json
//! {"format": 1, "component_id": "platform-sync", "saved_at": "2026-11-22T10:00:00Z",
//!  "config_version": "<sha256 hex>", "sync_service_id": "<uuid>", "scope": "platform",
//!  "tenants": {"<tenant uuid>": {"tenant_slug": "acme",
//!                                "sources": {"acme/armis-prod": { SourceConfig }}}}}
//! ```

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sr_core::TenantId;
use sr_core::syncconfig::{Scope, SourceConfig, SyncConfigPayload};
use uuid::Uuid;

/// Version of the file layout.
pub const FORMAT: u32 = 1;

/// File name inside the state directory.
pub const FILE_NAME: &str = "state.json";

/// A source's identity inside the sync: its tenant and its key in the config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Key in the config payload (`<name>` or `<tenant_slug>/<name>`).
    pub key: String,
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.tenant_id, self.key)
    }
}

/// One tenant's sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantSources {
    /// Tenant slug.
    pub tenant_slug: String,
    /// Sources by config key.
    pub sources: BTreeMap<String, SourceConfig>,
}

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// [`FORMAT`].
    pub format: u32,
    /// Component the state belongs to (a file of another component is ignored).
    pub component_id: String,
    /// When it was written.
    pub saved_at: DateTime<Utc>,
    /// Version of the config it holds (sent in Hello and GetConfig).
    pub config_version: String,
    /// The SyncService record.
    #[serde(default)]
    pub sync_service_id: Option<Uuid>,
    /// Platform or tenant scope.
    #[serde(default)]
    pub scope: Option<Scope>,
    /// Per-tenant source configs.
    pub tenants: BTreeMap<TenantId, TenantSources>,
}

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O failure.
    #[error("state file {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a state file of ours.
    #[error("state file {path} is not valid: {reason}")]
    Invalid {
        /// Where.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl State {
    /// Groups a config payload by tenant.
    #[must_use]
    pub fn from_payload(component_id: &str, version: &str, payload: &SyncConfigPayload) -> Self {
        let mut tenants: BTreeMap<TenantId, TenantSources> = BTreeMap::new();
        for (key, source) in &payload.sources {
            tenants
                .entry(source.tenant_id)
                .or_insert_with(|| TenantSources {
                    tenant_slug: source.tenant_slug.clone(),
                    sources: BTreeMap::new(),
                })
                .sources
                .insert(key.clone(), source.clone());
        }
        Self {
            format: FORMAT,
            component_id: component_id.to_owned(),
            saved_at: Utc::now(),
            config_version: version.to_owned(),
            sync_service_id: Some(payload.sync_service_id),
            scope: Some(payload.scope),
            tenants,
        }
    }

    /// Every source, keyed by tenant and config key.
    #[must_use]
    pub fn sources(&self) -> BTreeMap<SourceKey, SourceConfig> {
        self.tenants
            .iter()
            .flat_map(|(tenant_id, t)| {
                t.sources.iter().map(|(key, s)| {
                    (
                        SourceKey {
                            tenant_id: *tenant_id,
                            key: key.clone(),
                        },
                        s.clone(),
                    )
                })
            })
            .collect()
    }

    /// Reads the state file; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// [`StateError`] when it exists but cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Option<Self>, StateError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let state: Self = serde_json::from_slice(&bytes).map_err(|e| StateError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if state.format != FORMAT {
            return Err(StateError::Invalid {
                path: path.to_path_buf(),
                reason: format!("format {} (this sync reads {FORMAT})", state.format),
            });
        }
        Ok(Some(state))
    }

    /// Writes the state file atomically (temporary file, fsync, rename), readable by the owner
    /// only.
    ///
    /// # Errors
    /// [`StateError::Io`].
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| StateError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        tmp.write_all(&bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        // NamedTempFile is created 0600 on Unix; keep it so after the rename.
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn source(tenant: &str, slug: &str) -> SourceConfig {
        serde_json::from_value(serde_json::json!({
            "type": "netbox", "endpoint": "https://nb.example", "credentials": {"api_token": "t"},
            "poll_interval": "5m", "discovery_interval": "1h", "sweep_interval": "1h",
            "partition": "default", "tenant_id": tenant, "tenant_slug": slug,
            "integration_source_id": Uuid::from_u128(9),
        }))
        .unwrap()
    }

    #[test]
    fn a_saved_state_loads_back_grouped_by_tenant() {
        let a = "7a2b1e40-1111-4222-8333-444455556666";
        let b = "8a2b1e40-1111-4222-8333-444455556666";
        let payload = SyncConfigPayload {
            sync_service_id: Uuid::from_u128(1),
            component_id: "platform-sync".into(),
            scope: Scope::Platform,
            sources: BTreeMap::from([
                ("acme/nb".to_owned(), source(a, "acme")),
                ("beta/nb".to_owned(), source(b, "beta")),
                ("acme/nb2".to_owned(), source(a, "acme")),
            ]),
        };
        let state = State::from_payload("platform-sync", "v1", &payload);
        assert_eq!(state.tenants.len(), 2);
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub").join(FILE_NAME);
        state.save(&path).unwrap();
        let back = State::load(&path).unwrap().unwrap();
        assert_eq!(back, state);
        assert_eq!(back.sources().len(), 3);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "state file readable by others: {mode:o}");
    }

    #[test]
    fn a_missing_state_file_is_no_state() {
        assert!(
            State::load(Path::new("/nonexistent/state.json"))
                .unwrap()
                .is_none()
        );
    }
}
