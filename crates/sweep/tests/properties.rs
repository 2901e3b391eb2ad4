//! Properties: the cover is exact and minimal, compiles do not depend on input order, the
//! version follows the content, and the index agrees with one-shot compiles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{expand_all, mergeable_pair, net};
use proptest::prelude::*;
use proptest::sample::select;
use sr_sweep::{
    CompileOptions, Sighting, SourcePolicies, SourcePolicy, SweepDevice, SweepIndex, compile,
    devices_for_agent,
};

const AGENTS: [&str; 3] = ["agent-a", "agent-b", "agent-c"];

/// Addresses from two small blocks, so sets are dense enough to aggregate and small enough to
/// expand: 10.0.0.0/22 and 2001:db8::/118.
fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        4 => (0u32..1024).prop_map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))),
        1 => (0u128..1024).prop_map(|i| {
            IpAddr::V6(Ipv6Addr::from(u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)) + i))
        }),
    ]
}

/// Device addresses: mostly the blocks above, sometimes an IPv4-mapped twin of one of them or
/// an address no agent can probe.
fn device_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        20 => addr(),
        1 => (0u32..1024).prop_map(|i| IpAddr::V6(Ipv4Addr::from(0x0a00_0000 + i).to_ipv6_mapped())),
        1 => select(vec!["127.0.0.1", "0.0.0.0", "fe80::1", "224.0.0.1"]).prop_map(|a| a.parse().unwrap()),
    ]
}

fn sighting() -> impl Strategy<Value = Sighting> {
    (
        select(vec!["armis", "netbox", "faker"]),
        proptest::option::of(select(vec!["q1", "q2", "q3"])),
        proptest::collection::vec(select(vec!["icmp", "tcp", "tcp_connect", "udp"]), 0..3),
        proptest::collection::vec(select(vec![22u16, 80, 443, 8080]), 0..3),
    )
        .prop_map(|(source, label, modes, ports)| Sighting {
            source: source.to_owned(),
            query_label: label.map(str::to_owned),
            sweep_modes: modes.into_iter().map(str::to_owned).collect(),
            ports,
        })
}

/// Devices with unique uids whose addresses sometimes collide.
fn devices() -> impl Strategy<Value = Vec<SweepDevice>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(device_addr(), 1..4),
            proptest::option::of(select(AGENTS.to_vec())),
            proptest::collection::vec(sighting(), 0..3),
        ),
        0..24,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (ips, agent, sightings))| SweepDevice {
                uid: format!("sr:{i:04}"),
                ips,
                agent_id: agent.map(str::to_owned),
                sightings,
            })
            .collect()
    })
}

fn policies() -> SourcePolicies {
    SourcePolicies::from([
        (
            "netbox".to_owned(),
            SourcePolicy {
                blacklist: vec![net("10.0.1.0/26")],
                sweep_interval_secs: Some(900),
            },
        ),
        (
            "armis".to_owned(),
            SourcePolicy {
                blacklist: vec![],
                sweep_interval_secs: Some(1800),
            },
        ),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_cover_is_exactly_the_target_addresses_and_cannot_be_merged_further(
        addrs in proptest::collection::btree_set(addr(), 0..300),
    ) {
        let devices: Vec<SweepDevice> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| SweepDevice { uid: format!("sr:{i}"), ips: vec![*a], ..SweepDevice::default() })
            .collect();
        let sweep = compile(&devices, &SourcePolicies::new(), &CompileOptions::default());

        prop_assert_eq!(expand_all(&sweep.networks), addrs.clone());
        prop_assert_eq!(mergeable_pair(&sweep.networks), None);
        let expanded: usize = sweep.networks.iter().map(|n| common::expand(&net(n)).len()).sum();
        prop_assert_eq!(expanded, addrs.len(), "cover nets overlap");
        let targets: BTreeSet<IpAddr> = sweep
            .device_targets
            .iter()
            .map(|t| {
                let host = net(&t.network);
                assert_eq!(host.prefix_len(), host.max_prefix_len(), "{}", t.network);
                host.addr()
            })
            .collect();
        prop_assert_eq!(targets, addrs);
    }

    #[test]
    fn the_cover_never_includes_a_blacklisted_or_dropped_address(devices in devices()) {
        let sweep = compile(&devices, &policies(), &CompileOptions::default());
        let targets: BTreeSet<IpAddr> = sweep.device_targets.iter().map(|t| net(&t.network).addr()).collect();
        prop_assert_eq!(expand_all(&sweep.networks), targets);
        prop_assert_eq!(mergeable_pair(&sweep.networks), None);
    }

    #[test]
    fn compile_output_is_independent_of_input_order(
        (devices, shuffled) in devices().prop_flat_map(|d| (Just(d.clone()), Just(d).prop_shuffle())),
    ) {
        let one = compile(&devices, &policies(), &CompileOptions::default());
        let other = compile(&shuffled, &policies(), &CompileOptions::default());
        prop_assert_eq!(one, other);
    }

    #[test]
    fn config_version_changes_when_any_target_changes(
        devices in devices().prop_filter("needs a device", |d| !d.is_empty()),
        pick in any::<prop::sample::Index>(),
        change in 0..3u8,
    ) {
        let before = compile(&devices, &SourcePolicies::new(), &CompileOptions::default());
        // The victim must own a target, or changing its ports or labels changes nothing.
        let targets: BTreeSet<IpAddr> =
            before.device_targets.iter().map(|t| net(&t.network).addr()).collect();
        let owners: Vec<usize> = devices
            .iter()
            .enumerate()
            .filter(|(_, d)| d.ips.iter().any(|a| targets.contains(&a.to_canonical())))
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!owners.is_empty());
        let mut changed = devices.clone();
        let victim = owners[pick.index(owners.len())];
        match change {
            // A port nobody else uses.
            0 => changed[victim].sightings.push(Sighting { ports: vec![65000], ..Sighting::default() }),
            // A label nobody else uses.
            1 => changed[victim].sightings.push(Sighting {
                query_label: Some("brand-new".to_owned()),
                ..Sighting::default()
            }),
            // An address nobody else holds.
            _ => changed[victim].ips.push("192.168.77.1".parse().unwrap()),
        }
        let after = compile(&changed, &SourcePolicies::new(), &CompileOptions::default());
        prop_assert_ne!(&before.device_targets, &after.device_targets);
        prop_assert_ne!(before.config_version, after.config_version);
    }

    #[test]
    fn the_index_agrees_with_one_shot_compiles_through_any_sequence_of_changes(
        initial in devices(),
        updates in devices(),
        removals in proptest::collection::vec(0usize..24, 0..6),
    ) {
        let options = CompileOptions::default();
        let mut model: Vec<SweepDevice> = initial.clone();
        let mut index = SweepIndex::from_devices(initial, policies(), options.clone());
        let check = |model: &[SweepDevice], index: &SweepIndex| {
            for agent in AGENTS {
                let expected = compile(devices_for_agent(model, agent), &policies(), &options);
                assert_eq!(index.compile_for(agent), expected, "{agent}");
            }
        };
        check(&model, &index);
        // Updates reuse the uids sr:0000.. so they replace, move or add devices.
        for update in updates {
            let before: Vec<String> = AGENTS.iter().map(|a| index.compile_for(a).config_version).collect();
            let affected = index.upsert(update.clone());
            model.retain(|d| d.uid != update.uid);
            model.push(update);
            check(&model, &index);
            for (agent, old) in AGENTS.iter().zip(&before) {
                if !affected.includes(agent) {
                    prop_assert_eq!(&index.compile_for(agent).config_version, old, "{} changed but was not reported", agent);
                }
            }
        }
        for i in removals {
            let uid = format!("sr:{i:04}");
            let before: Vec<String> = AGENTS.iter().map(|a| index.compile_for(a).config_version).collect();
            let affected = index.remove(&uid);
            model.retain(|d| d.uid != uid);
            check(&model, &index);
            for (agent, old) in AGENTS.iter().zip(&before) {
                if !affected.includes(agent) {
                    prop_assert_eq!(&index.compile_for(agent).config_version, old, "{} changed but was not reported", agent);
                }
            }
        }
        prop_assert_eq!(index.len(), model.len());
    }
}
