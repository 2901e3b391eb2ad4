//! The incremental index: which agents a change affects, and compiles equal to one-shot ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{device, net, sighting, target_networks};
use sr_sweep::{
    Affected, CompileOptions, META_DEVICE_UID, SourcePolicies, SourcePolicy, SweepDevice,
    SweepIndex, Warning, compile, devices_for_agent,
};

fn fleet() -> Vec<SweepDevice> {
    vec![
        device(
            "sr:a1",
            &["10.0.1.1"],
            Some("agent-a"),
            vec![sighting("armis", Some("q"), &["icmp"], &[])],
        ),
        device(
            "sr:a2",
            &["10.0.1.2", "2001:db8::a2"],
            Some("agent-a"),
            vec![],
        ),
        device(
            "sr:b1",
            &["10.0.2.1"],
            Some("agent-b"),
            vec![sighting("netbox", None, &["tcp"], &[22])],
        ),
        device("sr:u1", &["10.0.9.1"], None, vec![]),
    ]
}

fn index_of(devices: &[SweepDevice]) -> SweepIndex {
    SweepIndex::from_devices(
        devices.iter().cloned(),
        SourcePolicies::new(),
        CompileOptions::default(),
    )
}

fn agents(names: &[&str]) -> Affected {
    Affected::Agents(names.iter().map(|n| (*n).to_owned()).collect())
}

fn versions(index: &SweepIndex) -> BTreeMap<&'static str, String> {
    ["agent-a", "agent-b", "agent-c"]
        .into_iter()
        .map(|a| (a, index.compile_for(a).config_version))
        .collect()
}

#[test]
fn the_index_compiles_what_a_one_shot_compile_of_the_agents_devices_gives() {
    let devices = fleet();
    let index = index_of(&devices);
    for agent in ["agent-a", "agent-b", "agent-c", ""] {
        let expected = compile(
            devices_for_agent(&devices, agent),
            &SourcePolicies::new(),
            &CompileOptions::default(),
        );
        assert_eq!(index.compile_for(agent), expected, "{agent}");
        assert_eq!(index.compile_for(agent).into_owned(), expected, "{agent}");
    }
    assert_eq!(index.assigned_agents(), ["agent-a", "agent-b"]);
    assert_eq!(index.len(), 4);
}

#[test]
fn changing_one_device_of_agent_a_affects_only_agent_a() {
    let mut index = index_of(&fleet());
    let before = versions(&index);
    let changed = device(
        "sr:a1",
        &["10.0.1.1"],
        Some("agent-a"),
        vec![sighting("armis", Some("q"), &["icmp", "tcp"], &[])],
    );
    assert_eq!(index.upsert(changed), agents(&["agent-a"]));
    let after = versions(&index);
    assert_ne!(before["agent-a"], after["agent-a"]);
    assert_eq!(before["agent-b"], after["agent-b"]);
    assert_eq!(before["agent-c"], after["agent-c"]);
}

#[test]
fn moving_a_device_between_agents_affects_both() {
    let mut index = index_of(&fleet());
    let moved = device(
        "sr:a1",
        &["10.0.1.1"],
        Some("agent-b"),
        vec![sighting("armis", Some("q"), &["icmp"], &[])],
    );
    let affected = index.upsert(moved);
    assert_eq!(affected, agents(&["agent-a", "agent-b"]));
    assert!(!target_networks(&index.compile_for("agent-a")).contains(&"10.0.1.1/32".to_owned()));
    assert!(target_networks(&index.compile_for("agent-b")).contains(&"10.0.1.1/32".to_owned()));
}

#[test]
fn an_unassigned_device_affects_all_agents() {
    let mut index = index_of(&fleet());
    let before = versions(&index);
    let affected = index.upsert(device("sr:u2", &["10.0.9.2"], None, vec![]));
    assert_eq!(affected, Affected::AllAgents);
    assert_eq!(
        affected.resolve(["agent-a", "agent-b", "agent-c"]),
        BTreeSet::from([
            "agent-a".to_owned(),
            "agent-b".to_owned(),
            "agent-c".to_owned()
        ])
    );
    let after = versions(&index);
    for agent in ["agent-a", "agent-b", "agent-c"] {
        assert_ne!(before[agent], after[agent], "{agent}");
    }
    // Assigning it to agent-b later affects every agent again (it leaves the others).
    assert_eq!(
        index.upsert(device("sr:u2", &["10.0.9.2"], Some("agent-b"), vec![])),
        Affected::AllAgents
    );
}

#[test]
fn an_unchanged_device_affects_no_agent_even_with_sightings_reordered() {
    let mut index = index_of(&fleet());
    let same = device(
        "sr:b1",
        &["10.0.2.1", "10.0.2.1"],
        Some(" agent-b "),
        vec![
            sighting("netbox", None, &["TCP"], &[22]),
            sighting("netbox", None, &[], &[]),
        ],
    );
    assert_eq!(index.upsert(same), Affected::Nothing);
    assert_eq!(Affected::Nothing.resolve(["agent-a"]), BTreeSet::new());
}

#[test]
fn removing_a_device_affects_its_agent_and_an_unknown_uid_affects_nobody() {
    let mut index = index_of(&fleet());
    assert_eq!(index.remove("sr:b1"), agents(&["agent-b"]));
    assert!(!index.contains("sr:b1"));
    assert_eq!(index.remove("sr:b1"), Affected::Nothing);
    assert_eq!(index.assigned_agents(), ["agent-a"]);
    assert_eq!(index.remove("sr:u1"), Affected::AllAgents);
    assert_eq!(
        target_networks(&index.compile_for("agent-b")),
        Vec::<String>::new()
    );
}

#[test]
fn a_device_without_addresses_affects_no_agent() {
    let mut index = index_of(&fleet());
    assert_eq!(
        index.upsert(device("sr:n", &[], None, vec![])),
        Affected::Nothing
    );
    assert_eq!(
        index.upsert(device("sr:n", &["10.0.5.5"], Some("agent-a"), vec![])),
        agents(&["agent-a"])
    );
    assert_eq!(
        index.upsert(device("sr:n", &[], Some("agent-b"), vec![])),
        agents(&["agent-a"])
    );
}

#[test]
fn affected_includes_matches_the_agents_it_names() {
    let affected = agents(&["agent-a"]);
    assert!(affected.includes("agent-a"));
    assert!(affected.includes(" agent-a"));
    assert!(!affected.includes("agent-b"));
    assert!(Affected::AllAgents.includes("anyone"));
    assert!(!Affected::Nothing.includes("agent-a"));
}

#[test]
fn changing_policies_or_options_affects_every_agent_once() {
    let mut index = index_of(&fleet());
    let before = index.compile_for("agent-a");
    let before_version = before.config_version.clone();
    drop(before);
    let policies = BTreeMap::from([(
        "armis".to_owned(),
        SourcePolicy {
            blacklist: vec![net("10.0.1.1/32")],
            sweep_interval_secs: Some(600),
        },
    )]);
    assert_eq!(index.set_policies(policies.clone()), Affected::AllAgents);
    assert_eq!(index.set_policies(policies), Affected::Nothing);
    let after = index.compile_for("agent-a");
    assert_ne!(after.config_version, before_version);
    assert!(!target_networks(&after).contains(&"10.0.1.1/32".to_owned()));
    assert!(matches!(after.warnings[0], Warning::Blacklisted { .. }));
    drop(after);

    let options = CompileOptions {
        default_interval_secs: 60,
        ..CompileOptions::default()
    };
    assert_eq!(index.set_options(options.clone()), Affected::AllAgents);
    assert_eq!(index.set_options(options), Affected::Nothing);
    assert_eq!(index.compile_for("agent-b").sweep_interval_sec, 60);
}

#[test]
fn a_later_device_with_the_same_uid_replaces_the_earlier_one_in_a_bulk_load() {
    let devices = vec![
        device("sr:x", &["10.0.0.1"], Some("agent-a"), vec![]),
        device("sr:x", &["10.0.0.2"], Some("agent-b"), vec![]),
    ];
    let index = index_of(&devices);
    assert_eq!(index.len(), 1);
    assert!(index.compile_for("agent-a").device_targets.is_empty());
    assert_eq!(
        target_networks(&index.compile_for("agent-b")),
        ["10.0.0.2/32"]
    );
}

#[test]
fn an_address_shared_across_agents_is_compiled_per_agent_from_the_devices_it_sees() {
    let devices = vec![
        device(
            "sr:x",
            &["10.0.0.1"],
            Some("agent-a"),
            vec![sighting("armis", None, &["icmp"], &[])],
        ),
        device(
            "sr:y",
            &["10.0.0.1"],
            Some("agent-b"),
            vec![sighting("netbox", None, &["tcp"], &[22])],
        ),
        device(
            "sr:z",
            &["10.0.0.1"],
            None,
            vec![sighting("faker", None, &["tcp_connect"], &[80])],
        ),
    ];
    let mut index = index_of(&devices);
    let a = index.compile_for("agent-a");
    assert_eq!(a.device_targets.len(), 1);
    assert_eq!(a.device_targets[0].metadata[META_DEVICE_UID], "sr:x,sr:z");
    assert_eq!(a.device_targets[0].sweep_modes, ["icmp", "tcp_connect"]);
    let c = index.compile_for("agent-c");
    assert_eq!(c.device_targets[0].metadata[META_DEVICE_UID], "sr:z");
    assert!(c.warnings.is_empty());
    for agent in ["agent-a", "agent-b", "agent-c"] {
        let expected = compile(
            devices_for_agent(&devices, agent),
            &SourcePolicies::new(),
            &CompileOptions::default(),
        );
        assert_eq!(index.compile_for(agent), expected, "{agent}");
    }
    drop((a, c));
    assert_eq!(index.remove("sr:z"), Affected::AllAgents);
    assert!(index.compile_for("agent-c").device_targets.is_empty());
    assert_eq!(
        index.compile_for("agent-b").device_targets[0].metadata[META_DEVICE_UID],
        "sr:y"
    );
}

/// Twelve agents with ten devices each, a few unassigned devices and a shared address: every
/// agent sees well under a quarter of the partition, so compiling one visits its slots by
/// address (not a walk of the whole map). It must agree with a one-shot compile before and
/// after changes that move addresses between scopes.
#[test]
fn compiling_a_small_agent_of_a_large_partition_agrees_with_a_one_shot_compile() {
    let agents: Vec<String> = (0..12).map(|a| format!("agent-{a:02}")).collect();
    let mut devices: Vec<SweepDevice> = Vec::new();
    for (a, agent) in agents.iter().enumerate() {
        for d in 0..10 {
            let addr = format!("10.{a}.0.{d}");
            devices.push(device(
                &format!("sr:{a:02}-{d}"),
                &[&addr],
                Some(agent),
                vec![sighting("armis", Some("q"), &["icmp", "tcp"], &[22])],
            ));
        }
    }
    devices.push(device("sr:u1", &["10.200.0.1"], None, vec![]));
    devices.push(device("sr:u2", &["10.0.0.3", "2001:db8::1"], None, vec![]));
    let check = |index: &SweepIndex, devices: &[SweepDevice], when: &str| {
        for agent in agents.iter().map(String::as_str).chain(["agent-none"]) {
            let expected = compile(
                devices_for_agent(devices, agent),
                &SourcePolicies::new(),
                &CompileOptions::default(),
            );
            assert_eq!(index.compile_for(agent), expected, "{agent} {when}");
        }
    };
    let mut index = index_of(&devices);
    check(&index, &devices, "after the bulk load");

    let mut changes: Vec<SweepDevice> = vec![
        // An agent-00 device moves to agent-01; an address of agent-02 becomes shared by an
        // unassigned device; an unassigned device gets an agent; one agent loses a device.
        device("sr:00-1", &["10.0.0.1"], Some("agent-01"), vec![]),
        device("sr:u3", &["10.2.0.5"], None, vec![]),
        device("sr:u1", &["10.200.0.1"], Some("agent-05"), vec![]),
    ];
    for change in changes.drain(..) {
        devices.retain(|d| d.uid != change.uid);
        devices.push(change.clone());
        index.upsert(change);
        check(&index, &devices, "after an upsert");
    }
    devices.retain(|d| d.uid != "sr:03-4");
    index.remove("sr:03-4");
    devices.retain(|d| d.uid != "sr:u3");
    index.remove("sr:u3");
    check(&index, &devices, "after removals");
}
