//! Per-source scheduling on a manual timer: own intervals, isolation, config changes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use crate::common::{Stack, Sync, armis_source, sync_config};
use crate::fakes::{Devices, FakeArmis, armis_device};

const MIN: Duration = Duration::from_secs(60);

fn few() -> Devices {
    Devices::Generated {
        count: 3,
        make: armis_device,
    }
}

#[tokio::test]
async fn each_source_runs_on_its_own_interval_exactly() {
    let stack = Stack::start().await;
    stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let armis = FakeArmis::start(
        "s3cret",
        vec![
            ("q15m", few()),
            ("q2h", few()),
            ("qdefault", few()),
            ("q1d", few()),
        ],
    )
    .await;
    let sources = [
        ("fast", "q15m", Some("15m"), 15),
        ("slow", "q2h", Some("2h"), 120),
        ("default", "qdefault", None, 60),
        ("daily", "q1d", Some("1d"), 1440),
    ];
    for (name, q, interval, _) in sources {
        let mut body = armis_source(name, &armis.url, json!([{ "label": name, "query": q }]));
        if let Some(i) = interval {
            body["discovery_interval"] = json!(i);
        }
        stack.source("acme", &ps, body).await;
    }
    let sync = Sync::start(&stack.platform_bootstrap()).await;

    let check = |minutes: u64| {
        let sync = &sync;
        let armis = armis.clone();
        async move {
            for (name, q, _, every) in sources {
                let expected = 1 + minutes / every;
                sync.wait_runs("acme", &format!("acme/{name}"), "success", expected)
                    .await;
                assert_eq!(armis.runs(q) as u64, expected, "{name} at {minutes} min");
            }
        }
    };
    check(0).await;
    for step in 1..=8 {
        sync.advance(15 * MIN);
        check(step * 15).await;
    }
    // One jump to a day: each source runs once for the missed ticks (never stacked).
    sync.advance(22 * 60 * MIN);
    for (name, q, _, every) in sources {
        let expected = 2 + 120 / every;
        sync.wait_runs("acme", &format!("acme/{name}"), "success", expected)
            .await;
        assert_eq!(armis.runs(q) as u64, expected, "{name} after a day");
    }
}

#[tokio::test]
async fn a_config_change_starts_restarts_and_stops_exactly_the_affected_sources() {
    let stack = Stack::start().await;
    stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let armis = FakeArmis::start("s3cret", vec![("qa", few()), ("qb", few()), ("qc", few())]).await;
    let a = stack
        .source(
            "acme",
            &ps,
            armis_source("a", &armis.url, json!([{ "label": "a", "query": "qa" }])),
        )
        .await;
    let b = stack
        .source(
            "acme",
            &ps,
            armis_source("b", &armis.url, json!([{ "label": "b", "query": "qb" }])),
        )
        .await;
    let sync = Sync::start(&stack.platform_bootstrap()).await;
    sync.wait_runs("acme", "acme/a", "success", 1).await;
    sync.wait_runs("acme", "acme/b", "success", 1).await;

    stack
        .update_source("acme", &b, json!({ "page_size": 50 }))
        .await;
    let changes = sync.handle.poll_config().await.unwrap().unwrap();
    let keys = |v: &[sr_sync::SourceKey]| v.iter().map(|k| k.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&changes.restarted), ["acme/b"]);
    assert!(changes.started.is_empty() && changes.stopped.is_empty());
    sync.wait_runs("acme", "acme/b", "success", 2).await;
    assert_eq!(armis.runs("qa"), 1, "an unchanged source is not restarted");

    // An unchanged config changes nothing.
    assert!(sync.handle.poll_config().await.unwrap().is_none());

    stack
        .source(
            "acme",
            &ps,
            armis_source("c", &armis.url, json!([{ "label": "c", "query": "qc" }])),
        )
        .await;
    stack.delete_source("acme", &a).await;
    let changes = sync.handle.poll_config().await.unwrap().unwrap();
    assert_eq!(keys(&changes.started), ["acme/c"]);
    assert_eq!(keys(&changes.stopped), ["acme/a"]);
    assert!(changes.restarted.is_empty());
    sync.wait_runs("acme", "acme/c", "success", 1).await;
    let running: Vec<String> = sync.running().await.into_iter().map(|k| k.key).collect();
    assert_eq!(running, ["acme/b", "acme/c"]);
    assert_eq!(armis.runs("qa"), 1);
    assert_eq!(armis.runs("qb"), 2);
}

#[tokio::test]
async fn an_empty_sources_map_stops_every_source() {
    let stack = Stack::start().await;
    stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let armis = FakeArmis::start("s3cret", vec![("qa", few()), ("qb", few())]).await;
    let mut ids = Vec::new();
    for (name, q) in [("a", "qa"), ("b", "qb")] {
        let mut body = armis_source(name, &armis.url, json!([{ "label": name, "query": q }]));
        body["discovery_interval"] = json!("15m");
        ids.push(stack.source("acme", &ps, body).await);
    }
    let sync = Sync::start(&stack.platform_bootstrap()).await;
    sync.wait_runs("acme", "acme/a", "success", 1).await;
    sync.wait_runs("acme", "acme/b", "success", 1).await;
    for id in &ids {
        stack.delete_source("acme", id).await;
    }
    let changes = sync.handle.poll_config().await.unwrap().unwrap();
    assert_eq!(changes.stopped.len(), 2);
    assert!(sync.running().await.is_empty());
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sync.state_dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(
        state["tenants"],
        json!({}),
        "the saved state has no sources either"
    );
    sync.advance(60 * MIN);
    // A poll round-trip after the advance: every timer-driven task has had its chance.
    sync.handle.poll_config().await.unwrap();
    assert_eq!(
        armis.runs("qa") + armis.runs("qb"),
        2,
        "stopped sources ran again"
    );
}

#[tokio::test]
async fn a_failing_or_hanging_source_does_not_delay_the_others() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let good = FakeArmis::start("s3cret", vec![("q", few())]).await;
    let failing = FakeArmis::start("s3cret", vec![("q", few())]).await;
    failing.state.fail.store(true, Ordering::SeqCst);
    let hanging = FakeArmis::start("s3cret", vec![("q", few())]).await;
    hanging.state.hang.store(true, Ordering::SeqCst);
    let mut ids = Vec::new();
    for (name, server) in [
        ("good", &good),
        ("failing", &failing),
        ("hanging", &hanging),
    ] {
        let mut body = armis_source(name, &server.url, json!([{ "label": name, "query": "q" }]));
        body["discovery_interval"] = json!("15m");
        ids.push(stack.source("acme", &ps, body).await);
    }
    let sync = Sync::start(&stack.platform_bootstrap()).await;
    sync.wait_runs("acme", "acme/good", "success", 1).await;
    sync.wait_runs("acme", "acme/failing", "failure", 1).await;
    stack.wait_devices(acme, 3).await;
    sync.advance(15 * MIN);
    sync.wait_runs("acme", "acme/good", "success", 2).await;
    sync.wait_runs("acme", "acme/failing", "failure", 2).await;
    assert_eq!(
        hanging.runs("q"),
        1,
        "the hanging run is still the first one"
    );
    assert_eq!(sync.runs("acme", "acme/hanging", "success").await, 0);
    let (sources, failing_now) = sync.handle.health();
    assert_eq!(
        (sources, failing_now),
        (2, 1),
        "the hanging source has no outcome yet"
    );

    hanging.state.hang.store(false, Ordering::SeqCst);
    hanging.state.release.notify_waiters();
    // Released at 15 min, its next run is due at once; one finished run is enough here.
    sr_testkit::eventually("the released run finished", crate::common::WAIT, || async {
        (sync.runs("acme", "acme/hanging", "success").await >= 1).then_some(())
    })
    .await;
    let s = stack
        .wait_source_result("acme", &ids[1], |s| s["last_sync_result"] != "success")
        .await;
    assert!(s["consecutive_failures"].as_i64().unwrap() >= 1);
}

#[tokio::test]
async fn a_failing_source_opens_its_circuit_breaker_and_retries_after_the_cooldown() {
    let stack = Stack::start().await;
    stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let failing = FakeArmis::start("s3cret", vec![("q", few())]).await;
    failing.state.fail.store(true, Ordering::SeqCst);
    let mut body = armis_source(
        "flaky",
        &failing.url,
        json!([{ "label": "f", "query": "q" }]),
    );
    body["discovery_interval"] = json!("15m");
    stack.source("acme", &ps, body).await;
    let state = tempfile::tempdir().unwrap();
    let mut config = sync_config(&stack.platform_bootstrap(), state.path());
    config.integrations.breaker_failures = 2;
    config.integrations.breaker_cooldown_secs = 3600;
    let sync = Sync::start_with(config).await;

    sync.wait_runs("acme", "acme/flaky", "failure", 1).await;
    sync.advance(15 * MIN);
    sync.wait_runs("acme", "acme/flaky", "failure", 2).await;
    for step in 1..=3 {
        sync.advance(15 * MIN);
        sync.wait_runs("acme", "acme/flaky", "skipped", step).await;
    }
    // Opened at 15 min for 60 min: the tick at 75 min is the trial run, which succeeds.
    failing.state.fail.store(false, Ordering::SeqCst);
    sync.advance(15 * MIN);
    sync.wait_runs("acme", "acme/flaky", "success", 1).await;
    assert!(
        sync.metrics()
            .await
            .contains("sr_sync_source_breaker_open{tenant=\"acme\",source=\"acme/flaky\"} 0")
    );
}
