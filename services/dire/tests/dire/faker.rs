//! Faker-shaped Armis devices (CONTRACT §6), shared by the tests and the benchmark.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use chrono::{DateTime, Utc};
use sr_core::device::DeviceUpdate;

const MANUFACTURERS: [&str; 4] = ["ACM", "GLX", "INI", "UMB"];
const TYPES: [&str; 4] = ["CAM", "PRN", "SRV", "WKS"];

/// The faker's IP of device `i`.
#[must_use]
pub fn ip(i: usize) -> IpAddr {
    let a = 16 + (i / 254) / 256;
    let b = (i / 254) % 256;
    let c = (i % 254) + 1;
    IpAddr::V4(Ipv4Addr::new(172, a as u8, b as u8, c as u8))
}

/// A MAC unique per device for any count below 2^24.
#[must_use]
pub fn mac(i: usize) -> String {
    let b = (i as u32).to_be_bytes();
    format!("00:1B:21:{:02X}:{:02X}:{:02X}", b[1], b[2], b[3])
}

/// The Armis update of device `i` seen at `ip` at `at`, with `rev` folded into the model (a
/// changed field when `rev` differs).
#[must_use]
pub fn update(i: usize, ip: IpAddr, at: DateTime<Utc>, rev: u32) -> DeviceUpdate {
    let id = (i + 1).to_string();
    let mfr = MANUFACTURERS[i % MANUFACTURERS.len()];
    let ty = TYPES[(i / 4) % TYPES.len()];
    let metadata: BTreeMap<String, String> = [
        ("integration_type", "armis".to_owned()),
        ("armis_device_id", id),
        ("query_label", "all-devices".to_owned()),
        ("primary_ip", ip.to_string()),
        ("all_ips", ip.to_string()),
        ("ip_count", "1".to_owned()),
        ("sweep_modes", "icmp,tcp".to_owned()),
        ("manufacturer", mfr.to_owned()),
        ("model", format!("{ty}-{rev}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    DeviceUpdate {
        device_id: String::new(),
        ip: ip.to_string(),
        source: "armis".to_owned(),
        agent_id: "agent-1".to_owned(),
        gateway_id: "gw-1".to_owned(),
        partition: "default".to_owned(),
        timestamp: at,
        hostname: Some(format!("FAKER-{mfr}-{ty}-{:05}", i + 1)),
        mac: Some(mac(i)),
        metadata,
        is_available: None,
    }
}

/// Swaps the IPs of `pairs` disjoint device pairs, chosen differently per `cycle`.
pub fn churn(ips: &mut [IpAddr], pairs: usize, cycle: usize) {
    let n = ips.len();
    let stride = n / pairs.max(1);
    for p in 0..pairs {
        let a = p * stride;
        let b = a + 1 + (cycle % (stride - 1).max(1));
        if b < n {
            ips.swap(a, b);
        }
    }
}
