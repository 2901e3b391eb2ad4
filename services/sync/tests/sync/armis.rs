//! Armis: paging, token refresh, several queries, IPv6, blacklists.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::Ordering;

use serde_json::json;

use crate::common::{Stack, Sync, armis_source};
use crate::fakes::{Devices, FakeArmis, armis_device, distinct};

#[tokio::test]
async fn pagination_delivers_5003_devices_over_pages_of_100_exactly_once() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let armis = FakeArmis::start(
        "s3cret",
        vec![(
            "in:devices",
            Devices::Generated {
                count: 5003,
                make: armis_device,
            },
        )],
    )
    .await;
    armis.state.null_at_end.store(true, Ordering::SeqCst);
    let mut body = armis_source(
        "armis",
        &armis.url,
        json!([{ "label": "all", "query": "in:devices" }]),
    );
    body["page_size"] = json!(100);
    let id = stack.source("acme", &ps, body).await;
    let _sync = Sync::start(&stack.platform_bootstrap()).await;

    let devices = stack.wait_devices(acme, 5003).await;
    let ids = distinct(&devices, "armis_device_id");
    assert_eq!(ids.len(), 5003, "every device exactly once");
    assert!((1..=5003).all(|i| ids.contains(&i.to_string())));
    let froms: Vec<u64> = armis
        .state
        .searches
        .lock()
        .unwrap()
        .iter()
        .map(|(_, f)| *f)
        .collect();
    assert_eq!(
        froms,
        (0..=50).map(|p| p * 100).collect::<Vec<u64>>(),
        "each page once, in order"
    );
    let s = stack
        .wait_source_result("acme", &id, |s| s["last_sync_result"] == "success")
        .await;
    assert_eq!(s["last_device_count"], 5003);
    for d in &devices {
        assert!(
            d.get("is_available").is_none(),
            "sync must never send availability"
        );
        assert_eq!(d["metadata"]["integration_type"], "armis");
        assert_eq!(d["metadata"]["integration_source_id"], id.as_str());
        assert!(
            d["mac"]
                .as_str()
                .unwrap()
                .chars()
                .all(|c| !c.is_ascii_lowercase())
        );
    }
}

#[tokio::test]
async fn a_token_rejected_mid_run_is_refreshed_once_and_the_run_completes() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let armis = FakeArmis::start(
        "s3cret",
        vec![(
            "in:devices",
            Devices::Generated {
                count: 1000,
                make: armis_device,
            },
        )],
    )
    .await;
    // Each token serves 4 searches, then answers 401 (expired).
    armis.state.token_uses.store(4, Ordering::SeqCst);
    let mut body = armis_source(
        "armis",
        &armis.url,
        json!([{ "label": "all", "query": "in:devices" }]),
    );
    body["page_size"] = json!(100);
    let id = stack.source("acme", &ps, body).await;
    let _sync = Sync::start(&stack.platform_bootstrap()).await;

    let devices = stack.wait_devices(acme, 1000).await;
    assert_eq!(distinct(&devices, "armis_device_id").len(), 1000);
    stack
        .wait_source_result("acme", &id, |s| s["last_sync_result"] == "success")
        .await;
    // 10 pages, 4 per token: tokens 1..3, each expiry costing one 401 and one refresh.
    assert_eq!(armis.state.token_requests.load(Ordering::SeqCst), 3);
    assert_eq!(armis.state.unauthorized.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_wrong_secret_fails_the_run_and_is_reported() {
    let stack = Stack::start().await;
    stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let armis = FakeArmis::start(
        "other-secret",
        vec![("in:devices", Devices::List(Default::default()))],
    )
    .await;
    let id = stack
        .source(
            "acme",
            &ps,
            armis_source(
                "armis",
                &armis.url,
                json!([{ "label": "all", "query": "in:devices" }]),
            ),
        )
        .await;
    let _sync = Sync::start(&stack.platform_bootstrap()).await;
    let s = stack
        .wait_source_result("acme", &id, |s| s["last_sync_result"] != "success")
        .await;
    let result = s["last_sync_result"].as_str().unwrap();
    assert!(result.contains("authentication failed"), "{result}");
    assert!(
        !result.contains("s3cret"),
        "the secret must not leak: {result}"
    );
}

#[tokio::test]
async fn several_queries_aggregate_by_armis_id() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let both_a = json!({ "id": 7, "ipAddress": "10.0.0.7", "macAddress": "bogus,aa-bb-cc-00-00-07", "name": "shared", "tags": ["prod"] });
    let both_b = json!({ "id": 7, "ipAddress": "10.0.0.7,2001:db8::7", "macAddress": "11:22:33:44:55:66", "name": "shared", "tags": ["pci", "prod"] });
    let only_a = json!({ "id": 8, "ipAddress": "10.0.0.8", "name": "a-only" });
    let only_b = json!({ "id": 9, "ipAddress": "10.0.0.9", "name": "b-only", "tags": [] });
    let armis = FakeArmis::start(
        "s3cret",
        vec![
            (
                "in:devices type:Server",
                Devices::List(vec![both_a, only_a].into()),
            ),
            (
                "in:devices tag:pci",
                Devices::List(vec![only_b, both_b].into()),
            ),
        ],
    )
    .await;
    let queries = json!([
        { "label": "servers", "query": "in:devices type:Server", "sweep_modes": ["icmp"] },
        { "label": "pci", "query": "in:devices tag:pci", "sweep_modes": ["tcp"] },
    ]);
    stack
        .source("acme", &ps, armis_source("armis", &armis.url, queries))
        .await;
    let _sync = Sync::start(&stack.platform_bootstrap()).await;

    let devices = stack.wait_devices(acme, 3).await;
    let shared = devices
        .iter()
        .find(|d| d["metadata"]["armis_device_id"] == "7")
        .unwrap();
    let m = &shared["metadata"];
    assert_eq!(shared["ip"], "10.0.0.7");
    assert_eq!(
        shared["mac"], "AA:BB:CC:00:00:07",
        "first parseable MAC of the first sighting"
    );
    assert_eq!(shared["hostname"], "shared");
    assert_eq!(m["all_ips"], "10.0.0.7,2001:db8::7");
    assert_eq!(m["ip_count"], "2");
    assert_eq!(m["primary_ip"], "10.0.0.7");
    assert_eq!(m["tag"], "pci,prod");
    assert_eq!(m["query_label"], "servers,pci");
    assert_eq!(m["sweep_modes"], "icmp,tcp");
    let b = devices
        .iter()
        .find(|d| d["metadata"]["armis_device_id"] == "9")
        .unwrap();
    assert_eq!(b["metadata"]["query_label"], "pci");
    assert!(b["metadata"].get("tag").is_none());
    assert!(b.get("mac").is_none());
}

#[tokio::test]
async fn each_source_applies_only_its_own_blacklist_and_ipv6_is_kept() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let devices = vec![
        json!({ "id": 1, "ipAddress": "10.0.0.1" }),
        json!({ "id": 2, "ipAddress": "10.0.1.2" }),
        json!({ "id": 3, "ipAddress": "2001:db8::3" }),
        json!({ "id": 4, "ipAddress": "2001:db8:ffff::4,10.0.1.4" }),
        json!({ "id": 5, "ipAddress": "" }),
    ];
    let armis = FakeArmis::start(
        "s3cret",
        vec![("in:devices", Devices::List(devices.into()))],
    )
    .await;
    let q = json!([{ "label": "all", "query": "in:devices" }]);
    let mut strict = armis_source("strict", &armis.url, q.clone());
    strict["network_blacklist"] = json!(["10.0.0.0/24", "2001:db8:ffff::/48"]);
    let strict_id = stack.source("acme", &ps, strict).await;
    let open_id = stack
        .source("acme", &ps, armis_source("open", &armis.url, q))
        .await;
    let _sync = Sync::start(&stack.platform_bootstrap()).await;

    // strict: 2, 3, 4 (via 10.0.1.4); open: 1, 2, 3, 4. Device 5 has no IP: dropped by both.
    let all = stack.wait_devices(acme, 7).await;
    let of = |id: &str| -> BTreeSet<(String, String)> {
        all.iter()
            .filter(|d| d["metadata"]["integration_source_id"] == id)
            .map(|d| {
                (
                    d["metadata"]["armis_device_id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    d["ip"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let pairs = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        of(&strict_id),
        pairs(&[("2", "10.0.1.2"), ("3", "2001:db8::3"), ("4", "10.0.1.4")])
    );
    assert_eq!(
        of(&open_id),
        pairs(&[
            ("1", "10.0.0.1"),
            ("2", "10.0.1.2"),
            ("3", "2001:db8::3"),
            ("4", "2001:db8:ffff::4")
        ])
    );
    let strict4 = all
        .iter()
        .find(|d| {
            d["metadata"]["integration_source_id"] == strict_id.as_str()
                && d["metadata"]["armis_device_id"] == "4"
        })
        .unwrap();
    assert_eq!(
        strict4["metadata"]["all_ips"], "10.0.1.4",
        "blacklisted addresses go nowhere"
    );
    let ids: HashSet<String> = distinct(&all, "integration_source_id");
    assert_eq!(ids.len(), 2);
}

#[test]
fn an_armis_source_without_queries_is_a_configuration_error() {
    let source: sr_core::syncconfig::SourceConfig = serde_json::from_value(json!({
        "type": "armis", "endpoint": "https://armis.example", "credentials": { "secret_key": "k" },
        "poll_interval": "5m", "discovery_interval": "1h", "sweep_interval": "1h", "partition": "default",
        "tenant_id": "7a2b1e40-1111-4222-8333-444455556666", "tenant_slug": "acme",
        "integration_source_id": "7a2b1e40-1111-4222-8333-444455556667",
    }))
    .unwrap();
    let e = sr_sync::integrations::Integration::new(&source, &Default::default()).unwrap_err();
    assert!(matches!(e, sr_sync::integrations::FetchError::Config(_)));
    assert!(e.to_string().contains("at least one query"), "{e}");
}
