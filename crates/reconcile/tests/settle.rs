//! Settled devices: which updates of a re-sync may be skipped, and when they may not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use sr_reconcile::{
    Key, KnownState, Memo, Observation, ReconcileConfig, content_digest, demote_touched,
    plan_skips, reconcile, settled_by,
};

/// Reconciles `batch` against `state`, applies it and remembers what it settled.
fn settle(state: &mut KnownState, memo: &mut Memo, batch: &[Observation]) {
    let cfg = ReconcileConfig::default();
    let out = reconcile(state, batch, &cfg).unwrap();
    let keys: Vec<Key> = batch.iter().map(Key::of).collect();
    let settled = settled_by(state, batch, &keys, &out, &cfg);
    memo.record(&out, settled);
    state.apply(&out);
}

fn covered(memo: &Memo, batch: &[Observation]) -> Vec<bool> {
    batch
        .iter()
        .map(|o| memo.covers(&Key::of(o), o.timestamp))
        .collect()
}

fn armis_devices(n: u32, minutes: i64) -> Vec<Observation> {
    (1..=n)
        .map(|i| {
            obs(&format!("10.1.0.{i}"))
                .armis(&i.to_string())
                .mac(&format!("00:1B:21:00:00:{i:02X}"))
                .hostname(&format!("h{i}"))
                .source("armis")
                .at(minutes)
                .build()
        })
        .collect()
}

#[test]
fn the_digest_ignores_the_time_and_nothing_else() {
    let base = obs("10.0.0.1")
        .armis("1")
        .hostname("a")
        .source("armis")
        .build();
    let mut later = base.clone();
    later.timestamp += chrono::TimeDelta::hours(3);
    assert_eq!(content_digest(&base), content_digest(&later));
    let variants = [
        obs("10.0.0.2")
            .armis("1")
            .hostname("a")
            .source("armis")
            .build(),
        obs("10.0.0.1")
            .armis("2")
            .hostname("a")
            .source("armis")
            .build(),
        obs("10.0.0.1")
            .armis("1")
            .hostname("b")
            .source("armis")
            .build(),
        obs("10.0.0.1")
            .armis("1")
            .hostname("a")
            .source("netbox")
            .build(),
        obs("10.0.0.1")
            .armis("1")
            .hostname("a")
            .source("armis")
            .available(true)
            .build(),
        obs("10.0.0.1")
            .armis("1")
            .hostname("a")
            .source("armis")
            .agent("x")
            .build(),
        obs("10.0.0.1")
            .armis("1")
            .hostname("a")
            .source("armis")
            .mac("00:1B:21:00:00:01")
            .build(),
        obs("10.0.0.1")
            .armis("1")
            .hostname("a")
            .source("armis")
            .partition("p")
            .build(),
        obs("10.0.0.1")
            .armis("1")
            .hostname("a")
            .source("armis")
            .meta("model", "m")
            .build(),
    ];
    for v in &variants {
        assert_ne!(content_digest(&base), content_digest(v), "{v:?}");
    }
}

#[test]
fn a_resync_within_the_precision_is_covered_entirely_and_would_write_nothing() {
    let mut state = KnownState::new("default");
    let mut memo = Memo::default();
    settle(&mut state, &mut memo, &armis_devices(50, 0));
    assert_eq!(
        memo.len(),
        50,
        "every created device is settled by its update"
    );
    let resync = armis_devices(50, 10);
    assert!(covered(&memo, &resync).iter().all(|c| *c));
    assert!(
        plan_skips(&resync, &covered(&memo, &resync))
            .iter()
            .all(|s| *s)
    );
    let out = reconcile(&state, &resync, &ReconcileConfig::default()).unwrap();
    assert!(
        !out.has_writes(),
        "a covered update must not write: {out:?}"
    );
    // A redelivered (older) batch is covered too.
    assert!(covered(&memo, &armis_devices(50, 0)).iter().all(|c| *c));
}

#[test]
fn changed_content_late_or_early_updates_are_not_covered() {
    let mut state = KnownState::new("default");
    let mut memo = Memo::default();
    settle(&mut state, &mut memo, &armis_devices(3, 60));
    let mut changed = armis_devices(3, 61);
    changed[0].hostname = Some("renamed".into());
    assert_eq!(covered(&memo, &changed), [false, true, true]);
    // 15 minutes after last_seen the sighting refreshes last_seen: a write.
    assert_eq!(covered(&memo, &armis_devices(3, 75)), [false; 3]);
    assert_eq!(covered(&memo, &armis_devices(3, 74)), [true; 3]);
    // Earlier than first_seen: it would move first_seen.
    assert_eq!(covered(&memo, &armis_devices(3, 59)), [false; 3]);
}

#[test]
fn a_covered_update_is_reconciled_when_another_update_claims_its_ip_or_identifier() {
    let mut state = KnownState::new("default");
    let mut memo = Memo::default();
    settle(&mut state, &mut memo, &armis_devices(3, 0));
    let mut resync = armis_devices(3, 5);
    // Device 3 now reports device 1's IP (a DHCP move): device 1 must be reconciled with it.
    resync[2].ip = ip("10.1.0.1");
    let cov = covered(&memo, &resync);
    assert_eq!(cov, [true, true, false]);
    assert_eq!(plan_skips(&resync, &cov), [false, true, false]);
    // A new update carrying device 2's MAC.
    let mut more = armis_devices(3, 5);
    more.push(obs("10.1.0.9").mac("00:1B:21:00:00:02").at(5).build());
    let cov = covered(&memo, &more);
    assert_eq!(plan_skips(&more, &cov), [true, false, true, false]);
}

#[test]
fn a_skipped_update_whose_device_the_rest_touches_is_reconciled_again() {
    let mut state = KnownState::new("default");
    let mut memo = Memo::default();
    // Device 1 also holds a NetBox id its Armis update does not carry.
    let first = vec![
        obs("10.1.0.1")
            .armis("1")
            .netbox("77")
            .source("armis")
            .at(0)
            .build(),
    ];
    settle(&mut state, &mut memo, &first);
    let resync = vec![
        obs("10.1.0.1")
            .armis("1")
            .netbox("77")
            .source("armis")
            .at(1)
            .build(),
    ];
    assert_eq!(covered(&memo, &resync), [true]);
    let netbox_only = obs("10.2.0.1")
        .netbox("77")
        .source("netbox")
        .hostname("nb")
        .at(2)
        .build();
    let batch = vec![resync[0].clone(), netbox_only];
    let keys: Vec<Key> = batch.iter().map(Key::of).collect();
    let mut skip = plan_skips(&batch, &covered(&memo, &batch));
    assert_eq!(
        skip,
        [false, false],
        "the NetBox update carries one of its identifiers"
    );
    // Forced: even if planning missed it, the outcome of the rest names the device.
    skip = vec![true, false];
    let out = reconcile(&state, &batch[1..], &ReconcileConfig::default()).unwrap();
    assert!(demote_touched(&mut skip, &keys, &out));
    assert_eq!(skip, [false, false]);
}

#[test]
fn a_device_written_by_another_update_is_forgotten() {
    let mut state = KnownState::new("default");
    let mut memo = Memo::default();
    settle(&mut state, &mut memo, &armis_devices(2, 0));
    // A second source reports device 1 with another hostname: its row changes.
    let other = vec![
        obs("10.1.0.1")
            .armis("1")
            .hostname("other")
            .source("netbox")
            .at(3)
            .build(),
    ];
    settle(&mut state, &mut memo, &other);
    let resync = armis_devices(2, 4);
    assert_eq!(covered(&memo, &resync), [false, true]);
}

#[test]
fn two_updates_of_one_device_in_a_batch_settle_nothing() {
    let mut state = KnownState::new("default");
    let mut memo = Memo::default();
    let both = vec![
        obs("10.1.0.1")
            .armis("1")
            .hostname("a")
            .source("armis")
            .at(0)
            .build(),
        obs("10.1.0.1")
            .armis("1")
            .hostname("b")
            .source("armis")
            .at(1)
            .build(),
    ];
    settle(&mut state, &mut memo, &both);
    assert!(memo.is_empty());
}

/// A device whose values were stated at different times (an Armis host name at 0, a sweep's
/// availability at 10) is settled only until its oldest stamp is a precision old: a re-sync
/// after that moves the host name's stamp, so it must be reconciled.
#[test]
fn the_window_ends_a_precision_after_the_oldest_stamp_not_after_last_seen() {
    let mut state = KnownState::new("default");
    let mut memo = Memo::default();
    let armis = |minutes| armis_devices(1, minutes);
    settle(&mut state, &mut memo, &armis(0));
    let sweep = batch(vec![obs("10.1.0.1").source("sweep").available(true).at(10)]);
    settle(&mut state, &mut memo, &sweep);
    settle(&mut state, &mut memo, &armis(12));
    assert_eq!(covered(&memo, &armis(14)), vec![true]);
    assert_eq!(
        covered(&memo, &armis(16)),
        vec![false],
        "15 minutes after the host name's stamp (0), though only 6 after last_seen (10)"
    );
    let out = reconcile(&state, &armis(16), &ReconcileConfig::default()).unwrap();
    assert_eq!(out.updates.len(), 1, "reconciling it moves the stamps");
}
