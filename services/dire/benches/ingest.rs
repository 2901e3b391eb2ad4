//! DIRE ingest benchmark against the real Postgres and NATS (not a test: it prints numbers).
//!
//! `cargo bench --workspace --bench ingest -- [--devices N] [--batch MESSAGES] [--churn N]
//! [--cycles N] [--resyncs N] [--no-plain] [--no-ahead]`
//!
//! 1. a plain bulk insert of N faker-shaped devices (and their identifiers) into the DIRE tables
//!    of a scratch schema, with the same statements and transaction size DIRE uses; then
//!    Postgres alone copying those rows into an empty schema of the same tables, in
//!    transactions of the same size (no client work: close to the most this server can insert);
//! 2. the same N devices published to `SR_DEVICES` in messages of 1000, then consumed by DIRE
//!    until every message is acknowledged (committed);
//! 3. a re-sync of the same N with 5 % of the devices changed (`--resyncs` times, a minute
//!    apart, each changing the same 5 % again), each by a freshly started DIRE;
//! 4. a faker inventory of `--churn` devices (default 50 000) under 10 DHCP churn cycles of 5 %,
//!    checked for exactly one device per Armis id and no merge;
//!
//! then the peak RSS of the process (DIRE and the publisher together).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/dire/faker.rs"]
mod faker;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use sr_core::TenantId;
use sr_core::device::DeviceUpdate;
use sr_reconcile::Observation;
use sr_runtime::jetstream::StreamKind;
use sr_testkit::{TestDb, TestNats};
use tokio_util::sync::CancellationToken;

/// The allocator of the `sr-dire` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHUNK: usize = 1_000;

struct Args {
    devices: usize,
    batch: usize,
    churn: usize,
    cycles: usize,
    plain: bool,
    resyncs: usize,
    ahead: bool,
}

fn args() -> Args {
    let mut a = Args {
        devices: 1_000_000,
        batch: 8,
        churn: 50_000,
        cycles: 10,
        plain: true,
        resyncs: 1,
        ahead: true,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = || {
            argv.get(i + 1)
                .and_then(|v| v.replace('_', "").parse().ok())
        };
        match argv[i].as_str() {
            "--devices" => a.devices = value().expect("--devices N"),
            "--batch" => a.batch = value().expect("--batch MESSAGES"),
            "--churn" => a.churn = value().expect("--churn N"),
            "--cycles" => a.cycles = value().expect("--cycles N"),
            "--resyncs" => a.resyncs = value().expect("--resyncs N"),
            "--no-plain" => {
                a.plain = false;
                i += 1;
                continue;
            }
            "--no-ahead" => {
                a.ahead = false;
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

fn status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Publishes `updates(i)` for i in 0..n as messages of CHUNK devices, 64 acks in flight.
async fn publish(
    js: &async_nats::jetstream::Context,
    subject: &str,
    tenant: TenantId,
    n: usize,
    update: impl Fn(usize) -> DeviceUpdate,
) {
    let mut inflight = std::collections::VecDeque::new();
    for start in (0..n).step_by(CHUNK) {
        let chunk: Vec<DeviceUpdate> = (start..(start + CHUNK).min(n)).map(&update).collect();
        let body = serde_json::to_vec(&chunk).unwrap();
        let mut h = async_nats::HeaderMap::new();
        h.insert("sr-tenant-id", tenant.to_string().as_str());
        h.insert("Nats-Msg-Id", uuid::Uuid::new_v4().to_string().as_str());
        let ack = js
            .publish_with_headers(subject.to_owned(), h, body.into())
            .await
            .unwrap();
        inflight.push_back(ack);
        if inflight.len() >= 64 {
            inflight.pop_front().unwrap().await.unwrap();
        }
    }
    for ack in inflight {
        ack.await.unwrap();
    }
}

async fn drained(js: &async_nats::jetstream::Context, stream: &str) {
    let stream = js.get_stream(stream).await.unwrap();
    loop {
        let mut c: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer("dire").await.unwrap();
        let info = c.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Running {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<sr_dire::Result<()>>,
    metrics: sr_dire::Metrics,
}

async fn start(config: sr_dire::Config) -> Running {
    let app = sr_dire::App::build(config).await.unwrap();
    let metrics = app.metrics();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(app.run_until(stop.clone()));
    Running {
        stop,
        handle,
        metrics,
    }
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

/// Plain bulk insert of the same rows (devices and identifiers), no reconciliation.
async fn plain_insert(db: &TestDb, tenant: TenantId, n: usize, per_tx: usize) -> Duration {
    let pool = sr_runtime::db::connect_and_migrate(&db.config, &sr_dire::MIGRATOR)
        .await
        .unwrap();
    let at = t0();
    let mut growth = sr_dire::ingest::Growth::default();
    let started = Instant::now();
    for start in (0..n).step_by(per_tx) {
        let obs: Vec<Observation> = (start..(start + per_tx).min(n))
            .map(|i| {
                let u = serde_json::to_vec(&faker::update(i, faker::ip(i), at, 0)).unwrap();
                let f: sr_reconcile::DeviceUpdateFields = serde_json::from_slice(&u).unwrap();
                Observation::from_update(&f).unwrap()
            })
            .collect();
        let mut tx = pool.begin().await.unwrap();
        // Statistics on the schedule DIRE uses (so both run the same plans).
        sr_dire::store::plain_insert(&mut tx, tenant, "default", &obs, &mut growth)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let took = started.elapsed();
    pool.close().await;
    took
}

/// Postgres alone: the rows of `from` (written by [`plain_insert`]) copied into the same tables
/// of a new schema by `INSERT … SELECT`, in insertion order, in transactions of about `per_tx`
/// devices, each sorted by key as DIRE sorts its rows, with statistics on DIRE's schedule. No
/// client encodes, sends or decides anything, so this is about the most this server inserts;
/// reading and sorting the source rows is still counted.
async fn server_copy(from: &TestDb, n: usize, per_tx: usize) -> Duration {
    let to = TestDb::new("dire_copy");
    let pool = sr_runtime::db::connect_and_migrate(&to.config, &sr_dire::MIGRATOR)
        .await
        .unwrap();
    let src = &from.config.schema;
    let pages = |table: &'static str| {
        let pool = pool.clone();
        let relation = format!("\"{src}\".{table}");
        async move {
            let (bytes,): (i64,) = sqlx::query_as("SELECT pg_relation_size($1::regclass)")
                .bind(relation)
                .fetch_one(&pool)
                .await
                .unwrap();
            bytes / 8192
        }
    };
    let (device_pages, identifier_pages) = (pages("devices").await, pages("identifiers").await);
    let batches = n.div_ceil(per_tx).max(1) as i64;
    let range = |pages: i64, k: i64| (pages * k / batches, pages * (k + 1) / batches);
    let mut growth = sr_dire::ingest::Growth::default();
    let started = Instant::now();
    for k in 0..batches {
        let mut tx = pool.begin().await.unwrap();
        let mut rows = 0;
        for (table, pages, key) in [
            ("devices", device_pages, "tenant_id, uid"),
            (
                "identifiers",
                identifier_pages,
                "tenant_id, partition, type, value",
            ),
        ] {
            // The last range ends at the relation's last page: every row is copied.
            let (lo, hi) = range(pages, k);
            let sql = format!(
                "INSERT INTO {table} SELECT * FROM \"{src}\".{table}
                  WHERE ctid >= format('(%s,0)', $1::int8)::tid
                    AND ctid < format('(%s,0)', $2::int8)::tid
                  ORDER BY {key}"
            );
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(lo)
                .bind(hi)
                .execute(&mut *tx)
                .await
                .unwrap();
            rows += done.rows_affected();
        }
        if growth.add(rows) {
            sr_dire::store::analyze(&mut tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let took = started.elapsed();
    let (copied,): (i64,) = sqlx::query_as("SELECT count(*) FROM devices")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(copied as usize, n, "the server-side copy missed rows");
    pool.close().await;
    took
}

#[tokio::main]
async fn main() {
    let a = args();
    // RUST_LOG (e.g. `sr_dire=info`) shows DIRE's own log, such as how long loading a scope's
    // settled devices took at each start.
    let _telemetry = std::env::var("RUST_LOG").ok().map(|log| {
        let cfg = sr_runtime::telemetry::TelemetryConfig {
            log,
            ..Default::default()
        };
        sr_runtime::telemetry::init("dire-bench", &cfg).unwrap()
    });
    let db = TestDb::new("dire_bench");
    let scratch = TestDb::new("dire_plain");
    let nats = TestNats::new();
    let mut config = sr_dire::Config::default();
    config.database = db.config.clone();
    config.database.max_connections = 8;
    config.nats = nats.config.clone();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.api.token = "bench".into();
    config.consumer.batch_size = a.batch;
    config.consumer.max_bytes = 64 * 1024 * 1024;
    config.reconcile.decide_ahead = a.ahead;
    let subjects = nats.config.subjects();
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client);
    sr_runtime::jetstream::ensure_stream(&js, &nats.config, StreamKind::Devices)
        .await
        .unwrap();
    println!(
        "dire-bench: {} devices in messages of {CHUNK}, DIRE pulls {} messages per round",
        a.devices, a.batch
    );

    let (plain_rate, copy_rate) = if a.plain {
        let plain = plain_insert(&scratch, TenantId::random(), a.devices, a.batch * CHUNK).await;
        println!(
            "plain bulk insert:    {:>9} devices in {:>7.2} s = {:>9.0} devices/s",
            a.devices,
            plain.as_secs_f64(),
            rate(a.devices, plain)
        );
        let copy = server_copy(&scratch, a.devices, a.batch * CHUNK).await;
        println!(
            "server-side copy:     {:>9} devices in {:>7.2} s = {:>9.0} devices/s (Postgres alone: the same rows by INSERT … SELECT)",
            a.devices,
            copy.as_secs_f64(),
            rate(a.devices, copy)
        );
        (rate(a.devices, plain), rate(a.devices, copy))
    } else {
        println!("plain bulk insert:    skipped (--no-plain)");
        (f64::NAN, f64::NAN)
    };
    let rss_after_plain = peak_rss_mib();
    drop(scratch);

    // Initial ingest: everything published first, then DIRE drains the stream.
    let tenant = TenantId::random();
    let subject = subjects.device_updates(tenant);
    let at = t0();
    let started = Instant::now();
    publish(&js, &subject, tenant, a.devices, |i| {
        faker::update(i, faker::ip(i), at, 0)
    })
    .await;
    println!("  (published in {:.2} s)", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let app = start(config.clone()).await;
    drained(&js, &subjects.devices_stream()).await;
    let initial = started.elapsed();
    println!(
        "initial ingest:       {:>9} devices in {:>7.2} s = {:>9.0} devices/s ({:.2} of plain insert, {:.2} of server-side copy; created {})",
        a.devices,
        initial.as_secs_f64(),
        rate(a.devices, initial),
        rate(a.devices, initial) / plain_rate,
        rate(a.devices, initial) / copy_rate,
        app.metrics.devices_with("created"),
    );
    println!(
        "  (peak RSS {rss_after_plain:.0} MiB after the plain insert, {:.0} MiB after the initial ingest)",
        peak_rss_mib()
    );
    println!(
        "  (groups ahead: {} decided, {} preloaded, {} planned, {} stale, {} found stored devices)",
        app.metrics.speculations_with("decided"),
        app.metrics.speculations_with("preloaded"),
        app.metrics.speculations_with("planned"),
        app.metrics.speculations_with("stale"),
        app.metrics.speculations_with("found"),
    );
    let started = Instant::now();
    let outbox_pending = || async {
        let pool = db.pool().await;
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM inventory_outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    while outbox_pending().await > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "  (inventory outbox drained {:.2} s after the last commit; {} messages)",
        started.elapsed().as_secs_f64(),
        app.metrics.inventory_published.get()
    );
    app.stop().await;

    // Re-sync: the same devices five minutes later, 5 % of them with a changed model.
    let mut app = None;
    for round in 1..=a.resyncs.max(1) {
        let later = at + TimeDelta::minutes(4 + round as i64);
        let variant = round as u32;
        if let Some(previous) = app.take() {
            Running::stop(previous).await;
        }
        publish(&js, &subject, tenant, a.devices, |i| {
            faker::update(
                i,
                faker::ip(i),
                later,
                if i % 20 == 0 { variant } else { 0 },
            )
        })
        .await;
        let started = Instant::now();
        let running = start(config.clone()).await;
        drained(&js, &subjects.devices_stream()).await;
        let resync = started.elapsed();
        println!(
            "re-sync (5% changed): {:>9} devices in {:>7.2} s = {:>9.0} devices/s (updated {}, unchanged {}; ahead: {} preloaded, {} planned)",
            a.devices,
            resync.as_secs_f64(),
            rate(a.devices, resync),
            running.metrics.devices_with("updated"),
            running.metrics.devices_with("unchanged"),
            running.metrics.speculations_with("preloaded"),
            running.metrics.speculations_with("planned"),
        );
        app = Some(running);
    }
    let app = app.expect("at least one re-sync");

    // Cardinality under churn, in another tenant of the same inventory.
    let tenant = TenantId::random();
    let subject = subjects.device_updates(tenant);
    let mut ips: Vec<IpAddr> = (0..a.churn).map(faker::ip).collect();
    let started = Instant::now();
    for cycle in 0..=a.cycles {
        if cycle > 0 {
            faker::churn(&mut ips, a.churn * 5 / 100 / 2, cycle);
        }
        let when = at + TimeDelta::minutes(20 * cycle as i64);
        let snapshot = ips.clone();
        publish(&js, &subject, tenant, a.churn, move |i| {
            faker::update(i, snapshot[i], when, 0)
        })
        .await;
        drained(&js, &subjects.devices_stream()).await;
    }
    let churn_took = started.elapsed();
    let pool = db.pool().await;
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql)
                .bind(tenant.as_uuid())
                .fetch_one(&pool)
                .await
                .unwrap();
            n
        }
    };
    let devices = count("SELECT count(*) FROM devices WHERE tenant_id = $1").await;
    let armis = count(
        "SELECT count(DISTINCT value) FROM identifiers WHERE tenant_id = $1 AND type = 'armis_device_id'",
    )
    .await;
    let merges = count("SELECT count(*) FROM merge_audit WHERE tenant_id = $1").await;
    let misplaced = {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT i.value, host(d.ip) FROM identifiers i
               JOIN devices d ON d.tenant_id = i.tenant_id AND d.partition = i.partition
                             AND d.uid = i.device_uid
              WHERE i.tenant_id = $1 AND i.type = 'armis_device_id'",
        )
        .bind(tenant.as_uuid())
        .fetch_all(&pool)
        .await
        .unwrap();
        rows.iter()
            .filter(|(id, ip)| {
                let i = id.parse::<usize>().unwrap() - 1;
                ip.as_deref() != Some(ips[i].to_string().as_str())
            })
            .count()
    };
    pool.close().await;
    println!(
        "cardinality:          {} devices x {} churn cycles of 5% in {:.2} s ({:.0} devices/s): {} devices, {} distinct Armis ids, {} merges, {} at a wrong IP, IP churn {}",
        a.churn,
        a.cycles,
        churn_took.as_secs_f64(),
        rate(a.churn * (a.cycles + 1), churn_took),
        devices,
        armis,
        merges,
        misplaced,
        app.metrics.ip_churn.get(),
    );
    app.stop().await;
    println!("peak RSS (VmHWM):     {:.0} MiB", peak_rss_mib());
}
