//! Store throughput: publishes N valid events to a fresh `SR_EVENTS` stream, runs the events
//! service until it has stored all of them, then inserts the very same rows with the very
//! same statement, batch size and concurrency into an identical empty table, without NATS,
//! decoding or acks (what the database alone can take). Prints both rates and their ratio.
//!
//! `cargo bench --workspace --bench store [-- N]` (default N = 200 000; or `EVENTS_BENCH_N`);
//! `EVENTS_BENCH_BATCH` and `EVENTS_BENCH_WRITERS` override the consumer's batch size (1000)
//! and writers (2). Needs the same Postgres and NATS as the tests.
#![allow(clippy::print_stdout, clippy::field_reassign_with_default)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use sr_core::TenantId;
use sr_core::ocsf::{Activity, OcsfEvent, ResourceRef};
use sr_runtime::jetstream::{StreamKind, headers};
use sr_testkit::{TestDb, TestNats};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TENANTS: usize = 16;
/// Publishes in flight before waiting for their acks.
const PUBLISH_WINDOW: usize = 4_096;

fn count_arg() -> usize {
    std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse().ok())
        .or_else(|| std::env::var("EVENTS_BENCH_N").ok()?.parse().ok())
        .unwrap_or(200_000)
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn sample_event(tenant: TenantId, i: usize, now: DateTime<Utc>) -> OcsfEvent {
    let activity = [Activity::Create, Activity::Update, Activity::Delete][i % 3];
    let id = format!("{:08x}-bench-source", i / 3);
    let name = format!("source-{}", i / 3);
    OcsfEvent::lifecycle(
        tenant,
        "sr-identity",
        activity,
        &ResourceRef {
            resource_type: "integration_source",
            id,
            name: &name,
        },
        "Integration source",
        match activity {
            Activity::Create => "create",
            Activity::Update => "update",
            Activity::Delete => "delete",
        },
        serde_json::json!({ "source_type": "armis", "enabled": true, "changed": ["endpoint"] }),
        now - chrono::Duration::milliseconds(i64::try_from(i).unwrap_or(0)),
    )
}

/// Time to decode and validate `n` events on one thread: the service's own per-event work.
fn decode_only(n: usize) -> Duration {
    let subjects = sr_core::Subjects::new("sr");
    let tenant = TenantId::random();
    let subject = subjects.events(tenant, "integration_source");
    let now = Utc::now();
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| serde_json::to_vec(&sample_event(tenant, i, now)).unwrap_or_default())
        .collect();
    let started = Instant::now();
    let mut stored = 0;
    for (i, body) in bodies.iter().enumerate() {
        let incoming = sr_events::decode::Incoming {
            subject: &subject,
            origin: Some("sr-identity"),
            payload: body,
            stream: "SR_EVENTS",
            stream_seq: i as u64,
        };
        if let sr_events::decode::Decoded::Event(_) =
            sr_events::decode::decode(&subjects, &incoming)
        {
            stored += 1;
        }
    }
    let took = started.elapsed();
    assert_eq!(stored, n, "every sample event is valid");
    took
}

async fn publish_all(nats: &TestNats, n: usize) -> anyhow::Result<Duration> {
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client);
    sr_runtime::jetstream::ensure_stream(&js, &nats.config, StreamKind::Events).await?;
    let subjects = nats.config.subjects();
    let tenants: Vec<TenantId> = (0..TENANTS).map(|_| TenantId::random()).collect();
    let now = Utc::now();
    let started = Instant::now();
    let mut acks = std::collections::VecDeque::with_capacity(PUBLISH_WINDOW);
    for i in 0..n {
        let tenant = tenants[i % TENANTS];
        let event = sample_event(tenant, i, now);
        let mut h = HeaderMap::new();
        h.insert(headers::MSG_ID, event.metadata.uid.to_string().as_str());
        h.insert(headers::ORIGIN, "sr-identity");
        let body = serde_json::to_vec(&event)?;
        acks.push_back(
            js.publish_with_headers(
                subjects.events(tenant, "integration_source"),
                h,
                body.into(),
            )
            .await?,
        );
        if acks.len() >= PUBLISH_WINDOW
            && let Some(ack) = acks.pop_front()
        {
            ack.await?;
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(started.elapsed())
}

async fn run_service(
    db: &TestDb,
    nats: &TestNats,
    n: usize,
    batch: usize,
    writers: usize,
) -> anyhow::Result<(Duration, u64)> {
    let mut cfg = sr_events::Config::default();
    cfg.database = db.config.clone();
    cfg.database.max_connections = u32::try_from(writers + 2)?;
    cfg.nats = nats.config.clone();
    cfg.http.listen = "127.0.0.1:0".parse()?;
    cfg.api.token = "bench".into();
    cfg.consumer.batch_size = batch;
    cfg.consumer.writers = writers;
    cfg.retention.interval = "24h".into();
    let app = sr_events::App::build(cfg).await?;
    let metrics = app.metrics();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let handle = tokio::spawn(app.run_until(stop.clone()));
    let target = u64::try_from(n)?;
    let deadline = started + Duration::from_secs(1_800);
    while metrics.stored.get() + metrics.duplicates.get() < target {
        anyhow::ensure!(Instant::now() < deadline, "service did not finish in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let stored = metrics.stored.get();
    stop.cancel();
    handle.await??;
    Ok((elapsed, stored))
}

/// The stored rows, column by column, ready to bind.
struct Columns {
    tenant: Vec<Uuid>,
    uid: Vec<Uuid>,
    origin: Vec<String>,
    class: Vec<i32>,
    category: Vec<i32>,
    activity: Vec<i32>,
    type_uid: Vec<i64>,
    severity: Vec<i32>,
    status: Vec<i32>,
    time: Vec<DateTime<Utc>>,
    message: Vec<String>,
    correlation: Vec<Option<String>>,
    observables: Vec<String>,
    unmapped: Vec<String>,
    raw: Vec<String>,
    subject: Vec<String>,
}

type StoredRow = (
    Uuid,
    Uuid,
    String,
    i32,
    i32,
    i32,
    i64,
    i32,
    i32,
    DateTime<Utc>,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
);

async fn load_rows(pool: &sqlx::PgPool) -> anyhow::Result<Vec<StoredRow>> {
    // Arrival order, as the service saw them.
    Ok(sqlx::query_as(
        "SELECT tenant_id, uid, origin, class_uid, category_uid, activity_id, type_uid, severity_id,
                status_id, time, message, correlation_uid, observables::text, unmapped::text, raw::text, subject
         FROM ocsf_events ORDER BY stored_at",
    )
    .fetch_all(pool)
    .await?)
}

fn columns(rows: &[StoredRow]) -> Columns {
    let mut c = Columns {
        tenant: Vec::new(),
        uid: Vec::new(),
        origin: Vec::new(),
        class: Vec::new(),
        category: Vec::new(),
        activity: Vec::new(),
        type_uid: Vec::new(),
        severity: Vec::new(),
        status: Vec::new(),
        time: Vec::new(),
        message: Vec::new(),
        correlation: Vec::new(),
        observables: Vec::new(),
        unmapped: Vec::new(),
        raw: Vec::new(),
        subject: Vec::new(),
    };
    // Sorted by key within the batch, as the service writes them.
    let mut sorted: Vec<&StoredRow> = rows.iter().collect();
    sorted.sort_by_key(|r| (r.0, r.1));
    for r in sorted {
        c.tenant.push(r.0);
        c.uid.push(r.1);
        c.origin.push(r.2.clone());
        c.class.push(r.3);
        c.category.push(r.4);
        c.activity.push(r.5);
        c.type_uid.push(r.6);
        c.severity.push(r.7);
        c.status.push(r.8);
        c.time.push(r.9);
        c.message.push(r.10.clone());
        c.correlation.push(r.11.clone());
        c.observables.push(r.12.clone());
        c.unmapped.push(r.13.clone());
        c.raw.push(r.14.clone());
        c.subject.push(r.15.clone());
    }
    c
}

async fn plain_inserts(
    pool: &sqlx::PgPool,
    rows: &[StoredRow],
    batch: usize,
    writers: usize,
) -> anyhow::Result<Duration> {
    sqlx::query("CREATE TABLE plain_events (LIKE ocsf_events INCLUDING ALL)")
        .execute(pool)
        .await?;
    let sql: &'static str = Box::leak(
        sr_events::store::INSERT_EVENTS
            .replace("INSERT INTO ocsf_events", "INSERT INTO plain_events")
            .into_boxed_str(),
    );
    let batches: Vec<Columns> = rows.chunks(batch).map(columns).collect();
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (queue, pool) = (queue.clone(), pool.clone());
        tasks.spawn(async move {
            loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop();
                let Some(c) = next else {
                    return Ok::<(), sqlx::Error>(());
                };
                sqlx::query(sql)
                    .bind(c.tenant)
                    .bind(c.uid)
                    .bind(c.origin)
                    .bind(c.class)
                    .bind(c.category)
                    .bind(c.activity)
                    .bind(c.type_uid)
                    .bind(c.severity)
                    .bind(c.status)
                    .bind(c.time)
                    .bind(c.message)
                    .bind(c.correlation)
                    .bind(c.observables)
                    .bind(c.unmapped)
                    .bind(c.raw)
                    .bind(c.subject)
                    .execute(&pool)
                    .await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let elapsed = started.elapsed();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM plain_events")
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(
        usize::try_from(count)? == rows.len(),
        "plain insert stored {count} of {} rows",
        rows.len()
    );
    Ok(elapsed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = count_arg();
    let batch = env_or("EVENTS_BENCH_BATCH", 1_000);
    let writers = env_or("EVENTS_BENCH_WRITERS", 2);
    let db = TestDb::new("events_bench");
    let nats = TestNats::new();
    println!("sr-events store benchmark: {n} events, batch {batch}, {writers} writers");

    let decode = decode_only(n.min(100_000));
    println!(
        "decode     {:>8} events in {:>7.2} s  {:>9.0} events/s (parse and validate only, one core)",
        n.min(100_000),
        decode.as_secs_f64(),
        rate(n.min(100_000), decode)
    );
    let published = publish_all(&nats, n).await.context("publishing")?;
    println!(
        "published  {n:>8} events in {:>7.2} s  {:>9.0} events/s (JetStream, acked)",
        published.as_secs_f64(),
        rate(n, published)
    );

    let (took, stored) = run_service(&db, &nats, n, batch, writers)
        .await
        .context("running the service")?;
    anyhow::ensure!(
        stored == u64::try_from(n)?,
        "service stored {stored} of {n}"
    );
    let service = rate(n, took);
    println!(
        "service    {n:>8} events in {:>7.2} s  {service:>9.0} events/s (pull, decode, validate, insert, commit, ack)",
        took.as_secs_f64()
    );

    let pool = db.pool().await;
    let rows = load_rows(&pool).await?;
    let plain_took = plain_inserts(&pool, &rows, batch, writers).await?;
    let plain = rate(rows.len(), plain_took);
    println!(
        "plain      {:>8} rows   in {:>7.2} s  {plain:>9.0} rows/s   (same statement, batch and connections; empty identical table)",
        rows.len(),
        plain_took.as_secs_f64()
    );
    println!(
        "ratio      service / plain = {:.2}   (target >= 80000 events/s)",
        service / plain
    );
    pool.close().await;
    Ok(())
}
