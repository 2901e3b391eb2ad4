//! Benchmark of the service path without I/O: a 1 000 000-device tenant partition built into
//! the in-memory state sweepgen keeps ([`PartitionState`]: `SweepIndex` + per-agent cache),
//! cold compiles (index walk, version, reply body capped at the NATS reply limit, cache
//! insert), cache hits, and incremental updates (apply one change, invalidate the affected
//! agent, recompile it). Prints timings; asserts nothing about them.
//!
//! With `SWEEPGEN_BENCH_DB=1` it also runs the path through Postgres (`DATABASE_URL` or the
//! local default): 1 000 000 devices applied as 1 000 inventory messages, the lazy load of the
//! partition plus the first compile (`Configs::entry`), and an incremental change (apply,
//! refresh, recompile) as the consumer and the next request do it.
//!
//! Run: `cargo bench --workspace --bench service` (optimised).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sr_core::TenantId;
use sr_core::inventory::{DeviceChange, InventoryChange, SweepHint};
use sr_sweep::{CompileOptions, SweepDevice};
use sr_sweepgen::configs::PartitionState;
use sr_sweepgen::projection;

const DEVICES: u32 = 1_000_000;
/// NATS default max_payload (1 MiB) minus the default reply reserve.
const BODY_LIMIT: usize = 1024 * 1024 - 1024;

fn faker_ip(i: u32) -> IpAddr {
    let block = i / 254;
    IpAddr::V4(Ipv4Addr::new(
        172,
        u8::try_from(16 + block / 256).unwrap(),
        u8::try_from(block % 256).unwrap(),
        u8::try_from(i % 254 + 1).unwrap(),
    ))
}

/// Agent layout of the synthetic tenant: `agents` agents share 95 % of the devices evenly,
/// 5 % are unassigned (every agent sweeps them).
fn agent_of(i: u32, agents: u32) -> Option<String> {
    if i.is_multiple_of(20) {
        None
    } else {
        Some(format!("agent-{:03}", 1 + i % agents))
    }
}

fn change(i: u32, agents: u32, revision: i64, ip: IpAddr) -> DeviceChange {
    let mut hints = vec![SweepHint {
        source: "armis".to_owned(),
        query_label: Some(format!("query-{}", i % 3)),
        sweep_modes: vec!["icmp".to_owned(), "tcp".to_owned()],
        ports: vec![],
        sweep_interval_secs: Some(3600),
    }];
    if i.is_multiple_of(7) {
        hints.push(SweepHint {
            source: "netbox".to_owned(),
            query_label: None,
            sweep_modes: vec![],
            ports: vec![22, 443],
            sweep_interval_secs: Some(1800),
        });
    }
    DeviceChange {
        uid: format!("sr:{i:08x}-0000-4000-8000-000000000000"),
        partition: "default".to_owned(),
        agent_id: agent_of(i, agents),
        ips: vec![ip.to_string()],
        sources: vec!["armis".to_owned()],
        hints,
        removed: false,
        revision,
    }
}

/// The devices as the service builds them from its projection rows.
fn devices(agents: u32) -> (Vec<SweepDevice>, sr_sweep::SourcePolicies) {
    let message = InventoryChange {
        tenant_id: TenantId::random(),
        devices: (0..DEVICES)
            .map(|i| change(i, agents, 1, faker_ip(i)))
            .collect(),
    };
    let normalised = projection::normalise(&message);
    let rows = &normalised.partitions["default"];
    let mut intervals = Vec::new();
    for r in rows {
        intervals.extend(r.intervals());
    }
    intervals.sort();
    intervals.dedup();
    let policies = projection::policies(intervals.iter().map(|(s, secs)| (s.as_str(), *secs)));
    (
        rows.iter().filter_map(|r| r.to_sweep_device()).collect(),
        policies,
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    println!("{label:<66} {:>10.3} ms", ms(took));
    (out, took)
}

fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.trim_start_matches("VmRSS:").trim().to_owned())
        })
        .unwrap_or_else(|| "n/a".to_owned())
}

/// Cold compile + cache insert of one agent, as `Configs::entry` does on a miss.
fn compile_and_cache(
    state: &PartitionState,
    agent: &str,
) -> Arc<sr_sweepgen::configs::CompiledEntry> {
    let entry = Arc::new(state.compile(agent, BODY_LIMIT));
    state.insert(agent, entry.clone());
    entry
}

fn scenario(agents: u32) {
    println!("\n== 1 000 000 devices, {agents} agent(s) + 5 % unassigned ==");
    let ((devs, policies), _) = timed("generate + normalise devices (not service work)", || {
        devices(agents)
    });
    let (mut state, _) = timed("build the partition index (PartitionState::load)", || {
        PartitionState::load(1, devs, policies.clone(), CompileOptions::default())
    });
    println!("{:<66} {:>13}", "RSS after load", rss());
    // agent-001 holds every device when there is one agent; with 100 agents, agent-002 holds
    // 1 % of them (agent-001 holds none: its share is the unassigned 5 %).
    let agent = if agents == 1 {
        "agent-001"
    } else {
        "agent-002"
    };
    let (entry, _) = timed(&format!("cold compile + cache of {agent}"), || {
        compile_and_cache(&state, agent)
    });
    println!(
        "    {agent}: {} targets, version {}…, body {}",
        entry.target_count,
        &entry.config_version[..12],
        entry.body.as_ref().map_or(
            "over the 1 MiB reply limit (not kept)".to_owned(),
            |b| format!("{} bytes", b.get().len())
        )
    );
    let (_, _) = timed(
        "cold compile + cache of an agent with no own devices",
        || compile_and_cache(&state, "agent-none"),
    );
    let (hit, took) = timed("cache hit", || state.cached(agent));
    assert!(hit.is_some());
    let _ = took;
    if agents > 1 {
        let (_, all) = timed(
            &format!("cold compile + cache of all {agents} agents"),
            || {
                for a in 1..=agents {
                    let _ = compile_and_cache(&state, &format!("agent-{a:03}"));
                }
            },
        );
        println!("    {:.3} ms per agent", ms(all) / f64::from(agents));
    }

    // Incremental: one device of `agent` moves to a new address (a DIRE change), applied
    // like a catch-up, then the affected agent is recompiled on its next request.
    let mut samples = Vec::new();
    for n in 0..5u32 {
        let i = (0..DEVICES)
            .filter(|k| agent_of(*k, agents).as_deref() == Some(agent))
            .nth(n as usize * 1000)
            .unwrap();
        let moved = IpAddr::V4(Ipv4Addr::new(10, 99, 0, u8::try_from(n + 1).unwrap()));
        let rows = projection::normalise(&InventoryChange {
            tenant_id: TenantId::random(),
            devices: vec![change(i, agents, 2 + i64::from(n), moved)],
        });
        let row = &rows.partitions["default"][0];
        let start = Instant::now();
        let dropped = state.apply(
            2 + i64::from(n),
            [(row.uid.clone(), row.to_sweep_device())],
            policies.clone(),
        );
        let applied = start.elapsed();
        let entry = compile_and_cache(&state, agent);
        let total = start.elapsed();
        assert_eq!(dropped, 1, "only the affected agent is invalidated");
        assert!(state.cached(agent).is_some());
        let _ = entry;
        samples.push((applied, total));
    }
    let best = samples.iter().map(|s| s.1).min().unwrap();
    let worst = samples.iter().map(|s| s.1).max().unwrap();
    let apply = samples.iter().map(|s| s.0).max().unwrap();
    println!(
        "{:<66} {:>10.3} ms (best {:.3}, apply+invalidate ≤ {:.3} ms)",
        format!("incremental update of {agent}: apply + invalidate + recompile"),
        ms(worst),
        ms(best),
        ms(apply)
    );
}

/// The path through Postgres: projection writes, lazy load, compile, incremental change.
async fn db_scenario() {
    use sr_sweepgen::configs::Configs;
    use sr_sweepgen::metrics::Metrics;
    use sr_sweepgen::store::Store;

    let agents = 100;
    println!("\n== through Postgres: 1 000 000 devices, {agents} agents + 5 % unassigned ==");
    let db = sr_testkit::TestDb::new("sweepgen_bench");
    let mut cfg = db.config.clone();
    cfg.max_connections = 4;
    let pool = sr_runtime::db::connect_and_migrate(&cfg, &sr_sweepgen::MIGRATOR)
        .await
        .unwrap();
    let store = Store::new(pool.clone());
    let tenant = TenantId::random();
    let start = Instant::now();
    for batch in 0..1000u32 {
        let message = InventoryChange {
            tenant_id: tenant,
            devices: (batch * 1000..(batch + 1) * 1000)
                .map(|i| change(i, agents, 1, faker_ip(i)))
                .collect(),
        };
        store
            .apply(tenant, &projection::normalise(&message))
            .await
            .unwrap();
    }
    let took = start.elapsed();
    println!(
        "{:<66} {:>10.3} ms ({:.0} devices/s)",
        "apply 1 000 messages × 1 000 devices (projection writes)",
        ms(took),
        1e6 / took.as_secs_f64()
    );
    let configs = Configs::new(
        store.clone(),
        CompileOptions::default(),
        BODY_LIMIT,
        Duration::from_secs(3600),
        Metrics::default(),
    );
    let agent = "agent-002";
    let start = Instant::now();
    let entry = configs.entry(tenant, "default", agent).await.unwrap();
    println!(
        "{:<66} {:>10.3} ms ({} targets)",
        "first request: lazy load of the partition + compile + record",
        ms(start.elapsed()),
        entry.target_count
    );
    let start = Instant::now();
    let _ = configs.entry(tenant, "default", agent).await.unwrap();
    println!(
        "{:<66} {:>10.3} ms",
        "next request: generation check + cache hit",
        ms(start.elapsed())
    );
    let mut worst = Duration::ZERO;
    for n in 0..5u32 {
        let i = (0..DEVICES)
            .filter(|k| agent_of(*k, agents).as_deref() == Some(agent))
            .nth(n as usize * 1000)
            .unwrap();
        let moved = IpAddr::V4(Ipv4Addr::new(10, 98, 0, u8::try_from(n + 1).unwrap()));
        let message = InventoryChange {
            tenant_id: tenant,
            devices: vec![change(i, agents, 2 + i64::from(n), moved)],
        };
        let start = Instant::now();
        let applied = store
            .apply(tenant, &projection::normalise(&message))
            .await
            .unwrap();
        for (partition, generation) in &applied.partitions {
            configs
                .refresh(tenant, partition, *generation)
                .await
                .unwrap();
        }
        let fresh = configs.entry(tenant, "default", agent).await.unwrap();
        assert_ne!(fresh.config_version, entry.config_version);
        worst = worst.max(start.elapsed());
    }
    println!(
        "{:<66} {:>10.3} ms (worst of 5)",
        "incremental: apply (commit) + refresh + next request recompiles",
        ms(worst)
    );
    pool.close().await;
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    scenario(1);
    scenario(100);
    if std::env::var_os("SWEEPGEN_BENCH_DB").is_some() {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(db_scenario());
    }
}
