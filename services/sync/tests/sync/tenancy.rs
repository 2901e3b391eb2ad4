//! Tenancy: the platform sync files each source's devices under the source's tenant; an edge
//! sync sees and pushes only its own tenant.

use serde_json::{Value, json};
use sr_proto::{GatewayServiceStatus, GatewayStatusChunk};

use crate::common::{Stack, Sync, armis_source};
use crate::fakes::{Devices, FakeArmis};

fn devices(from: usize, n: usize) -> Devices {
    Devices::List(
        (from..from + n)
            .map(|i| json!({ "id": i, "ipAddress": format!("10.9.{}.{}", i / 250, i % 250 + 1) }))
            .collect::<Vec<Value>>()
            .into(),
    )
}

#[tokio::test]
async fn the_platform_sync_pushes_each_tenants_sources_under_that_tenant() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let beta = stack.tenant("beta").await;
    let armis_a = FakeArmis::start("s3cret", vec![("q", devices(1, 10))]).await;
    let armis_b = FakeArmis::start("s3cret", vec![("q", devices(1001, 12))]).await;
    let ps = stack.platform_sync_id("acme").await;
    let a_id = stack
        .source(
            "acme",
            &ps,
            armis_source(
                "armis",
                &armis_a.url,
                json!([{ "label": "a", "query": "q" }]),
            ),
        )
        .await;
    let b_id = stack
        .source(
            "beta",
            &ps,
            armis_source(
                "armis",
                &armis_b.url,
                json!([{ "label": "b", "query": "q" }]),
            ),
        )
        .await;
    let sync = Sync::start(&stack.platform_bootstrap()).await;

    let a = stack.wait_devices(acme, 10).await;
    let b = stack.wait_devices(beta, 12).await;
    assert!(
        a.iter()
            .all(|d| d["metadata"]["integration_source_id"] == a_id.as_str())
    );
    assert!(
        b.iter()
            .all(|d| d["metadata"]["integration_source_id"] == b_id.as_str())
    );
    let mut keys: Vec<String> = sync.running().await.into_iter().map(|k| k.key).collect();
    keys.sort();
    assert_eq!(keys, ["acme/armis", "beta/armis"]);
    stack
        .wait_source_result("acme", &a_id, |s| s["last_sync_result"] == "success")
        .await;
    stack
        .wait_source_result("beta", &b_id, |s| s["last_sync_result"] == "success")
        .await;
}

#[tokio::test]
async fn an_edge_sync_runs_only_its_tenant_and_cannot_push_for_another() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let beta = stack.tenant("beta").await;
    let (bootstrap, edge_id) = stack.edge_bootstrap("acme", "edge-1").await;
    let armis = FakeArmis::start("s3cret", vec![("q", devices(1, 5))]).await;
    stack
        .source(
            "acme",
            &edge_id,
            armis_source("armis", &armis.url, json!([{ "label": "a", "query": "q" }])),
        )
        .await;
    let ps = stack.platform_sync_id("beta").await;
    stack
        .source(
            "beta",
            &ps,
            armis_source(
                "beta-armis",
                &armis.url,
                json!([{ "label": "b", "query": "q" }]),
            ),
        )
        .await;
    let sync = Sync::start(&bootstrap).await;

    stack.wait_devices(acme, 5).await;
    let keys: Vec<String> = sync.running().await.into_iter().map(|k| k.key).collect();
    assert_eq!(keys, ["armis"]);
    let session = sync.handle.session();
    let hello = session.hello_info().unwrap();
    assert_eq!(hello.tenant_id, acme);
    assert_eq!(hello.tenant_slug, "acme");
    let config = session.get_config("").await.unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&config.config_json).unwrap();
    let sources = payload["sources"].as_object().unwrap();
    assert_eq!(sources.keys().collect::<Vec<_>>(), ["armis"]);
    assert!(sources.values().all(|s| s["tenant_id"] == acme.to_string()));

    // Pushing results tagged with another tenant is refused and publishes nothing.
    let chunk = GatewayStatusChunk {
        services: vec![GatewayServiceStatus {
            service_name: "sync".into(),
            service_type: "sync".into(),
            source: "results".into(),
            available: true,
            message: br#"[{"ip":"10.66.0.1","source":"armis","timestamp":"2026-11-22T00:00:00Z"}]"#
                .to_vec(),
            tenant_id: beta.to_string(),
            tenant_slug: "beta".into(),
            ..Default::default()
        }],
        agent_id: "edge-1".into(),
        chunk_index: 0,
        total_chunks: 1,
        is_final: true,
        ..Default::default()
    };
    let e = session
        .stream_status("edge-foreign-1", move || {
            futures::stream::iter(vec![chunk.clone()])
        })
        .await
        .unwrap_err();
    assert!(matches!(e, sr_sync::GatewayError::Refused(_)), "{e}");
    assert!(stack.devices(beta).await.is_empty());
}
