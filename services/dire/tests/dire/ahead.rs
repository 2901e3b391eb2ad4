//! Deciding ahead: while a group is written, the scope's next group is decided from what the
//! replica remembers; the decision is used only while nobody else wrote the scope, and the
//! inventory ends exactly as if every group had been decided in its own transaction.

use serde_json::{Value, json};
use sr_core::TenantId;

use crate::common::*;
use crate::settled::{Replicas, armis_fleet, assert_as_reference, observations, rows};

#[tokio::test]
async fn a_group_decided_ahead_is_used_and_ends_as_if_decided_in_its_own_transaction() {
    let env = Env::new();
    let Replicas {
        a, reference, t, r, ..
    } = Replicas::new(&env).await;
    let fleet = observations(&armis_fleet(20, 0));
    let first = &fleet[..10];
    // Ten new devices and five of the first ten again, unchanged.
    let mut next = fleet[10..].to_vec();
    next.extend_from_slice(&fleet[..5]);

    let (report, speculated) = a
        .apply_group_ahead(t, "default", first, &next)
        .await
        .unwrap();
    assert_eq!(report.created, 10);
    let speculated = speculated.expect("nothing had to be looked up: decided ahead");
    let report = a.apply_speculated(t, "default", speculated).await.unwrap();
    assert_eq!((report.created, report.unchanged), (10, 5));
    assert_eq!(a.metrics.speculations_with("decided"), 1);
    assert_eq!(a.metrics.speculations_with("stale"), 0);
    assert_eq!(a.metrics.updates_skipped.get(), 5);
    // Uid, IP and Armis id of twenty new devices: none was looked up.
    assert_eq!(a.metrics.lookup_keys_skipped.get(), 60);

    assert_as_reference(&env, &reference, (t, r), &[first, &next[..]]).await;
    assert_eq!(rows(&env, t).await.len(), 20);
}

#[tokio::test]
async fn a_group_decided_ahead_is_decided_again_once_another_replica_wrote_the_scope() {
    let env = Env::new();
    let Replicas {
        a,
        b,
        reference,
        t,
        r,
    } = Replicas::new(&env).await;
    let first = observations(&armis_fleet(3, 0));
    let next = observations(&armis_fleet(6, 2)).split_off(3);
    // Device 4 is created by the other replica meanwhile, under another host name.
    let mut other = observations(&armis_fleet(4, 1)).split_off(3);
    other[0].hostname = Some("from-b".into());

    let (_, speculated) = a
        .apply_group_ahead(t, "default", &first, &next)
        .await
        .unwrap();
    let speculated = speculated.expect("decided ahead");
    b.apply_group(t, "default", &other).await.unwrap();
    // Used, the decision would insert device 4 a second time.
    let report = a.apply_speculated(t, "default", speculated).await.unwrap();
    assert_eq!(a.metrics.speculations_with("stale"), 1);
    assert_eq!(a.metrics.speculations_with("decided"), 0);
    assert_eq!((report.created, report.updated), (2, 1));

    assert_as_reference(&env, &reference, (t, r), &[&first, &other, &next]).await;
    let hosts: Vec<Value> = rows(&env, t)
        .await
        .iter()
        .map(|d| d["hostname"].clone())
        .collect();
    assert_eq!(
        hosts.iter().filter(|h| **h == json!("host-4")).count(),
        1,
        "{hosts:?}"
    );
}

#[tokio::test]
async fn a_group_of_mostly_stored_devices_is_only_planned_ahead() {
    let env = Env::new();
    let Replicas {
        a, reference, t, r, ..
    } = Replicas::new(&env).await;
    let first = observations(&armis_fleet(3, 0));
    let mut next = observations(&armis_fleet(3, 1));
    next[1].hostname = Some("renamed".into());

    let (_, speculated) = a
        .apply_group_ahead(t, "default", &first, &next)
        .await
        .unwrap();
    let speculated = speculated.expect("planned ahead");
    let report = a.apply_speculated(t, "default", speculated).await.unwrap();
    // Device 2 was written by the first group: loaded ahead only if that load came after the
    // commit, else under the scope lock.
    assert_eq!(
        a.metrics.speculations_with("planned") + a.metrics.speculations_with("preloaded"),
        1,
        "device 2 changed: it is loaded, not decided ahead"
    );
    assert_eq!(a.metrics.speculations_with("decided"), 0);
    assert_eq!((report.updated, report.unchanged), (1, 2));

    assert_as_reference(&env, &reference, (t, r), &[&first, &next]).await;
}

#[tokio::test]
async fn a_planned_group_uses_the_devices_loaded_while_the_group_before_was_written() {
    let env = Env::new();
    let Replicas {
        a, reference, t, r, ..
    } = Replicas::new(&env).await;
    let fleet = observations(&armis_fleet(6, 0));
    let (stored, written) = fleet.split_at(3);
    // Devices 1 to 3 again, device 2 renamed: the group written meanwhile (devices 4 to 6)
    // cannot change what loading them finds, before its commit or after.
    let mut next = observations(&armis_fleet(3, 1));
    next[1].hostname = Some("renamed".into());

    a.apply_group(t, "default", stored).await.unwrap();
    let (_, speculated) = a
        .apply_group_ahead(t, "default", written, &next)
        .await
        .unwrap();
    let speculated = speculated.expect("planned ahead");
    let report = a.apply_speculated(t, "default", speculated).await.unwrap();
    assert_eq!(a.metrics.speculations_with("preloaded"), 1);
    assert_eq!((report.updated, report.unchanged), (1, 2));

    assert_as_reference(&env, &reference, (t, r), &[stored, written, &next[..]]).await;
}

#[tokio::test]
async fn a_group_decided_ahead_as_new_devices_is_decided_again_when_one_is_stored() {
    let env = Env::new();
    let Replicas {
        a, reference, t, r, ..
    } = Replicas::new(&env).await;
    let fleet = observations(&armis_fleet(13, 0));
    let first = &fleet[..3];
    // Ten new devices and a changed one the scope holds: its keys are the only ones the
    // filter keeps, so the group is decided ahead assuming no stored device holds them.
    let mut next = fleet[3..].to_vec();
    let mut renamed = observations(&armis_fleet(2, 1)).split_off(1);
    renamed[0].hostname = Some("renamed".into());
    next.extend(renamed);

    let (_, speculated) = a
        .apply_group_ahead(t, "default", first, &next)
        .await
        .unwrap();
    let speculated = speculated.expect("decided ahead");
    // Used, the decision would insert device 2 a second time.
    let report = a.apply_speculated(t, "default", speculated).await.unwrap();
    assert_eq!(a.metrics.speculations_with("found"), 1);
    assert_eq!(a.metrics.speculations_with("decided"), 0);
    assert_eq!((report.created, report.updated), (10, 1));

    assert_as_reference(&env, &reference, (t, r), &[first, &next[..]]).await;
    assert_eq!(rows(&env, t).await.len(), 13);
}

/// Runs a consumer over `messages` (one batch each) and returns its tenant's devices and how
/// many groups it decided ahead and used.
async fn consume(
    env: &Env,
    decide_ahead: bool,
    t: TenantId,
    messages: &[Vec<Value>],
) -> (Vec<Value>, u64) {
    let mut config = env.config();
    config.consumer.batch_size = 1;
    config.reconcile.decide_ahead = decide_ahead;
    // Started once to create the streams, then again with every message waiting.
    env.start_with(config.clone()).await.stop().await;
    for m in messages {
        env.publish(t, m).await;
    }
    let app = env.start_with(config).await;
    env.ingested().await;
    // Each scope's memo is loaded once: it outlives batches after which the next one holds no
    // group of its scope, or nothing was pulled.
    env.ingest(t, &messages[0]).await;
    assert_eq!(app.metrics.settled_loads.get(), 2);
    let used = app.metrics.speculations_with("decided");
    app.stop().await;
    (env.devices(t).await, used)
}

#[tokio::test]
async fn the_consumer_decides_the_next_batch_while_writing_one_and_ends_as_without() {
    let t = TenantId::random();
    // Twelve messages: new devices, each message re-reporting the one before it unchanged,
    // one renaming a device (looked up), and one moving an IP to another device; after every
    // third, a message of another partition only (the next batch has no group of this scope).
    let fleet = armis_fleet(120, 0);
    let mut messages: Vec<Vec<Value>> = fleet.chunks(10).map(<[Value]>::to_vec).collect();
    for k in 1..messages.len() {
        let before = fleet[(k - 1) * 10..k * 10].to_vec();
        messages[k].extend(before);
    }
    messages[6].push(with(
        armis_fleet(1, 1)[0].clone(),
        "hostname",
        json!("renamed"),
    ));
    messages[9].push(armis("3", "10.7.0.9", 2));
    let messages: Vec<Vec<Value>> = messages
        .into_iter()
        .enumerate()
        .flat_map(|(k, m)| {
            let other = with(
                armis(&format!("b{k}"), "10.9.0.1", 0),
                "partition",
                json!("site-b"),
            );
            if k % 3 == 2 {
                vec![m, vec![other]]
            } else {
                vec![m]
            }
        })
        .collect();

    let (ahead, used) = consume(&Env::new(), true, t, &messages).await;
    let (plain, unused) = consume(&Env::new(), false, t, &messages).await;
    assert!(used > 0, "no batch was decided ahead");
    assert_eq!(unused, 0);
    assert_eq!(ahead.len(), 120 + 4);
    assert_eq!(ahead, plain);
}
