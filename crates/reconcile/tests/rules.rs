//! The DIRE rules of CONTRACT §4 and the known failures of §7, one test per rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use sr_reconcile::{
    DeviceField, DeviceUid, Identifier, IdentifierKind, KnownState, Observation, ReconcileConfig,
    ReconcileError, Stated, canonical_id, reconcile, required_lookups,
};

use IdentifierKind::{AgentId, ArmisDeviceId, IntegrationId, Mac, NetboxDeviceId};

#[test]
fn same_armis_id_resolves_to_the_same_device() {
    let mut state = KnownState::new("default");
    let first = step(&mut state, &batch(vec![obs("10.0.0.1").armis("7").at(0)]));
    let second = step(
        &mut state,
        &batch(vec![obs("10.0.0.1").armis("7").hostname("h").at(30)]),
    );
    assert_eq!(state.len(), 1);
    assert_eq!(first.resolutions, second.resolutions);
    assert!(second.inserts.is_empty());
    assert_eq!(second.updates.len(), 1, "known device is updated in place");
}

#[test]
fn new_armis_id_gets_the_contract_canonical_id() {
    let mut state = KnownState::new("");
    let out = step(&mut state, &batch(vec![obs("10.9.9.9").armis("1")]));
    assert_eq!(
        out.resolutions[0].to_string(),
        "sr:8c1ab81a-bdf0-4417-ae9a-6678756238b7"
    );
    assert_eq!(out.inserts.len(), 1);
    assert_eq!(
        out.identifier_inserts
            .get(&Identifier::new(ArmisDeviceId, "1").unwrap()),
        Some(&out.resolutions[0])
    );
}

#[test]
fn ip_only_update_without_holder_gets_the_ip_seeded_canonical_id() {
    let mut state = KnownState::new("default");
    let out = step(&mut state, &batch(vec![obs("10.0.0.1").source("sweep")]));
    assert_eq!(
        out.resolutions[0].to_string(),
        "sr:e0631a87-8b9f-4201-9a11-2ff7067fbb64"
    );
    assert!(out.identifier_inserts.is_empty());
}

#[test]
fn armis_only_then_armis_with_mac_stays_one_device() {
    let mut state = KnownState::new("default");
    let a = step(&mut state, &batch(vec![obs("10.0.0.1").armis("5")]));
    let b = step(
        &mut state,
        &batch(vec![
            obs("10.0.0.1").armis("5").mac("00:1b:21:00:00:05").at(1),
        ]),
    );
    assert_eq!(state.len(), 1);
    assert_eq!(a.resolutions[0], b.resolutions[0]);
    assert_eq!(
        owner_of(&state, Mac, "001B21000005"),
        Some(a.resolutions[0]),
        "the MAC is added to the device found by lookup"
    );
}

#[test]
fn armis_only_and_armis_with_mac_in_one_batch_are_one_device() {
    for items in [
        vec![
            obs("10.0.0.1").armis("5").at(0),
            obs("10.0.0.1").armis("5").mac("00:1b:21:00:00:05").at(1),
        ],
        vec![
            obs("10.0.0.1").armis("5").mac("00:1b:21:00:00:05").at(1),
            obs("10.0.0.1").armis("5").at(0),
        ],
    ] {
        let state = state_after(&[batch(items)]);
        assert_eq!(state.len(), 1);
        let uid = *state.devices().keys().next().unwrap();
        let armis_only = canonical_id(
            "default",
            &[Identifier::new(ArmisDeviceId, "5").unwrap()],
            ip("10.0.0.1"),
        );
        assert_eq!(
            uid, armis_only,
            "the earliest update seeds the id, as if the updates had come one by one"
        );
    }
}

#[test]
fn same_identifier_in_two_partitions_gets_different_canonical_ids() {
    let armis = [Identifier::new(ArmisDeviceId, "1").unwrap()];
    let a = canonical_id("site-a", &armis, ip("10.0.0.1"));
    let b = canonical_id("site-b", &armis, ip("10.0.0.1"));
    assert_ne!(a, b);

    // The caller scopes: one state per partition, and a state refuses foreign updates.
    let mut site_a = KnownState::new("site-a");
    let mut site_b = KnownState::new("site-b");
    let out_a = step(
        &mut site_a,
        &batch(vec![obs("10.0.0.1").armis("1").partition("site-a")]),
    );
    let out_b = step(
        &mut site_b,
        &batch(vec![obs("10.0.0.1").armis("1").partition("site-b")]),
    );
    assert_eq!(out_a.resolutions[0], a);
    assert_eq!(out_b.resolutions[0], b);
    let err = reconcile(
        &site_a,
        &batch(vec![obs("10.0.0.1").armis("1").partition("site-b")]),
        &ReconcileConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        ReconcileError::PartitionMismatch { index: 0, .. }
    ));
}

#[test]
fn empty_partition_is_default() {
    let mut state = KnownState::new("");
    assert_eq!(state.partition(), "default");
    let out = step(
        &mut state,
        &batch(vec![obs("10.0.0.1").armis("1").partition("")]),
    );
    assert_eq!(
        out.resolutions[0],
        canonical_id(
            "default",
            &[Identifier::new(ArmisDeviceId, "1").unwrap()],
            ip("10.0.0.1")
        )
    );
    let groups = sr_reconcile::partitions(&batch(vec![
        obs("10.0.0.1").partition(""),
        obs("10.0.0.2").partition("default"),
        obs("10.0.0.3").partition("edge"),
    ]));
    assert_eq!(groups.get("default"), Some(&vec![0, 1]));
    assert_eq!(groups.get("edge"), Some(&vec![2]));
}

#[test]
fn armis_and_netbox_ids_with_same_value_never_merge() {
    let mut state = KnownState::new("default");
    step(
        &mut state,
        &batch(vec![
            obs("10.0.0.1").armis("42").source("armis"),
            obs("10.0.0.2").netbox("42").source("netbox"),
            obs("10.0.0.3").integration("jamf", "42").source("jamf"),
        ]),
    );
    assert_eq!(state.len(), 3);
    let owners = [
        owner_of(&state, ArmisDeviceId, "42"),
        owner_of(&state, NetboxDeviceId, "42"),
        owner_of(&state, IntegrationId, "jamf:42"),
    ];
    assert!(owners.iter().all(Option::is_some));
    assert_ne!(owners[0], owners[1]);
    assert_ne!(owners[1], owners[2]);
}

#[test]
fn one_update_carrying_identifiers_of_two_devices_merges_them_with_audit() {
    let mut state = state_after(&[batch(vec![
        obs("10.0.0.1")
            .armis("1")
            .source("armis")
            .hostname("armis-host"),
        obs("10.0.0.2").netbox("9").source("netbox"),
    ])]);
    let armis_dev = owner_of(&state, ArmisDeviceId, "1").unwrap();
    let netbox_dev = owner_of(&state, NetboxDeviceId, "9").unwrap();
    let out = step(
        &mut state,
        &batch(vec![
            obs("10.0.0.1")
                .armis("1")
                .netbox("9")
                .source("armis")
                .at(20),
        ]),
    );
    assert_eq!(state.len(), 1);
    assert_eq!(out.merges.len(), 1);
    assert_eq!(out.merges[0].from, netbox_dev);
    assert_eq!(
        out.merges[0].to, armis_dev,
        "highest-priority identifier wins"
    );
    assert!(
        out.merges[0]
            .evidence
            .contains(&Identifier::new(NetboxDeviceId, "9").unwrap())
    );
    assert!(!out.merges[0].reason().is_empty());
    assert_eq!(out.deletes, vec![netbox_dev]);
    assert_eq!(out.identifier_repoints.len(), 1);
    let survivor = state.device(&armis_dev).unwrap();
    assert_eq!(
        survivor
            .discovery_sources
            .iter()
            .cloned()
            .collect::<Vec<_>>(),
        vec!["armis".to_owned(), "netbox".to_owned()]
    );
    assert_eq!(owner_of(&state, NetboxDeviceId, "9"), Some(armis_dev));
}

#[test]
fn merge_winner_is_the_device_named_by_the_update_device_id() {
    let mut state = state_after(&[batch(vec![
        obs("10.0.0.1").armis("1"),
        obs("10.0.0.2").netbox("9"),
    ])]);
    let netbox_dev = owner_of(&state, NetboxDeviceId, "9").unwrap();
    let out = step(
        &mut state,
        &batch(vec![
            obs("10.0.0.1")
                .armis("1")
                .netbox("9")
                .device_id(netbox_dev)
                .at(20),
        ]),
    );
    assert_eq!(out.merges.len(), 1);
    assert_eq!(out.merges[0].to, netbox_dev);
    assert_eq!(owner_of(&state, ArmisDeviceId, "1"), Some(netbox_dev));
}

#[test]
fn merge_winner_is_the_device_of_the_highest_priority_identifier() {
    let table = [
        // (identifiers of device A, of device B, expected winner)
        ("agent", "armis", "A"),
        ("armis", "netbox", "A"),
        ("netbox", "jamf", "B"),
        ("mac", "netbox", "B"),
    ];
    for (a_kind, b_kind, expected) in table {
        let with = |o: Obs, kind: &str| match kind {
            "agent" => o.agent("agent-1").source("self-reported"),
            "armis" => o.armis("1"),
            "netbox" => o.netbox("2"),
            "jamf" => o.integration("jamf", "3"),
            _ => o.mac("00:1b:21:00:00:04"),
        };
        let mut state = state_after(&[batch(vec![
            with(obs("10.0.0.1").at(0), a_kind),
            with(obs("10.0.0.2").at(0), b_kind),
        ])]);
        let a = state
            .devices()
            .values()
            .find(|d| d.ip == Some(ip("10.0.0.1")))
            .unwrap()
            .uid;
        let b = state
            .devices()
            .values()
            .find(|d| d.ip == Some(ip("10.0.0.2")))
            .unwrap()
            .uid;
        let merged = with(with(obs("10.0.0.3").at(30), a_kind), b_kind);
        let out = step(&mut state, &batch(vec![merged]));
        let want = if expected == "A" { a } else { b };
        if (a_kind, b_kind) == ("mac", "netbox") {
            // A MAC-only device cannot be merged into another: that merge is blocked.
            assert!(out.merges.is_empty(), "{a_kind}/{b_kind}");
            assert_eq!(out.blocked_merges.len(), 1, "{a_kind}/{b_kind}");
            assert_eq!(out.resolutions[0], want);
            continue;
        }
        assert_eq!(out.merges.len(), 1, "{a_kind}/{b_kind}");
        assert_eq!(out.merges[0].to, want, "{a_kind}/{b_kind}");
        assert_eq!(state.len(), 1);
    }
}

#[test]
fn merge_winner_is_the_most_recently_seen_when_priorities_tie() {
    let mut state = state_after(&[
        batch(vec![obs("10.0.0.1").integration("jamf", "1").at(0)]),
        batch(vec![obs("10.0.0.2").integration("servicenow", "2").at(60)]),
    ]);
    let older = owner_of(&state, IntegrationId, "jamf:1").unwrap();
    let newer = owner_of(&state, IntegrationId, "servicenow:2").unwrap();
    // Two updates sharing a netbox id, each carrying one integration id: one group reaching
    // both devices through identifiers of the same priority (different integration types).
    let out = step(
        &mut state,
        &batch(vec![
            obs("10.0.0.3").integration("jamf", "1").netbox("77").at(90),
            obs("10.0.0.3")
                .integration("servicenow", "2")
                .netbox("77")
                .at(90),
        ]),
    );
    assert_eq!(out.merges.len(), 1);
    assert_eq!(out.merges[0].from, older);
    assert_eq!(out.merges[0].to, newer, "most recently seen wins the tie");
    assert_eq!(state.len(), 1);
    assert_eq!(owner_of(&state, NetboxDeviceId, "77"), Some(newer));
}

#[test]
fn mac_only_evidence_never_merges_two_devices_and_is_counted() {
    let mut state = state_after(&[batch(vec![
        obs("10.0.0.1").armis("1"),
        obs("10.0.0.2").mac("00:1b:21:00:00:09").source("sweep"),
    ])]);
    let armis_dev = owner_of(&state, ArmisDeviceId, "1").unwrap();
    let mac_dev = owner_of(&state, Mac, "001B21000009").unwrap();
    let out = step(
        &mut state,
        &batch(vec![
            obs("10.0.0.1").armis("1").mac("00:1b:21:00:00:09").at(20),
        ]),
    );
    assert!(out.merges.is_empty());
    assert_eq!(state.len(), 2);
    assert_eq!(out.blocked_merges.len(), 1);
    assert_eq!(out.resolutions[0], armis_dev);
    assert_eq!(
        owner_of(&state, Mac, "001B21000009"),
        Some(mac_dev),
        "MAC not re-pointed"
    );
    assert_eq!(out.conflicts.len(), 1);
}

#[test]
fn medium_strength_mac_alone_never_merges_two_identified_devices() {
    let mut state = KnownState::new("default");
    let out = step(
        &mut state,
        &batch(vec![
            obs("10.0.0.1").armis("1").mac("02:00:00:00:00:01"),
            obs("10.0.0.2").netbox("2").mac("02:00:00:00:00:01"),
        ]),
    );
    assert_eq!(state.len(), 2);
    assert_eq!(out.blocked_merges.len(), 1);
    // A strong MAC in the same situation is shared strong evidence: one device.
    let mut state = KnownState::new("default");
    step(
        &mut state,
        &batch(vec![
            obs("10.0.0.1").armis("1").mac("00:1b:21:00:00:01"),
            obs("10.0.0.2").netbox("2").mac("00:1b:21:00:00:01"),
        ]),
    );
    assert_eq!(state.len(), 1);
}

#[test]
fn two_armis_ids_sharing_one_mac_stay_two_devices_with_the_conflict_recorded() {
    let shared = "00:1b:21:aa:bb:cc";
    // Across batches and inside one batch (both orders).
    let scenarios = [
        vec![
            batch(vec![obs("10.0.0.1").armis("1").mac(shared).at(0)]),
            batch(vec![obs("10.0.0.2").armis("2").mac(shared).at(10)]),
        ],
        vec![batch(vec![
            obs("10.0.0.1").armis("1").mac(shared).at(0),
            obs("10.0.0.2").armis("2").mac(shared).at(10),
        ])],
        vec![batch(vec![
            obs("10.0.0.2").armis("2").mac(shared).at(10),
            obs("10.0.0.1").armis("1").mac(shared).at(0),
        ])],
    ];
    let mut finals = Vec::new();
    for batches in scenarios {
        let mut state = KnownState::new("default");
        let mut conflicts = 0;
        for b in &batches {
            conflicts += step(&mut state, b).conflicts.len();
        }
        assert_eq!(state.len(), 2);
        assert_eq!(conflicts, 1, "shared MAC recorded as conflicting evidence");
        let one = owner_of(&state, ArmisDeviceId, "1").unwrap();
        let two = owner_of(&state, ArmisDeviceId, "2").unwrap();
        assert_ne!(one, two);
        assert_eq!(
            owner_of(&state, Mac, "001B21AABBCC"),
            Some(one),
            "first writer keeps it"
        );
        assert_eq!(
            state.device(&two).unwrap().mac.as_deref(),
            Some("00:1B:21:AA:BB:CC")
        );
        finals.push(state);
    }
    assert_eq!(finals[1], finals[2], "batch order does not matter");
}

#[test]
fn dhcp_swap_between_two_armis_devices_in_one_batch_keeps_both_with_swapped_ips() {
    let mut state = state_after(&[batch(vec![
        obs("10.0.0.1").armis("1").at(0),
        obs("10.0.0.2").armis("2").at(0),
    ])]);
    let one = owner_of(&state, ArmisDeviceId, "1").unwrap();
    let two = owner_of(&state, ArmisDeviceId, "2").unwrap();
    let out = step(
        &mut state,
        &batch(vec![
            obs("10.0.0.2").armis("1").at(30),
            obs("10.0.0.1").armis("2").at(30),
        ]),
    );
    assert!(out.merges.is_empty());
    assert!(out.ip_cleared.is_empty());
    assert_eq!(out.churn(), 2);
    assert_eq!(state.len(), 2);
    assert_eq!(state.device(&one).unwrap().ip, Some(ip("10.0.0.2")));
    assert_eq!(state.device(&two).unwrap().ip, Some(ip("10.0.0.1")));
    assert!(
        out.updates
            .iter()
            .all(|w| w.changed.contains(&DeviceField::Ip))
    );
}

#[test]
fn ip_moved_to_a_new_device_clears_the_old_holder_and_counts_churn() {
    let mut state = state_after(&[batch(vec![obs("10.0.0.1").armis("1").at(0)])]);
    let old = owner_of(&state, ArmisDeviceId, "1").unwrap();
    let out = step(&mut state, &batch(vec![obs("10.0.0.1").armis("2").at(30)]));
    let new = owner_of(&state, ArmisDeviceId, "2").unwrap();
    assert_eq!(state.len(), 2, "sharing an IP never merges");
    assert!(out.merges.is_empty());
    assert_eq!(out.churn(), 1);
    assert_eq!(out.ip_moves[0].from, old);
    assert_eq!(out.ip_moves[0].to, new);
    assert_eq!(out.ip_cleared.len(), 1);
    assert_eq!(state.device(&old).unwrap().ip, None);
    assert_eq!(state.device(&new).unwrap().ip, Some(ip("10.0.0.1")));
}

#[test]
fn an_older_sighting_does_not_take_an_ip_from_a_newer_holder() {
    let mut state = state_after(&[batch(vec![obs("10.0.0.1").armis("1").at(60)])]);
    let holder = owner_of(&state, ArmisDeviceId, "1").unwrap();
    let out = step(&mut state, &batch(vec![obs("10.0.0.1").armis("2").at(30)]));
    assert!(out.ip_moves.is_empty());
    assert_eq!(state.device(&holder).unwrap().ip, Some(ip("10.0.0.1")));
    let late = owner_of(&state, ArmisDeviceId, "2").unwrap();
    assert_eq!(state.device(&late).unwrap().ip, None);
}

#[test]
fn ip_only_update_resolves_to_the_current_holder() {
    let mut state = state_after(&[batch(vec![
        obs("10.0.0.1").armis("1").hostname("cam").at(0),
    ])]);
    let holder = owner_of(&state, ArmisDeviceId, "1").unwrap();
    let out = step(
        &mut state,
        &batch(vec![obs("10.0.0.1").source("sweep").available(true).at(5)]),
    );
    assert_eq!(out.resolutions[0], holder);
    assert_eq!(state.len(), 1);
    let d = state.device(&holder).unwrap();
    assert_eq!(d.is_available, Some(true));
    assert_eq!(d.hostname.as_deref(), Some("cam"));
    assert!(d.discovery_sources.contains("sweep"));
}

#[test]
fn ip_only_update_follows_an_ip_that_moved_in_the_same_batch() {
    let mut state = state_after(&[batch(vec![
        obs("10.0.0.1").armis("1").at(0),
        obs("10.0.0.2").armis("2").at(0),
    ])]);
    let two = owner_of(&state, ArmisDeviceId, "2").unwrap();
    let out = step(
        &mut state,
        &batch(vec![
            obs("10.0.0.9").source("sweep").at(31),
            obs("10.0.0.9").armis("2").at(30),
        ]),
    );
    assert_eq!(out.resolutions, vec![two, two]);
}

#[test]
fn sync_update_without_is_available_leaves_availability_unchanged() {
    let mut state = state_after(&[batch(vec![
        obs("10.0.0.1").armis("1").at(0),
        obs("10.0.0.1").source("sweep").available(true).at(1),
    ])]);
    let uid = owner_of(&state, ArmisDeviceId, "1").unwrap();
    assert_eq!(state.device(&uid).unwrap().is_available, Some(true));
    let out = step(
        &mut state,
        &batch(vec![obs("10.0.0.1").armis("1").source("armis").at(30)]),
    );
    assert_eq!(state.device(&uid).unwrap().is_available, Some(true));
    assert!(
        out.updates
            .iter()
            .all(|w| !w.changed.contains(&DeviceField::IsAvailable))
    );
    step(
        &mut state,
        &batch(vec![
            obs("10.0.0.1").source("sweep").available(false).at(40),
        ]),
    );
    assert_eq!(
        state.device(&uid).unwrap().is_available,
        Some(false),
        "sweep says so"
    );
}

#[test]
fn agent_id_of_a_non_self_reported_update_is_not_an_identifier() {
    let mut state = KnownState::new("default");
    step(
        &mut state,
        &batch(vec![
            obs("10.0.0.1").armis("1").agent("agent-7").source("armis"),
            obs("10.0.0.2").armis("2").agent("agent-7").source("armis"),
            obs("10.0.0.3").agent("agent-7").source("sweep"),
        ]),
    );
    assert_eq!(state.len(), 3);
    assert_eq!(owner_of(&state, AgentId, "agent-7"), None);
    assert!(
        state
            .devices()
            .values()
            .all(|d| d.agent_id.as_deref() == Some("agent-7")),
        "agent_id is kept as the sweep assignment"
    );
}

#[test]
fn self_reported_agent_id_is_an_identifier() {
    let mut state = KnownState::new("default");
    let a = step(
        &mut state,
        &batch(vec![
            obs("10.0.0.1")
                .agent("agent-7")
                .source("self-reported")
                .at(0),
        ]),
    );
    let b = step(
        &mut state,
        &batch(vec![
            obs("10.0.0.2")
                .agent("agent-7")
                .source("Self-Reported")
                .at(30),
        ]),
    );
    assert_eq!(state.len(), 1);
    assert_eq!(a.resolutions[0], b.resolutions[0]);
    assert_eq!(owner_of(&state, AgentId, "agent-7"), Some(a.resolutions[0]));
    assert_eq!(
        state.device(&a.resolutions[0]).unwrap().ip,
        Some(ip("10.0.0.2"))
    );
}

#[test]
fn list_of_macs_in_one_field_is_not_one_identifier() {
    let fields = sr_reconcile::DeviceUpdateFields {
        ip: "10.0.0.1".into(),
        timestamp: "2026-01-01T00:00:00Z".into(),
        mac: "aa:bb:cc:dd:ee:f0,00:1b:21:00:00:01".into(),
        ..Default::default()
    };
    let o = sr_reconcile::Observation::from_update(&fields).unwrap();
    let ids = o.identifiers();
    assert_eq!(ids, vec![Identifier::new(Mac, "AABBCCDDEEF0").unwrap()]);
    assert!(ids.iter().all(|id| id.value().len() == 12));
    let garbage = sr_reconcile::DeviceUpdateFields {
        mac: "aabbccddeef0001b21000001".into(),
        ..fields
    };
    assert!(
        sr_reconcile::Observation::from_update(&garbage)
            .unwrap()
            .identifiers()
            .is_empty()
    );
}

#[test]
fn unchanged_resighting_within_precision_writes_nothing() {
    let mut state = state_after(&[batch(vec![obs("10.0.0.1").armis("1").hostname("h").at(0)])]);
    let out = step(
        &mut state,
        &batch(vec![obs("10.0.0.1").armis("1").hostname("h").at(10)]),
    );
    assert!(!out.has_writes());
    assert_eq!(out.unchanged, 1);
    let out = step(
        &mut state,
        &batch(vec![obs("10.0.0.1").armis("1").hostname("h").at(16)]),
    );
    assert_eq!(out.updates.len(), 1, "stale last_seen is refreshed");
    assert_eq!(
        out.updates[0].changed.iter().copied().collect::<Vec<_>>(),
        vec![DeviceField::LastSeen],
        "the host name's stamp moves with it: stated at last_seen"
    );
}

/// The late update of one source, older than a newer sighting by another source that does not
/// state the same fields, still states its fields: the row ends as it would in order.
#[test]
fn a_late_update_of_one_source_still_states_what_a_newer_sighting_of_another_left_out() {
    let cfg = ReconcileConfig {
        last_seen_precision: chrono::TimeDelta::zero(),
    };
    let seed = batch(vec![
        obs("10.0.0.1")
            .source("armis")
            .armis("1")
            .hostname("old")
            .meta("model", "m0")
            .at(0),
    ]);
    let armis = batch(vec![
        obs("10.0.0.1")
            .source("armis")
            .armis("1")
            .hostname("new")
            .meta("model", "m1")
            .at(19),
    ]);
    let sweep = batch(vec![obs("10.0.0.1").source("sweep").available(true).at(23)]);
    let run = |order: [&Vec<Observation>; 3]| {
        let mut state = KnownState::new("default");
        for b in order {
            let out = reconcile(&state, b, &cfg).unwrap();
            state.apply(&out);
        }
        state
    };
    let in_order = run([&seed, &armis, &sweep]);
    let late = run([&seed, &sweep, &armis]);
    assert_eq!(late, in_order);
    let d = device_with_ip(&late, "10.0.0.1").unwrap();
    assert_eq!(d.hostname.as_deref(), Some("new"));
    assert_eq!(d.model.as_deref(), Some("m1"));
    assert_eq!(d.is_available, Some(true));
    assert_eq!(d.last_seen, at(23));
    assert_eq!(d.stamp(&Stated::Hostname), Some(at(19)));
    assert_eq!(d.stamp(&Stated::IsAvailable), Some(at(23)));
    assert_eq!(d.stamp(&Stated::Os), None);
    // What is stored besides last_seen: the values stated before it.
    let older: Vec<Stated> = d.stamps.iter().map(|(k, _)| k.clone()).collect();
    assert!(older.contains(&Stated::Hostname) && !older.contains(&Stated::IsAvailable));
    // An even older update of the same source changes none of it.
    let older_update = batch(vec![
        obs("10.0.0.1")
            .source("armis")
            .armis("1")
            .hostname("older")
            .at(10),
    ]);
    let out = reconcile(&late, &older_update, &cfg).unwrap();
    assert!(!out.has_writes());
}

/// Two sources stating different values at the same time: the greater value wins, in either
/// order and within one batch.
#[test]
fn equal_times_pick_the_greater_value_whatever_the_order() {
    let cfg = ReconcileConfig {
        last_seen_precision: chrono::TimeDelta::zero(),
    };
    let run = |batches: &[Vec<Observation>]| {
        let mut state = KnownState::new("default");
        for b in batches {
            let out = reconcile(&state, b, &cfg).unwrap();
            state.apply(&out);
        }
        state
    };
    let seed = batch(vec![obs("10.0.0.1").source("armis").armis("1").at(0)]);
    let a = obs("10.0.0.1")
        .source("armis")
        .armis("1")
        .hostname("alpha")
        .at(5);
    let b = obs("10.0.0.1").source("netbox").hostname("beta").at(5);
    let all = [
        run(&[seed.clone(), batch(vec![a.clone()]), batch(vec![b.clone()])]),
        run(&[seed.clone(), batch(vec![b.clone()]), batch(vec![a.clone()])]),
        run(&[seed, batch(vec![b, a])]),
    ];
    for s in &all {
        let d = device_with_ip(s, "10.0.0.1").unwrap();
        assert_eq!(d.hostname.as_deref(), Some("beta"));
    }
    assert_eq!(all[0], all[1]);
    assert_eq!(all[1], all[2]);
}

#[test]
fn redelivered_batch_changes_nothing() {
    let b = batch(vec![
        obs("10.0.0.1").armis("1").mac("00:1b:21:00:00:01").at(0),
        obs("10.0.0.2").netbox("3").at(0),
        obs("10.0.0.3").source("sweep").available(true).at(0),
        obs("10.0.0.1").armis("1").netbox("3").at(5),
    ]);
    let mut state = KnownState::new("default");
    let first = step(&mut state, &b);
    assert!(first.has_writes());
    let snapshot = state.clone();
    let again = step(&mut state, &b);
    assert!(!again.has_writes(), "{again:?}");
    assert_eq!(state, snapshot);
    assert_eq!(again.resolutions, first.resolutions);
}

#[test]
fn empty_hostname_does_not_clear_a_stored_hostname() {
    let mut state = state_after(&[batch(vec![
        obs("10.0.0.1").armis("1").hostname("kept").at(0),
    ])]);
    let fields = sr_reconcile::DeviceUpdateFields {
        ip: "10.0.0.1".into(),
        timestamp: "2026-01-01T00:05:00Z".into(),
        hostname: "  ".into(),
        metadata: [("armis_device_id".to_owned(), "1".to_owned())].into(),
        ..Default::default()
    };
    let o = sr_reconcile::Observation::from_update(&fields).unwrap();
    let out = step(&mut state, &[o]);
    let uid = out.resolutions[0];
    assert_eq!(
        state.device(&uid).unwrap().hostname.as_deref(),
        Some("kept")
    );
    assert_eq!(state.device(&uid).unwrap().name().as_deref(), Some("kept"));
}

#[test]
fn merged_away_identifiers_point_directly_at_the_survivor_without_chains() {
    let mut state = state_after(&[batch(vec![
        obs("10.0.0.1").armis("1").at(0),
        obs("10.0.0.2").netbox("2").mac("00:1b:21:00:00:02").at(0),
        obs("10.0.0.3").integration("jamf", "3").at(0),
    ])]);
    step(
        &mut state,
        &batch(vec![obs("10.0.0.1").armis("1").netbox("2").at(20)]),
    );
    step(
        &mut state,
        &batch(vec![
            obs("10.0.0.1").netbox("2").integration("jamf", "3").at(40),
        ]),
    );
    assert_eq!(state.len(), 1);
    let survivor = *state.devices().keys().next().unwrap();
    assert!(state.identifiers().values().all(|uid| *uid == survivor));
    assert_eq!(state.identifiers().len(), 4);
    state.validate().unwrap();
}

#[test]
fn state_with_an_identifier_of_an_unloaded_device_is_rejected() {
    let mut state = KnownState::new("default");
    let ghost = DeviceUid::parse("sr:00000000-0000-4000-8000-000000000001").unwrap();
    state.insert_identifier(Identifier::new(ArmisDeviceId, "1").unwrap(), ghost);
    let err = reconcile(&state, &[], &ReconcileConfig::default()).unwrap_err();
    assert!(matches!(err, ReconcileError::InvalidState(_)));
}

#[test]
fn lookups_name_identifiers_ips_and_candidate_uids() {
    let claimed = DeviceUid::parse("sr:00000000-0000-4000-8000-000000000001").unwrap();
    let b = batch(vec![
        obs("10.0.0.1").armis("1").mac("00:1b:21:00:00:01"),
        obs("10.0.0.2").device_id(claimed),
    ]);
    let l = required_lookups(&b);
    assert_eq!(l.identifiers.len(), 2);
    assert_eq!(l.ips.len(), 2);
    assert!(
        !l.uids.contains(&claimed),
        "device_id never resolves by itself"
    );
    assert!(l.uids.contains(&b[0].canonical_id()));
    assert!(l.uids.contains(&b[1].canonical_id()));
}

#[test]
fn device_id_alone_does_not_resolve_an_update_to_another_ip_holder() {
    let mut state = state_after(&[batch(vec![
        obs("10.0.0.1").armis("1").at(0),
        obs("10.0.0.2").armis("2").at(0),
    ])]);
    let one = owner_of(&state, ArmisDeviceId, "1").unwrap();
    let two = owner_of(&state, ArmisDeviceId, "2").unwrap();
    let out = step(
        &mut state,
        &batch(vec![obs("10.0.0.2").device_id(one).at(30)]),
    );
    assert_eq!(
        out.resolutions[0], two,
        "the IP holder, not the claimed device"
    );
    assert_eq!(state.device(&one).unwrap().ip, Some(ip("10.0.0.1")));
}

#[test]
fn a_new_device_with_a_locally_administered_mac_is_seeded_by_it() {
    let mut state = KnownState::new("default");
    let out = step(
        &mut state,
        &batch(vec![obs("10.0.0.5").mac("02:00:00:00:00:05")]),
    );
    assert_eq!(
        out.resolutions[0],
        canonical_id(
            "default",
            &[Identifier::new(Mac, "020000000005").unwrap()],
            ip("10.0.0.5")
        )
    );
    // Seen again at another IP: found through the MAC, not through the IP.
    let again = step(
        &mut state,
        &batch(vec![obs("10.0.0.6").mac("02:00:00:00:00:05").at(20)]),
    );
    assert_eq!(again.resolutions[0], out.resolutions[0]);
    assert_eq!(state.len(), 1);
}

#[test]
fn a_late_batch_older_than_the_stored_sighting_does_not_roll_back_fields_or_ip() {
    // Replicas and redelivery can commit an older batch after a newer one.
    let old = batch(vec![obs("10.0.0.1").armis("1").hostname("old-name").at(0)]);
    let new = batch(vec![obs("10.0.0.2").armis("1").hostname("new-name").at(30)]);
    let in_order = state_after(&[old.clone(), new.clone()]);
    let reversed = state_after(&[new.clone(), old.clone()]);
    assert_eq!(in_order, reversed);
    let d = in_order.devices().values().next().unwrap();
    assert_eq!(d.hostname.as_deref(), Some("new-name"));
    assert_eq!(d.ip, Some(ip("10.0.0.2")));
    assert_eq!(d.first_seen, at(0));
    assert_eq!(d.last_seen, at(30));
    // The stale batch still fills what the newer one did not say.
    let mut state = state_after(&[new]);
    let out = step(
        &mut state,
        &batch(vec![obs("10.0.0.1").armis("1").meta("model", "X1").at(0)]),
    );
    assert!(out.ip_moves.is_empty() && out.ip_cleared.is_empty());
    let d = state.devices().values().next().unwrap();
    assert_eq!(d.model.as_deref(), Some("X1"));
    assert_eq!(d.ip, Some(ip("10.0.0.2")));
}

#[test]
fn sweep_hints_keep_the_latest_per_source_and_query_label() {
    let mut state = KnownState::new("default");
    step(
        &mut state,
        &batch(vec![
            obs("10.0.0.1")
                .armis("1")
                .source("armis")
                .meta("query_label", "cams")
                .meta("sweep_modes", "TCP, icmp,tcp")
                .meta("sweep_ports", "443,22,x,443")
                .meta("sweep_interval_secs", "600")
                .at(0),
            obs("10.0.0.1")
                .netbox("9")
                .armis("1")
                .source("netbox")
                .at(0),
        ]),
    );
    let d = state.devices().values().next().unwrap();
    assert_eq!(d.sweep_hints.len(), 2);
    let armis = &d.sweep_hints[0];
    assert_eq!(
        (armis.source.as_str(), armis.query_label.as_deref()),
        ("armis", Some("cams"))
    );
    assert_eq!(armis.sweep_modes, vec!["icmp", "tcp"]);
    assert_eq!(armis.ports, vec![22, 443]);
    assert_eq!(armis.sweep_interval_secs, Some(600));
    assert_eq!(d.sweep_hints[1].source, "netbox");
    // A newer sighting of the same query replaces its hint; another query adds one.
    let out = step(
        &mut state,
        &batch(vec![
            obs("10.0.0.1")
                .armis("1")
                .source("armis")
                .meta("query_label", "cams")
                .meta("sweep_modes", "icmp")
                .at(30),
            obs("10.0.0.1")
                .armis("1")
                .source("armis")
                .meta("query_label", "all")
                .at(30),
        ]),
    );
    assert!(out.updates[0].changed.contains(&DeviceField::SweepHints));
    let d = state.devices().values().next().unwrap();
    let labels: Vec<(&str, Option<&str>, Vec<String>)> = d
        .sweep_hints
        .iter()
        .map(|h| {
            (
                h.source.as_str(),
                h.query_label.as_deref(),
                h.sweep_modes.clone(),
            )
        })
        .collect();
    assert_eq!(
        labels,
        vec![
            ("armis", Some("all"), vec![]),
            ("armis", Some("cams"), vec!["icmp".to_owned()]),
            ("netbox", None, vec![]),
        ]
    );
}

/// At the default precision: a row written anyway stamps every restated value with the new
/// `last_seen` and keeps the time of the values the update did not state; an unchanged
/// restatement within the precision writes nothing.
#[test]
fn a_written_row_restamps_restated_values_and_keeps_the_others() {
    let armis = |minutes, model: &str| {
        batch(vec![
            obs("10.0.0.1")
                .source("armis")
                .armis("1")
                .hostname("h")
                .meta("model", model)
                .at(minutes),
        ])
    };
    let sweep = batch(vec![obs("10.0.0.1").source("sweep").available(true).at(10)]);
    let mut state = state_after(&[armis(0, "m0"), sweep]);
    let d = device_with_ip(&state, "10.0.0.1").unwrap();
    assert_eq!(d.stamp(&Stated::Hostname), Some(at(0)));
    assert_eq!(d.stamp(&Stated::IsAvailable), Some(at(10)));
    let out = step(&mut state, &armis(20, "m1"));
    assert_eq!(out.updates.len(), 1);
    let d = device_with_ip(&state, "10.0.0.1").unwrap();
    assert_eq!(d.last_seen, at(20));
    assert_eq!(
        d.stamp(&Stated::Hostname),
        Some(at(20)),
        "restated, row written"
    );
    assert_eq!(d.stamp(&Stated::Model), Some(at(20)));
    assert_eq!(
        d.stamp(&Stated::IsAvailable),
        Some(at(10)),
        "not stated: kept"
    );
    let stored: Vec<(Stated, chrono::DateTime<chrono::Utc>)> =
        d.stamps.iter().map(|(k, t)| (k.clone(), *t)).collect();
    let sweep_hint = Stated::Hint("sweep".into(), None);
    assert_eq!(
        stored,
        vec![(Stated::IsAvailable, at(10)), (sweep_hint, at(10))]
    );
    let out = step(&mut state, &armis(25, "m1"));
    assert!(!out.has_writes(), "unchanged within the precision");
}
