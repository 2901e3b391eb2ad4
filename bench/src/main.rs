//! `sr-bench`: measures the pipeline on this machine with real Postgres and NATS, running the
//! workspace's release binaries as separate processes, and prints every figure next to its
//! target (issue 9). The table goes to stdout and `results/latest.md`, the same rows as JSON
//! to `results/latest.json`.
//!
//! Scenarios: 1 initial sync (with the plain bulk insert of the same rows), 2 re-sync with 5 %
//! changed, 3 single-device latency, 4 gateway throughput, 5 peak RSS during 1, 6 sweep
//! compile and events stored per second. Each runs on schemas and a NATS prefix of its own,
//! removed afterwards. `--quick` runs everything at 1/20 scale.

mod events;
mod gateway;
mod pipeline;
mod report;
mod stack;
mod sweep;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use serde_json::json;

use report::Row;
use stack::Env;

/// Benchmarks the pipeline against the targets of issue 9.
#[derive(Debug, Parser)]
#[command(name = "sr-bench", version)]
struct Args {
    /// Everything at 1/20 scale (a few minutes at most), for routine use.
    #[arg(long)]
    quick: bool,
    /// Devices of scenarios 1, 2 and 5 [default: 1000000, quick 50000].
    #[arg(long)]
    devices: Option<usize>,
    /// Single-device pushes of scenario 3 [default: 2000, quick 100].
    #[arg(long)]
    pushes: Option<usize>,
    /// Milliseconds between two single-device pushes.
    #[arg(long, default_value_t = 50)]
    push_interval_ms: u64,
    /// MiB pushed through the gateway in scenario 4 [default: 512, quick 32].
    #[arg(long)]
    gateway_mb: Option<usize>,
    /// Devices of the sweep compile [default: 1000000, quick 50000].
    #[arg(long)]
    sweep_devices: Option<u32>,
    /// Events stored in scenario 6 [default: 400000, quick 20000].
    #[arg(long)]
    events: Option<usize>,
    /// Scenarios to run, comma-separated (1, 2 and 5 always run together).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5,6")]
    only: Vec<u8>,
    /// Directory of the release binaries [default: this executable's directory, else
    /// `$CARGO_TARGET_DIR/release`].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where `latest.md` and `latest.json` are written.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out_dir: PathBuf,
    /// Postgres.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// NATS with JetStream.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
}

const BINARIES: [&str; 7] = [
    "sr-identity",
    "sr-gateway",
    "sr-dire",
    "sr-sweepgen",
    "sr-events",
    "sr-faker",
    "sr-sync",
];

fn has_binaries(dir: &Path) -> bool {
    BINARIES.iter().all(|b| dir.join(b).is_file())
}

fn bin_dir(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = explicit {
        if !has_binaries(&d) {
            bail!("{} lacks one of {BINARIES:?}", d.display());
        }
        return Ok(d);
    }
    let own = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| PathBuf::from(t).join("release"))
        .unwrap_or_default();
    [own, target].into_iter().find(|d| has_binaries(d)).context(
        "release binaries not found; run `cargo build --release --workspace` or pass --bin-dir",
    )
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = Args::parse();
    let div = if a.quick { 20 } else { 1 };
    let devices = a.devices.unwrap_or(1_000_000 / div);
    let pushes = a.pushes.unwrap_or(2_000 / div);
    let gateway_mb = a.gateway_mb.unwrap_or(if a.quick { 32 } else { 512 });
    let sweep_devices = a.sweep_devices.unwrap_or(1_000_000 / u32::try_from(div)?);
    let events = a.events.unwrap_or(400_000 / div);
    let env = Env {
        bin: bin_dir(a.bin_dir.clone())?,
        database_url: a.database_url.clone(),
        nats_url: a.nats_url.clone(),
    };
    let started = Instant::now();
    let wants = |n: u8| a.only.contains(&n);
    let mut rows = Vec::new();
    let step = |what: &str| {
        eprintln!(
            "sr-bench: {what} ({:.0} s)",
            started.elapsed().as_secs_f64()
        )
    };

    if wants(1) || wants(2) || wants(5) {
        step(&format!(
            "scenarios 1, 2, 5: pipeline with {devices} devices"
        ));
        if let Err(e) = pipeline::run(&env, devices, &mut rows).await {
            rows.push(Row::failed("1/2/5 pipeline", &format!("{e:#}")));
        }
    }
    if wants(3) {
        step(&format!("scenario 3: {pushes} single-device pushes"));
        let interval = Duration::from_millis(a.push_interval_ms.max(1));
        if let Err(e) = gateway::latency(&env, pushes, interval, &mut rows).await {
            rows.push(Row::failed("3 single-device latency", &format!("{e:#}")));
        }
    }
    if wants(4) {
        step(&format!("scenario 4: {gateway_mb} MiB through the gateway"));
        if let Err(e) = gateway::throughput(&env, gateway_mb, &mut rows).await {
            rows.push(Row::failed("4 gateway throughput", &format!("{e:#}")));
        }
    }
    if wants(6) {
        step(&format!(
            "scenario 6: sweep compile of {sweep_devices} devices"
        ));
        if let Err(e) = sweep::compile(sweep_devices, &mut rows) {
            rows.push(Row::failed("6 sweep compile", &format!("{e:#}")));
        }
        step(&format!("scenario 6: {events} events"));
        if let Err(e) = events::store(&env, events, &mut rows).await {
            rows.push(Row::failed("6 events", &format!("{e:#}")));
        }
    }
    let took = started.elapsed();
    step("done");
    // Scenario order (5 is measured during 1 but reads better after 4).
    rows.sort_by_key(|r| r.scenario.chars().next().and_then(|c| c.to_digit(10)));

    let table = report::markdown(&rows);
    println!("{table}");
    let when = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let commit = git_commit();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let scale = if a.quick { "quick (1/20)" } else { "full" };
    let header = format!(
        "# sr-bench results\n\n{when}, commit {commit}, {scale} scale, {cores} cores, {:.0} s in all.\n\
         Devices {devices} (scenarios 1, 2, 5), {pushes} pushes at {} ms (3), {gateway_mb} MiB (4), \
         sweep {sweep_devices} devices and {events} events (6). Ratio to limit = measured / target limit.\n\n",
        took.as_secs_f64(),
        a.push_interval_ms
    );
    std::fs::create_dir_all(&a.out_dir)?;
    std::fs::write(a.out_dir.join("latest.md"), format!("{header}{table}"))?;
    let doc = json!({
        "generated_at": when,
        "commit": commit,
        "quick": a.quick,
        "cores": cores,
        "seconds": took.as_secs_f64(),
        "parameters": {
            "devices": devices, "pushes": pushes, "push_interval_ms": a.push_interval_ms,
            "gateway_mb": gateway_mb, "sweep_devices": sweep_devices, "events": events,
        },
        "rows": rows,
    });
    std::fs::write(
        a.out_dir.join("latest.json"),
        serde_json::to_string_pretty(&doc)? + "\n",
    )?;
    eprintln!(
        "sr-bench: wrote {}",
        a.out_dir.join("latest.{md,json}").display()
    );
    Ok(())
}
