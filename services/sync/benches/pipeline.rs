//! End-to-end throughput of the sync: an in-process Armis test server with N devices (default
//! 1 000 000; `SR_SYNC_BENCH_DEVICES` to change), the real `sr-sync` binary as a separate
//! process (so its peak RSS is its own), a real gateway and identity in-process, JetStream.
//!
//! Prints devices per second (from the sync's start to identity receiving the run's report,
//! which the sync sends only after every stream was acknowledged as durable) and the sync's
//! peak RSS (`VmHWM`). Run: `cargo bench --workspace --bench pipeline`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    missing_docs
)]

#[path = "../tests/sync/fakes.rs"]
mod fakes;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sr_testkit::{TestDb, TestNats};
use tokio_util::sync::CancellationToken;

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = std::env::var("SR_SYNC_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (db, nats, dir) = (
        TestDb::new("identity"),
        TestNats::new(),
        tempfile::tempdir().unwrap(),
    );

    let mut ic = sr_identity::Config::default();
    ic.database = db.config.clone();
    ic.nats = nats.config.clone();
    ic.http.listen = "127.0.0.1:0".parse().unwrap();
    ic.bootstrap.output_dir = dir.path().to_path_buf();
    ic.secrets.dev_mode = true;
    let identity = sr_identity::App::build(ic).await.unwrap();
    let identity_url = format!("http://{}/api/v1", identity.http_addr());
    let stop = CancellationToken::new();
    tokio::spawn(identity.run_until(stop.clone()));

    let mut gc = sr_gateway::Config::default();
    gc.nats = nats.config.clone();
    gc.grpc.listen = "127.0.0.1:0".parse().unwrap();
    gc.http.listen = "127.0.0.1:0".parse().unwrap();
    let gw = dir.path().join("gateway");
    gc.grpc.cert_file = gw.join("server.pem");
    gc.grpc.key_file = gw.join("server-key.pem");
    gc.grpc.client_ca_file = gw.join("client-ca.pem");
    let gateway = sr_gateway::App::build(gc).await.unwrap();
    let grpc_addr = gateway.grpc_addr();
    tokio::spawn(gateway.run_until(stop.clone()));

    let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let http = reqwest::Client::new();
    let api = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{identity_url}{path}"))
            .bearer_auth(&token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    api(
        reqwest::Method::POST,
        "/tenants".into(),
        Some(json!({ "slug": "acme" })),
    )
    .await;
    let tenant: sr_core::TenantId =
        api(reqwest::Method::GET, "/tenants/acme".into(), None).await["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let syncs = api(
        reqwest::Method::GET,
        "/tenants/acme/sync-services".into(),
        None,
    )
    .await;
    let ps = syncs
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["is_platform_sync"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let armis = fakes::FakeArmis::start(
        "s3cret",
        vec![(
            "in:devices",
            fakes::Devices::Generated {
                count: n,
                make: fakes::armis_device,
            },
        )],
    )
    .await;
    let source = api(
        reqwest::Method::POST,
        "/tenants/acme/integration-sources".into(),
        Some(json!({
            "name": "bench", "source_type": "armis", "endpoint": armis.url,
            "credentials": { "secret_key": "s3cret" }, "sync_service_id": ps, "page_size": 1000,
            "queries": [{ "label": "all", "query": "in:devices" }],
        })),
    )
    .await;
    let source_id = source["id"].as_str().unwrap().to_owned();

    let bundle = dir.path().join("platform-sync");
    std::fs::write(
        bundle.join("bench-sync.json"),
        serde_json::to_vec(&json!({
            "component_id": "platform-sync", "gateway_address": grpc_addr.to_string(),
            "gateway_server_name": "localhost",
            "cert_file": "cert.pem", "key_file": "key.pem", "ca_file": "ca.pem",
        }))
        .unwrap(),
    )
    .unwrap();
    let state = dir.path().join("sync-state");

    let started = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sr-sync"))
        .env("SR_SYNC__BOOTSTRAP_FILE", bundle.join("bench-sync.json"))
        .env("SR_SYNC__STATE_DIR", &state)
        .env("SR_SYNC__HTTP__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut peak_kib = 0;
    let report = loop {
        peak_kib = peak_kib.max(vm_hwm_kib(pid).unwrap_or(0));
        let s = api(
            reqwest::Method::GET,
            format!("/tenants/acme/integration-sources/{source_id}"),
            None,
        )
        .await;
        if s["last_sync_at"].is_string() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "bench timed out"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = started.elapsed();
    peak_kib = peak_kib.max(vm_hwm_kib(pid).unwrap_or(0));
    child.kill().await.ok();
    assert_eq!(report["last_sync_result"], "success", "{report}");
    assert_eq!(report["last_device_count"], n as u64);

    // Count what landed on JetStream (not timed).
    let client = nats.client().await;
    let s = nats.config.subjects();
    let messages =
        sr_testkit::stream_messages(&client, &s.devices_stream(), &s.device_updates(tenant)).await;
    let landed: usize = messages
        .iter()
        .map(|m| {
            serde_json::from_slice::<Vec<Value>>(&m.payload)
                .unwrap()
                .len()
        })
        .sum();
    let pages = armis.state.searches.lock().unwrap().len();
    println!(
        "sync pipeline bench: {n} devices, {pages} Armis pages of 1000, {} JetStream messages",
        messages.len()
    );
    println!("  devices on JetStream: {landed}");
    println!(
        "  wall time (sync start -> run reported durable): {:.2} s",
        elapsed.as_secs_f64()
    );
    println!(
        "  throughput: {:.0} devices/s",
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  sync peak RSS (VmHWM): {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    assert_eq!(landed, n);
    stop.cancel();
}
