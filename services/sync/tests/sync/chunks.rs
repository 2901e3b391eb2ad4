//! Chunking of large result sets: every chunk within its limits and decodable on its own, the
//! device count exact, and large sets split across several streams.

use std::net::IpAddr;

use serde_json::{Value, json};
use sr_chunking::{ChunkLimits, HARD_MAX_CHUNK_BYTES};
use sr_core::device::DeviceUpdate;
use sr_sync::results::{Blacklist, ResultWriter};

use crate::common::{Stack, Sync, armis_source, sync_config};
use crate::fakes::{Devices, FakeArmis, armis_device, distinct};

fn update(meta_bytes: usize) -> DeviceUpdate {
    let mut u: DeviceUpdate = serde_json::from_value(json!({
        "ip": "", "source": "armis", "timestamp": "2026-11-22T00:00:00Z",
    }))
    .unwrap();
    if meta_bytes > 0 {
        u.metadata.insert("tag".into(), "x".repeat(meta_bytes));
    }
    u
}

async fn chunks_of(writer: ResultWriter) -> (Vec<Vec<u8>>, usize) {
    let set = writer.finish().unwrap();
    let mut out = Vec::new();
    for i in 0..set.chunk_count() {
        let c = set.read_chunk(i).await.unwrap();
        assert_eq!(
            serde_json::from_slice::<Vec<Value>>(&c).unwrap().len(),
            set.chunk_devices(i)
        );
        out.push(c);
    }
    (out, set.device_count())
}

#[tokio::test]
async fn twenty_thousand_devices_fill_chunks_within_both_budgets() {
    let dir = tempfile::tempdir().unwrap();
    let mut w =
        ResultWriter::new(dir.path(), ChunkLimits::default(), Blacklist::default()).unwrap();
    for i in 0..20_000u32 {
        let ip: IpAddr = std::net::Ipv4Addr::from(0x0a00_0000 + i).into();
        w.add(&[ip], |_| update(0)).unwrap();
    }
    let (chunks, count) = chunks_of(w).await;
    assert_eq!(count, 20_000);
    assert_eq!(chunks.len(), 20, "1000 small devices per chunk");
    let mut ips = std::collections::HashSet::new();
    for c in &chunks {
        assert!(c.len() <= 1024 * 1024);
        for d in serde_json::from_slice::<Vec<Value>>(c).unwrap() {
            assert!(ips.insert(d["ip"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(ips.len(), 20_000);
}

#[tokio::test]
async fn six_devices_of_about_a_mebibyte_each_go_one_per_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let mut w =
        ResultWriter::new(dir.path(), ChunkLimits::default(), Blacklist::default()).unwrap();
    for i in 0..6u32 {
        let ip: IpAddr = std::net::Ipv4Addr::from(0x0a00_0000 + i).into();
        w.add(&[ip], |_| update(1024 * 1024 - 200 + i as usize * 100))
            .unwrap();
    }
    let (chunks, count) = chunks_of(w).await;
    assert_eq!(count, 6);
    assert_eq!(chunks.len(), 6);
    for c in &chunks {
        assert!(c.len() <= HARD_MAX_CHUNK_BYTES);
        assert_eq!(serde_json::from_slice::<Vec<Value>>(c).unwrap().len(), 1);
    }
}

#[tokio::test]
async fn twenty_thousand_devices_travel_as_several_streams_and_arrive_exactly_once() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let ps = stack.platform_sync_id("acme").await;
    let armis = FakeArmis::start(
        "s3cret",
        vec![(
            "in:devices",
            Devices::Generated {
                count: 20_000,
                make: armis_device,
            },
        )],
    )
    .await;
    let mut body = armis_source(
        "armis",
        &armis.url,
        json!([{ "label": "all", "query": "in:devices" }]),
    );
    body["page_size"] = json!(1000);
    let id = stack.source("acme", &ps, body).await;
    let state = tempfile::tempdir().unwrap();
    let mut config = sync_config(&stack.platform_bootstrap(), state.path());
    config.push.max_chunk_bytes = 256 * 1024;
    config.push.max_stream_devices = 6_000;
    let sync = Sync::start_with(config).await;

    let devices = stack.wait_devices(acme, 20_000).await;
    assert_eq!(distinct(&devices, "armis_device_id").len(), 20_000);
    let s = stack
        .wait_source_result("acme", &id, |s| s["last_sync_result"] == "success")
        .await;
    assert_eq!(s["last_device_count"], 20_000);
    let metrics = sync.metrics().await;
    let chunks: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("sr_sync_push_chunks_total{tenant=\"acme\",source=\"acme/armis\"} ")
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(chunks >= 20, "{chunks} chunks");
    assert!(metrics.contains("sr_sync_push_bytes_total{tenant=\"acme\",source=\"acme/armis\"}"));
}
