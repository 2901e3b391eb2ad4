//! Start-up, reconnects, the state file, and the ops endpoints.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::common::{Stack, Sync, WAIT, armis_source, sync_config};
use crate::fakes::{Devices, FakeArmis, armis_device};

fn few() -> Devices {
    Devices::Generated {
        count: 4,
        make: armis_device,
    }
}

#[tokio::test]
async fn the_sync_says_hello_again_after_a_gateway_restart() {
    let mut stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let armis = FakeArmis::start("s3cret", vec![("q", few())]).await;
    stack
        .source(
            "acme",
            &ps,
            armis_source("armis", &armis.url, json!([{ "label": "a", "query": "q" }])),
        )
        .await;
    let sync = Sync::start(&stack.platform_bootstrap()).await;
    stack.wait_devices(acme, 4).await;
    sync.wait_runs("acme", "acme/armis", "success", 1).await;
    let session = sync.handle.session();
    assert_eq!(session.connections(), 1);

    stack.stop_gateway().await;
    stack.start_gateway().await;
    // Heartbeats are what reach the gateway while no source runs.
    sr_testkit::eventually("a new connection with Hello", WAIT, || async {
        sync.advance(Duration::from_secs(30));
        (session.connections() >= 2).then_some(())
    })
    .await;
    sr_testkit::eventually("Hello answered on the new connection", WAIT, || async {
        sync.metrics()
            .await
            .contains("sr_sync_hellos_total 2")
            .then_some(())
    })
    .await;
    // The next run goes through the restarted gateway.
    sync.advance(Duration::from_secs(3600));
    sync.wait_runs("acme", "acme/armis", "success", 2).await;
    stack.wait_devices(acme, 8).await;
}

#[tokio::test]
async fn a_restarted_sync_runs_its_cached_sources_while_the_gateway_is_down() {
    let mut stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let armis = FakeArmis::start("s3cret", vec![("q", few())]).await;
    stack
        .source(
            "acme",
            &ps,
            armis_source("armis", &armis.url, json!([{ "label": "a", "query": "q" }])),
        )
        .await;
    let bootstrap = stack.platform_bootstrap();
    let state = tempfile::tempdir().unwrap();
    let first = Sync::start_with(sync_config(&bootstrap, state.path())).await;
    stack.wait_devices(acme, 4).await;
    first.stop().await;

    stack.stop_gateway().await;
    let second = Sync::start_with(sync_config(&bootstrap, state.path())).await;
    let keys = sr_testkit::eventually("cached sources running", WAIT, || async {
        let keys: Vec<String> = second.running().await.into_iter().map(|k| k.key).collect();
        (!keys.is_empty()).then_some(keys)
    })
    .await;
    assert_eq!(keys, ["acme/armis"]);
    assert!(second.handle.config_state().stale);
    let ready = reqwest::get(format!("http://{}/readyz", second.ops_addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "stale config is not ready");
    // The run fetches and keeps retrying its push until the gateway is back.
    sr_testkit::eventually("the cached source ran", WAIT, || async {
        (armis.runs("q") == 2).then_some(())
    })
    .await;

    // The failed push is being retried (same result set, same stream id), not dropped.
    let retries = sr_testkit::eventually("a push retry counted", WAIT, || async {
        let text = reqwest::get(format!("http://{}/metrics", second.ops_addr))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let n: f64 = text
            .lines()
            .filter(|l| l.contains("push_retries") && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (n >= 1.0).then_some(n)
    })
    .await;
    assert!(retries >= 1.0);
    stack.start_gateway().await;
    stack.wait_devices(acme, 8).await;
    sr_testkit::eventually("the gateway confirmed the cached config", WAIT, || async {
        second.advance(Duration::from_secs(30));
        (!second.handle.config_state().stale).then_some(())
    })
    .await;
    let ready = reqwest::get(format!("http://{}/readyz", second.ops_addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn missing_files_and_refused_identities_stop_the_start_with_a_clear_error() {
    let stack = Stack::start().await;
    stack.tenant("acme").await;
    let state = tempfile::tempdir().unwrap();
    let timer = Arc::new(sr_sync::ManualTimer::new());
    let build = |config| sr_sync::App::build_with_timer(config, timer.clone());

    let missing = stack.dir.path().join("nowhere/sync.json");
    let e = build(sync_config(&missing, state.path()))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, sr_sync::StartError::Bootstrap(_)));
    assert!(e.to_string().contains("nowhere/sync.json"), "{e}");

    let bootstrap = stack.platform_bootstrap();
    std::fs::remove_file(bootstrap.parent().unwrap().join("key.pem")).unwrap();
    let e = build(sync_config(&bootstrap, state.path()))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("key.pem"), "{e}");

    let (edge, _) = stack.edge_bootstrap("acme", "edge-1").await;
    let mut b: serde_json::Value = serde_json::from_slice(&std::fs::read(&edge).unwrap()).unwrap();
    b["component_id"] = json!("impostor");
    std::fs::write(&edge, serde_json::to_vec(&b).unwrap()).unwrap();
    let e = build(sync_config(&edge, state.path())).await.err().unwrap();
    assert!(matches!(e, sr_sync::StartError::Refused(_)), "{e}");
    assert!(e.to_string().contains("component_id mismatch"), "{e}");
}

#[tokio::test]
async fn ops_endpoints_report_health_readiness_and_per_source_metrics() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let armis = FakeArmis::start("s3cret", vec![("q", few())]).await;
    let mut body = armis_source("armis", &armis.url, json!([{ "label": "a", "query": "q" }]));
    body["discovery_interval"] = json!("1d");
    stack.source("acme", &ps, body).await;
    let sync = Sync::start(&stack.platform_bootstrap()).await;
    stack.wait_devices(acme, 4).await;
    sync.wait_runs("acme", "acme/armis", "success", 1).await;
    sync.advance(Duration::from_secs(30));
    sr_testkit::eventually("a heartbeat", WAIT, || async {
        sync.metrics()
            .await
            .contains("sr_sync_heartbeats_total{result=\"ok\"} 1")
            .then_some(())
    })
    .await;

    let get = |path: &str| reqwest::get(format!("http://{}{path}", sync.ops_addr));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let m = sync.metrics().await;
    let label = "{tenant=\"acme\",source=\"acme/armis\"}";
    for name in [
        "sr_sync_source_last_run_timestamp_seconds",
        "sr_sync_source_last_run_duration_seconds",
        "sr_sync_push_bytes_total",
    ] {
        assert!(
            m.contains(&format!("{name}{label}")),
            "{name} missing:\n{m}"
        );
    }
    assert!(
        m.contains(&format!("sr_sync_source_devices{label} 4")),
        "{m}"
    );
    assert!(m.contains("sr_sync_active_sources 1"), "{m}");
    // A day-long interval ("1d") is accepted: nothing runs before the day is over.
    sync.advance(Duration::from_secs(23 * 3600));
    sync.handle.poll_config().await.unwrap();
    assert_eq!(armis.runs("q"), 1);
    sync.advance(Duration::from_secs(3600));
    sync.wait_runs("acme", "acme/armis", "success", 2).await;
}
