//! What DIRE publishes on `sr.inventory.changed.<tenant>` after each committed batch, and the
//! metadata keys sync services use to pass sweep hints through DIRE to sweepgen.

use serde::{Deserialize, Serialize};

use crate::TenantId;

/// Metadata keys on a [`crate::device::DeviceUpdate`] that carry sweep hints.
pub mod meta {
    /// Label of the query (Armis AQL) that found the device.
    pub const QUERY_LABEL: &str = "query_label";
    /// Comma-separated sweep modes (`icmp,tcp`).
    pub const SWEEP_MODES: &str = "sweep_modes";
    /// Comma-separated TCP ports (`22,443`).
    pub const SWEEP_PORTS: &str = "sweep_ports";
    /// Sweep interval of the reporting source, in seconds.
    pub const SWEEP_INTERVAL_SECS: &str = "sweep_interval_secs";
    /// Integration type (`armis`, `netbox`, …).
    pub const INTEGRATION_TYPE: &str = "integration_type";
    /// The integration source record that produced the update.
    pub const INTEGRATION_SOURCE_ID: &str = "integration_source_id";
}

/// How one source (and query) describes a device for sweeping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SweepHint {
    /// `armis`, `netbox`, …
    pub source: String,
    /// Query label, when the source has queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_label: Option<String>,
    /// Requested sweep modes (empty = defaults).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep_modes: Vec<String>,
    /// Requested TCP ports (empty = defaults).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Sweep interval of the source, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_interval_secs: Option<u32>,
}

/// The state of one canonical device after a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceChange {
    /// Canonical `sr:` id.
    pub uid: String,
    /// Partition.
    pub partition: String,
    /// Agent that should sweep it (none = every agent of the partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Current IPs (empty when its IP moved away).
    #[serde(default)]
    pub ips: Vec<String>,
    /// Discovery sources.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Sweep hints, one per reporting (source, query).
    #[serde(default)]
    pub hints: Vec<SweepHint>,
    /// True when the device no longer exists (merged away).
    #[serde(default)]
    pub removed: bool,
    /// Monotonic per device: a consumer ignores a change older than what it holds.
    pub revision: i64,
}

/// One message on `sr.inventory.changed.<tenant>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryChange {
    /// Tenant (also in the subject; they must agree).
    pub tenant_id: TenantId,
    /// Changed devices, sorted by uid.
    pub devices: Vec<DeviceChange>,
}
