//! Gateway throughput: an mTLS client streams 1 MiB chunks of device JSON through the
//! gateway until JetStream acknowledged them, next to a raw JetStream publish of the same
//! bytes measured in the same run. Prints MB/s and the ratio; asserts nothing.
//!
//! `cargo bench -p sr-gateway --bench throughput` (real Postgres and NATS as for the tests).
//! `SR_BENCH_MB` sets the volume (default 512), `SR_BENCH_STREAMS` the concurrency (2).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

use std::time::Instant;

use serde_json::json;
use sr_proto::agent_gateway_service_client::AgentGatewayServiceClient;
use sr_proto::{GatewayServiceStatus, GatewayStatusChunk};
use sr_testkit::{TestDb, TestNats};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const CHUNK: usize = 1 << 20;

fn device(i: usize) -> serde_json::Value {
    json!({
        "ip": format!("172.{}.{}.{}", 16 + (i / 254) / 256, (i / 254) % 256, i % 254 + 1),
        "source": "armis", "timestamp": "2026-11-22T00:00:00Z", "hostname": format!("FAKER-CIS-SWI-{:05}", i + 1),
        "mac": format!("02:00:{:02X}:{:02X}:{:02X}:{:02X}", (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255),
        "metadata": { "integration_type": "armis", "armis_device_id": (i + 1).to_string(), "query_label": "all" },
    })
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let total_mb: usize = std::env::var("SR_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let streams: usize = std::env::var("SR_BENCH_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let (db, nats, dir) = (
        TestDb::new("gwbench"),
        TestNats::new(),
        tempfile::tempdir().unwrap(),
    );

    let mut ic = sr_identity::Config::default();
    ic.database = db.config.clone();
    ic.nats = nats.config.clone();
    ic.http.listen = "127.0.0.1:0".parse().unwrap();
    ic.bootstrap.output_dir = dir.path().to_path_buf();
    ic.secrets.dev_mode = true;
    ic.telemetry.log = "warn".into();
    let identity = sr_identity::App::build(ic).await.unwrap();
    let base = format!("http://{}", identity.http_addr());
    let stop = CancellationToken::new();
    tokio::spawn(identity.run_until(stop.clone()));
    let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let http = reqwest::Client::new();
    http.post(format!("{base}/api/v1/tenants"))
        .bearer_auth(&token)
        .json(&json!({"slug": "bench"}))
        .send()
        .await
        .unwrap();
    let bundle: serde_json::Value = http
        .post(format!("{base}/api/v1/tenants/bench/sync-services"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench", "component_id": "bench-sync"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let mut gc = sr_gateway::Config::default();
    gc.nats = nats.config.clone();
    gc.grpc.listen = "127.0.0.1:0".parse().unwrap();
    gc.http.listen = "127.0.0.1:0".parse().unwrap();
    let gw = dir.path().join("gateway");
    gc.grpc.cert_file = gw.join("server.pem");
    gc.grpc.key_file = gw.join("server-key.pem");
    gc.grpc.client_ca_file = gw.join("client-ca.pem");
    let gateway = sr_gateway::App::build(gc).await.unwrap();
    let addr = gateway.grpc_addr();
    tokio::spawn(gateway.run_until(stop.clone()));

    // 1 MiB chunks of faker-shaped devices, built once and reused with distinct stream ids.
    let mut builder =
        sr_chunking::ChunkBuilder::new(sr_chunking::ChunkLimits::new(CHUNK, 100_000).unwrap());
    let per_stream_mb = 32;
    let mut i = 0;
    while builder.chunk_count() < per_stream_mb + 1 {
        builder.push(&device(i)).unwrap();
        i += 1;
    }
    let mut payloads: Vec<Vec<u8>> = builder.finish();
    payloads.truncate(per_stream_mb);
    let stream_bytes: usize = payloads.iter().map(Vec::len).sum();
    let rounds = (total_mb / per_stream_mb).max(1);
    let total_bytes = stream_bytes * rounds;
    println!(
        "payload: {rounds} streams x {per_stream_mb} chunks of ~1 MiB ({} devices per stream), {streams} concurrent",
        i * per_stream_mb / (per_stream_mb + 1)
    );

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read_to_string(dir.path().join("root-ca.pem")).unwrap(),
        ))
        .identity(Identity::from_pem(
            bundle["bundle"]["certificate_pem"].as_str().unwrap(),
            bundle["bundle"]["private_key_pem"].as_str().unwrap(),
        ))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .connect()
        .await
        .unwrap();
    let client = AgentGatewayServiceClient::new(channel).max_encoding_message_size(8 << 20);
    let chunks_of = |round: usize| -> Vec<GatewayStatusChunk> {
        let total = i32::try_from(payloads.len()).unwrap();
        payloads
            .iter()
            .enumerate()
            .map(|(k, p)| GatewayStatusChunk {
                services: vec![GatewayServiceStatus {
                    service_name: "sync".into(),
                    service_type: "sync".into(),
                    source: "results".into(),
                    available: true,
                    message: p.clone(),
                    ..Default::default()
                }],
                agent_id: "bench-sync".into(),
                chunk_index: i32::try_from(k).unwrap(),
                total_chunks: total,
                is_final: k + 1 == payloads.len(),
                timestamp: i64::try_from(round).unwrap(),
                ..Default::default()
            })
            .collect()
    };
    let all: Vec<Vec<GatewayStatusChunk>> = (0..rounds).map(chunks_of).collect();

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let work = std::sync::Arc::new(std::sync::Mutex::new(
        all.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    for _ in 0..streams {
        let mut c = client.clone();
        let work = work.clone();
        tasks.spawn(async move {
            loop {
                let Some((round, chunks)) = work.lock().unwrap().pop() else {
                    break;
                };
                let mut req = tonic::Request::new(tokio_stream::iter(chunks));
                req.metadata_mut()
                    .insert("x-sr-stream-id", format!("bench-{round}").parse().unwrap());
                assert!(c.stream_status(req).await.unwrap().into_inner().received);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let gw_secs = started.elapsed().as_secs_f64();

    // Raw JetStream publish of the same bytes, split the same way, same concurrency.
    let client_nats = nats.client().await;
    let js = async_nats::jetstream::new(client_nats.clone());
    let budget = sr_chunking::batch_budget(client_nats.server_info().max_payload, 4096).unwrap();
    let elements: Vec<Box<sr_chunking::RawValue>> = payloads
        .iter()
        .flat_map(|p| serde_json::from_slice::<Vec<Box<sr_chunking::RawValue>>>(p).unwrap())
        .collect();
    let batches = sr_chunking::split_into_batches(&elements, budget).unwrap();
    let subject = nats
        .config
        .subjects()
        .device_updates(sr_core::TenantId::random());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let work = std::sync::Arc::new(std::sync::Mutex::new((0..rounds).collect::<Vec<_>>()));
    for _ in 0..streams {
        let (js, work, batches, subject) =
            (js.clone(), work.clone(), batches.clone(), subject.clone());
        tasks.spawn(async move {
            loop {
                let Some(round) = work.lock().unwrap().pop() else {
                    break;
                };
                let mut acks = Vec::new();
                for (k, b) in batches.iter().enumerate() {
                    let mut h = async_nats::HeaderMap::new();
                    h.insert("Nats-Msg-Id", format!("raw-{round}-{k}").as_str());
                    acks.push(
                        js.publish_with_headers(subject.clone(), h, b.clone().into())
                            .await
                            .unwrap(),
                    );
                }
                for a in acks {
                    a.await.unwrap();
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let raw_secs = started.elapsed().as_secs_f64();

    let mb = total_bytes as f64 / 1e6;
    let (gw_rate, raw_rate) = (mb / gw_secs, mb / raw_secs);
    println!("| path | MB | seconds | MB/s |");
    println!("|---|---|---|---|");
    println!(
        "| gateway (mTLS StreamStatus -> JetStream acked) | {mb:.0} | {gw_secs:.2} | {gw_rate:.1} |"
    );
    println!("| raw JetStream publish (same bytes) | {mb:.0} | {raw_secs:.2} | {raw_rate:.1} |");
    println!(
        "ratio gateway/raw: {:.2} (target >= 0.8); target >= 250 MB/s",
        gw_rate / raw_rate
    );
    stop.cancel();
}
