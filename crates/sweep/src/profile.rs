//! Normalisation of the inputs: a device's sightings become one [`Profile`] (the union of what
//! its sources asked for), its addresses become canonical, and the options become [`Defaults`].

use std::net::IpAddr;

use crate::model::{CompileOptions, Sighting, SweepDevice, normalise_agent};

/// The union of a device's sightings, each list trimmed, sorted and deduplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Profile {
    /// Requested modes, lower-cased (unknown ones included; they are dropped per target).
    pub modes: Vec<String>,
    /// Requested ports, without 0.
    pub ports: Vec<u16>,
    /// Reporting sources (non-blank names).
    pub sources: Vec<String>,
    /// Query labels (non-blank).
    pub labels: Vec<String>,
}

impl Profile {
    pub(crate) fn of(sightings: &[Sighting]) -> Self {
        let mut profile = Self::default();
        for sighting in sightings {
            profile.modes.extend(
                sighting
                    .sweep_modes
                    .iter()
                    .filter_map(|m| normalise_mode(m)),
            );
            profile
                .ports
                .extend(sighting.ports.iter().copied().filter(|p| *p != 0));
            profile.sources.extend(non_blank(&sighting.source));
            profile
                .labels
                .extend(sighting.query_label.as_deref().and_then(non_blank));
        }
        sort_dedup(&mut profile.modes);
        sort_dedup(&mut profile.ports);
        sort_dedup(&mut profile.sources);
        sort_dedup(&mut profile.labels);
        profile
    }
}

/// The normalised form of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NormalDevice {
    pub agent: Option<String>,
    /// Canonical (IPv4-mapped IPv6 becomes IPv4), sorted, deduplicated.
    pub addrs: Vec<IpAddr>,
    pub profile: Profile,
}

impl NormalDevice {
    pub(crate) fn of(device: &SweepDevice) -> Self {
        let mut addrs: Vec<IpAddr> = device.ips.iter().map(IpAddr::to_canonical).collect();
        sort_dedup(&mut addrs);
        Self {
            agent: normalise_agent(device.agent_id.as_deref()).map(str::to_owned),
            addrs,
            profile: Profile::of(&device.sightings),
        }
    }
}

/// The options, normalised once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Defaults {
    pub modes: Vec<String>,
    pub ports: Vec<u16>,
    pub interval_secs: u32,
}

impl Defaults {
    pub(crate) fn of(options: &CompileOptions) -> Self {
        let mut modes: Vec<String> = options
            .default_modes
            .iter()
            .filter_map(|m| normalise_mode(m))
            .collect();
        sort_dedup(&mut modes);
        let mut ports: Vec<u16> = options
            .default_ports
            .iter()
            .copied()
            .filter(|p| *p != 0)
            .collect();
        sort_dedup(&mut ports);
        Self {
            modes,
            ports,
            interval_secs: options.default_interval_secs,
        }
    }
}

/// Whether an agent can meaningfully probe the address: not unspecified, loopback (the agent
/// would probe itself and report a phantom device as up), multicast, the IPv4 limited broadcast,
/// or IPv6 link-local (unusable without a zone).
pub(crate) fn is_sweepable(addr: IpAddr) -> bool {
    if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
        return false;
    }
    match addr {
        IpAddr::V4(v4) => !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_unicast_link_local(),
    }
}

fn normalise_mode(mode: &str) -> Option<String> {
    let mode = mode.trim();
    (!mode.is_empty()).then(|| mode.to_ascii_lowercase())
}

fn non_blank(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn sort_dedup<T: Ord>(values: &mut Vec<T>) {
    values.sort_unstable();
    values.dedup();
}
