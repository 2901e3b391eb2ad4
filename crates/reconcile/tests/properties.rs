//! Property tests: order independence, idempotence, invariants, subset loading, device bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::at;
use proptest::prelude::*;
use sr_reconcile::{
    Identifier, Key, KeyFilter, KnownState, MacAddr, Memo, Observation, Outcome, ReconcileConfig,
    claim, demote_touched, plan_skips, reconcile, required_lookups, required_lookups_claimed,
    settled_by,
};

/// A "real device" the generator draws updates from.
#[derive(Debug, Clone)]
struct Template {
    /// 0 agent, 1 armis, 2 integration, 3 netbox, 4 strong MAC, 5 medium MAC.
    top: u8,
    netbox: bool,
    /// Index into the MAC pool (shared between templates when equal), if any.
    mac: Option<u8>,
    /// For agent templates: an Armis id from a small shared pool (conflicts across agents).
    armis_alias: Option<u8>,
}

fn mac_of(template: &Template, idx: u8) -> MacAddr {
    // Templates whose identity is a medium MAC use locally administered addresses.
    let first = if template.top == 5 { 0x02 } else { 0x00 };
    MacAddr::from_octets([first, 0x1b, 0x21, 0, 0, idx + 1])
}

fn template_strategy() -> impl Strategy<Value = Template> {
    (
        0u8..6,
        any::<bool>(),
        prop::option::of(0u8..4),
        prop::option::of(0u8..2),
    )
        .prop_map(|(top, netbox, mac, armis_alias)| Template {
            top,
            netbox,
            mac,
            armis_alias,
        })
}

/// One raw update: template index (or IP-only when >= templates), and random knobs.
type Raw = (u8, u8, u8, u8, u8, u8, u8);

fn raw_strategy() -> impl Strategy<Value = Raw> {
    (0u8..8, 0u8..6, 0u8..4, 0u8..3, 0u8..4, 0u8..8, 0u8..12)
}

const SOURCES: [&str; 3] = ["armis", "netbox", "sweep"];

fn build(templates: &[Template], raw: Raw, base_minutes: i64) -> (Observation, Option<usize>) {
    let (t, ip_idx, host, avail, optional, minute, claim) = raw;
    let mut o = Observation::new(
        format!("10.0.0.{}", ip_idx + 1).parse().unwrap(),
        at(base_minutes + i64::from(minute) * 7),
    );
    o.hostname = match host {
        0 => None,
        h => Some(format!("host-{h}")),
    };
    o.is_available = match avail {
        0 => None,
        1 => Some(true),
        _ => Some(false),
    };
    o.source = Some(SOURCES[usize::from(minute) % SOURCES.len()].to_owned());
    o.agent_id = Some("agent-shared".to_owned());
    // Sometimes claim the uid a template's first sighting would have produced.
    if usize::from(claim) < templates.len() {
        let (probe, _) = build(
            templates,
            (claim, ip_idx, 0, 0, 3, 0, u8::MAX),
            base_minutes,
        );
        o.device_id = Some(probe.canonical_id());
    }
    let Some(template) = templates.get(usize::from(t)) else {
        return (o, None);
    };
    let id = u32::from(t) + 1;
    match template.top {
        0 => {
            o.source = Some("self-reported".to_owned());
            o.agent_id = Some(format!("agent-{id}"));
            if let Some(alias) = template.armis_alias
                && optional & 1 == 1
            {
                o.metadata
                    .insert("armis_device_id".into(), format!("alias-{alias}"));
            }
        }
        1 => {
            o.metadata.insert("armis_device_id".into(), id.to_string());
        }
        2 => {
            o.metadata.insert("integration_type".into(), "jamf".into());
            o.metadata.insert("integration_id".into(), id.to_string());
        }
        3 => {
            o.metadata.insert("netbox_device_id".into(), id.to_string());
        }
        _ => {}
    }
    // The top identifier is always carried; lower ones only sometimes.
    let mac_always = template.top >= 4;
    if template.netbox && template.top < 3 && optional & 1 == 1 {
        o.metadata
            .insert("netbox_device_id".into(), format!("nb-{id}"));
    }
    if let Some(m) = template.mac
        && (mac_always || optional & 2 == 2)
    {
        o.mac = Some(mac_of(template, m));
    }
    if template.top >= 4 && template.mac.is_none() {
        o.mac = Some(mac_of(template, 10 + t));
    }
    (o, Some(usize::from(t)))
}

fn build_batch(templates: &[Template], raws: &[Raw], base: i64) -> Vec<Observation> {
    raws.iter().map(|r| build(templates, *r, base).0).collect()
}

fn run(state: &KnownState, batch: &[Observation]) -> Outcome {
    reconcile(state, batch, &ReconcileConfig::default()).unwrap()
}

fn applied(state: &KnownState, batch: &[Observation]) -> KnownState {
    let mut next = state.clone();
    next.apply(&run(state, batch));
    next
}

fn without_resolutions(mut o: Outcome) -> Outcome {
    o.resolutions.clear();
    o
}

fn scenario() -> impl Strategy<Value = (Vec<Template>, Vec<Vec<Raw>>, Vec<Raw>, Vec<usize>)> {
    (
        prop::collection::vec(template_strategy(), 1..6),
        prop::collection::vec(prop::collection::vec(raw_strategy(), 0..8), 0..3),
        prop::collection::vec(raw_strategy(), 1..12),
    )
        .prop_flat_map(|(templates, pre, batch)| {
            let n = batch.len();
            let perm = Just((0..n).collect::<Vec<usize>>()).prop_shuffle();
            (Just(templates), Just(pre), Just(batch), perm)
        })
}

/// What DIRE does with a memo: skip the covered updates, reconcile the rest against the
/// subset of `state` they need, un-skip whatever that outcome touched and start again, then
/// remember what the batch settled. Returns the outcome and how many updates were skipped.
fn reconcile_skipping(
    state: &KnownState,
    memo: &mut Memo,
    batch: &[Observation],
) -> (Outcome, usize) {
    let cfg = ReconcileConfig::default();
    let keys: Vec<Key> = batch.iter().map(Key::of).collect();
    let covered: Vec<bool> = batch
        .iter()
        .zip(&keys)
        .map(|(o, k)| memo.covers(k, o.timestamp))
        .collect();
    let mut skip = plan_skips(batch, &covered);
    loop {
        let rest: Vec<Observation> = batch
            .iter()
            .zip(&skip)
            .filter(|(_, s)| !**s)
            .map(|(o, _)| o.clone())
            .collect();
        let rest_keys: Vec<Key> = keys
            .iter()
            .zip(&skip)
            .filter(|(_, s)| !**s)
            .map(|(k, _)| *k)
            .collect();
        let loaded = state.subset(&required_lookups(&rest));
        let outcome = reconcile(&loaded, &rest, &cfg).unwrap();
        if demote_touched(&mut skip, &keys, &outcome) {
            continue;
        }
        memo.record(
            &outcome,
            settled_by(&loaded, &rest, &rest_keys, &outcome, &cfg),
        );
        return (outcome, skip.iter().filter(|s| **s).count());
    }
}

/// A batch again, `shift` minutes later.
fn later(batch: &[Observation], shift: i64) -> Vec<Observation> {
    batch
        .iter()
        .map(|o| {
            let mut o = o.clone();
            o.timestamp += chrono::TimeDelta::minutes(shift);
            o
        })
        .collect()
}

fn prepopulated(templates: &[Template], pre: &[Vec<Raw>]) -> KnownState {
    let mut state = KnownState::new("default");
    for (k, raws) in pre.iter().enumerate() {
        let b = build_batch(templates, raws, 30 * k as i64);
        state = applied(&state, &b);
    }
    state
}

fn check_invariants(state: &KnownState) {
    state.validate().unwrap();
    let mut ips = BTreeSet::new();
    for d in state.devices().values() {
        if let Some(ip) = d.ip {
            assert!(ips.insert(ip), "IP {ip} held by two devices");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn any_permutation_of_a_batch_gives_the_same_decision_and_final_state(
        (templates, pre, raws, perm) in scenario()
    ) {
        let batch = build_batch(&templates, &raws, 50);
        let shuffled: Vec<Observation> = perm.iter().map(|&i| batch[i].clone()).collect();
        for state in [KnownState::new("default"), prepopulated(&templates, &pre)] {
            let a = run(&state, &batch);
            let b = run(&state, &shuffled);
            for (j, &i) in perm.iter().enumerate() {
                prop_assert_eq!(a.resolutions[i], b.resolutions[j]);
            }
            prop_assert_eq!(without_resolutions(a), without_resolutions(b));
            prop_assert_eq!(applied(&state, &batch), applied(&state, &shuffled));
        }
    }

    #[test]
    fn reprocessing_a_batch_changes_nothing((templates, pre, raws, _perm) in scenario()) {
        let state = prepopulated(&templates, &pre);
        let batch = build_batch(&templates, &raws, 50);
        let first = run(&state, &batch);
        let mut after = state.clone();
        after.apply(&first);
        let again = run(&after, &batch);
        prop_assert!(!again.has_writes(), "second pass wrote: {:?}", again);
        prop_assert!(again.ip_moves.is_empty() && again.ip_cleared.is_empty());
        prop_assert_eq!(&again.resolutions, &first.resolutions);
        let mut twice = after.clone();
        twice.apply(&again);
        prop_assert_eq!(twice, after);
    }

    #[test]
    fn after_applying_every_identifier_points_at_an_existing_device_and_ips_are_unique(
        (templates, pre, raws, _perm) in scenario()
    ) {
        let state = prepopulated(&templates, &pre);
        check_invariants(&state);
        let batch = build_batch(&templates, &raws, 50);
        let out = run(&state, &batch);
        let after = applied(&state, &batch);
        check_invariants(&after);
        for uid in &out.resolutions {
            prop_assert!(after.device(uid).is_some(), "resolution {} is not a device", uid);
        }
        // Every identifier the batch carried is now held by exactly one existing device.
        for o in &batch {
            for id in o.identifiers() {
                let owner = after.owner(&id);
                prop_assert!(owner.is_some_and(|u| after.device(&u).is_some()), "{}", id);
            }
        }
    }

    #[test]
    fn a_load_the_outcome_leaves_alone_finds_the_same_before_and_after_applying_it(
        (templates, pre, raws, _perm) in scenario()
    ) {
        let state = prepopulated(&templates, &pre);
        // The first half is written; the second half's keys are loaded meanwhile.
        let (first, second) = raws.split_at(raws.len() / 2);
        let written = run(&state, &build_batch(&templates, first, 50));
        let mut after = state.clone();
        after.apply(&written);
        let lookups = required_lookups(&build_batch(&templates, second, 60));
        let found = state.subset(&lookups);
        if lookups.unaffected_by(&written, &found) {
            prop_assert_eq!(after.subset(&lookups), found);
        }
    }

    #[test]
    fn held_after_is_what_applying_leaves_on_every_device_the_outcome_touches(
        (templates, pre, raws, _perm) in scenario()
    ) {
        let state = prepopulated(&templates, &pre);
        let batch = build_batch(&templates, &raws, 50);
        let out = run(&state, &batch);
        let after = applied(&state, &batch);
        let held = state.held_after(&out);
        for (uid, ids) in &held {
            prop_assert!(after.device(uid).is_some(), "{} is not a device after", uid);
            let applied: BTreeSet<&Identifier> = after.held_by(uid).collect();
            prop_assert_eq!(ids, &applied, "identifiers of {}", uid);
        }
        // Every device whose row is written, or whose identifiers changed, is listed.
        for (uid, d) in after.devices() {
            let before: BTreeSet<&Identifier> = state.held_by(uid).collect();
            let now: BTreeSet<&Identifier> = after.held_by(uid).collect();
            if before != now || state.device(uid) != Some(d) {
                prop_assert!(held.contains_key(uid), "{} changed but is not listed", uid);
            }
        }
    }

    #[test]
    fn updates_sharing_a_strong_identifier_without_conflicting_evidence_resolve_together(
        (templates, _pre, raws, _perm) in scenario()
    ) {
        // Templates with distinct MACs never conflict, so any shared strong identifier must
        // mean one device.
        let templates: Vec<Template> = templates
            .into_iter()
            .enumerate()
            .map(|(i, mut t)| {
                t.mac = t.mac.map(|_| i as u8);
                t.armis_alias = None;
                t
            })
            .collect();
        let batch = build_batch(&templates, &raws, 50);
        let out = run(&KnownState::new("default"), &batch);
        for (i, a) in batch.iter().enumerate() {
            for (j, b) in batch.iter().enumerate() {
                let shared = a.identifiers().into_iter().any(|id| {
                    id.strength() == sr_reconcile::Strength::Strong && b.identifiers().contains(&id)
                });
                if shared {
                    prop_assert_eq!(out.resolutions[i], out.resolutions[j]);
                }
            }
        }
    }

    #[test]
    fn a_state_loaded_from_the_lookups_decides_like_the_full_scope(
        (templates, pre, raws, _perm) in scenario()
    ) {
        let full = prepopulated(&templates, &pre);
        let batch = build_batch(&templates, &raws, 50);
        let subset = full.subset(&required_lookups(&batch));
        prop_assert!(subset.len() <= full.len());
        prop_assert_eq!(run(&subset, &batch), run(&full, &batch));
    }

    #[test]
    fn a_filter_of_every_write_since_the_scope_was_empty_narrows_to_the_same_load(
        (templates, pre, raws, _perm) in scenario()
    ) {
        let mut state = KnownState::new("default");
        let mut filter = KeyFilter::default();
        for (k, raws) in pre.iter().enumerate() {
            let b = build_batch(&templates, raws, 30 * k as i64);
            let outcome = run(&state, &b);
            filter.record(&outcome);
            state.apply(&outcome);
        }
        let batch = build_batch(&templates, &raws, 50);
        let full = required_lookups(&batch);
        let claims: Vec<_> = batch.iter().map(claim).collect();
        let keys: Vec<Key> = batch.iter().map(Key::of).collect();
        prop_assert_eq!(&required_lookups_claimed(&claims, &keys), &full);
        let mut narrowed = full.clone();
        let _left_out = filter.narrow(&mut narrowed);
        // Every key a stored device holds is still looked up, so the same devices load.
        for id in full.identifiers.iter().filter(|id| state.owner(id).is_some()) {
            prop_assert!(narrowed.identifiers.contains(id), "{}", id);
        }
        for ip in full.ips.iter().filter(|ip| state.holders_of(ip).next().is_some()) {
            prop_assert!(narrowed.ips.contains(ip), "{}", ip);
        }
        for uid in full.uids.iter().filter(|uid| state.device(uid).is_some()) {
            prop_assert!(narrowed.uids.contains(uid), "{}", uid);
        }
        prop_assert_eq!(state.subset(&narrowed), state.subset(&full));
    }

    #[test]
    fn devices_never_outnumber_identity_groups_plus_ip_only_updates(
        (templates, pre, raws, _perm) in scenario()
    ) {
        let mut state = KnownState::new("default");
        let mut used_templates = BTreeSet::new();
        let mut ip_only = 0usize;
        let mut batches: Vec<Vec<Raw>> = pre.clone();
        batches.push(raws);
        for (k, raws) in batches.iter().enumerate() {
            let mut b = Vec::new();
            for raw in raws {
                let (o, t) = build(&templates, *raw, 30 * k as i64);
                match t {
                    Some(t) => { used_templates.insert(t); }
                    None => ip_only += 1,
                }
                b.push(o);
            }
            state = applied(&state, &b);
        }
        prop_assert!(
            state.len() <= used_templates.len() + ip_only,
            "{} devices for {} templates and {} IP-only updates",
            state.len(), used_templates.len(), ip_only
        );
    }

    #[test]
    fn skipping_settled_updates_ends_in_the_same_state_as_reconciling_everything(
        (templates, pre, raws, _perm) in scenario(),
        rounds in prop::collection::vec(
            (-20i64..30, prop::collection::vec(raw_strategy(), 0..4), any::<bool>()),
            1..5,
        ),
    ) {
        let start = prepopulated(&templates, &pre);
        let mut reference = start.clone();
        let mut skipping = start;
        let mut memo = Memo::default();
        let mut batch = build_batch(&templates, &raws, 50);
        for (k, (shift, extra, drop_half)) in rounds.iter().enumerate() {
            let expected = run(&reference, &batch);
            reference.apply(&expected);
            let (outcome, _) = reconcile_skipping(&skipping, &mut memo, &batch);
            skipping.apply(&outcome);
            prop_assert_eq!(&skipping, &reference, "round {}", k);
            // Next round: the same updates later (or earlier), some dropped, some new ones.
            let mut next = later(&batch, *shift);
            if *drop_half {
                next = next.into_iter().step_by(2).collect();
            }
            next.extend(build_batch(&templates, extra, 50 + shift));
            batch = next;
        }
    }
}

/// One update of the multi-source scenario: device index, source (0 Armis by its id, 1 a sweep
/// of the device's IP, 2 NetBox naming the same IP without an id), minute, hostname and model
/// choice (0 = not stated), availability (0 = not stated).
type Sighting = (u8, u8, u8, u8, u8, u8);

fn sighting(devices: u8) -> impl Strategy<Value = Sighting> {
    (0..devices, 0u8..3, 1u8..8, 0u8..3, 0u8..3, 0u8..3)
}

/// Devices known by their Armis id, at IPs that never change, reported by several sources that
/// state different fields at different times.
fn sighted(raw: Sighting) -> Observation {
    let (device, source, minute, host, model, avail) = raw;
    let mut o = Observation::new(
        format!("10.1.0.{}", device + 1).parse().unwrap(),
        at(i64::from(minute)),
    );
    o.source = Some(["armis", "sweep", "netbox"][usize::from(source)].to_owned());
    if source == 0 {
        o.metadata
            .insert("armis_device_id".into(), (device + 1).to_string());
    }
    if source != 1 && host > 0 {
        o.hostname = Some(format!("h{host}"));
    }
    if source != 1 && model > 0 {
        o.metadata.insert("model".into(), format!("m{model}"));
        o.metadata
            .insert("query_label".into(), format!("q{}", model % 2));
    }
    o.is_available = [None, Some(true), Some(false)][usize::from(avail)];
    o
}

fn multi_source() -> impl Strategy<Value = (u8, Vec<Vec<Sighting>>, Vec<usize>)> {
    (1u8..5)
        .prop_flat_map(|n| {
            (
                Just(n),
                prop::collection::vec(prop::collection::vec(sighting(n), 1..4), 1..7),
            )
        })
        .prop_flat_map(|(n, batches)| {
            let order = Just((0..batches.len()).collect::<Vec<usize>>()).prop_shuffle();
            (Just(n), Just(batches), order)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn batches_applied_in_any_order_end_in_the_same_state_whichever_source_states_what(
        (devices, batches, order) in multi_source()
    ) {
        let cfg = ReconcileConfig { last_seen_precision: chrono::TimeDelta::zero() };
        let seed: Vec<Observation> = (0..devices)
            .map(|d| sighted((d, 0, 0, 1, 1, 0)))
            .collect();
        let batches: Vec<Vec<Observation>> = batches
            .iter()
            .map(|b| b.iter().copied().map(sighted).collect())
            .collect();
        let apply_all = |order: &[usize]| {
            let mut state = KnownState::new("default");
            for b in std::iter::once(&seed).chain(order.iter().map(|&i| &batches[i])) {
                let outcome = reconcile(&state, b, &cfg).unwrap();
                state.apply(&outcome);
            }
            state
        };
        let in_order: Vec<usize> = (0..batches.len()).collect();
        let expected = apply_all(&in_order);
        prop_assert_eq!(expected.len(), usize::from(devices));
        prop_assert_eq!(&apply_all(&order), &expected);
        let reversed: Vec<usize> = in_order.iter().rev().copied().collect();
        prop_assert_eq!(&apply_all(&reversed), &expected);
    }
}

#[test]
fn a_load_of_other_devices_is_left_alone_and_a_load_of_a_written_device_is_not() {
    let armis = Template {
        top: 1,
        netbox: false,
        mac: None,
        armis_alias: None,
    };
    let templates = vec![armis.clone(), armis];
    let state = KnownState::new("default");
    let written = run(
        &state,
        &build_batch(&templates, &[(0, 0, 0, 0, 0, 0, 11)], 50),
    );
    assert!(written.has_writes());
    let other = required_lookups(&build_batch(&templates, &[(1, 1, 0, 0, 0, 0, 11)], 60));
    assert!(other.unaffected_by(&written, &state.subset(&other)));
    // Device 1 again, or device 2 at device 1's IP.
    for raw in [(0, 0, 0, 0, 0, 0, 11), (1, 0, 0, 0, 0, 0, 11)] {
        let same = required_lookups(&build_batch(&templates, &[raw], 60));
        assert!(
            !same.unaffected_by(&written, &state.subset(&same)),
            "{raw:?}"
        );
    }
}
