//! The agent's enrollment bundle: the bootstrap JSON (`agent.json`, an
//! `sr_core::bootstrap::ClientBootstrap`) and the certificate files it names, relative to the
//! JSON's directory unless absolute.

use std::path::{Path, PathBuf};

use sr_core::bootstrap::ClientBootstrap;

/// Why an enrollment cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    /// A file cannot be read.
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
    /// The bootstrap JSON is not valid.
    #[error("{path} is not a valid agent bootstrap file: {message}")]
    Invalid {
        /// Where.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// A loaded enrollment: who the agent is, where the gateway is, and its TLS material.
#[derive(Clone)]
pub struct Enrollment {
    /// Component id (the agent id; the certificate CN's first part).
    pub component_id: String,
    /// `host:port` of the gateway.
    pub gateway_address: String,
    /// Name the gateway certificate is verified against.
    pub gateway_server_name: String,
    /// Client certificate chain (PEM).
    pub cert_pem: String,
    /// Client private key (PEM).
    pub key_pem: String,
    /// Root CA of the gateway certificate (PEM).
    pub ca_pem: String,
    /// Directory of the bootstrap file.
    pub dir: PathBuf,
}

impl std::fmt::Debug for Enrollment {
    // The private key never appears in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment")
            .field("component_id", &self.component_id)
            .field("gateway_address", &self.gateway_address)
            .field("gateway_server_name", &self.gateway_server_name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn read(what: &'static str, path: &Path) -> Result<String, EnrollmentError> {
    std::fs::read_to_string(path).map_err(|source| EnrollmentError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

impl Enrollment {
    /// Loads `agent.json` and the files it names.
    ///
    /// # Errors
    /// [`EnrollmentError`] when a file is missing or the JSON is invalid.
    pub fn load(bootstrap: &Path) -> Result<Self, EnrollmentError> {
        let text = read("bootstrap file", bootstrap)?;
        let cfg: ClientBootstrap =
            serde_json::from_str(&text).map_err(|e| EnrollmentError::Invalid {
                path: bootstrap.to_path_buf(),
                message: e.to_string(),
            })?;
        let invalid = |message: &str| EnrollmentError::Invalid {
            path: bootstrap.to_path_buf(),
            message: message.to_owned(),
        };
        if cfg.component_id.trim().is_empty() {
            return Err(invalid("component_id is empty"));
        }
        if cfg.gateway_address.trim().is_empty() {
            return Err(invalid("gateway_address is empty"));
        }
        let dir = match bootstrap.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        Ok(Self {
            component_id: cfg.component_id.trim().to_owned(),
            gateway_address: cfg.gateway_address.trim().to_owned(),
            gateway_server_name: cfg.gateway_server_name.trim().to_owned(),
            cert_pem: read("certificate", &resolve(&cfg.cert_file))?,
            key_pem: read("private key", &resolve(&cfg.key_file))?,
            ca_pem: read("CA certificate", &resolve(&cfg.ca_file))?,
            dir,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bundle(dir: &Path, cert_file: &str) -> PathBuf {
        std::fs::write(dir.join("cert.pem"), "CERT").unwrap();
        std::fs::write(dir.join("key.pem"), "KEY").unwrap();
        std::fs::write(dir.join("ca.pem"), "CA").unwrap();
        let path = dir.join("agent.json");
        let json = serde_json::json!({
            "component_id": "agent-1",
            "gateway_address": "gw:50052",
            "gateway_server_name": "gateway",
            "cert_file": cert_file,
            "key_file": "key.pem",
            "ca_file": "ca.pem",
        });
        std::fs::write(&path, json.to_string()).unwrap();
        path
    }

    #[test]
    fn files_are_read_relative_to_the_bootstrap_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = Enrollment::load(&bundle(dir.path(), "cert.pem")).unwrap();
        assert_eq!(e.component_id, "agent-1");
        assert_eq!((e.cert_pem.as_str(), e.key_pem.as_str()), ("CERT", "KEY"));
        assert!(!format!("{e:?}").contains("KEY\""));
    }

    #[test]
    fn absolute_paths_are_kept_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let abs = dir.path().join("cert.pem");
        let e = Enrollment::load(&bundle(dir.path(), abs.to_str().unwrap())).unwrap();
        assert_eq!(e.cert_pem, "CERT");
        let err = Enrollment::load(&bundle(dir.path(), "missing.pem")).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
