//! The sweep projection's pure rules: how an `InventoryChange` becomes normalised device rows,
//! which stored row a change replaces (revisions), what a row contributes to the per-source
//! sweep intervals, and how rows become `sr-sweep` devices. No I/O here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use sr_core::inventory::{InventoryChange, SweepHint};
use sr_sweep::{Sighting, SourcePolicies, SweepDevice};

/// Partition of a device whose change names none.
pub const DEFAULT_PARTITION: &str = "default";

/// The partition name to use: trimmed, empty means [`DEFAULT_PARTITION`].
#[must_use]
pub fn partition_of(raw: &str) -> String {
    let p = raw.trim();
    if p.is_empty() {
        DEFAULT_PARTITION.to_owned()
    } else {
        p.to_owned()
    }
}

/// One device as the projection stores it, normalised so that equal content compares equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// Canonical device uid.
    pub uid: String,
    /// Assigned agent (trimmed); `None` = every agent of the partition.
    pub agent_id: Option<String>,
    /// Addresses in canonical text form (IPv4-mapped IPv6 as IPv4), in address order, unique.
    pub ips: Vec<String>,
    /// Sweep hints, each list trimmed/sorted/unique, the hints sorted and unique.
    pub hints: Vec<SweepHint>,
    /// A tombstone: the device no longer exists.
    pub removed: bool,
    /// DIRE's per-device revision.
    pub revision: i64,
}

impl DeviceRow {
    /// Whether two versions of a device say the same thing (revision aside).
    #[must_use]
    pub fn same_content(&self, other: &Self) -> bool {
        self.agent_id == other.agent_id
            && self.ips == other.ips
            && self.hints == other.hints
            && self.removed == other.removed
    }

    /// The (source, interval) pairs this device contributes to its partition's source
    /// policies: the distinct positive intervals of its hints. A tombstone contributes none.
    #[must_use]
    pub fn intervals(&self) -> BTreeSet<(String, u32)> {
        if self.removed {
            return BTreeSet::new();
        }
        self.hints
            .iter()
            .filter_map(|h| {
                h.sweep_interval_secs
                    .filter(|s| *s > 0)
                    .map(|s| (h.source.clone(), s))
            })
            .collect()
    }

    /// The device as `sr-sweep` sees it; `None` for a tombstone.
    #[must_use]
    pub fn to_sweep_device(&self) -> Option<SweepDevice> {
        if self.removed {
            return None;
        }
        Some(sweep_device(
            &self.uid,
            self.agent_id.as_deref(),
            &self.ips,
            &self.hints,
        ))
    }
}

/// Builds an `sr-sweep` device from stored fields (addresses that do not parse are skipped;
/// stored rows only hold parsed ones).
#[must_use]
pub fn sweep_device(
    uid: &str,
    agent_id: Option<&str>,
    ips: &[String],
    hints: &[SweepHint],
) -> SweepDevice {
    SweepDevice {
        uid: uid.to_owned(),
        ips: ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
        agent_id: agent_id.map(str::to_owned),
        sightings: hints
            .iter()
            .map(|h| Sighting {
                source: h.source.clone(),
                query_label: h.query_label.clone(),
                sweep_modes: h.sweep_modes.clone(),
                ports: h.ports.clone(),
            })
            .collect(),
    }
}

/// An inventory change, normalised and grouped by partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalised {
    /// Rows per partition (sorted by partition, rows sorted by uid, one row per uid: the
    /// highest revision in the message).
    pub partitions: BTreeMap<String, Vec<DeviceRow>>,
    /// Addresses that were not IP addresses (dropped).
    pub invalid_addresses: usize,
    /// Device entries without a uid (dropped).
    pub missing_uids: usize,
}

/// Normalises a change: partitions defaulted, addresses parsed and canonicalised, hints
/// cleaned, tombstones emptied, and one row per (partition, uid).
#[must_use]
pub fn normalise(change: &InventoryChange) -> Normalised {
    let mut out = Normalised::default();
    let mut by_key: BTreeMap<(String, String), DeviceRow> = BTreeMap::new();
    for d in &change.devices {
        let uid = d.uid.trim();
        if uid.is_empty() {
            out.missing_uids += 1;
            continue;
        }
        let partition = partition_of(&d.partition);
        let row = if d.removed {
            DeviceRow {
                uid: uid.to_owned(),
                agent_id: None,
                ips: Vec::new(),
                hints: Vec::new(),
                removed: true,
                revision: d.revision,
            }
        } else {
            let (ips, invalid) = canonical_ips(&d.ips);
            out.invalid_addresses += invalid;
            DeviceRow {
                uid: uid.to_owned(),
                agent_id: d
                    .agent_id
                    .as_deref()
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned),
                ips,
                hints: normalise_hints(&d.hints),
                removed: false,
                revision: d.revision,
            }
        };
        let key = (partition, row.uid.clone());
        match by_key.get(&key) {
            // A later entry of the same revision wins, like a later message would not.
            Some(held) if held.revision > row.revision => {}
            _ => {
                by_key.insert(key, row);
            }
        }
    }
    for ((partition, _), row) in by_key {
        out.partitions.entry(partition).or_default().push(row);
    }
    out
}

/// Parses addresses (`10.0.0.1`, `2001:db8::1`, or a host network `10.0.0.1/32`), returning
/// them canonical, sorted and unique, and how many did not parse.
fn canonical_ips(raw: &[String]) -> (Vec<String>, usize) {
    let mut invalid = 0;
    let mut addrs: Vec<IpAddr> = raw
        .iter()
        .filter_map(|s| {
            let s = s.trim();
            let parsed = s.parse::<IpAddr>().ok().or_else(|| {
                let (addr, len) = s.split_once('/')?;
                let addr: IpAddr = addr.parse().ok()?;
                let host_len = if addr.is_ipv4() { "32" } else { "128" };
                (len == host_len).then_some(addr)
            });
            if parsed.is_none() && !s.is_empty() {
                invalid += 1;
            }
            parsed
        })
        .map(|a| a.to_canonical())
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    (addrs.iter().map(ToString::to_string).collect(), invalid)
}

fn normalise_hints(hints: &[SweepHint]) -> Vec<SweepHint> {
    let mut out: Vec<SweepHint> = hints
        .iter()
        .map(|h| {
            let mut modes: Vec<String> = h
                .sweep_modes
                .iter()
                .map(|m| m.trim().to_ascii_lowercase())
                .filter(|m| !m.is_empty())
                .collect();
            modes.sort_unstable();
            modes.dedup();
            let mut ports: Vec<u16> = h.ports.iter().copied().filter(|p| *p != 0).collect();
            ports.sort_unstable();
            ports.dedup();
            SweepHint {
                source: h.source.trim().to_owned(),
                query_label: h
                    .query_label
                    .as_deref()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
                sweep_modes: modes,
                ports,
                sweep_interval_secs: h.sweep_interval_secs.filter(|s| *s > 0),
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What to do with an incoming row given the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing stored yet: insert.
    Insert,
    /// Newer revision with different content: replace (the partition's configs change).
    Replace,
    /// Newer revision, same content: only the revision moves (no config changes).
    Touch,
    /// The stored revision is the same or newer (redelivery, out-of-order): ignore.
    Stale,
}

/// Decides by revision first (monotonic per device), content second.
#[must_use]
pub fn decide(stored: Option<&DeviceRow>, incoming: &DeviceRow) -> Decision {
    match stored {
        None => Decision::Insert,
        Some(s) if s.revision >= incoming.revision => Decision::Stale,
        Some(s) if s.same_content(incoming) => Decision::Touch,
        Some(_) => Decision::Replace,
    }
}

/// Source policies from the partition's (source, interval, device count) table: each
/// source's smallest interval still held by a device. Sweepgen knows no blacklists (sync
/// applies each source's blacklist before pushing).
#[must_use]
pub fn policies<'a, I>(intervals: I) -> SourcePolicies
where
    I: IntoIterator<Item = (&'a str, u32)>,
{
    let mut out = SourcePolicies::new();
    for (source, secs) in intervals {
        if secs == 0 {
            continue;
        }
        let policy = out.entry(source.to_owned()).or_default();
        policy.sweep_interval_secs = Some(policy.sweep_interval_secs.map_or(secs, |s| s.min(secs)));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sr_core::TenantId;
    use sr_core::inventory::DeviceChange;

    fn change(uid: &str, partition: &str, ips: &[&str], revision: i64) -> DeviceChange {
        DeviceChange {
            uid: uid.to_owned(),
            partition: partition.to_owned(),
            agent_id: Some(" agent-a ".to_owned()),
            ips: ips.iter().map(|s| (*s).to_owned()).collect(),
            sources: vec!["armis".to_owned()],
            hints: vec![SweepHint {
                source: "armis".to_owned(),
                query_label: Some(" ".to_owned()),
                sweep_modes: vec!["TCP".to_owned(), "icmp".to_owned(), "tcp".to_owned()],
                ports: vec![443, 0, 22, 443],
                sweep_interval_secs: Some(600),
            }],
            removed: false,
            revision,
        }
    }

    fn message(devices: Vec<DeviceChange>) -> InventoryChange {
        InventoryChange {
            tenant_id: TenantId::random(),
            devices,
        }
    }

    #[test]
    fn changes_are_normalised_and_grouped_by_partition() {
        let n = normalise(&message(vec![
            change(
                "sr:b",
                "",
                &["10.0.0.2", "::ffff:10.0.0.1", "10.0.0.2/32", "nope"],
                1,
            ),
            change("sr:a", "dc1", &["2001:db8::1/128", "10.0.0.0/24"], 1),
        ]));
        assert_eq!(n.invalid_addresses, 2);
        let default = &n.partitions["default"][0];
        assert_eq!(default.ips, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(default.agent_id.as_deref(), Some("agent-a"));
        let hint = &default.hints[0];
        assert_eq!(hint.sweep_modes, ["icmp", "tcp"]);
        assert_eq!(hint.ports, [22, 443]);
        assert_eq!(hint.query_label, None);
        assert_eq!(n.partitions["dc1"][0].ips, ["2001:db8::1"]);
    }

    #[test]
    fn one_row_per_device_keeps_the_highest_revision() {
        let n = normalise(&message(vec![
            change("sr:a", "default", &["10.0.0.3"], 5),
            change("sr:a", "default", &["10.0.0.1"], 3),
            change(" ", "default", &["10.0.0.9"], 3),
        ]));
        assert_eq!(n.missing_uids, 1);
        let rows = &n.partitions["default"];
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].revision, rows[0].ips.as_slice()),
            (5, &["10.0.0.3".to_owned()][..])
        );
    }

    #[test]
    fn tombstones_carry_nothing_but_their_revision() {
        let mut removed = change("sr:a", "default", &["10.0.0.1"], 9);
        removed.removed = true;
        let n = normalise(&message(vec![removed]));
        let row = &n.partitions["default"][0];
        assert!(row.removed && row.ips.is_empty() && row.hints.is_empty());
        assert!(row.agent_id.is_none() && row.intervals().is_empty());
        assert!(row.to_sweep_device().is_none());
    }

    #[test]
    fn revisions_decide_before_content() {
        let n = normalise(&message(vec![change("sr:a", "", &["10.0.0.1"], 5)]));
        let stored = n.partitions["default"][0].clone();
        let mut incoming = stored.clone();
        assert_eq!(decide(None, &incoming), Decision::Insert);
        assert_eq!(decide(Some(&stored), &incoming), Decision::Stale);
        incoming.revision = 4;
        incoming.ips = vec!["10.0.0.9".into()];
        assert_eq!(decide(Some(&stored), &incoming), Decision::Stale);
        incoming.revision = 6;
        assert_eq!(decide(Some(&stored), &incoming), Decision::Replace);
        incoming.ips.clone_from(&stored.ips);
        assert_eq!(decide(Some(&stored), &incoming), Decision::Touch);
    }

    #[test]
    fn each_source_takes_its_smallest_interval() {
        let p = policies([
            ("armis", 600),
            ("armis", 300),
            ("netbox", 0),
            ("netbox", 900),
        ]);
        assert_eq!(p["armis"].sweep_interval_secs, Some(300));
        assert_eq!(p["netbox"].sweep_interval_secs, Some(900));
        assert!(p["armis"].blacklist.is_empty());
    }

    #[test]
    fn rows_become_sweep_devices_with_one_sighting_per_hint() {
        let n = normalise(&message(vec![change("sr:a", "", &["10.0.0.1"], 1)]));
        let d = n.partitions["default"][0].to_sweep_device().unwrap();
        assert_eq!(d.ips, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(d.sightings.len(), 1);
        assert_eq!(d.sightings[0].sweep_modes, ["icmp", "tcp"]);
        assert_eq!(d.agent_id.as_deref(), Some("agent-a"));
    }
}
