//! The crate's inputs (devices, sightings, source policies, options) and its output (a compiled
//! sweep configuration and its warnings). Plain data: the sweepgen service maps them to and from
//! its storage and the `SweepConfig`/`DeviceTarget` protobuf messages field by field.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Metadata key of a target: the uid(s) of the device(s) holding the address, comma-joined.
pub const META_DEVICE_UID: &str = "device_uid";
/// Metadata key of a target: the same value as [`Target::source`].
pub const META_SOURCE: &str = "source";
/// Metadata key of a target: the same value as [`Target::query_label`]; absent when empty.
pub const META_QUERY_LABEL: &str = "query_label";

/// ICMP echo sweep mode.
pub const MODE_ICMP: &str = "icmp";
/// TCP SYN sweep mode (needs ports).
pub const MODE_TCP: &str = "tcp";
/// TCP connect sweep mode (needs ports).
pub const MODE_TCP_CONNECT: &str = "tcp_connect";
/// The sweep modes agents understand, sorted. Any other mode is dropped with a warning.
pub const KNOWN_MODES: [&str; 3] = [MODE_ICMP, MODE_TCP, MODE_TCP_CONNECT];

/// One source (or one query of a source) that reported a device: what it asks the sweep to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sighting {
    /// Source name (`armis`, `netbox`, ...). Also the key of [`SourcePolicies`].
    pub source: String,
    /// Label of the query that found the device (Armis queries), if any.
    pub query_label: Option<String>,
    /// Sweep modes requested for the device by this source/query.
    pub sweep_modes: Vec<String>,
    /// TCP ports to probe requested by this source (e.g. NetBox `tcp_ports`).
    pub ports: Vec<u16>,
}

/// A canonical inventory device, as far as sweeping is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SweepDevice {
    /// Canonical device uid (`sr:...`).
    pub uid: String,
    /// Every address of the device.
    pub ips: Vec<IpAddr>,
    /// The agent that should sweep the device; `None` (or empty) means every agent of the
    /// partition.
    pub agent_id: Option<String>,
    /// One entry per source/query that reported the device; their union is what counts.
    pub sightings: Vec<Sighting>,
}

impl SweepDevice {
    /// The agent the device is assigned to, trimmed; `None` when absent or blank.
    #[must_use]
    pub fn assigned_agent(&self) -> Option<&str> {
        normalise_agent(self.agent_id.as_deref())
    }

    /// Whether the device belongs in the sweep config of `agent_id`: it is assigned to that
    /// agent, or to no agent at all (then every agent of its partition sweeps it).
    #[must_use]
    pub fn is_for_agent(&self, agent_id: &str) -> bool {
        match self.assigned_agent() {
            None => true,
            Some(own) => Some(own) == normalise_agent(Some(agent_id)),
        }
    }
}

/// Trims an agent id; blank means "no agent".
pub(crate) fn normalise_agent(agent: Option<&str>) -> Option<&str> {
    agent.map(str::trim).filter(|a| !a.is_empty())
}

/// What the inventory knows about one source that matters for sweeping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourcePolicy {
    /// Networks this source must never have swept. A target inside the blacklist of any source
    /// that reported it is excluded.
    pub blacklist: Vec<IpNet>,
    /// The source's sweep interval; `None` or 0 means "no opinion".
    pub sweep_interval_secs: Option<u32>,
}

/// Policies by source name ([`Sighting::source`]). Sources without an entry have no blacklist
/// and no interval.
pub type SourcePolicies = BTreeMap<String, SourcePolicy>;

/// Defaults applied where the sightings say nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompileOptions {
    /// Modes of a target whose sightings request none. Default `["icmp", "tcp"]`.
    pub default_modes: Vec<String>,
    /// Ports of a target whose sightings request none. Default
    /// `22, 80, 443, 3389, 445, 5985, 5986, 8080`.
    pub default_ports: Vec<u16>,
    /// Sweep interval when no reporting source has one. Default 3600.
    pub default_interval_secs: u32,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            default_modes: vec![MODE_ICMP.to_owned(), MODE_TCP.to_owned()],
            default_ports: vec![22, 80, 443, 3389, 445, 5985, 5986, 8080],
            default_interval_secs: 3600,
        }
    }
}

/// One host to sweep: the `DeviceTarget` protobuf message, field for field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The host as a CIDR: `a.b.c.d/32` for IPv4, `x:y::z/128` for IPv6.
    pub network: String,
    /// Sorted, deduplicated, non-empty.
    pub sweep_modes: Vec<String>,
    /// The reporting queries' labels, sorted, deduplicated, comma-joined; empty when none.
    pub query_label: String,
    /// The reporting sources' names, sorted, deduplicated, comma-joined; empty when none.
    pub source: String,
    /// `device_uid`, `source` and (when not empty) `query_label`.
    pub metadata: BTreeMap<String, String>,
    /// Sorted, deduplicated ports; may be empty only when the target has no TCP mode.
    pub ports: Vec<i32>,
}

/// The sweep configuration of one agent: the `SweepConfig` protobuf message plus its version and
/// the warnings met while compiling it.
///
/// Targets are [`Cow`]s: [`crate::SweepIndex::compile_for`] lends the targets it keeps (so
/// compiling a million-target config allocates nothing per target), [`crate::compile`] returns
/// owned ones. Read them through `Deref` like plain [`Target`]s, or call
/// [`CompiledSweep::into_owned`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledSweep<'a> {
    /// The fewest CIDRs whose union is exactly the set of target addresses; IPv4 first, each
    /// family in address order.
    pub networks: Vec<String>,
    /// One target per address, IPv4 before IPv6, in address order.
    pub device_targets: Vec<Cow<'a, Target>>,
    /// Union of the targets' modes, sorted.
    pub sweep_modes: Vec<String>,
    /// Smallest interval among the sources of the targets, else the default.
    pub sweep_interval_sec: i32,
    /// Union of the targets' ports, sorted.
    pub ports: Vec<i32>,
    /// Lower-case hex sha256 of the canonical serialisation of every field above.
    pub config_version: String,
    /// What was dropped or looked suspicious, in address order. Not part of the version.
    pub warnings: Vec<Warning>,
}

impl CompiledSweep<'_> {
    /// The same config with every target owned (no borrow of the index left).
    #[must_use]
    pub fn into_owned(self) -> CompiledSweep<'static> {
        CompiledSweep {
            networks: self.networks,
            device_targets: self
                .device_targets
                .into_iter()
                .map(|t| Cow::Owned(t.into_owned()))
                .collect(),
            sweep_modes: self.sweep_modes,
            sweep_interval_sec: self.sweep_interval_sec,
            ports: self.ports,
            config_version: self.config_version,
            warnings: self.warnings,
        }
    }
}

/// Something the compiler dropped or found suspicious, for the service to log or count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// The address cannot be swept (unspecified, loopback, multicast, limited broadcast,
    /// IPv6 link-local): no target.
    UnsweepableAddress {
        /// The address.
        address: IpAddr,
        /// Devices that hold it.
        device_uids: Vec<String>,
    },
    /// Several devices hold the address (DIRE should prevent this); they share one target.
    SharedAddress {
        /// The address.
        address: IpAddr,
        /// Devices that hold it, sorted.
        device_uids: Vec<String>,
    },
    /// The address is in the blacklist of a source that reported it: no target.
    Blacklisted {
        /// The address.
        address: IpAddr,
        /// Reporting sources whose blacklist contains the address, sorted.
        sources: Vec<String>,
    },
    /// Modes agents do not understand were dropped from the target.
    UnknownModesDropped {
        /// The address.
        address: IpAddr,
        /// The dropped modes, sorted.
        modes: Vec<String>,
    },
    /// TCP modes were dropped because no port is configured anywhere for the target.
    TcpModesDroppedNoPorts {
        /// The address.
        address: IpAddr,
        /// The dropped modes, sorted.
        modes: Vec<String>,
    },
    /// No mode is left for the address: no target.
    TargetDroppedNoModes {
        /// The address.
        address: IpAddr,
    },
}

impl Warning {
    /// The address the warning is about.
    #[must_use]
    pub fn address(&self) -> IpAddr {
        match self {
            Self::UnsweepableAddress { address, .. }
            | Self::SharedAddress { address, .. }
            | Self::Blacklisted { address, .. }
            | Self::UnknownModesDropped { address, .. }
            | Self::TcpModesDroppedNoPorts { address, .. }
            | Self::TargetDroppedNoModes { address } => *address,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsweepableAddress {
                address,
                device_uids,
            } => write!(
                f,
                "address {address} of {} cannot be swept; skipped",
                device_uids.join(",")
            ),
            Self::SharedAddress {
                address,
                device_uids,
            } => write!(
                f,
                "address {address} is held by several devices ({}); swept once",
                device_uids.join(",")
            ),
            Self::Blacklisted { address, sources } => write!(
                f,
                "address {address} is blacklisted by source(s) {}; skipped",
                sources.join(",")
            ),
            Self::UnknownModesDropped { address, modes } => write!(
                f,
                "unknown sweep mode(s) {} dropped for {address}",
                modes.join(",")
            ),
            Self::TcpModesDroppedNoPorts { address, modes } => write!(
                f,
                "sweep mode(s) {} dropped for {address}: no ports configured",
                modes.join(",")
            ),
            Self::TargetDroppedNoModes { address } => {
                write!(f, "address {address} has no sweep mode left; skipped")
            }
        }
    }
}
