//! Which devices an agent sweeps, and what each target asks for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{armis, compile_plain, device, ip, sighting, target_networks};
use sr_sweep::{
    CompileOptions, CompiledSweep, META_DEVICE_UID, META_QUERY_LABEL, META_SOURCE, SourcePolicies,
    SourcePolicy, SweepDevice, Warning, compile, devices_for_agent,
};

fn fleet() -> Vec<SweepDevice> {
    vec![
        device("sr:a1", &["10.0.1.1"], Some("agent-a"), vec![]),
        device("sr:a2", &["10.0.1.2"], Some("agent-a"), vec![]),
        device("sr:b1", &["10.0.2.1"], Some("agent-b"), vec![]),
        device("sr:u1", &["10.0.9.1"], None, vec![]),
        device("sr:u2", &["10.0.9.2"], Some("  "), vec![]),
    ]
}

fn uids<'a>(devices: impl Iterator<Item = &'a SweepDevice>) -> Vec<&'a str> {
    devices.map(|d| d.uid.as_str()).collect()
}

fn for_agent(devices: &[SweepDevice], agent: &str) -> CompiledSweep<'static> {
    compile(
        devices_for_agent(devices, agent),
        &SourcePolicies::new(),
        &CompileOptions::default(),
    )
}

#[test]
fn devices_go_to_their_agent_and_unassigned_devices_go_to_every_agent() {
    let devices = fleet();
    let cases: &[(&str, &[&str])] = &[
        ("agent-a", &["sr:a1", "sr:a2", "sr:u1", "sr:u2"]),
        ("agent-b", &["sr:b1", "sr:u1", "sr:u2"]),
        ("agent-c", &["sr:u1", "sr:u2"]),
        (" agent-a ", &["sr:a1", "sr:a2", "sr:u1", "sr:u2"]),
    ];
    for (agent, expected) in cases {
        assert_eq!(
            uids(devices_for_agent(&devices, agent)),
            *expected,
            "{agent}"
        );
    }
}

#[test]
fn each_agent_config_holds_its_own_and_the_unassigned_addresses_only() {
    let devices = fleet();
    assert_eq!(
        target_networks(&for_agent(&devices, "agent-a")),
        ["10.0.1.1/32", "10.0.1.2/32", "10.0.9.1/32", "10.0.9.2/32"]
    );
    assert_eq!(
        target_networks(&for_agent(&devices, "agent-b")),
        ["10.0.2.1/32", "10.0.9.1/32", "10.0.9.2/32"]
    );
    assert_eq!(
        for_agent(&devices, "agent-a").networks,
        ["10.0.1.1/32", "10.0.1.2/32", "10.0.9.1/32", "10.0.9.2/32"]
    );
}

#[test]
fn default_modes_and_ports_apply_when_sightings_say_nothing() {
    let sweep = compile_plain(&[device(
        "sr:1",
        &["10.0.0.1"],
        None,
        vec![sighting("netbox", None, &[], &[])],
    )]);
    let target = &sweep.device_targets[0];
    assert_eq!(target.sweep_modes, ["icmp", "tcp"]);
    assert_eq!(target.ports, [22, 80, 443, 445, 3389, 5985, 5986, 8080]);
    assert_eq!(sweep.sweep_modes, ["icmp", "tcp"]);
    assert_eq!(sweep.ports, [22, 80, 443, 445, 3389, 5985, 5986, 8080]);
    assert_eq!(sweep.sweep_interval_sec, 3600);
}

#[test]
fn sweep_modes_are_the_union_across_sources_and_queries() {
    let sweep = compile_plain(&[device(
        "sr:1",
        &["10.0.0.1"],
        None,
        vec![
            sighting("armis", Some("printers"), &["icmp"], &[]),
            sighting("armis", Some("cameras"), &["TCP_Connect ", "icmp"], &[]),
            sighting("netbox", None, &["tcp"], &[443, 22, 22]),
        ],
    )]);
    let target = &sweep.device_targets[0];
    assert_eq!(target.sweep_modes, ["icmp", "tcp", "tcp_connect"]);
    assert_eq!(target.ports, [22, 443]);
    assert_eq!(target.query_label, "cameras,printers");
    assert_eq!(target.source, "armis,netbox");
    let expected_meta = BTreeMap::from([
        (META_DEVICE_UID.to_owned(), "sr:1".to_owned()),
        (META_SOURCE.to_owned(), "armis,netbox".to_owned()),
        (META_QUERY_LABEL.to_owned(), "cameras,printers".to_owned()),
    ]);
    assert_eq!(target.metadata, expected_meta);
}

#[test]
fn a_target_without_query_labels_has_no_query_label_metadata() {
    let sweep = compile_plain(&[device(
        "sr:1",
        &["10.0.0.1"],
        None,
        vec![sighting("netbox", Some("  "), &["icmp"], &[])],
    )]);
    let target = &sweep.device_targets[0];
    assert_eq!(target.query_label, "");
    assert!(!target.metadata.contains_key(META_QUERY_LABEL));
    assert_eq!(target.metadata[META_DEVICE_UID], "sr:1");
}

#[test]
fn top_level_modes_and_ports_are_the_union_of_the_targets() {
    let sweep = compile_plain(&[
        device(
            "sr:1",
            &["10.0.0.1"],
            None,
            vec![sighting("a", None, &["icmp"], &[9100])],
        ),
        device(
            "sr:2",
            &["10.0.0.2"],
            None,
            vec![sighting("b", None, &["tcp"], &[22])],
        ),
        device(
            "sr:3",
            &["10.0.0.3"],
            None,
            vec![sighting("b", None, &["tcp_connect"], &[22, 23])],
        ),
    ]);
    assert_eq!(sweep.sweep_modes, ["icmp", "tcp", "tcp_connect"]);
    assert_eq!(sweep.ports, [22, 23, 9100]);
}

#[test]
fn tcp_modes_without_any_port_are_dropped_with_a_warning() {
    let no_ports = CompileOptions {
        default_ports: vec![],
        ..CompileOptions::default()
    };
    let devices = [
        device(
            "sr:1",
            &["10.0.0.1"],
            None,
            vec![sighting("a", None, &["icmp", "tcp", "tcp_connect"], &[])],
        ),
        device(
            "sr:2",
            &["10.0.0.2"],
            None,
            vec![sighting("a", None, &["tcp"], &[])],
        ),
        device(
            "sr:3",
            &["10.0.0.3"],
            None,
            vec![sighting("a", None, &["tcp"], &[8443])],
        ),
    ];
    let sweep = compile(&devices, &SourcePolicies::new(), &no_ports);

    assert_eq!(target_networks(&sweep), ["10.0.0.1/32", "10.0.0.3/32"]);
    assert_eq!(sweep.device_targets[0].sweep_modes, ["icmp"]);
    assert!(sweep.device_targets[0].ports.is_empty());
    assert_eq!(sweep.device_targets[1].sweep_modes, ["tcp"]);
    assert_eq!(sweep.device_targets[1].ports, [8443]);
    assert_eq!(sweep.networks, ["10.0.0.1/32", "10.0.0.3/32"]);
    assert_eq!(
        sweep.warnings,
        [
            Warning::TcpModesDroppedNoPorts {
                address: ip("10.0.0.1"),
                modes: vec!["tcp".to_owned(), "tcp_connect".to_owned()],
            },
            Warning::TcpModesDroppedNoPorts {
                address: ip("10.0.0.2"),
                modes: vec!["tcp".to_owned()],
            },
            Warning::TargetDroppedNoModes {
                address: ip("10.0.0.2")
            },
        ]
    );
}

#[test]
fn unknown_modes_are_dropped_with_a_warning_and_defaults_fill_an_empty_union() {
    let sweep = compile_plain(&[
        device(
            "sr:1",
            &["10.0.0.1"],
            None,
            vec![sighting("a", None, &["icmp", "udp"], &[])],
        ),
        device(
            "sr:2",
            &["10.0.0.2"],
            None,
            vec![sighting("a", None, &["arp"], &[])],
        ),
    ]);
    assert_eq!(sweep.device_targets[0].sweep_modes, ["icmp"]);
    assert_eq!(sweep.device_targets[1].sweep_modes, ["icmp", "tcp"]);
    assert_eq!(
        sweep.warnings,
        [
            Warning::UnknownModesDropped {
                address: ip("10.0.0.1"),
                modes: vec!["udp".to_owned()]
            },
            Warning::UnknownModesDropped {
                address: ip("10.0.0.2"),
                modes: vec!["arp".to_owned()]
            },
        ]
    );
}

#[test]
fn an_address_on_two_devices_gives_one_target_with_the_union_of_both() {
    let first = device(
        "sr:b",
        &["10.0.0.1"],
        None,
        vec![sighting("armis", Some("q1"), &["icmp"], &[22])],
    );
    let second = device(
        "sr:a",
        &["10.0.0.1", "10.0.0.2"],
        None,
        vec![sighting("netbox", None, &["tcp"], &[80])],
    );
    let one = compile_plain(&[first.clone(), second.clone()]);
    let other = compile_plain(&[second, first]);
    assert_eq!(one, other);

    assert_eq!(target_networks(&one), ["10.0.0.1/32", "10.0.0.2/32"]);
    let shared = &one.device_targets[0];
    assert_eq!(shared.sweep_modes, ["icmp", "tcp"]);
    assert_eq!(shared.ports, [22, 80]);
    assert_eq!(shared.source, "armis,netbox");
    assert_eq!(shared.query_label, "q1");
    assert_eq!(shared.metadata[META_DEVICE_UID], "sr:a,sr:b");
    assert_eq!(
        one.warnings,
        [Warning::SharedAddress {
            address: ip("10.0.0.1"),
            device_uids: vec!["sr:a".to_owned(), "sr:b".to_owned()],
        }]
    );
}

#[test]
fn addresses_an_agent_cannot_probe_get_no_target() {
    let bad = [
        "0.0.0.0",
        "127.0.0.1",
        "224.0.0.251",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "ff02::1",
    ];
    let mut ips = bad.to_vec();
    ips.push("10.0.0.1");
    let sweep = compile_plain(&[armis("sr:odd", &ips)]);
    assert_eq!(target_networks(&sweep), ["10.0.0.1/32"]);
    assert_eq!(sweep.networks, ["10.0.0.1/32"]);
    assert_eq!(sweep.warnings.len(), bad.len());
    assert!(
        sweep
            .warnings
            .iter()
            .all(|w| matches!(w, Warning::UnsweepableAddress { .. }))
    );
}

#[test]
fn the_interval_is_the_smallest_among_the_sources_of_the_targets() {
    let policy = |secs: Option<u32>, blacklist: &[&str]| SourcePolicy {
        blacklist: blacklist.iter().map(|n| common::net(n)).collect(),
        sweep_interval_secs: secs,
    };
    let policies: SourcePolicies = BTreeMap::from([
        ("armis".to_owned(), policy(Some(1800), &[])),
        ("netbox".to_owned(), policy(Some(7200), &[])),
        ("zero".to_owned(), policy(Some(0), &[])),
        ("vetoed".to_owned(), policy(Some(60), &["10.9.0.0/16"])),
    ]);
    let options = CompileOptions::default();
    let on = |source: &str, addr: &str| {
        device(
            &format!("sr:{source}{addr}"),
            &[addr],
            None,
            vec![sighting(source, None, &["icmp"], &[])],
        )
    };
    let cases: &[(&str, Vec<SweepDevice>, i32)] = &[
        ("no devices: default", vec![], 3600),
        ("netbox only", vec![on("netbox", "10.0.0.1")], 7200),
        (
            "armis and netbox",
            vec![on("netbox", "10.0.0.1"), on("armis", "10.0.0.2")],
            1800,
        ),
        (
            "a zero interval is no opinion",
            vec![on("zero", "10.0.0.1")],
            3600,
        ),
        (
            "a source without policy is no opinion",
            vec![on("other", "10.0.0.1")],
            3600,
        ),
        (
            "a source whose only target is vetoed does not count",
            vec![on("netbox", "10.0.0.1"), on("vetoed", "10.9.0.1")],
            7200,
        ),
    ];
    for (name, devices, expected) in cases {
        assert_eq!(
            compile(devices, &policies, &options).sweep_interval_sec,
            *expected,
            "{name}"
        );
    }
}

#[test]
fn an_agent_without_devices_gets_an_empty_config_with_a_stable_version() {
    let devices = vec![device("sr:b1", &["10.0.2.1"], Some("agent-b"), vec![])];
    let empty = for_agent(&devices, "agent-a");
    assert!(empty.networks.is_empty());
    assert!(empty.device_targets.is_empty());
    assert!(empty.sweep_modes.is_empty());
    assert!(empty.ports.is_empty());
    assert!(empty.warnings.is_empty());
    assert_eq!(empty.sweep_interval_sec, 3600);
    assert_eq!(empty.config_version.len(), 64);
    assert!(
        empty
            .config_version
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(empty.config_version, compile_plain(&[]).config_version);
    assert_eq!(empty, for_agent(&[], "agent-z"));
    assert_ne!(
        empty.config_version,
        for_agent(&devices, "agent-b").config_version
    );
}

#[test]
fn the_version_ignores_warnings_but_not_content() {
    let base = compile_plain(&[armis("sr:1", &["10.0.0.1"])]);
    // Same targets, plus an unsweepable address that only adds a warning.
    let noisy = compile_plain(&[armis("sr:1", &["10.0.0.1", "127.0.0.1"])]);
    assert_eq!(base.config_version, noisy.config_version);
    assert_ne!(base.warnings, noisy.warnings);
    let relabelled = compile_plain(&[device(
        "sr:1",
        &["10.0.0.1"],
        None,
        vec![sighting("armis", Some("other"), &[], &[])],
    )]);
    assert_ne!(base.config_version, relabelled.config_version);
    let renamed = compile_plain(&[armis("sr:2", &["10.0.0.1"])]);
    assert_ne!(base.config_version, renamed.config_version);
}

#[test]
fn a_compiled_config_round_trips_through_json() {
    let sweep = compile_plain(&[armis("sr:1", &["10.0.0.1", "2001:db8::1", "127.0.0.1"])]);
    let json = serde_json::to_string(&sweep).unwrap();
    let back: CompiledSweep<'static> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sweep);
    assert!(json.contains("\"kind\":\"unsweepable_address\""), "{json}");
}

#[test]
fn warnings_read_as_sentences_naming_the_address() {
    let warning = Warning::TcpModesDroppedNoPorts {
        address: ip("10.0.0.1"),
        modes: vec!["tcp".to_owned()],
    };
    assert_eq!(
        warning.to_string(),
        "sweep mode(s) tcp dropped for 10.0.0.1: no ports configured"
    );
    assert_eq!(warning.address(), ip("10.0.0.1"));
}
