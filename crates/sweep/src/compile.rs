//! One-shot compilation of a device list, agent selection, and the assembly of per-address
//! outcomes into a [`CompiledSweep`] (shared with [`crate::SweepIndex`]).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{CompileOptions, CompiledSweep, SourcePolicies, SweepDevice};
use crate::profile::{Defaults, NormalDevice};
use crate::target::{AddressOutcome, Contribution, PortsKey, compile_address, modes_of_mask};
use crate::version::ConfigHasher;

/// The devices that belong in the sweep config of `agent_id` (§5): those assigned to it and
/// those assigned to no agent. Scoping to one (tenant, partition) is the caller's job.
pub fn devices_for_agent<'a>(
    devices: &'a [SweepDevice],
    agent_id: &'a str,
) -> impl Iterator<Item = &'a SweepDevice> + 'a {
    devices.iter().filter(move |d| d.is_for_agent(agent_id))
}

/// Compiles the sweep config of exactly these devices (select them first with
/// [`devices_for_agent`]). The result depends only on the set of devices, not their order;
/// devices sharing an address share one target.
#[must_use]
pub fn compile<'a, I>(
    devices: I,
    policies: &SourcePolicies,
    options: &CompileOptions,
) -> CompiledSweep<'static>
where
    I: IntoIterator<Item = &'a SweepDevice>,
{
    let defaults = Defaults::of(options);
    let normal: Vec<(&str, NormalDevice)> = devices
        .into_iter()
        .map(|d| (d.uid.as_str(), NormalDevice::of(d)))
        .collect();
    let mut claims: Vec<(IpAddr, usize)> = normal
        .iter()
        .enumerate()
        .flat_map(|(i, (_, n))| n.addrs.iter().map(move |a| (*a, i)))
        .collect();
    claims.sort_unstable();

    let contribution = |i: usize| Contribution {
        uid: normal[i].0,
        profile: &normal[i].1.profile,
    };
    let outcomes = claims.chunk_by(|a, b| a.0 == b.0).map(|group| {
        let addr = group[0].0;
        let outcome = match group {
            [(_, i)] => compile_address(addr, &[contribution(*i)], policies, &defaults),
            many => {
                let all: Vec<Contribution<'_>> =
                    many.iter().map(|(_, i)| contribution(*i)).collect();
                compile_address(addr, &all, policies, &defaults)
            }
        };
        Cow::Owned(outcome)
    });
    assemble(outcomes, &defaults)
}

/// Builds the config from per-address outcomes given in address order (IPv4 before IPv6).
pub(crate) fn assemble<'a, I>(outcomes: I, defaults: &Defaults) -> CompiledSweep<'a>
where
    I: Iterator<Item = Cow<'a, AddressOutcome>>,
{
    // Reserve for the worst case: untouched capacity costs address space, not memory, while
    // growing a vector of a million targets would copy it again and again.
    let size = match outcomes.size_hint() {
        (_, Some(upper)) => upper,
        (lower, None) => lower,
    };
    let mut targets = Vec::with_capacity(size);
    let mut hosts: Vec<IpNet> = Vec::with_capacity(size);
    let mut warnings = Vec::new();
    let mut hasher = ConfigHasher::new();
    let mut modes_mask = 0u8;
    let mut ports = BTreeSet::new();
    // Neighbouring targets nearly always carry the same ports: only merge when they change.
    let mut last_ports: Option<PortsKey> = None;
    let mut interval: Option<u32> = None;

    for outcome in outcomes {
        let (addr, digest, addr_interval, mask, ports_key) = (
            outcome.addr,
            outcome.digest,
            outcome.interval,
            outcome.modes_mask,
            outcome.ports_key,
        );
        let (target, addr_warnings) = match outcome {
            Cow::Borrowed(o) => (o.target.as_deref().map(Cow::Borrowed), o.warnings.clone()),
            Cow::Owned(o) => (o.target.map(|t| Cow::Owned(*t)), o.warnings),
        };
        warnings.extend(addr_warnings);
        let Some(target) = target else { continue };
        modes_mask |= mask;
        if last_ports != Some(ports_key) {
            match ports_key.ports() {
                Some(known) => {
                    ports.extend(known.iter().map(|p| i32::from(*p)));
                    last_ports = Some(ports_key);
                }
                None => {
                    ports.extend(target.ports.iter().copied());
                    last_ports = None;
                }
            }
        }
        if let Some(secs) = addr_interval {
            interval = Some(interval.map_or(secs, |cur| cur.min(secs)));
        }
        hasher.add_target(&digest);
        hosts.push(IpNet::from(addr));
        targets.push(target);
    }

    // A small agent in a large index must not keep the worst-case reservation.
    if targets.capacity() > targets.len().saturating_mul(2) {
        targets.shrink_to_fit();
    }
    let networks: Vec<String> = IpNet::aggregate(&hosts)
        .iter()
        .map(ToString::to_string)
        .collect();
    let sweep_modes = modes_of_mask(modes_mask);
    let ports: Vec<i32> = ports.into_iter().collect();
    let secs = interval.unwrap_or(defaults.interval_secs);
    let sweep_interval_sec = i32::try_from(secs).unwrap_or(i32::MAX);
    let config_version = hasher.finish(&networks, &sweep_modes, sweep_interval_sec, &ports);
    CompiledSweep {
        networks,
        device_targets: targets,
        sweep_modes,
        sweep_interval_sec,
        ports,
        config_version,
        warnings,
    }
}
