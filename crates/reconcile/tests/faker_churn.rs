//! A faker-shaped inventory (CONTRACT §6) under DHCP churn: the device count never moves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::at;
use sr_reconcile::{KnownState, MacAddr, Observation, ReconcileConfig, reconcile};

/// Devices in the test: the faker default is 50 000, but 50 000 devices x 11 full batches take
/// about a minute in a debug build, so the test uses 5 000 (same algorithm, a few seconds). The
/// 50 000-device run through the real service is part of the DIRE benchmark
/// (`services/dire/benches/ingest.rs`).
const DEVICES: usize = 5_000;
const CYCLES: usize = 10;

fn faker_ip(i: usize) -> IpAddr {
    let a = 16 + (i / 254) / 256;
    let b = (i / 254) % 256;
    let c = (i % 254) + 1;
    IpAddr::V4(Ipv4Addr::new(172, a as u8, b as u8, c as u8))
}

fn faker_mac(i: usize) -> MacAddr {
    let b = (i as u32).to_be_bytes();
    MacAddr::from_octets([0x00, 0x1b, 0x21, b[1], b[2], b[3]])
}

fn update(i: usize, ip: IpAddr, minutes: i64) -> Observation {
    let mut o = Observation::new(ip, at(minutes));
    o.source = Some("armis".to_owned());
    o.agent_id = Some("agent-1".to_owned());
    o.hostname = Some(format!("FAKER-ACM-CAM-{:05}", i + 1));
    o.mac = Some(faker_mac(i));
    o.metadata
        .insert("armis_device_id".to_owned(), (i + 1).to_string());
    o.metadata
        .insert("integration_type".to_owned(), "armis".to_owned());
    o
}

#[test]
fn faker_inventory_under_ip_churn_keeps_every_device_and_never_merges() {
    churn(DEVICES);
}

fn churn(devices: usize) {
    let cfg = ReconcileConfig::default();
    let mut state = KnownState::new("default");
    let mut ips: Vec<IpAddr> = (0..devices).map(faker_ip).collect();

    let first: Vec<Observation> = (0..devices).map(|i| update(i, ips[i], 0)).collect();
    let out = reconcile(&state, &first, &cfg).unwrap();
    assert_eq!(out.inserts.len(), devices);
    state.apply(&out);
    assert_eq!(state.len(), devices);

    let pairs = devices * 5 / 100 / 2;
    for cycle in 1..=CYCLES {
        // Swap the IPs of `pairs` disjoint device pairs, chosen differently each cycle.
        let stride = devices / pairs;
        for p in 0..pairs {
            let a = (p * stride + cycle * 7) % devices;
            let b = (a + 1 + cycle) % devices;
            ips.swap(a, b);
        }
        let minutes = 20 * cycle as i64;
        let batch: Vec<Observation> = (0..devices).map(|i| update(i, ips[i], minutes)).collect();
        let out = reconcile(&state, &batch, &cfg).unwrap();
        assert!(out.merges.is_empty(), "cycle {cycle}");
        assert!(out.inserts.is_empty(), "cycle {cycle}");
        assert!(
            out.ip_cleared.is_empty(),
            "cycle {cycle}: swaps clear nothing"
        );
        assert!(out.conflicts.is_empty(), "cycle {cycle}");
        assert_eq!(
            out.churn(),
            2 * pairs,
            "cycle {cycle}: every swapped IP moved"
        );
        state.apply(&out);
        assert_eq!(state.len(), devices, "cycle {cycle}");
        for (i, ip) in ips.iter().enumerate() {
            let uid = out.resolutions[i];
            assert_eq!(
                state.device(&uid).unwrap().ip,
                Some(*ip),
                "cycle {cycle} device {i}"
            );
        }
    }
    assert_eq!(state.identifiers().len(), 2 * devices);
}

#[test]
fn faker_inventory_delivered_in_chunks_ends_with_every_device_at_its_new_ip() {
    // The service reconciles one NATS message (a chunk of at most 1000 updates) at a time, so a
    // swap can straddle two chunks: the first chunk clears the partner, the second re-homes it.
    let devices = DEVICES;
    let cfg = ReconcileConfig::default();
    let mut state = KnownState::new("default");
    let mut ips: Vec<IpAddr> = (0..devices).map(faker_ip).collect();
    for (cycle, swap_stride) in [(0usize, 0usize), (1, 997), (2, 1499)] {
        if swap_stride > 0 {
            for a in (0..devices).step_by(swap_stride * 2) {
                ips.swap(a, (a + swap_stride) % devices);
            }
        }
        let minutes = 20 * cycle as i64;
        let batch: Vec<Observation> = (0..devices).map(|i| update(i, ips[i], minutes)).collect();
        let mut merges = 0;
        for chunk in batch.chunks(1000) {
            let out = reconcile(&state, chunk, &cfg).unwrap();
            merges += out.merges.len();
            state.apply(&out);
        }
        assert_eq!(merges, 0, "cycle {cycle}");
        assert_eq!(state.len(), devices, "cycle {cycle}");
        let holders: std::collections::BTreeSet<IpAddr> =
            state.devices().values().filter_map(|d| d.ip).collect();
        assert_eq!(
            holders.len(),
            devices,
            "cycle {cycle}: every device holds an IP"
        );
        for (i, o) in batch.iter().enumerate() {
            assert_eq!(
                state.device(&o.canonical_id()).unwrap().ip,
                Some(ips[i]),
                "cycle {cycle} device {i}"
            );
        }
    }
}
