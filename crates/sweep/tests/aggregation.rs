//! The exact minimal CIDR cover of the targets, and one host target per address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{
    armis, compile_plain, cover_of, device, expand_all, ip, mergeable_pair, net, sighting,
    target_networks,
};
use sr_sweep::{CompileOptions, SourcePolicies, SourcePolicy, Warning, compile};

#[test]
fn cover_table_collapses_exactly_the_aligned_runs() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("nothing", &[], &[]),
        ("one host", &["10.0.0.7"], &["10.0.0.7/32"]),
        (
            "adjacent aligned pair",
            &["10.0.0.0", "10.0.0.1"],
            &["10.0.0.0/31"],
        ),
        (
            "four aligned",
            &["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"],
            &["10.0.0.4/30"],
        ),
        (
            "eight aligned",
            &[
                "10.0.0.8",
                "10.0.0.9",
                "10.0.0.10",
                "10.0.0.11",
                "10.0.0.12",
                "10.0.0.13",
                "10.0.0.14",
                "10.0.0.15",
            ],
            &["10.0.0.8/29"],
        ),
        (
            "adjacent but not aligned",
            &["10.0.0.1", "10.0.0.2"],
            &["10.0.0.1/32", "10.0.0.2/32"],
        ),
        (
            "a gap prevents collapse",
            &["10.0.0.0", "10.0.0.1", "10.0.0.3"],
            &["10.0.0.0/31", "10.0.0.3/32"],
        ),
        (
            "unaligned run .1 to .4",
            &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"],
            &["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/32"],
        ),
        (
            "run across an octet boundary",
            &["10.0.0.255", "10.0.1.0"],
            &["10.0.0.255/32", "10.0.1.0/32"],
        ),
        (
            "input order does not matter",
            &["10.0.0.3", "10.0.0.0", "10.0.0.2", "10.0.0.1"],
            &["10.0.0.0/30"],
        ),
        (
            "ipv6 pair collapses to /127",
            &["2001:db8::", "2001:db8::1"],
            &["2001:db8::/127"],
        ),
        (
            "ipv6 four collapse to /126",
            &["2001:db8::4", "2001:db8::5", "2001:db8::6", "2001:db8::7"],
            &["2001:db8::4/126"],
        ),
        (
            "ipv6 unaligned pair stays two hosts",
            &["2001:db8::1", "2001:db8::2"],
            &["2001:db8::1/128", "2001:db8::2/128"],
        ),
        (
            "mixed families: ipv4 first, each in address order",
            &[
                "2001:db8::1",
                "10.0.0.1",
                "2001:db8::",
                "10.0.0.0",
                "192.168.1.9",
            ],
            &["10.0.0.0/31", "192.168.1.9/32", "2001:db8::/127"],
        ),
    ];
    for (name, addrs, expected) in cases {
        assert_eq!(cover_of(addrs), *expected, "case: {name}");
    }
}

#[test]
fn a_full_slash_24_collapses_to_one_network() {
    let addrs: Vec<String> = (0..=255).map(|i| format!("10.1.2.{i}")).collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    assert_eq!(cover_of(&refs), ["10.1.2.0/24"]);
}

#[test]
fn targets_are_one_host_each_in_address_order() {
    let sweep = compile_plain(&[
        armis("sr:b", &["10.0.0.2", "2001:db8::1"]),
        armis("sr:a", &["10.0.0.1", "9.9.9.9"]),
    ]);
    assert_eq!(
        target_networks(&sweep),
        [
            "9.9.9.9/32",
            "10.0.0.1/32",
            "10.0.0.2/32",
            "2001:db8::1/128"
        ]
    );
}

#[test]
fn ipv6_targets_are_written_as_128_never_32() {
    let sweep = compile_plain(&[armis("sr:v6", &["2001:db8::dead:beef", "fd00::1"])]);
    for target in &sweep.device_targets {
        assert!(target.network.ends_with("/128"), "{}", target.network);
        assert_eq!(net(&target.network).prefix_len(), 128);
    }
    assert_eq!(
        target_networks(&sweep),
        ["2001:db8::dead:beef/128", "fd00::1/128"]
    );
}

#[test]
fn ipv4_mapped_ipv6_addresses_are_swept_as_ipv4() {
    let sweep = compile_plain(&[
        armis("sr:a", &["::ffff:10.0.0.1"]),
        armis("sr:b", &["10.0.0.0"]),
    ]);
    assert_eq!(target_networks(&sweep), ["10.0.0.0/32", "10.0.0.1/32"]);
    assert_eq!(sweep.networks, ["10.0.0.0/31"]);
}

#[test]
fn duplicates_of_one_address_give_one_target() {
    let sweep = compile_plain(&[
        armis("sr:a", &["10.0.0.1", "10.0.0.1"]),
        armis("sr:a", &["10.0.0.1"]),
    ]);
    assert_eq!(target_networks(&sweep), ["10.0.0.1/32"]);
    assert_eq!(sweep.networks, ["10.0.0.1/32"]);
    assert!(sweep.warnings.is_empty(), "{:?}", sweep.warnings);
}

#[test]
fn blacklist_carve_out_removes_exactly_the_blacklisted_hosts() {
    let addrs: Vec<String> = (0..8).map(|i| format!("10.0.0.{i}")).collect();
    let devices: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| armis(&format!("sr:{i}"), &[a.as_str()]))
        .collect();
    let policies = BTreeMap::from([(
        "armis".to_owned(),
        SourcePolicy {
            blacklist: vec![net("10.0.0.4/32"), net("10.0.0.7/32")],
            sweep_interval_secs: None,
        },
    )]);
    let sweep = compile(&devices, &policies, &CompileOptions::default());

    let targets: BTreeSet<_> = target_networks(&sweep).into_iter().collect();
    let expected: BTreeSet<String> = [0, 1, 2, 3, 5, 6]
        .iter()
        .map(|i| format!("10.0.0.{i}/32"))
        .collect();
    assert_eq!(targets, expected);
    assert_eq!(
        sweep.networks,
        ["10.0.0.0/30", "10.0.0.5/32", "10.0.0.6/32"]
    );
    let covered = expand_all(&sweep.networks);
    assert!(!covered.contains(&ip("10.0.0.4")));
    assert!(!covered.contains(&ip("10.0.0.7")));
    assert_eq!(covered.len(), 6);
    let blacklisted: Vec<_> = sweep
        .warnings
        .iter()
        .filter_map(|w| match w {
            Warning::Blacklisted { address, sources } => Some((*address, sources.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        blacklisted,
        [
            (ip("10.0.0.4"), vec!["armis".to_owned()]),
            (ip("10.0.0.7"), vec!["armis".to_owned()])
        ]
    );
}

#[test]
fn a_blacklist_entry_wider_than_a_host_carves_every_host_inside_it() {
    let addrs: Vec<String> = (0..16).map(|i| format!("10.0.0.{i}")).collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let policies = BTreeMap::from([(
        "armis".to_owned(),
        SourcePolicy {
            blacklist: vec![net("10.0.0.4/30")],
            sweep_interval_secs: None,
        },
    )]);
    let sweep = compile(
        &[armis("sr:1", &refs)],
        &policies,
        &CompileOptions::default(),
    );
    assert_eq!(sweep.networks, ["10.0.0.0/30", "10.0.0.8/29"]);
    assert_eq!(sweep.device_targets.len(), 12);
}

#[test]
fn any_reporting_source_blacklisting_an_address_excludes_it() {
    let both = device(
        "sr:both",
        &["10.0.0.1"],
        None,
        vec![
            sighting("armis", None, &["icmp"], &[]),
            sighting("netbox", None, &["icmp"], &[]),
        ],
    );
    let netbox_only = device(
        "sr:nb",
        &["10.0.0.2"],
        None,
        vec![sighting("netbox", None, &["icmp"], &[])],
    );
    let policies: SourcePolicies = BTreeMap::from([(
        "armis".to_owned(),
        SourcePolicy {
            blacklist: vec![net("10.0.0.0/24")],
            sweep_interval_secs: None,
        },
    )]);
    let sweep = compile(&[both, netbox_only], &policies, &CompileOptions::default());
    // Armis blacklists 10.0.0.0/24 but did not report 10.0.0.2: only its own report is vetoed.
    assert_eq!(target_networks(&sweep), ["10.0.0.2/32"]);
    assert_eq!(sweep.networks, ["10.0.0.2/32"]);
}

#[test]
fn the_cover_of_a_real_looking_inventory_expands_back_to_the_targets() {
    let addrs: Vec<String> = (0..600u32)
        .filter(|i| i % 7 != 3)
        .map(|i| format!("172.16.{}.{}", i / 254, i % 254 + 1))
        .collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let networks = cover_of(&refs);
    let expected: BTreeSet<_> = refs.iter().map(|a| ip(a)).collect();
    assert_eq!(expand_all(&networks), expected);
    assert_eq!(mergeable_pair(&networks), None);
}
