//! Builders shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use sr_sweep::{CompileOptions, CompiledSweep, Sighting, SourcePolicies, SweepDevice, compile};

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub fn sighting(source: &str, label: Option<&str>, modes: &[&str], ports: &[u16]) -> Sighting {
    Sighting {
        source: source.to_owned(),
        query_label: label.map(str::to_owned),
        sweep_modes: modes.iter().map(|m| (*m).to_owned()).collect(),
        ports: ports.to_vec(),
    }
}

pub fn device(
    uid: &str,
    ips: &[&str],
    agent: Option<&str>,
    sightings: Vec<Sighting>,
) -> SweepDevice {
    SweepDevice {
        uid: uid.to_owned(),
        ips: ips.iter().map(|s| ip(s)).collect(),
        agent_id: agent.map(str::to_owned),
        sightings,
    }
}

/// A device reported by Armis with default modes and ports.
pub fn armis(uid: &str, ips: &[&str]) -> SweepDevice {
    device(
        uid,
        ips,
        None,
        vec![sighting("armis", Some("all"), &[], &[])],
    )
}

/// Compiles with no policies and default options.
pub fn compile_plain(devices: &[SweepDevice]) -> CompiledSweep<'static> {
    compile(devices, &SourcePolicies::new(), &CompileOptions::default())
}

/// The cover of one host per address, one device per address.
pub fn cover_of(addrs: &[&str]) -> Vec<String> {
    let devices: Vec<SweepDevice> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| armis(&format!("sr:{i}"), &[a]))
        .collect();
    compile_plain(&devices).networks
}

pub fn target_networks(sweep: &CompiledSweep<'_>) -> Vec<String> {
    sweep
        .device_targets
        .iter()
        .map(|t| t.network.clone())
        .collect()
}

/// Every address of a CIDR (the network and broadcast addresses included).
pub fn expand(net: &IpNet) -> Vec<IpAddr> {
    match net {
        IpNet::V4(n) => (u32::from(n.network())..=u32::from(n.broadcast()))
            .map(|a| IpAddr::from(std::net::Ipv4Addr::from(a)))
            .collect(),
        IpNet::V6(n) => (u128::from(n.network())..=u128::from(n.broadcast()))
            .map(|a| IpAddr::from(std::net::Ipv6Addr::from(a)))
            .collect(),
    }
}

pub fn expand_all(networks: &[String]) -> BTreeSet<IpAddr> {
    networks.iter().flat_map(|n| expand(&net(n))).collect()
}

/// Two nets of a cover that could be replaced by their common supernet, if any.
pub fn mergeable_pair(networks: &[String]) -> Option<(String, String)> {
    let nets: Vec<IpNet> = networks.iter().map(|n| net(n)).collect();
    for (i, a) in nets.iter().enumerate() {
        for b in &nets[i + 1..] {
            if a.prefix_len() == b.prefix_len()
                && a.prefix_len() > 0
                && a.supernet() == b.supernet()
            {
                return Some((a.to_string(), b.to_string()));
            }
        }
    }
    None
}
