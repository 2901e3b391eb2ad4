//! The JetStream side: poison messages, replicas, redelivery and the inventory outbox.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sr_core::TenantId;
use sr_runtime::jetstream::StreamKind;
use sr_testkit::eventually;

use crate::common::*;

#[tokio::test]
async fn poison_message_is_terminated_counted_and_reported() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    let subject = env.nats.config.subjects().device_updates(t);
    env.publish_raw(&subject, Some(&t.to_string()), b"{not json".to_vec())
        .await;
    // A tenant header that contradicts the subject is poison too.
    let other = TenantId::random().to_string();
    let body = serde_json::to_vec(&json!([armis("1", "10.0.0.1", 0)])).unwrap();
    env.publish_raw(&subject, Some(&other), body).await;
    // One bad element is rejected alone; the rest of its message is ingested.
    env.publish(
        t,
        &[
            armis("2", "10.0.0.2", 0),
            json!({"source": "armis", "timestamp": ts(0)}),
            json!("not an object"),
        ],
    )
    .await;
    env.ingested().await;
    assert_eq!(app.metrics.poison_messages.get(), 2);
    assert_eq!(app.metrics.updates_rejected.get(), 2);
    let d = env.devices(t).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["identifiers"], json!(["armis_device_id=2"]));
    let events = eventually("two poison events", WAIT, || async {
        let e = env.events(t).await;
        (e.len() == 2).then_some(e)
    })
    .await;
    for e in &events {
        e.validate().unwrap();
        assert_eq!(e.unmapped["action"], "poison_message");
        assert_eq!((e.class_uid, e.activity_id, e.severity_id), (1008, 99, 3));
        assert_eq!(e.tenant_id, t);
    }
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("not a JSON array"))
    );
    assert!(events.iter().any(|e| e.message.contains("does not match")));
    // Terminated, not redelivered: nothing pending, nothing awaiting an ack, no retries.
    assert_eq!(app.metrics.naks.get(), 0);
    app.stop().await;
}

type Messages = Vec<(TenantId, Vec<Value>)>;

/// Overlapping devices per (tenant, partition): a seed message per scope, then many messages
/// that each re-report most of a scope's devices with newer values, by two sources: Armis
/// (host name, model) for the first `ARMIS` devices, and sweeps (availability only) of every
/// third IP of the whole pool, so most Armis devices are also swept. Replicas apply messages
/// out of order: a late Armis update older than a newer sweep of its device must still state
/// its host name and model.
fn overlapping_messages(tenants: &[TenantId]) -> (Messages, Messages) {
    const POOL: usize = 120;
    const ARMIS: usize = 100;
    let partitions = ["default", "site-b"];
    let device = |t: usize, p: &str, i: usize, k: i64| {
        let ip = format!("10.{t}.{}.{}", usize::from(p != "default"), i + 1);
        let mut u = with(armis(&(i + 1).to_string(), &ip, k), "partition", json!(p));
        u = with(u, "hostname", json!(format!("h{i}-{k}")));
        u = with_meta(u, "model", &format!("m{k}"));
        if i.is_multiple_of(3) {
            u = with(
                u,
                "mac",
                json!(format!("00:1b:21:{t:02x}:{:02x}:{:02x}", i / 256, i % 256)),
            );
        }
        u
    };
    let mut seed = Vec::new();
    let mut rest = Vec::new();
    for (ti, &t) in tenants.iter().enumerate() {
        for p in partitions {
            seed.push((t, (0..POOL).map(|i| device(ti, p, i, 0)).collect()));
        }
    }
    for k in 1..=24i64 {
        let ti = (k as usize) % tenants.len();
        let p = partitions[(k as usize / 2) % 2];
        let mut updates: Vec<Value> = (0..ARMIS)
            .filter(|i| !(i * 7 + k as usize * 13).is_multiple_of(3))
            .map(|i| device(ti, p, i, k))
            .collect();
        for i in (k as usize % 3..POOL).step_by(3) {
            let ip = format!("10.{ti}.{}.{}", usize::from(p != "default"), i + 1);
            updates.push(json!({"ip": ip, "source": "sweep", "partition": p,
                "timestamp": ts(k), "is_available": k % 3 != 0}));
        }
        rest.push((tenants[ti], updates));
    }
    (seed, rest)
}

async fn run_replicas(env: &Env, replicas: usize, tenants: &[TenantId]) -> (Value, u64) {
    let mut config = env.config();
    config.reconcile.last_seen_precision_secs = 0;
    config.consumer.batch_size = 3;
    let mut apps = Vec::new();
    for _ in 0..replicas {
        apps.push(env.start_with(config.clone()).await);
    }
    let (seed, rest) = overlapping_messages(tenants);
    for (t, updates) in &seed {
        env.publish(*t, updates).await;
    }
    env.ingested().await;
    for (t, updates) in &rest {
        env.publish(*t, updates).await;
    }
    env.ingested().await;
    let mut naks = 0;
    for app in apps {
        naks += app.metrics.naks.get();
        app.stop().await;
    }
    (env.snapshot().await, naks)
}

#[tokio::test]
async fn two_instances_on_one_durable_consumer_reach_the_same_state_as_one_without_deadlock() {
    let tenants = [TenantId::random(), TenantId::random()];
    let (one, two) = (Env::new(), Env::new());
    let (single, single_naks) = run_replicas(&one, 1, &tenants).await;
    let (pair, pair_naks) = run_replicas(&two, 2, &tenants).await;
    assert_eq!(
        (single_naks, pair_naks),
        (0, 0),
        "no failed (deadlocked) batch"
    );
    assert_eq!(single.as_array().unwrap().len(), 2 * 2 * 120);
    let differing: Vec<(&Value, &Value)> = single
        .as_array()
        .unwrap()
        .iter()
        .zip(pair.as_array().unwrap())
        .filter(|(a, b)| a != b)
        .collect();
    assert!(
        differing.is_empty(),
        "{} devices differ; first (one instance, two): {:#?}",
        differing.len(),
        differing.first()
    );
    assert_eq!(single, pair);
    assert_eq!(one.scalar("SELECT count(*) FROM merge_audit").await, 0);
}

#[tokio::test]
async fn inventory_changes_are_published_after_commit_even_when_jetstream_was_unavailable() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    let subjects = env.nats.config.subjects();
    let first = with_meta(
        with_meta(armis("1", "10.0.0.1", 0), "sweep_modes", "icmp,tcp"),
        "sweep_ports",
        "22,443",
    );
    env.ingest(t, &[first]).await;
    let msgs = eventually("first inventory change", WAIT, || async {
        let m = env
            .stream_json(&subjects.inventory_stream(), &subjects.inventory_changed(t))
            .await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    let (headers, body) = &msgs[0];
    assert!(headers.get("Nats-Msg-Id").is_some());
    assert_eq!(
        headers.get("sr-tenant-id").map(|v| v.as_str().to_owned()),
        Some(t.to_string())
    );
    let change: sr_core::inventory::InventoryChange = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(change.tenant_id, t);
    let d = &change.devices[0];
    assert_eq!(d.uid, "sr:8c1ab81a-bdf0-4417-ae9a-6678756238b7");
    assert_eq!(
        (
            d.partition.as_str(),
            d.agent_id.as_deref(),
            d.ips.clone(),
            d.sources.clone(),
            d.removed
        ),
        (
            "default",
            Some("agent-1"),
            vec!["10.0.0.1".to_owned()],
            vec!["armis".to_owned()],
            false
        )
    );
    assert_eq!(d.hints.len(), 1);
    assert_eq!(d.hints[0].query_label.as_deref(), Some("all"));
    assert_eq!(d.hints[0].sweep_modes, vec!["icmp", "tcp"]);
    assert_eq!(d.hints[0].ports, vec![22, 443]);
    let first_revision = d.revision;

    // JetStream loses the inventory stream: the batch still commits, its change waits.
    let js = env.js(env.nats.client().await);
    js.delete_stream(subjects.inventory_stream()).await.unwrap();
    env.ingest(t, &[armis("1", "10.0.0.9", 30)]).await;
    assert_eq!(env.devices(t).await[0]["ip"], "10.0.0.9");
    eventually("a failed publish round", WAIT, || async {
        (app.metrics.publish_failures.get() > 0).then_some(())
    })
    .await;
    assert_eq!(env.scalar("SELECT count(*) FROM inventory_outbox").await, 1);

    // JetStream is back: the pending change goes out, and nothing is left behind.
    sr_runtime::jetstream::ensure_stream(&js, &env.nats.config, StreamKind::Inventory)
        .await
        .unwrap();
    let later = eventually("the delayed inventory change", WAIT, || async {
        let c = env.inventory(t).await;
        (!c.is_empty()).then_some(c)
    })
    .await;
    let d = &later[0].devices[0];
    assert_eq!(d.ips, vec!["10.0.0.9".to_owned()]);
    assert!(d.revision > first_revision, "revisions grow per device");
    eventually("outbox emptied", WAIT, || async {
        (env.scalar("SELECT count(*) FROM inventory_outbox").await == 0).then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_older_batch_delivered_after_a_newer_one_does_not_roll_the_device_back() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    env.ingest(
        t,
        &[with(armis("1", "10.0.0.2", 30), "hostname", json!("new"))],
    )
    .await;
    env.ingest(
        t,
        &[with(armis("1", "10.0.0.1", 0), "hostname", json!("old"))],
    )
    .await;
    let d = env.devices(t).await;
    let got: BTreeMap<&str, &Value> = [("ip", &d[0]["ip"]), ("hostname", &d[0]["hostname"])]
        .into_iter()
        .collect();
    assert_eq!(got["ip"], "10.0.0.2");
    assert_eq!(got["hostname"], "new");
    assert_eq!(d[0]["first_seen"], json!(at(0).to_rfc3339()));
    app.stop().await;
}

/// The late update of one source (Armis, 00:19) delivered after a newer sweep of the same
/// device (00:23, availability only) still writes its host name and model: the time each value
/// was stated is stored with the row (`stamps`) and read back for the next batch, so both
/// orders end in the same row.
#[tokio::test]
async fn a_late_update_of_one_source_after_a_newer_sweep_still_writes_its_fields() {
    let t = TenantId::random();
    let seed = with_meta(
        with(armis("1", "10.0.0.1", 0), "hostname", json!("old")),
        "model",
        "m0",
    );
    let late = with_meta(
        with(armis("1", "10.0.0.1", 19), "hostname", json!("new")),
        "model",
        "m1",
    );
    let sweep = json!({"ip": "10.0.0.1", "source": "sweep", "partition": "default",
        "timestamp": ts(23), "is_available": true});
    let mut rows = Vec::new();
    for order in [[&seed, &late, &sweep], [&seed, &sweep, &late]] {
        let env = Env::new();
        let app = env.start().await;
        for update in order {
            env.ingest(t, std::slice::from_ref(update)).await;
        }
        app.stop().await;
        rows.push(env.devices(t).await);
    }
    assert_eq!(rows[0], rows[1], "in order and late");
    let d = &rows[1][0];
    assert_eq!(d["hostname"], "new");
    assert_eq!(d["model"], "m1");
    assert_eq!(d["is_available"], true);
    assert_eq!(d["last_seen"], json!(at(23).to_rfc3339()));
    // Stored besides last_seen: the host name, model and Armis metadata stated at 00:19.
    let stamps = d["stamps"].as_array().unwrap();
    let hostname = stamps.iter().find(|s| s[0] == "hostname").unwrap();
    let stated: chrono::DateTime<chrono::Utc> = hostname[1].as_str().unwrap().parse().unwrap();
    assert_eq!(stated, at(19), "{stamps:?}");
    assert!(!stamps.iter().any(|s| s[0] == "is_available"), "{stamps:?}");
}

/// While one batch is written the next is pulled ahead; stopping then must hand that batch
/// back at once (nak without delay), not leave it to the ack wait (ten minutes here).
#[tokio::test]
async fn stopping_gives_back_the_batch_pulled_ahead_at_once() {
    let env = Env::new();
    let tenant = TenantId::random();
    let mut config = env.config();
    config.consumer.batch_size = 1;
    config.consumer.ack_wait_secs = 600;
    const MESSAGES: usize = 300;
    const PER_MESSAGE: usize = 10;
    let js = env.js(env.nats.client().await);
    sr_runtime::jetstream::ensure_stream(&js, &env.nats.config, StreamKind::Devices)
        .await
        .unwrap();
    for m in 0..MESSAGES {
        let updates: Vec<Value> = (0..PER_MESSAGE)
            .map(|k| {
                let n = m * PER_MESSAGE + k;
                armis(
                    &(n + 1).to_string(),
                    &format!("10.9.{}.{}", n / 250, n % 250 + 1),
                    0,
                )
            })
            .collect();
        env.publish(tenant, &updates).await;
    }
    let first = env.start_with(config.clone()).await;
    eventually("the first instance wrote some devices", WAIT, || async {
        (first.metrics.devices_with("created") > 0).then_some(())
    })
    .await;
    first.stop().await;
    let info = consumer_info(&env).await;
    assert!(
        info.num_pending > 0,
        "the first instance stopped before the end of the stream (else nothing was pulled ahead)"
    );
    let second = env.start_with(config).await;
    // Within WAIT (a minute), far shorter than the ack wait: the message pulled ahead was
    // nak'd, not left pending.
    env.ingested().await;
    second.stop().await;
    let devices = env
        .scalar(&format!(
            "SELECT count(*) FROM devices WHERE tenant_id = '{tenant}'"
        ))
        .await;
    assert_eq!(devices, (MESSAGES * PER_MESSAGE) as i64);
}

async fn consumer_info(env: &Env) -> async_nats::jetstream::consumer::Info {
    let js = env.js(env.nats.client().await);
    let stream = js
        .get_stream(env.nats.config.subjects().devices_stream())
        .await
        .unwrap();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer("dire").await.unwrap();
    consumer.info().await.unwrap().clone()
}
