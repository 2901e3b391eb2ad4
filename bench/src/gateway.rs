//! Scenarios 3 and 4, which talk to the gateway as a sync service does (mTLS gRPC
//! `StreamStatus`): single-device pushes timed until DIRE committed them, and 1 MiB chunks
//! timed until JetStream acknowledged them next to a raw JetStream publish of the same bytes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use serde_json::{Value, json};
use sr_proto::agent_gateway_service_client::AgentGatewayServiceClient;
use sr_proto::{GatewayServiceStatus, GatewayStatusChunk};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::report::{Goal, Row};
use crate::stack::{ClientCert, Env, Stack, until};

const S3: &str = "3 single-device latency";
const S4: &str = "4 gateway throughput";
const MIB: usize = 1 << 20;

/// A device update as the sync sends it for faker device `i`.
fn device(i: usize, timestamp: &str) -> Value {
    json!({
        "ip": format!("172.{}.{}.{}", 16 + (i / 254) / 256, (i / 254) % 256, i % 254 + 1),
        "source": "armis", "timestamp": timestamp,
        "hostname": format!("FAKER-CIS-SWI-{:05}", i + 1),
        "mac": format!("02:00:{:02X}:{:02X}:{:02X}:{:02X}", (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255),
        "metadata": { "integration_type": "armis", "armis_device_id": (i + 1).to_string(), "query_label": "all" },
    })
}

async fn client(addr: &str, cert: &ClientCert) -> Result<AgentGatewayServiceClient<Channel>> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cert.ca_pem))
        .identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .connect()
        .await?;
    Ok(AgentGatewayServiceClient::new(channel).max_encoding_message_size(8 << 20))
}

/// The chunks of one result stream carrying `payloads`.
fn chunks(component: &str, payloads: &[Vec<u8>], round: usize) -> Result<Vec<GatewayStatusChunk>> {
    let total = i32::try_from(payloads.len())?;
    payloads
        .iter()
        .enumerate()
        .map(|(k, p)| {
            Ok(GatewayStatusChunk {
                services: vec![GatewayServiceStatus {
                    service_name: "sync".into(),
                    service_type: "sync".into(),
                    source: "results".into(),
                    available: true,
                    message: p.clone(),
                    ..Default::default()
                }],
                agent_id: component.to_owned(),
                chunk_index: i32::try_from(k)?,
                total_chunks: total,
                is_final: k + 1 == payloads.len(),
                timestamp: i64::try_from(round)?,
                ..Default::default()
            })
        })
        .collect()
}

async fn push(
    c: &mut AgentGatewayServiceClient<Channel>,
    stream_id: &str,
    chunks: Vec<GatewayStatusChunk>,
) -> Result<()> {
    let mut req = tonic::Request::new(tokio_stream::iter(chunks));
    req.metadata_mut()
        .insert("x-sr-stream-id", stream_id.parse()?);
    let reply = c.stream_status(req).await?.into_inner();
    ensure!(
        reply.received,
        "the gateway did not take stream {stream_id}"
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Scenario 3: `pushes` single-device result streams, one every `interval`, each timed from
/// the moment the push starts until DIRE's committed tables show the device.
pub async fn latency(
    env: &Env,
    pushes: usize,
    interval: Duration,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let mut stack = Stack::new(env, "latency")?;
    let result = latency_in(&mut stack, pushes, interval, rows).await;
    let cleaned = stack.cleanup().await;
    result.and(cleaned)
}

async fn latency_in(
    stack: &mut Stack,
    pushes: usize,
    interval: Duration,
    rows: &mut Vec<Row>,
) -> Result<()> {
    ensure!(pushes > 0, "no pushes to time");
    stack.start_front().await?;
    stack.start_dire().await?;
    let tenant = stack.admin()?.tenant("bench").await?;
    let cert = stack.client_cert("bench", "bench-latency").await?;
    let addr = stack
        .grpc_addr
        .clone()
        .ok_or_else(|| anyhow!("no gateway"))?;
    let mut c = client(&addr, &cert).await?;
    let pool = stack.pool("dire", 1).await?;
    let limits = sr_chunking::ChunkLimits::new(MIB, 100_000)?;
    let (mut committed, mut acked) = (Vec::with_capacity(pushes), Vec::with_capacity(pushes));
    let started = Instant::now();
    for i in 0..pushes {
        let due = started + interval * u32::try_from(i)?;
        tokio::time::sleep_until(due.into()).await;
        let mut b = sr_chunking::ChunkBuilder::new(limits);
        b.push(&device(i, &chrono::Utc::now().to_rfc3339()))?;
        let payloads = b.finish();
        let t0 = Instant::now();
        push(
            &mut c,
            &format!("latency-{i}"),
            chunks(&cert.component_id, &payloads, i)?,
        )
        .await?;
        acked.push(t0.elapsed());
        let value = (i + 1).to_string();
        let pool = &pool;
        until(
            "a pushed device to be committed",
            Duration::from_secs(30),
            Duration::from_micros(500),
            || {
                let value = value.clone();
                async move {
                    let seen: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM identifiers
                      WHERE tenant_id = $1 AND partition = 'default'
                        AND type = 'armis_device_id' AND value = $2)",
                    )
                    .bind(tenant.as_uuid())
                    .bind(&value)
                    .fetch_one(pool)
                    .await?;
                    Ok(seen.then_some(()))
                }
            },
        )
        .await?;
        committed.push(t0.elapsed());
    }
    pool.close().await;
    committed.sort();
    acked.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rate = 1.0 / interval.as_secs_f64();
    let note = format!(
        "{pushes} pushes at {rate:.0}/s; gateway ack p50 {:.1} ms, p99 {:.1} ms; max {:.1} ms",
        ms(percentile(&acked, 50.0)),
        ms(percentile(&acked, 99.0)),
        ms(committed[committed.len() - 1])
    );
    rows.push(
        Row::target(
            S3,
            "p50 push → row committed",
            ms(percentile(&committed, 50.0)),
            "ms",
            Goal::AtMost,
            25.0,
        )
        .note(note),
    );
    rows.push(Row::target(
        S3,
        "p99 push → row committed",
        ms(percentile(&committed, 99.0)),
        "ms",
        Goal::AtMost,
        100.0,
    ));
    Ok(())
}

/// Scenario 4: about `total_mb` MiB of device JSON in 1 MiB chunks through the gateway (two
/// concurrent streams of up to 32 chunks) until JetStream acknowledged it, then the same bytes
/// published raw to JetStream with the same concurrency.
pub async fn throughput(env: &Env, total_mb: usize, rows: &mut Vec<Row>) -> Result<()> {
    let mut stack = Stack::new(env, "gateway")?;
    let result = throughput_in(&mut stack, total_mb, rows).await;
    let cleaned = stack.cleanup().await;
    result.and(cleaned)
}

async fn throughput_in(stack: &mut Stack, total_mb: usize, rows: &mut Vec<Row>) -> Result<()> {
    const STREAMS: usize = 2;
    stack.start_front().await?;
    stack.admin()?.tenant("bench").await?;
    let cert = stack.client_cert("bench", "bench-throughput").await?;
    let addr = stack
        .grpc_addr
        .clone()
        .ok_or_else(|| anyhow!("no gateway"))?;
    let client = client(&addr, &cert).await?;

    let per_stream = total_mb.clamp(1, 32);
    let rounds = (total_mb / per_stream).max(1);
    let mut builder = sr_chunking::ChunkBuilder::new(sr_chunking::ChunkLimits::new(MIB, 100_000)?);
    let mut i = 0;
    while builder.chunk_count() < per_stream + 1 {
        builder.push(&device(i, "2026-11-22T00:00:00Z"))?;
        i += 1;
    }
    let mut payloads = builder.finish();
    payloads.truncate(per_stream);
    let stream_bytes: usize = payloads.iter().map(Vec::len).sum();
    let total_bytes = stream_bytes * rounds;

    let work: Vec<(usize, Vec<GatewayStatusChunk>)> = (0..rounds)
        .map(|r| Ok((r, chunks(&cert.component_id, &payloads, r)?)))
        .collect::<Result<_>>()?;
    let work = Arc::new(Mutex::new(work));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..STREAMS {
        let (mut c, work) = (client.clone(), work.clone());
        tasks.spawn(async move {
            loop {
                let next = work.lock().map_err(|_| anyhow!("poisoned"))?.pop();
                let Some((round, chunks)) = next else {
                    return Ok::<(), anyhow::Error>(());
                };
                push(&mut c, &format!("throughput-{round}"), chunks).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let gw_secs = started.elapsed().as_secs_f64();

    // The same elements, split the way the gateway splits them, published raw.
    let nats = stack.nats().await?;
    let js = async_nats::jetstream::new(nats.clone());
    let budget = sr_chunking::batch_budget(nats.server_info().max_payload, 4096)?;
    let mut elements: Vec<Box<sr_chunking::RawValue>> = Vec::new();
    for p in &payloads {
        elements.extend(serde_json::from_slice::<Vec<Box<sr_chunking::RawValue>>>(
            p,
        )?);
    }
    let batches: Arc<Vec<bytes::Bytes>> = Arc::new(
        sr_chunking::split_into_batches(&elements, budget)?
            .into_iter()
            .map(bytes::Bytes::from)
            .collect(),
    );
    let subject = stack.subjects().device_updates(sr_core::TenantId::random());
    let work = Arc::new(Mutex::new((0..rounds).collect::<Vec<_>>()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..STREAMS {
        let (js, work, batches, subject) =
            (js.clone(), work.clone(), batches.clone(), subject.clone());
        tasks.spawn(async move {
            loop {
                let next = work.lock().map_err(|_| anyhow!("poisoned"))?.pop();
                let Some(round) = next else {
                    return Ok::<(), anyhow::Error>(());
                };
                let mut acks = Vec::with_capacity(batches.len());
                for (k, b) in batches.iter().enumerate() {
                    let mut h = async_nats::HeaderMap::new();
                    h.insert("Nats-Msg-Id", format!("raw-{round}-{k}").as_str());
                    acks.push(
                        js.publish_with_headers(subject.clone(), h, b.clone())
                            .await
                            .map_err(|e| anyhow!("{e}"))?,
                    );
                }
                for a in acks {
                    a.await.map_err(|e| anyhow!("{e}"))?;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let raw_secs = started.elapsed().as_secs_f64();

    let mb = total_bytes as f64 / 1e6;
    let (gw_rate, raw_rate) = (mb / gw_secs, mb / raw_secs);
    rows.push(
        Row::target(
            S4,
            "1 MiB chunks over mTLS → JetStream acked",
            gw_rate,
            "MB/s",
            Goal::AtLeast,
            250.0,
        )
        .note(format!(
            "{mb:.0} MB in {gw_secs:.2} s, {rounds} streams of {per_stream} chunks, {STREAMS} concurrent"
        )),
    );
    rows.push(
        Row::info(
            S4,
            "raw JetStream publish of the same bytes",
            raw_rate,
            "MB/s",
        )
        .note(format!("{mb:.0} MB in {raw_secs:.2} s")),
    );
    rows.push(Row::target(
        S4,
        "gateway / raw JetStream",
        gw_rate / raw_rate,
        "",
        Goal::AtLeast,
        0.8,
    ));
    Ok(())
}
