//! The decision for one address: given every device (visible to the agent being compiled) that
//! holds it, produce its target or the reason it has none.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{
    KNOWN_MODES, META_DEVICE_UID, META_QUERY_LABEL, META_SOURCE, MODE_TCP, MODE_TCP_CONNECT,
    SourcePolicies, Target, Warning,
};
use crate::profile::{Defaults, Profile, is_sweepable};
use crate::version::target_digest;

/// One device's claim on an address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Contribution<'a> {
    pub uid: &'a str,
    pub profile: &'a Profile,
}

/// What one address contributes to a compiled sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddressOutcome {
    pub addr: IpAddr,
    /// `None` when the address is dropped (see the warnings). Boxed so that the index's
    /// ordered map keeps the small fields a walk reads close together.
    pub target: Option<Box<Target>>,
    /// sha256 of the target's canonical serialisation (zero when there is no target).
    pub digest: [u8; 32],
    /// Smallest sweep interval among the target's sources, if any has one.
    pub interval: Option<u32>,
    /// The target's modes as bits over [`KNOWN_MODES`] (so a config's union of modes needs no
    /// look at the targets' strings).
    pub modes_mask: u8,
    /// The target's ports, kept beside the digest so that uniting the ports of a config rarely
    /// needs to read the target itself.
    pub ports_key: PortsKey,
    pub warnings: Vec<Warning>,
}

impl AddressOutcome {
    /// Placeholder for a slot whose outcome is computed later.
    pub(crate) fn empty(addr: IpAddr) -> Self {
        Self::dropped(addr, Vec::new())
    }

    fn dropped(addr: IpAddr, warnings: Vec<Warning>) -> Self {
        Self {
            addr,
            target: None,
            digest: [0; 32],
            interval: None,
            modes_mask: 0,
            ports_key: PortsKey::default(),
            warnings,
        }
    }
}

/// A target's port list, exact when it has at most [`PortsKey::INLINE`] ports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PortsKey {
    len: usize,
    head: [u16; PortsKey::INLINE],
}

impl PortsKey {
    const INLINE: usize = 8;

    fn of(ports: &[u16]) -> Self {
        let mut head = [0; Self::INLINE];
        for (slot, port) in head.iter_mut().zip(ports) {
            *slot = *port;
        }
        Self {
            len: ports.len(),
            head,
        }
    }

    /// The ports, when the key holds all of them.
    pub(crate) fn ports(&self) -> Option<&[u16]> {
        self.head.get(..self.len)
    }
}

/// Compiles one address. `contributions` must not be empty; their order does not matter.
pub(crate) fn compile_address(
    addr: IpAddr,
    contributions: &[Contribution<'_>],
    policies: &SourcePolicies,
    defaults: &Defaults,
) -> AddressOutcome {
    let mut warnings = Vec::new();
    let mut uids: Vec<&str> = contributions.iter().map(|c| c.uid).collect();
    uids.sort_unstable();
    uids.dedup();

    if !is_sweepable(addr) {
        warnings.push(Warning::UnsweepableAddress {
            address: addr,
            device_uids: owned(&uids),
        });
        return AddressOutcome::dropped(addr, warnings);
    }
    if uids.len() > 1 {
        warnings.push(Warning::SharedAddress {
            address: addr,
            device_uids: owned(&uids),
        });
    }

    let sources = union(contributions, |p| &p.sources);
    // Defence in depth (the sync already filters per source): any reporting source that
    // blacklists the address vetoes it.
    let vetoing: Vec<String> = sources
        .iter()
        .filter(|source| {
            policies
                .get(source.as_str())
                .is_some_and(|policy| policy.blacklist.iter().any(|net| net.contains(&addr)))
        })
        .cloned()
        .collect();
    if !vetoing.is_empty() {
        warnings.push(Warning::Blacklisted {
            address: addr,
            sources: vetoing,
        });
        return AddressOutcome::dropped(addr, warnings);
    }

    let requested = union(contributions, |p| &p.modes);
    let (mut modes, mut unknown) = split_known(&requested);
    if modes.is_empty() {
        let (default_modes, default_unknown) = split_known(&defaults.modes);
        modes = default_modes;
        unknown.extend(default_unknown);
    }
    if !unknown.is_empty() {
        unknown.sort_unstable();
        unknown.dedup();
        warnings.push(Warning::UnknownModesDropped {
            address: addr,
            modes: unknown,
        });
    }

    let requested_ports = union(contributions, |p| &p.ports);
    let ports: &[u16] = if requested_ports.is_empty() {
        &defaults.ports
    } else {
        &requested_ports
    };
    if ports.is_empty() {
        let (tcp, kept): (Vec<String>, Vec<String>) = modes
            .into_iter()
            .partition(|m| m == MODE_TCP || m == MODE_TCP_CONNECT);
        modes = kept;
        if !tcp.is_empty() {
            warnings.push(Warning::TcpModesDroppedNoPorts {
                address: addr,
                modes: tcp,
            });
        }
    }
    if modes.is_empty() {
        warnings.push(Warning::TargetDroppedNoModes { address: addr });
        return AddressOutcome::dropped(addr, warnings);
    }

    let interval = sources
        .iter()
        .filter_map(|s| policies.get(s.as_str())?.sweep_interval_secs)
        .filter(|secs| *secs > 0)
        .min();
    let labels = union(contributions, |p| &p.labels);
    let source = sources.join(",");
    let query_label = labels.join(",");
    let mut metadata = BTreeMap::new();
    metadata.insert(META_DEVICE_UID.to_owned(), uids.join(","));
    metadata.insert(META_SOURCE.to_owned(), source.clone());
    if !query_label.is_empty() {
        metadata.insert(META_QUERY_LABEL.to_owned(), query_label.clone());
    }
    let target = Target {
        network: IpNet::from(addr).to_string(),
        sweep_modes: modes,
        query_label,
        source,
        metadata,
        ports: ports.iter().map(|p| i32::from(*p)).collect(),
    };
    AddressOutcome {
        addr,
        digest: target_digest(&target),
        modes_mask: mask_of_modes(&target.sweep_modes),
        ports_key: PortsKey::of(ports),
        target: Some(Box::new(target)),
        interval,
        warnings,
    }
}

/// Sorted, deduplicated union of one list of every contribution (borrowed when there is only
/// one contribution, the common case).
fn union<'a, T, F>(contributions: &[Contribution<'a>], list: F) -> Cow<'a, [T]>
where
    T: Ord + Clone,
    F: Fn(&'a Profile) -> &'a Vec<T>,
{
    match contributions {
        [only] => Cow::Borrowed(list(only.profile).as_slice()),
        many => {
            let mut all: Vec<T> = many
                .iter()
                .flat_map(|c| list(c.profile).iter().cloned())
                .collect();
            all.sort_unstable();
            all.dedup();
            Cow::Owned(all)
        }
    }
}

fn mask_of_modes(modes: &[String]) -> u8 {
    KNOWN_MODES
        .iter()
        .enumerate()
        .filter(|(_, known)| modes.iter().any(|m| m == *known))
        .fold(0, |mask, (bit, _)| mask | (1 << bit))
}

/// The modes of a mask built by `mask_of_modes`, sorted.
pub(crate) fn modes_of_mask(mask: u8) -> Vec<String> {
    KNOWN_MODES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, mode)| (*mode).to_owned())
        .collect()
}

fn split_known(modes: &[String]) -> (Vec<String>, Vec<String>) {
    modes
        .iter()
        .cloned()
        .partition(|m| KNOWN_MODES.contains(&m.as_str()))
}

fn owned(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}
