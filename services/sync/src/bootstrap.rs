//! Reading the bootstrap file (`sync.json`, written by identity) and the certificate files it
//! names. Paths in the file are relative to the file's directory unless absolute.

use std::fmt;
use std::path::{Path, PathBuf};

use sr_core::bootstrap::ClientBootstrap;

/// Why the sync cannot start from its bootstrap file.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A file is missing or unreadable.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bootstrap file is not valid.
    #[error("invalid bootstrap file {path}: {reason}")]
    Invalid {
        /// Where.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Everything needed to reach the gateway as this component.
#[derive(Clone)]
pub struct Bootstrap {
    /// Component id (the certificate CN's first part), sent as `agent_id`.
    pub component_id: String,
    /// `host:port` of the gateway.
    pub gateway_address: String,
    /// Name the gateway certificate is verified against.
    pub gateway_server_name: String,
    /// Client certificate chain (PEM).
    pub cert_pem: String,
    /// Client key (PEM). Never printed.
    pub key_pem: String,
    /// Root CA of the gateway certificate (PEM).
    pub ca_pem: String,
}

impl fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bootstrap")
            .field("component_id", &self.component_id)
            .field("gateway_address", &self.gateway_address)
            .field("gateway_server_name", &self.gateway_server_name)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn read(what: &'static str, path: &Path) -> Result<String, BootstrapError> {
    std::fs::read_to_string(path).map_err(|source| BootstrapError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

impl Bootstrap {
    /// Reads `path` and the certificate files it names.
    ///
    /// # Errors
    /// [`BootstrapError`] naming the missing or unreadable file, or what is wrong with the file.
    pub fn load(path: &Path) -> Result<Self, BootstrapError> {
        let text = read("bootstrap file", path)?;
        let invalid = |reason: String| BootstrapError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let b: ClientBootstrap = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let mut problems = Vec::new();
        for (name, value) in [
            ("component_id", &b.component_id),
            ("gateway_address", &b.gateway_address),
            ("gateway_server_name", &b.gateway_server_name),
            ("cert_file", &b.cert_file),
            ("key_file", &b.key_file),
            ("ca_file", &b.ca_file),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{name} is empty"));
            }
        }
        if !b.gateway_address.contains(':') {
            problems.push(format!(
                "gateway_address {:?} must be host:port",
                b.gateway_address
            ));
        }
        if !problems.is_empty() {
            return Err(invalid(problems.join("; ")));
        }
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        Ok(Self {
            cert_pem: read("client certificate", &resolve(&b.cert_file))?,
            key_pem: read("client key", &resolve(&b.key_file))?,
            ca_pem: read("gateway CA", &resolve(&b.ca_file))?,
            component_id: b.component_id,
            gateway_address: b.gateway_address,
            gateway_server_name: b.gateway_server_name,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write_bundle(dir: &Path, with_key: bool) -> PathBuf {
        std::fs::write(dir.join("cert.pem"), "CERT").unwrap();
        if with_key {
            std::fs::write(dir.join("key.pem"), "KEY").unwrap();
        }
        std::fs::write(dir.join("ca.pem"), "CA").unwrap();
        let p = dir.join("sync.json");
        std::fs::write(
            &p,
            r#"{"component_id":"edge-1","gateway_address":"gw:50052","gateway_server_name":"gw",
               "cert_file":"cert.pem","key_file":"key.pem","ca_file":"ca.pem"}"#,
        )
        .unwrap();
        p
    }

    #[test]
    fn relative_paths_resolve_against_the_bootstrap_directory() {
        let d = tempfile::tempdir().unwrap();
        let b = Bootstrap::load(&write_bundle(d.path(), true)).unwrap();
        assert_eq!(b.component_id, "edge-1");
        assert_eq!(b.key_pem, "KEY");
        assert!(!format!("{b:?}").contains("KEY"));
    }

    #[test]
    fn a_missing_key_file_is_named_in_the_error() {
        let d = tempfile::tempdir().unwrap();
        let e = Bootstrap::load(&write_bundle(d.path(), false)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("client key") && text.contains("key.pem"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_bootstrap_file_is_named_in_the_error() {
        let e = Bootstrap::load(Path::new("/nonexistent/sync.json")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/sync.json"));
    }
}
