//! Benchmark: compile sweep configs for a 1 000 000-device partition, then apply incremental
//! changes and recompile. Prints timings; asserts nothing about them.
//!
//! Run: `cargo bench --bench compile` (optimised).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use sr_sweep::{
    CompileOptions, Sighting, SourcePolicies, SourcePolicy, SweepDevice, SweepIndex, compile,
    devices_for_agent,
};

const DEVICES: u32 = 1_000_000;

/// Addresses like the Armis faker's: 172.16.0.1 upwards, 254 hosts per /24.
fn faker_ip(i: u32) -> IpAddr {
    let block = i / 254;
    IpAddr::V4(Ipv4Addr::new(
        172,
        u8::try_from(16 + block / 256).unwrap(),
        u8::try_from(block % 256).unwrap(),
        u8::try_from(i % 254 + 1).unwrap(),
    ))
}

fn device(i: u32) -> SweepDevice {
    // 85 % agent-a, 10 % agent-b, 5 % unassigned.
    let agent_id = match i % 20 {
        0 => None,
        1 | 2 => Some("agent-b".to_owned()),
        _ => Some("agent-a".to_owned()),
    };
    let mut ips = vec![faker_ip(i)];
    if i.is_multiple_of(50) {
        let base = u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, 0));
        ips.push(IpAddr::V6(Ipv6Addr::from(base | u128::from(i))));
    }
    let mut sightings = vec![Sighting {
        source: "armis".to_owned(),
        query_label: Some(format!("query-{}", i % 3)),
        sweep_modes: vec!["icmp".to_owned(), "tcp".to_owned()],
        ports: vec![],
    }];
    if i.is_multiple_of(7) {
        sightings.push(Sighting {
            source: "netbox".to_owned(),
            query_label: None,
            sweep_modes: vec![],
            ports: vec![22, 443],
        });
    }
    SweepDevice {
        uid: format!("sr:{i:08x}-0000-4000-8000-000000000000"),
        ips,
        agent_id,
        sightings,
    }
}

fn rss_mib() -> String {
    // Informational only; Linux-specific.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.trim_start_matches("VmRSS:").trim().to_owned())
        })
        .unwrap_or_else(|| "n/a".to_owned())
}

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    println!("{label:<58} {:>9.3} ms", took.as_secs_f64() * 1e3);
    (out, took)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `f` `runs` times and prints min / median / max.
fn repeated<T>(label: &str, runs: usize, mut f: impl FnMut() -> T) -> T {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        times.push(start.elapsed());
        last = Some(out);
    }
    times.sort();
    println!(
        "{label:<58} {:>9.1} ms  (min of {runs}; median {:.1}, max {:.1})",
        ms(times[0]),
        ms(times[runs / 2]),
        ms(times[runs - 1])
    );
    last.unwrap()
}

fn main() {
    let policies: SourcePolicies = BTreeMap::from([
        (
            "armis".to_owned(),
            SourcePolicy {
                blacklist: vec!["172.16.3.0/28".parse().unwrap()],
                sweep_interval_secs: Some(1800),
            },
        ),
        (
            "netbox".to_owned(),
            SourcePolicy {
                blacklist: vec![],
                sweep_interval_secs: Some(7200),
            },
        ),
    ]);
    let options = CompileOptions::default();
    println!("RSS at start: {}", rss_mib());

    // Phase 1: the service's path. Devices stream into the index (as rows would from the
    // projection), so the RSS below is the index's own footprint.
    let (mut index, _) = timed("SweepIndex::from_devices (1M devices streamed in)", || {
        SweepIndex::from_devices((0..DEVICES).map(device), policies.clone(), options.clone())
    });
    println!("  -> RSS with the index: {}", rss_mib());

    let version_a = repeated(
        "index.compile_for(agent-a): 920k targets, borrowed",
        5,
        || index.compile_for("agent-a").config_version,
    );
    {
        let a = index.compile_for("agent-a");
        println!(
            "  -> {} targets, {} networks, {} warnings, interval {}, version {}…",
            a.device_targets.len(),
            a.networks.len(),
            a.warnings.len(),
            a.sweep_interval_sec,
            &a.config_version[..12]
        );
    }
    repeated(
        "index.compile_for(agent-a).into_owned() (+ drop)",
        3,
        || {
            index
                .compile_for("agent-a")
                .into_owned()
                .device_targets
                .len()
        },
    );
    let version_b = repeated("index.compile_for(agent-b): 160k targets", 5, || {
        index.compile_for("agent-b").config_version
    });
    repeated(
        "index.compile_for(agent-c): 60k unassigned targets",
        5,
        || index.compile_for("agent-c").config_version,
    );

    // One device of agent-a gains a port and a mode.
    let mut changed = device(3);
    changed.sightings[0].ports = vec![8443];
    changed.sightings[0]
        .sweep_modes
        .push("tcp_connect".to_owned());
    let (affected, _) = timed("incremental: upsert one changed agent-a device", || {
        index.upsert(changed)
    });
    println!("  -> affected: {affected:?}");
    let (a2, _) = timed("  then recompile agent-a", || {
        index.compile_for("agent-a").config_version
    });
    println!("  -> agent-a version changed: {}", a2 != version_a);
    let (b2, _) = timed("  then recompile agent-b", || {
        index.compile_for("agent-b").config_version
    });
    println!("  -> agent-b version unchanged: {}", b2 == version_b);

    // An unassigned device moves to a new address.
    let mut moved = device(20);
    moved.ips = vec!["10.99.0.1".parse().unwrap()];
    let (affected, _) = timed("incremental: upsert one moved unassigned device", || {
        index.upsert(moved)
    });
    println!("  -> affected: {affected:?}");
    let (affected, _) = timed("incremental: remove one agent-b device", || {
        index.remove(&device(1).uid)
    });
    println!("  -> affected: {affected:?}");
    let (affected, _) = timed("incremental: re-upsert an unchanged device", || {
        index.upsert(device(5))
    });
    println!("  -> affected: {affected:?}");
    let (_, _) = timed("  then recompile agent-a", || {
        index.compile_for("agent-a").config_version
    });

    // Phase 2: the one-shot path over a device list, checked against the index.
    let (devices, _) = timed("generate the same devices as a list", || {
        (0..DEVICES).map(device).collect::<Vec<_>>()
    });
    let (all, _) = timed("one-shot compile(), all devices as one config", || {
        compile(&devices, &policies, &options)
    });
    println!(
        "  -> {} targets, {} networks",
        all.device_targets.len(),
        all.networks.len()
    );
    drop(all);
    let fresh =
        SweepIndex::from_devices(devices.iter().cloned(), policies.clone(), options.clone());
    let (one_shot_a, _) = timed("one-shot compile(devices_for_agent(agent-a))", || {
        compile(devices_for_agent(&devices, "agent-a"), &policies, &options)
    });
    println!(
        "  -> equal to the index's compile_for(agent-a): {}",
        fresh.compile_for("agent-a") == one_shot_a
    );
    println!("RSS at end: {}", rss_mib());
}
