//! NetBox: paging with absolute and relative `next`, skipped devices, sweep hints, and a failed
//! page that must push nothing.

use std::sync::atomic::Ordering;

use serde_json::json;

use crate::common::{Stack, Sync, netbox_source};
use crate::fakes::{FakeNetbox, distinct, netbox_device};

#[tokio::test]
async fn netbox_pages_are_followed_by_absolute_and_relative_links_and_devices_without_ipv4_are_skipped()
 {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let absolute = FakeNetbox::start("nbtoken", (0..250).map(netbox_device).collect()).await;
    let relative = FakeNetbox::start("nbtoken", (0..120).map(netbox_device).collect()).await;
    relative.state.absolute_next.store(false, Ordering::SeqCst);
    let mut a = netbox_source("nb-abs", &absolute.url);
    a["page_size"] = json!(100);
    a["settings"] = json!({ "tcp_ports": [443, 22], "expand_subnets": true });
    let a_id = stack.source("acme", &ps, a).await;
    let mut r = netbox_source("nb-rel", &format!("{}/", relative.url));
    r["page_size"] = json!(50);
    let r_id = stack.source("acme", &ps, r).await;
    let _sync = Sync::start(&stack.platform_bootstrap()).await;

    // 250 - 25 and 120 - 12 devices have a primary IPv4.
    let devices = stack.wait_devices(acme, 225 + 108).await;
    let abs: Vec<_> = devices
        .iter()
        .filter(|d| d["metadata"]["integration_source_id"] == a_id.as_str())
        .collect();
    assert_eq!(abs.len(), 225);
    assert_eq!(
        absolute.state.pages.lock().unwrap().clone(),
        vec![(100, 0), (100, 100), (100, 200)]
    );
    assert_eq!(
        relative.state.pages.lock().unwrap().clone(),
        vec![(50, 0), (50, 50), (50, 100)]
    );
    let d0 = abs
        .iter()
        .find(|d| d["metadata"]["netbox_device_id"] == "1")
        .unwrap();
    assert_eq!(d0["ip"], "192.168.0.1");
    assert_eq!(d0["source"], "netbox");
    assert_eq!(d0["hostname"], "nb-0");
    let m = &d0["metadata"];
    assert_eq!(m["integration_type"], "netbox");
    assert_eq!(m["role"], "server");
    assert_eq!(m["site"], "dc1");
    assert_eq!(m["sweep_ports"], "22,443");
    assert_eq!(m["sweep_subnet"], "192.168.0.0/24");
    let rel: Vec<_> = devices
        .iter()
        .filter(|d| d["metadata"]["integration_source_id"] == r_id.as_str())
        .collect();
    assert_eq!(rel.len(), 108);
    assert!(
        rel.iter()
            .all(|d| d["metadata"].get("sweep_ports").is_none())
    );
    assert!(
        !distinct(&devices, "netbox_device_id").contains("10"),
        "device 10 has no IPv4"
    );
}

#[tokio::test]
async fn a_failed_netbox_page_fails_the_run_and_pushes_nothing() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let nb = FakeNetbox::start("nbtoken", (0..500).map(netbox_device).collect()).await;
    nb.state.fail_offset.store(200, Ordering::SeqCst);
    let mut body = netbox_source("nb", &nb.url);
    body["page_size"] = json!(100);
    let id = stack.source("acme", &ps, body).await;
    let sync = Sync::start(&stack.platform_bootstrap()).await;

    let s = stack
        .wait_source_result("acme", &id, |s| s["last_sync_result"] != "success")
        .await;
    let result = s["last_sync_result"].as_str().unwrap();
    assert!(result.contains("500"), "{result}");
    assert_eq!(s["last_device_count"], 0);
    sync.wait_runs("acme", "acme/nb", "failure", 1).await;
    assert!(
        stack.devices(acme).await.is_empty(),
        "a partial inventory was pushed"
    );
    let pages = nb.state.pages.lock().unwrap().clone();
    assert!(
        pages.iter().all(|(_, o)| *o <= 200),
        "no page after the failed one: {pages:?}"
    );
}

#[tokio::test]
async fn a_source_missing_its_token_reports_a_configuration_error() {
    let stack = Stack::start().await;
    stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let nb = FakeNetbox::start("nbtoken", vec![]).await;
    let mut body = netbox_source("nb", &nb.url);
    body["credentials"] = json!({});
    let id = stack.source("acme", &ps, body).await;
    let _sync = Sync::start(&stack.platform_bootstrap()).await;
    let s = stack
        .wait_source_result("acme", &id, |s| s["last_sync_result"] != "success")
        .await;
    let result = s["last_sync_result"].as_str().unwrap();
    assert!(
        result.contains("configuration error") && result.contains("api_token"),
        "{result}"
    );
    assert!(nb.state.pages.lock().unwrap().is_empty());
}
