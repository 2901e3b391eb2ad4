//! `sweep.json`: the file contract between this config client and a sweeper.
//!
//! # Format `sr-agent/sweep/v1`
//!
//! ```json
//! {
//!   "format": "sr-agent/sweep/v1",
//!   "agent_id": "agent-1",
//!   "config_version": "5f1c…(sha256 hex)",
//!   "config_timestamp": 1767225600,
//!   "written_at": "2026-12-01T10:00:00Z",
//!   "networks": ["10.0.0.0/31", "2001:db8::1/128"],
//!   "device_targets": [
//!     { "network": "10.0.0.0/32", "sweep_modes": ["icmp", "tcp"], "query_label": "servers",
//!       "source": "armis", "ports": [22, 443],
//!       "metadata": { "device_uid": "sr:…", "query_label": "servers", "source": "armis" } }
//!   ],
//!   "sweep_modes": ["icmp", "tcp"],
//!   "sweep_interval_sec": 3600,
//!   "ports": [22, 443]
//! }
//! ```
//!
//! What a sweeper reads:
//! - `device_targets` is the work list: one host (`/32` IPv4, `/128` IPv6) each, with the modes
//!   to use on it (`icmp`, `tcp` = SYN, `tcp_connect`) and, for TCP modes, the ports to probe.
//!   `source`, `query_label` and `metadata` identify the inventory device (echo
//!   `metadata.device_uid` in results); they do not change how to probe.
//! - `networks` is the exact, minimal CIDR cover of the target addresses (never wider): use it
//!   for scoping or filtering results, not to sweep whole ranges.
//! - `sweep_modes` and `ports` are the unions over the targets; `sweep_interval_sec` is how
//!   often to run a full sweep.
//! - An empty `device_targets` means "sweep nothing" (the agent has no devices).
//! - `config_version` changes exactly when the content changes; a sweeper may compare it to
//!   skip reloading. `written_at` is informational.
//!
//! Rules:
//! - The file is replaced atomically (written to a temporary file in the same directory,
//!   synced, then renamed over `sweep.json`): a reader sees the old or the new file, never a
//!   partial one. Re-open the path on change (inotify/mtime); do not keep the old descriptor.
//! - It is written only when the gateway sends a new config. When the gateway is unreachable,
//!   refuses, or sends no sweep section, the existing file stays as it is (fallback).
//! - Readers must ignore fields they do not know; an incompatible change gets a new `format`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The value of [`SweepFile::format`].
pub const FORMAT: &str = "sr-agent/sweep/v1";

/// One host to sweep (the proto `DeviceTarget`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileTarget {
    /// `a.b.c.d/32` or `x::y/128`.
    pub network: String,
    /// Modes to use on this host.
    pub sweep_modes: Vec<String>,
    /// Query label(s) of the reporting source(s), comma-joined.
    pub query_label: String,
    /// Reporting source(s), comma-joined.
    pub source: String,
    /// Ports for TCP modes.
    pub ports: Vec<i32>,
    /// `device_uid`, `source`, `query_label`.
    pub metadata: BTreeMap<String, String>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SweepFile {
    /// [`FORMAT`].
    pub format: String,
    /// The agent the config is for.
    pub agent_id: String,
    /// Content hash of the config (as sent by the gateway).
    pub config_version: String,
    /// Unix seconds since this version exists.
    pub config_timestamp: i64,
    /// When this file was written (RFC 3339).
    pub written_at: String,
    /// Exact minimal CIDR cover of the targets.
    pub networks: Vec<String>,
    /// Hosts to sweep.
    pub device_targets: Vec<FileTarget>,
    /// Union of the targets' modes.
    pub sweep_modes: Vec<String>,
    /// Full sweep interval, seconds.
    pub sweep_interval_sec: i32,
    /// Union of the targets' ports.
    pub ports: Vec<i32>,
}

impl SweepFile {
    /// The file for a `GetConfig` answer's sweep section.
    #[must_use]
    pub fn from_proto(
        agent_id: &str,
        config_version: &str,
        config_timestamp: i64,
        sweep: sr_proto::SweepConfig,
    ) -> Self {
        Self {
            format: FORMAT.to_owned(),
            agent_id: agent_id.to_owned(),
            config_version: config_version.to_owned(),
            config_timestamp,
            written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            networks: sweep.networks,
            device_targets: sweep
                .device_targets
                .into_iter()
                .map(|t| FileTarget {
                    network: t.network,
                    sweep_modes: t.sweep_modes,
                    query_label: t.query_label,
                    source: t.source,
                    ports: t.ports,
                    metadata: t.metadata.into_iter().collect(),
                })
                .collect(),
            sweep_modes: sweep.sweep_modes,
            sweep_interval_sec: sweep.sweep_interval_sec,
            ports: sweep.ports,
        }
    }

    /// Reads a file.
    ///
    /// # Errors
    /// I/O errors, and `InvalidData` when it is not a sweep file.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a sweep file: {e}", path.display()),
            )
        })
    }

    /// Writes the file atomically: a temporary file in the same directory, synced, renamed
    /// over `path`, then the directory synced.
    ///
    /// # Errors
    /// I/O errors (the previous file is then left as it was).
    pub fn write_atomic(&self, path: &Path) -> std::io::Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)?;
        let name = path
            .file_name()
            .map_or_else(|| "sweep.json".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            serde_json::to_writer_pretty(&mut file, self)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> sr_proto::SweepConfig {
        sr_proto::SweepConfig {
            networks: vec!["10.0.0.1/32".into()],
            device_targets: vec![sr_proto::DeviceTarget {
                network: "10.0.0.1/32".into(),
                sweep_modes: vec!["icmp".into()],
                query_label: "q".into(),
                source: "armis".into(),
                metadata: [("device_uid".to_owned(), "sr:1".to_owned())].into(),
                ports: vec![],
            }],
            sweep_modes: vec!["icmp".into()],
            sweep_interval_sec: 600,
            ports: vec![],
        }
    }

    #[test]
    fn a_written_file_reads_back_identically_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.json");
        let file = SweepFile::from_proto("agent-1", "v1", 42, sample());
        file.write_atomic(&path).unwrap();
        assert_eq!(SweepFile::read(&path).unwrap(), file);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["sweep.json"]);
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["format"], FORMAT);
        assert_eq!(raw["device_targets"][0]["metadata"]["device_uid"], "sr:1");
    }

    #[test]
    fn unknown_fields_are_ignored_and_garbage_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.json");
        std::fs::write(&path, r#"{"config_version":"v9","future":1}"#).unwrap();
        assert_eq!(SweepFile::read(&path).unwrap().config_version, "v9");
        std::fs::write(&path, "not json").unwrap();
        let err = SweepFile::read(&path).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
