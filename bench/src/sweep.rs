//! Scenario 6, first half: sweepgen's in-memory path for one partition of `n` devices (the
//! same `PartitionState` the service keeps), without I/O: build the index and compile the
//! agent that holds the devices, then incremental updates (one device moves; apply,
//! invalidate the affected agent, recompile it).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use sr_core::TenantId;
use sr_core::inventory::{DeviceChange, InventoryChange, SweepHint};
use sr_sweep::{CompileOptions, SweepDevice};
use sr_sweepgen::configs::PartitionState;
use sr_sweepgen::projection;

const S6: &str = "6 sweep compile";
/// NATS default max_payload (1 MiB) minus the default reply reserve, as the service uses.
const BODY_LIMIT: usize = 1024 * 1024 - 1024;
const AGENT: &str = "bench-agent";

fn faker_ip(i: u32) -> Result<IpAddr> {
    let block = i / 254;
    Ok(IpAddr::V4(Ipv4Addr::new(
        172,
        u8::try_from(16 + block / 256)?,
        u8::try_from(block % 256)?,
        u8::try_from(i % 254 + 1)?,
    )))
}

/// A DIRE change for device `i`: 95 % assigned to the agent, 5 % unassigned (swept by every
/// agent), armis hints on every device and a NetBox sighting on every seventh.
fn change(i: u32, revision: i64, ip: IpAddr) -> DeviceChange {
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
        agent_id: (!i.is_multiple_of(20)).then(|| AGENT.to_owned()),
        ips: vec![ip.to_string()],
        sources: vec!["armis".to_owned()],
        hints,
        removed: false,
        revision,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Scenario 6 (sweep) for `n` devices.
pub fn compile(n: u32, rows: &mut Vec<crate::report::Row>) -> Result<()> {
    use crate::report::{Goal, Row};
    ensure!(n > 0, "no devices to compile");
    // Not timed: the devices as the service builds them from its projection rows.
    let message = InventoryChange {
        tenant_id: TenantId::random(),
        devices: (0..n)
            .map(|i| Ok(change(i, 1, faker_ip(i)?)))
            .collect::<Result<_>>()?,
    };
    let normalised = projection::normalise(&message);
    let rows_in = normalised
        .partitions
        .get("default")
        .ok_or_else(|| anyhow!("no default partition"))?;
    let mut intervals = Vec::new();
    for r in rows_in {
        intervals.extend(r.intervals());
    }
    intervals.sort();
    intervals.dedup();
    let policies = projection::policies(intervals.iter().map(|(s, secs)| (s.as_str(), *secs)));
    let devices: Vec<SweepDevice> = rows_in.iter().filter_map(|r| r.to_sweep_device()).collect();
    drop(message);

    let started = Instant::now();
    let mut state = PartitionState::load(1, devices, policies.clone(), CompileOptions::default());
    let loaded = started.elapsed();
    let entry = Arc::new(state.compile(AGENT, BODY_LIMIT));
    state.insert(AGENT, entry.clone());
    let full = started.elapsed();
    rows.push(
        Row::target(
            S6,
            &format!("{n} devices: index build + cold compile of the agent"),
            ms(full),
            "ms",
            Goal::AtMost,
            1000.0 * f64::from(n) / 1e6,
        )
        .note(format!(
            "index {:.0} ms, compile {:.0} ms, {} targets",
            ms(loaded),
            ms(full - loaded),
            entry.target_count
        )),
    );

    // Incremental: five devices of the agent move to new addresses, one at a time.
    let mut worst = Duration::ZERO;
    for k in 0..5u32 {
        let i = (k * 1000 + 1) % n;
        let moved = IpAddr::V4(Ipv4Addr::new(10, 99, 0, u8::try_from(k + 1)?));
        let normalised = projection::normalise(&InventoryChange {
            tenant_id: TenantId::random(),
            devices: vec![change(i, 2 + i64::from(k), moved)],
        });
        let row = normalised
            .partitions
            .get("default")
            .and_then(|p| p.first())
            .ok_or_else(|| anyhow!("change normalised to nothing"))?;
        let start = Instant::now();
        state.apply(
            2 + i64::from(k),
            [(row.uid.clone(), row.to_sweep_device())],
            policies.clone(),
        );
        let entry = Arc::new(state.compile(AGENT, BODY_LIMIT));
        state.insert(AGENT, entry);
        worst = worst.max(start.elapsed());
    }
    rows.push(Row::target(
        S6,
        "incremental update: apply one change + recompile the agent (worst of 5)",
        ms(worst),
        "ms",
        Goal::AtMost,
        50.0,
    ));
    Ok(())
}
