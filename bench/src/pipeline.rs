//! Scenarios 1, 2 and 5: the faker's inventory through sync → gateway → JetStream → DIRE, as
//! separate release processes (plus sweepgen consuming DIRE's changes), then the same
//! canonical rows bulk-inserted into an identical empty table set, then a re-sync with 5 % of
//! the devices changed. The processes' peak RSS is read at the end of the initial sync.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, ensure};
use serde_json::json;
use sr_core::TenantId;
use sr_reconcile::Observation;

use crate::report::{Goal, Row};
use crate::stack::{Env, Stack, consumer_backlog, metric_sum, until, vm_hwm_kib};

const S1: &str = "1 initial sync";
const S2: &str = "2 re-sync";
const S5: &str = "5 memory";
/// Messages DIRE reconciles per round (its default `consumer.batch_size`), so the plain
/// insert commits the same number of rows per transaction.
const DIRE_BATCH: usize = 8;
/// The four services whose peak RSS scenario 5 sums.
const MEASURED: [&str; 4] = ["sr-sync", "sr-gateway", "sr-dire", "sr-sweepgen"];

/// What one sync run took.
struct Run {
    /// Sync process start → last row committed.
    from_start: Duration,
    /// First chunk bytes counted by the gateway → last row committed.
    from_first_chunk: Duration,
    /// DIRE outcome counters at the end.
    created: f64,
    updated: f64,
    unchanged: f64,
}

/// Watches the gateway's `stream_bytes` counter from now on and reports when it first moves.
fn watch_first_chunk(
    gateway_http: String,
    baseline: f64,
) -> tokio::task::JoinHandle<Option<Instant>> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(1800);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{gateway_http}/metrics")).send().await
                && let Ok(text) = r.text().await
                && metric_sum(&text, "sr_gateway_stream_bytes_total", "") > baseline
            {
                return Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    })
}

/// Starts the sync and waits until the gateway has published `n` more devices and DIRE has
/// acknowledged (committed) every message on the devices stream.
async fn sync_run(stack: &mut Stack, n: usize, timeout: Duration) -> Result<Run> {
    let gateway = stack.service("sr-gateway")?.http.clone();
    let before = stack.metrics("sr-gateway").await?;
    let published_before = metric_sum(&before, "sr_gateway_devices_published_total", "");
    let bytes_before = metric_sum(&before, "sr_gateway_stream_bytes_total", "");
    let watcher = watch_first_chunk(gateway, bytes_before);
    let boot = stack.dir().join("bootstrap/platform-sync/sync.json");
    let state = stack.dir().join("sync-state");
    let started = Instant::now();
    stack
        .start(
            "sr-sync",
            "SR_SYNC",
            None,
            false,
            &[
                (
                    "SR_SYNC__BOOTSTRAP_FILE".to_owned(),
                    boot.display().to_string(),
                ),
                ("SR_SYNC__STATE_DIR".to_owned(), state.display().to_string()),
            ],
        )
        .await?;
    let js = async_nats::jetstream::new(stack.nats().await?);
    let stream = stack.subjects().devices_stream();
    let target = published_before + n as f64;
    let stack_ref = &*stack;
    until(
        "the run to be committed by DIRE",
        timeout,
        Duration::from_millis(20),
        || {
            let (js, stream) = (&js, &stream);
            async move {
                let gw = stack_ref.metrics("sr-gateway").await?;
                if metric_sum(&gw, "sr_gateway_devices_published_total", "") < target {
                    if stack_ref.service("sr-sync").is_err() {
                        return Err(anyhow!("the sync is gone"));
                    }
                    return Ok(None);
                }
                Ok((consumer_backlog(js, stream, "dire").await? == 0).then_some(()))
            }
        },
    )
    .await
    .with_context(|| format!("sync log:\n{}", stack.log_tail("sr-sync")))?;
    let done = Instant::now();
    let first = watcher
        .await?
        .ok_or_else(|| anyhow!("no chunk reached the gateway"))?;
    let dire = stack.metrics("sr-dire").await?;
    Ok(Run {
        from_start: done - started,
        from_first_chunk: done.saturating_duration_since(first),
        created: metric_sum(&dire, "sr_dire_devices_total", "outcome=\"created\""),
        updated: metric_sum(&dire, "sr_dire_devices_total", "outcome=\"updated\""),
        unchanged: metric_sum(&dire, "sr_dire_devices_total", "outcome=\"unchanged\""),
    })
}

/// What the plain insert took.
struct Plain {
    /// Devices inserted.
    devices: usize,
    /// Time spent in the inserts and commits (not in reading the stream).
    took: Duration,
}

/// Waits until sweepgen has consumed every inventory change DIRE published (so its peak RSS
/// covers the whole run). Best effort: gives up after `timeout`.
async fn sweepgen_settled(stack: &Stack, timeout: Duration) -> Result<bool> {
    let js = async_nats::jetstream::new(stack.nats().await?);
    let name = stack.subjects().inventory_stream();
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        let mut stream = js.get_stream(&name).await.map_err(|e| anyhow!("{e}"))?;
        let messages = stream
            .info()
            .await
            .map_err(|e| anyhow!("{e}"))?
            .state
            .messages;
        let backlog = consumer_backlog(&js, &name, "sweepgen").await?;
        if backlog == 0 && last == Some(messages) {
            return Ok(true);
        }
        last = (backlog == 0).then_some(messages);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(false)
}

/// Bulk-inserts the device updates the gateway published (the very rows DIRE reconciled)
/// into a freshly migrated, empty DIRE schema with DIRE's own statements, `DIRE_BATCH`
/// messages per transaction, each on a fresh connection.
async fn plain_insert(stack: &mut Stack, tenant: TenantId) -> Result<Plain> {
    let cfg = stack.database("plain", 2);
    let pool = sr_runtime::db::connect_and_migrate(&cfg, &sr_dire::MIGRATOR).await?;
    let js = async_nats::jetstream::new(stack.nats().await?);
    let subjects = stack.subjects();
    let subject = subjects.device_updates(tenant);
    let mut stream = js
        .get_stream(subjects.devices_stream())
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let info = stream.info().await.map_err(|e| anyhow!("{e}"))?;
    let (first_seq, last_seq) = (info.state.first_sequence, info.state.last_sequence);
    let (mut devices, mut spent) = (0usize, Duration::ZERO);
    let mut batch: Vec<Observation> = Vec::new();
    let mut in_batch = 0;
    let mut growth = sr_dire::ingest::Growth::default();
    // Message by message by sequence (no consumer that could time out while a slow
    // transaction runs).
    for seq in first_seq..=last_seq {
        let msg = stream
            .get_raw_message(seq)
            .await
            .map_err(|e| anyhow!("message {seq}: {e}"))?;
        if msg.subject.as_str() == subject {
            let at = chrono::DateTime::from_timestamp_nanos(
                i64::try_from(msg.time.unix_timestamp_nanos()).unwrap_or(0),
            );
            for fields in sr_reconcile::decode_updates(&msg.payload)?
                .into_iter()
                .flatten()
            {
                if let Ok(o) = Observation::from_update_at(&fields, at) {
                    batch.push(o);
                }
            }
            in_batch += 1;
        }
        if in_batch == DIRE_BATCH || (seq == last_seq && in_batch > 0) {
            // A connection of its own per transaction, as DIRE's pool spreads its rounds over
            // several: a plan cached while the tables were empty is not reused for the rest.
            let mut conn = pool.acquire().await?.detach();
            let t = Instant::now();
            let mut tx = sqlx::Connection::begin(&mut conn).await?;
            // Statistics on the schedule DIRE uses (so both run the same plans).
            devices +=
                sr_dire::store::plain_insert(&mut tx, tenant, "default", &batch, &mut growth)
                    .await?;
            tx.commit().await?;
            spent += t.elapsed();
            batch.clear();
            in_batch = 0;
        }
    }
    pool.close().await;
    Ok(Plain {
        devices,
        took: spent,
    })
}

/// Scenarios 1, 2 and 5 for `n` devices.
pub async fn run(env: &Env, n: usize, rows: &mut Vec<Row>) -> Result<()> {
    let mut stack = Stack::new(env, "pipeline")?;
    let result = scenarios(&mut stack, n, rows).await;
    let cleaned = stack.cleanup().await;
    result.and(cleaned)
}

async fn scenarios(stack: &mut Stack, n: usize, rows: &mut Vec<Row>) -> Result<()> {
    let scale = n as f64 / 1e6;
    stack.start_front().await?;
    stack.start_dire().await?;
    stack.start_sweepgen().await?;
    stack
        .start(
            "sr-faker",
            "SR_FAKER",
            None,
            false,
            &[
                ("SR_FAKER__DEVICES__COUNT".to_owned(), n.to_string()),
                ("SR_FAKER__CHURN__INTERVAL_SECS".to_owned(), "0".to_owned()),
                ("SR_FAKER__CHURN__FRACTION".to_owned(), "0.05".to_owned()),
            ],
        )
        .await?;
    let faker = stack.service("sr-faker")?.http.clone();
    let admin = stack.admin()?.clone();
    let tenant = admin.tenant("bench").await?;
    let syncs = admin.get("/tenants/bench/sync-services").await?;
    let platform = syncs
        .as_array()
        .and_then(|a| a.iter().find(|s| s["is_platform_sync"] == true))
        .and_then(|s| s["id"].as_str())
        .ok_or_else(|| anyhow!("no platform sync service: {syncs}"))?
        .to_owned();
    admin
        .post(
            "/tenants/bench/integration-sources",
            json!({
                "name": "faker", "source_type": "armis", "endpoint": faker,
                "credentials": { "secret_key": "faker-secret" }, "sync_service_id": platform,
                "page_size": 1000, "discovery_interval": "24h", "agent_id": "bench-agent",
                "queries": [{ "label": "all", "query": "in:devices", "sweep_modes": ["icmp", "tcp"] }],
            }),
        )
        .await?;
    let timeout = Duration::from_secs(300) + Duration::from_millis(n as u64);

    // 1: initial sync.
    let first = sync_run(stack, n, timeout).await?;
    let secs = first.from_first_chunk.as_secs_f64();
    let rate = n as f64 / secs;
    let counts = format!(
        "DIRE created {:.0}, updated {:.0}, unchanged {:.0}; sync start → committed {:.1} s",
        first.created,
        first.updated,
        first.unchanged,
        first.from_start.as_secs_f64()
    );
    rows.push(
        Row::target(
            S1,
            &format!("{n} devices: first chunk at the gateway → last row committed"),
            secs,
            "s",
            Goal::AtMost,
            35.0 * scale,
        )
        .note(counts),
    );
    rows.push(Row::target(
        S1,
        "pipeline rate",
        rate,
        "devices/s",
        Goal::AtLeast,
        30_000.0,
    ));

    // 5: peak RSS of the four services, once sweepgen has caught up.
    let settled = sweepgen_settled(stack, Duration::from_secs(120)).await?;
    let mut total_mib = 0.0;
    let mut parts = Vec::new();
    for name in MEASURED {
        let pid = stack.service(name)?.pid;
        let mib = vm_hwm_kib(pid).ok_or_else(|| anyhow!("no VmHWM for {name}"))? as f64 / 1024.0;
        total_mib += mib;
        parts.push(format!("{name} {mib:.0}"));
    }
    let note = format!(
        "VmHWM MiB: {}{}",
        parts.join(", "),
        if settled {
            ""
        } else {
            " (sweepgen had not caught up after 120 s)"
        }
    );
    rows.push(
        Row::target(
            S5,
            &format!("peak RSS summed over sync, gateway, DIRE, sweepgen ({n} devices)"),
            total_mib,
            "MiB",
            Goal::AtMost,
            300.0 * scale.max(1.0),
        )
        .note(note),
    );

    // 1, continued: the database's limit for the same rows.
    let plain = plain_insert(stack, tenant).await?;
    ensure!(
        plain.devices > 0,
        "the plain insert found no device updates"
    );
    let plain_rate = plain.devices as f64 / plain.took.as_secs_f64();
    rows.push(
        Row::info(S1, "plain bulk insert of the same canonical rows", plain_rate, "devices/s").note(
            format!(
                "{} devices in {:.1} s, {DIRE_BATCH} messages per transaction, each on a fresh connection, into empty identical tables",
                plain.devices,
                plain.took.as_secs_f64(),
            ),
        ),
    );
    rows.push(Row::target(
        S1,
        "pipeline rate / plain insert rate",
        rate / plain_rate,
        "",
        Goal::AtLeast,
        0.7,
    ));

    // 2: re-sync of the same inventory with 5 % of the devices changed (a churn epoch swaps
    // the primary IPs of 2.5 % of the device pairs).
    stack.stop("sr-sync").await?;
    reqwest::Client::new()
        .post(format!("{faker}/faker/churn/advance"))
        .send()
        .await?
        .error_for_status()?;
    let again = sync_run(stack, n, timeout).await?;
    rows.push(
        Row::target(
            S2,
            &format!("{n} devices, 5 % changed: first chunk at the gateway → last row committed"),
            again.from_first_chunk.as_secs_f64(),
            "s",
            Goal::AtMost,
            8.0 * scale,
        )
        .note(format!(
            "DIRE updated {:.0}, unchanged {:.0}; sync start → committed {:.1} s",
            again.updated - first.updated,
            again.unchanged - first.unchanged,
            again.from_start.as_secs_f64()
        )),
    );
    Ok(())
}
