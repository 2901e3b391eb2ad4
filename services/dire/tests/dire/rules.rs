//! The DIRE rules of CONTRACT §4 and the failures of §7, end to end through JetStream and
//! Postgres.

use serde_json::json;
use sr_core::TenantId;

use crate::common::*;

fn uids(devices: &[serde_json::Value]) -> Vec<String> {
    devices
        .iter()
        .map(|d| d["uid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn same_armis_id_resolves_to_the_same_device() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    env.ingest(t, &[armis("7", "10.0.0.1", 0)]).await;
    let first = env.devices(t).await;
    env.ingest(
        t,
        &[with(armis("7", "10.0.0.1", 30), "hostname", json!("cam-7"))],
    )
    .await;
    let second = env.devices(t).await;
    assert_eq!(second.len(), 1);
    assert_eq!(uids(&first), uids(&second));
    assert_eq!(second[0]["hostname"], "cam-7");
    assert_eq!(app.metrics.devices_with("updated"), 1);
    app.stop().await;
}

#[tokio::test]
async fn new_armis_id_gets_the_deterministic_canonical_id() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    env.ingest(t, &[armis("1", "10.9.9.9", 0)]).await;
    let d = env.devices(t).await;
    assert_eq!(d[0]["uid"], "sr:8c1ab81a-bdf0-4417-ae9a-6678756238b7");
    assert_eq!(d[0]["identifiers"], json!(["armis_device_id=1"]));
    app.stop().await;
}

#[tokio::test]
async fn armis_only_then_armis_with_mac_stays_one_device() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    env.ingest(t, &[armis("5", "10.0.0.1", 0)]).await;
    env.ingest(
        t,
        &[with(
            armis("5", "10.0.0.1", 1),
            "mac",
            json!("00:1b:21:00:00:05"),
        )],
    )
    .await;
    let d = env.devices(t).await;
    assert_eq!(d.len(), 1);
    let armis_only =
        sr_reconcile::uid_from_seed("serviceradar-device-v3:partition:default:armis:5");
    assert_eq!(
        d[0]["uid"],
        armis_only.to_string(),
        "found by lookup, not re-seeded"
    );
    assert_eq!(
        d[0]["identifiers"],
        json!(["armis_device_id=5", "mac=001B21000005"])
    );
    assert_eq!(d[0]["mac"], "00:1B:21:00:00:05");
    app.stop().await;
}

#[tokio::test]
async fn tenants_with_identical_identifiers_stay_separate() {
    let env = Env::new();
    let app = env.start().await;
    let (a, b) = (TenantId::random(), TenantId::random());
    let update = with(
        armis("42", "10.0.0.1", 0),
        "mac",
        json!("00:1b:21:00:00:42"),
    );
    env.publish(a, &[with(update.clone(), "hostname", json!("a"))])
        .await;
    env.publish(b, &[with(update, "hostname", json!("b"))])
        .await;
    env.ingested().await;
    let (da, db) = (env.devices(a).await, env.devices(b).await);
    assert_eq!((da.len(), db.len()), (1, 1));
    assert_eq!(da[0]["hostname"], "a");
    assert_eq!(db[0]["hostname"], "b");
    assert_eq!(da[0]["identifiers"], db[0]["identifiers"]);
    assert_eq!(app.metrics.devices_with("merged"), 0);
    app.stop().await;
}

#[tokio::test]
async fn same_identifier_in_two_partitions_gives_two_devices() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    env.ingest(
        t,
        &[
            with(armis("9", "10.0.0.1", 0), "partition", json!("site-a")),
            with(armis("9", "10.0.0.1", 0), "partition", json!("site-b")),
        ],
    )
    .await;
    let d = env.devices(t).await;
    assert_eq!(d.len(), 2);
    assert_ne!(d[0]["uid"], d[1]["uid"]);
    let partitions: Vec<&str> = d.iter().map(|x| x["partition"].as_str().unwrap()).collect();
    assert_eq!(partitions, vec!["site-a", "site-b"]);
    app.stop().await;
}

#[tokio::test]
async fn empty_partition_is_the_default_partition() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    env.ingest(
        t,
        &[with(armis("3", "10.0.0.3", 0), "partition", json!(""))],
    )
    .await;
    env.ingest(
        t,
        &[with(
            armis("3", "10.0.0.3", 1),
            "partition",
            json!("default"),
        )],
    )
    .await;
    let d = env.devices(t).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["partition"], "default");
    app.stop().await;
}

#[tokio::test]
async fn armis_42_and_netbox_42_never_merge() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    let netbox = json!({
        "ip": "10.0.0.2", "source": "netbox", "timestamp": ts(0),
        "metadata": {"integration_type": "netbox", "netbox_device_id": "42"}
    });
    env.ingest(t, &[armis("42", "10.0.0.1", 0), netbox]).await;
    let d = env.devices(t).await;
    assert_eq!(d.len(), 2);
    let ids: Vec<&serde_json::Value> = d.iter().map(|x| &x["identifiers"]).collect();
    assert!(ids.contains(&&json!(["armis_device_id=42"])), "{ids:?}");
    assert!(ids.contains(&&json!(["netbox_device_id=42"])), "{ids:?}");
    app.stop().await;
}

#[tokio::test]
async fn one_update_carrying_identifiers_of_two_devices_merges_them_with_audit() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    let netbox = json!({
        "ip": "10.0.0.2", "source": "netbox", "timestamp": ts(0),
        "metadata": {"integration_type": "netbox", "netbox_device_id": "5"}
    });
    env.ingest(t, &[armis("1", "10.0.0.1", 0), netbox]).await;
    let before = env.devices(t).await;
    assert_eq!(before.len(), 2);
    let both = with_meta(armis("1", "10.0.0.1", 20), "netbox_device_id", "5");
    env.ingest(t, &[both]).await;
    let after = env.devices(t).await;
    assert_eq!(after.len(), 1);
    let winner = after[0]["uid"].as_str().unwrap().to_owned();
    assert_eq!(
        after[0]["identifiers"],
        json!(["armis_device_id=1", "netbox_device_id=5"])
    );
    let loser = uids(&before).into_iter().find(|u| *u != winner).unwrap();
    assert_eq!(
        env.scalar(&format!(
            "SELECT count(*) FROM merge_audit WHERE from_uid = '{loser}' AND to_uid = '{winner}' \
             AND evidence = '{{netbox_device_id=5}}'"
        ))
        .await,
        1
    );
    assert_eq!(app.metrics.devices_with("merged"), 1);
    // The history is served with the device; the merged-away uid says where it went.
    let (s, body) = app
        .get(&format!("/api/v1/tenants/{t}/devices/{winner}"))
        .await;
    assert!(s.is_success(), "{body}");
    assert_eq!(body["merges"][0]["from_uid"], loser.as_str());
    let (s, body) = app
        .get(&format!("/api/v1/tenants/{t}/devices/{loser}"))
        .await;
    assert_eq!(s, reqwest::StatusCode::NOT_FOUND);
    assert!(body["error"]["message"].as_str().unwrap().contains(&winner));
    // Sweepgen hears that the loser is gone; the event store hears about the merge.
    let removed = eventually_removed(&env, t, &loser).await;
    assert!(removed);
    let events = sr_testkit::eventually("merge event", WAIT, || async {
        let e = env.events(t).await;
        e.iter()
            .any(|e| e.unmapped["action"] == "merge")
            .then_some(e)
    })
    .await;
    for e in &events {
        e.validate().unwrap();
    }
    app.stop().await;
}

async fn eventually_removed(env: &Env, t: TenantId, uid: &str) -> bool {
    sr_testkit::eventually("removed device published", WAIT, || async {
        env.inventory(t)
            .await
            .iter()
            .flat_map(|c| c.devices.iter())
            .any(|d| d.uid == uid && d.removed && d.ips.is_empty())
            .then_some(true)
    })
    .await
}

#[tokio::test]
async fn mac_only_conflict_does_not_merge_and_is_counted() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    let sweep_with_mac = json!({
        "ip": "10.0.0.2", "source": "sweep", "timestamp": ts(0), "mac": "00:1b:21:00:00:09"
    });
    env.ingest(t, &[armis("1", "10.0.0.1", 0), sweep_with_mac])
        .await;
    env.ingest(
        t,
        &[with(
            armis("1", "10.0.0.1", 20),
            "mac",
            json!("00:1b:21:00:00:09"),
        )],
    )
    .await;
    let d = env.devices(t).await;
    assert_eq!(d.len(), 2);
    assert_eq!(app.metrics.merges_blocked.get(), 1);
    assert_eq!(app.metrics.devices_with("merged"), 0);
    assert_eq!(env.scalar("SELECT count(*) FROM merge_audit").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn dhcp_swap_of_ips_between_two_armis_devices_moves_the_ips_without_merging() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    env.ingest(t, &[armis("1", "10.0.0.1", 0), armis("2", "10.0.0.2", 0)])
        .await;
    let before = env.devices(t).await;
    env.ingest(t, &[armis("1", "10.0.0.2", 30), armis("2", "10.0.0.1", 30)])
        .await;
    let after = env.devices(t).await;
    assert_eq!(uids(&before), uids(&after));
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b["ip"], a["ip"]);
        assert!(a["ip"].is_string());
    }
    assert_eq!(app.metrics.ip_churn.get(), 2);
    assert_eq!(app.metrics.devices_with("merged"), 0);
    app.stop().await;
}

#[tokio::test]
async fn ip_only_update_resolves_to_the_holder_of_that_ip_in_its_tenant_and_partition() {
    let env = Env::new();
    let app = env.start().await;
    let (t, other) = (TenantId::random(), TenantId::random());
    env.ingest(
        t,
        &[with(armis("1", "10.0.0.1", 0), "hostname", json!("cam"))],
    )
    .await;
    let sweep =
        json!({"ip": "10.0.0.1", "source": "sweep", "timestamp": ts(5), "is_available": true});
    env.ingest(t, std::slice::from_ref(&sweep)).await;
    env.ingest(other, std::slice::from_ref(&sweep)).await;
    env.ingest(t, &[with(sweep, "partition", json!("elsewhere"))])
        .await;
    let d = env.devices(t).await;
    assert_eq!(d.len(), 2, "{d:?}");
    let cam = d.iter().find(|x| x["partition"] == "default").unwrap();
    assert_eq!(cam["hostname"], "cam");
    assert_eq!(cam["is_available"], true);
    assert_eq!(cam["discovery_sources"], json!(["armis", "sweep"]));
    let other_devices = env.devices(other).await;
    assert_eq!(other_devices.len(), 1);
    assert_eq!(
        other_devices[0]["uid"],
        "sr:e0631a87-8b9f-4201-9a11-2ff7067fbb64"
    );
    app.stop().await;
}

#[tokio::test]
async fn sync_update_without_is_available_leaves_availability_unchanged() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    env.ingest(t, &[armis("1", "10.0.0.1", 0)]).await;
    assert_eq!(env.devices(t).await[0]["is_available"], json!(null));
    let sweep =
        json!({"ip": "10.0.0.1", "source": "sweep", "timestamp": ts(5), "is_available": true});
    env.ingest(t, &[sweep]).await;
    env.ingest(
        t,
        &[with(
            armis("1", "10.0.0.1", 60),
            "hostname",
            json!("renamed"),
        )],
    )
    .await;
    let d = env.devices(t).await;
    assert_eq!(d[0]["hostname"], "renamed");
    assert_eq!(d[0]["is_available"], true);
    app.stop().await;
}

#[tokio::test]
async fn first_sighting_writes_the_device_before_its_identifiers() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    let rich = with(
        with_meta(armis("11", "10.0.0.11", 0), "netbox_device_id", "77"),
        "mac",
        json!("00:1b:21:00:00:11"),
    );
    env.ingest(t, &[rich]).await;
    let d = env.devices(t).await;
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0]["identifiers"],
        json!([
            "armis_device_id=11",
            "mac=001B21000011",
            "netbox_device_id=77"
        ])
    );
    assert_eq!(app.metrics.naks.get(), 0, "no failure, no retry");
    app.stop().await;
}

#[tokio::test]
async fn redelivered_batch_changes_nothing() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    let batch = vec![
        with(armis("1", "10.0.0.1", 0), "mac", json!("00:1b:21:00:00:01")),
        armis("2", "10.0.0.2", 0),
        json!({"ip": "10.0.0.3", "source": "sweep", "timestamp": ts(0), "is_available": false}),
    ];
    env.ingest(t, &batch).await;
    let first = env.snapshot().await;
    let revisions = env
        .scalar("SELECT sum(revision)::bigint FROM devices")
        .await;
    // The first ingest's changes leave through the outbox after its commit: wait for that.
    sr_testkit::eventually("the first changes are published", WAIT, || async {
        let drained = env.scalar("SELECT count(*) FROM inventory_outbox").await == 0;
        (drained && app.metrics.inventory_published.get() > 0).then_some(())
    })
    .await;
    let published = app.metrics.inventory_published.get();
    env.ingest(t, &batch).await;
    assert_eq!(env.snapshot().await, first);
    assert_eq!(
        env.scalar("SELECT sum(revision)::bigint FROM devices")
            .await,
        revisions
    );
    assert_eq!(app.metrics.devices_with("unchanged"), 3);
    assert_eq!(app.metrics.inventory_published.get(), published);
    assert_eq!(env.scalar("SELECT count(*) FROM inventory_outbox").await, 0);
    app.stop().await;
}

/// An update that adds an identifier and changes nothing else of the row (a second MAC stated
/// at the same time, smaller than the row's): the device's row still lists every identifier
/// pointing at it.
#[tokio::test]
async fn an_identifier_learned_without_any_other_change_is_listed_on_the_device_row() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    let mac = |m: &str| with(armis("9", "10.0.0.9", 0), "mac", json!(m));
    env.ingest(t, &[mac("00:1b:21:00:00:0b")]).await;
    let before = env.devices(t).await;
    env.ingest(t, &[mac("00:1b:21:00:00:0a")]).await;
    // `devices` checks that the identifier rows and the device rows' lists agree.
    let after = env.devices(t).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["uid"], before[0]["uid"]);
    assert_eq!(after[0]["mac"], "00:1B:21:00:00:0B");
    assert_eq!(
        after[0]["identifiers"],
        json!(["armis_device_id=9", "mac=001B2100000A", "mac=001B2100000B"])
    );
    let listed = env
        .scalar("SELECT json_array_length(identifiers)::bigint FROM devices")
        .await;
    assert_eq!(listed, 3);
    app.stop().await;
}
