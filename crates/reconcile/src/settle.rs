//! Skipping updates that cannot change anything.
//!
//! A re-sync reports every device again, almost all of them exactly as before. Reconciling such
//! an update needs the stored state of its device (several index probes) only to find that
//! nothing changes. A device *settled* by an update holds everything that update states: after
//! an update with the same content (everything but the timestamp) arrives again, within the
//! window in which it would not even refresh `last_seen`, reconciling it writes nothing, as
//! long as the device has not been written since. [`settled_by`] names, after a batch, the
//! devices its updates settled; [`Memo`] remembers them per scope and says which updates of the
//! next batch are candidates to skip; [`plan_skips`] and [`demote_touched`] keep a batch whose
//! other updates touch a candidate's device exactly as if nothing had been skipped.
//!
//! A settled device is keyed by its uid, which must be the update's own canonical id (an update
//! resolving to a device created from other evidence is never skipped).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest as _, Sha256};

use crate::identifier::Identifier;
use crate::observation::Observation;
use crate::outcome::Outcome;
#[cfg(debug_assertions)]
use crate::reconcile::fold_updates;
use crate::reconcile::{ReconcileConfig, holds};
use crate::state::{DeviceRecord, KnownState};
use crate::uid::DeviceUid;

/// SHA-256 (first 16 bytes) of everything an update states except its timestamp.
pub type ContentDigest = [u8; 16];

/// The content digest of an update: every field but `timestamp`, in a fixed unambiguous
/// encoding (JSON of the fields in declaration order).
#[must_use]
pub fn content_digest(o: &Observation) -> ContentDigest {
    let content = (
        &o.ip,
        &o.device_id,
        &o.source,
        &o.agent_id,
        &o.gateway_id,
        &o.partition,
        &o.hostname,
        &o.mac,
        &o.metadata,
        &o.is_available,
    );
    // Serialising plain strings, maps and options into a Vec cannot fail.
    let encoded = serde_json::to_vec(&content).unwrap_or_default();
    let hash = Sha256::digest(&encoded);
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash[..16]);
    out
}

/// A device settled by an update with `digest`: another update with that content whose time
/// lies in `[from, until)` (whole seconds since 1970, rounded inwards) changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Content digest of the update.
    pub digest: ContentDigest,
    from: u32,
    until: u32,
}

impl Settled {
    /// The window of a device row: from its `first_seen` (an earlier update would move it)
    /// until `oldest + last_seen_precision`, where `oldest` is the row's oldest stamp or its
    /// `last_seen` ([`DeviceRecord::oldest_stamp`]; a later update would move a stamp or
    /// `last_seen`). `None` when the window is empty or outside the years 1970–2106.
    #[must_use]
    pub fn new(
        digest: ContentDigest,
        first_seen: DateTime<Utc>,
        oldest: DateTime<Utc>,
        cfg: &ReconcileConfig,
    ) -> Option<Settled> {
        let first = first_seen.timestamp() + i64::from(first_seen.timestamp_subsec_nanos() > 0);
        let until = (oldest + cfg.last_seen_precision).timestamp();
        let from = u32::try_from(first).ok()?;
        let until = u32::try_from(until).ok()?;
        (from < until).then_some(Settled {
            digest,
            from,
            until,
        })
    }
}

/// True when `record` holds every value `o` states ([`holds`]), checked in debug builds
/// against its definition: `o`, stated just after every stamp of the row (so that any
/// differing value would win), changes nothing. Whether the times move is the window's part
/// ([`Settled::new`]).
fn reflects(record: &DeviceRecord, o: &Observation) -> bool {
    let held = holds(record, o);
    #[cfg(debug_assertions)]
    {
        let mut probe = o.clone();
        probe.timestamp = record.last_seen + TimeDelta::microseconds(1);
        let cfg = &ReconcileConfig {
            last_seen_precision: TimeDelta::MAX,
        };
        let folded = fold_updates(
            Some(record.clone()),
            record.uid,
            &[&probe],
            Some(o.ip),
            Some(record),
            cfg,
        );
        debug_assert_eq!(held, folded == *record, "holds() disagrees with the fold");
    }
    held
}

/// Devices the outcome entangles with others: deleted, on either side of a merge, a conflict
/// or a refused merge, or losing an IP. None of them is settled by the batch.
fn entangled(outcome: &Outcome) -> HashSet<DeviceUid> {
    let mut out: HashSet<DeviceUid> = outcome.deletes.iter().copied().collect();
    for m in &outcome.merges {
        out.extend([m.from, m.to]);
    }
    for c in &outcome.conflicts {
        out.extend([c.held_by, c.claimed_by]);
    }
    for b in &outcome.blocked_merges {
        out.extend([b.first, b.second]);
    }
    out.extend(outcome.ip_moves.iter().map(|m| m.from));
    out.extend(outcome.ip_cleared.iter().map(|c| c.uid));
    out
}

/// Every device the outcome mentions: the [`entangled`] ones, and those written, given or
/// re-pointed an identifier, given an IP, or resolved to.
fn touched(outcome: &Outcome) -> HashSet<DeviceUid> {
    let mut out = entangled(outcome);
    out.extend(outcome.changed_uids());
    out.extend(outcome.identifier_inserts.values().copied());
    for r in outcome.identifier_repoints.values() {
        out.extend([r.from, r.to]);
    }
    out.extend(outcome.ip_moves.iter().map(|m| m.to));
    out.extend(outcome.resolutions.iter().copied());
    out
}

/// The devices `batch` settled, given the state it was reconciled against and its outcome: a
/// device settled by an update is the one update of the batch that resolved to it, its uid is
/// that update's canonical id, it took part in no merge, conflict, refused merge or IP loss,
/// it holds every identifier of the update afterwards, and the update applied to its new row
/// changes nothing. `keys[i]` is [`Key::of`] `batch[i]`.
#[must_use]
pub fn settled_by(
    before: &KnownState,
    batch: &[Observation],
    keys: &[Key],
    outcome: &Outcome,
    cfg: &ReconcileConfig,
) -> Vec<(DeviceUid, Settled)> {
    let mut resolved: HashMap<DeviceUid, usize> = HashMap::new();
    for r in &outcome.resolutions {
        *resolved.entry(*r).or_default() += 1;
    }
    let excluded = entangled(outcome);
    let written: HashMap<DeviceUid, &DeviceRecord> = outcome
        .inserts
        .iter()
        .chain(outcome.updates.iter().map(|w| &w.record))
        .map(|r| (r.uid, r))
        .collect();
    let owner = |id: &Identifier| {
        outcome
            .identifier_inserts
            .get(id)
            .copied()
            .or_else(|| outcome.identifier_repoints.get(id).map(|r| r.to))
            .or_else(|| before.owner(id))
    };
    let mut out = Vec::new();
    for ((o, key), uid) in batch.iter().zip(keys).zip(&outcome.resolutions) {
        if resolved.get(uid) != Some(&1) || excluded.contains(uid) || key.uid != *uid {
            continue;
        }
        let Some(record) = written.get(uid).copied().or_else(|| before.device(uid)) else {
            continue;
        };
        if o.identifiers().iter().any(|id| owner(id) != Some(*uid)) || !reflects(record, o) {
            continue;
        }
        if let Some(s) = Settled::new(key.digest, record.first_seen, record.oldest_stamp(), cfg) {
            out.push((*uid, s));
        }
    }
    out
}

/// What the memo knows of one update of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The update's canonical id (the key of a device it settled).
    pub uid: DeviceUid,
    /// The update's content digest.
    pub digest: ContentDigest,
}

impl Key {
    /// The key of an update.
    #[must_use]
    pub fn of(o: &Observation) -> Key {
        Key {
            uid: o.canonical_id(),
            digest: content_digest(o),
        }
    }
}

/// The settled devices of one (tenant, partition) scope, valid as long as nothing but the
/// owner of the memo writes the scope (the caller checks that).
///
/// Kept small (24 bytes a device, a million devices in about 50 MB): a device is keyed by the
/// first 8 bytes of its uid and holds the first 8 bytes of the digest. A shared key prefix can
/// only make an update miss (its digest is of content with the other device's identifiers,
/// which cannot equal its own), and a digest prefix is 64 bits of SHA-256 of the device's own
/// content. The entries are spread over [`SHARDS`] shards, each a sorted array (no hash-table
/// slack) plus a small table of changes merged into it once it holds a sixteenth as many.
#[derive(Debug, Clone)]
pub struct Memo {
    shards: Vec<Shard>,
}

/// Shards of one [`Memo`].
pub const SHARDS: usize = 64;

impl Default for Memo {
    fn default() -> Self {
        Memo {
            shards: vec![Shard::default(); SHARDS],
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Shard {
    /// Entries by key.
    sorted: Vec<(u64, Entry)>,
    /// Changes not merged yet: `None` removes.
    recent: HashMap<u64, Option<Entry>>,
    /// Entries held (of `sorted` and `recent` together).
    len: usize,
}

impl Shard {
    fn get(&self, key: u64) -> Option<Entry> {
        match self.recent.get(&key) {
            Some(change) => *change,
            None => self
                .sorted
                .binary_search_by_key(&key, |(k, _)| *k)
                .ok()
                .map(|i| self.sorted[i].1),
        }
    }

    /// Sets or (`None`) removes the entry of `key`.
    fn set(&mut self, key: u64, entry: Option<Entry>) {
        match (self.get(key).is_some(), entry.is_some()) {
            (false, false) => return,
            (false, true) => self.len += 1,
            (true, false) => self.len -= 1,
            (true, true) => {}
        }
        self.recent.insert(key, entry);
        if self.recent.len() > 256 + self.sorted.len() / 16 {
            self.merge();
        }
    }

    fn merge(&mut self) {
        let mut changes: Vec<(u64, Option<Entry>)> = self.recent.drain().collect();
        changes.sort_unstable_by_key(|(k, _)| *k);
        let old = std::mem::take(&mut self.sorted);
        let mut out = Vec::with_capacity(old.len() + changes.len());
        let mut i = 0;
        for (key, change) in changes {
            while i < old.len() && old[i].0 < key {
                out.push(old[i]);
                i += 1;
            }
            if i < old.len() && old[i].0 == key {
                i += 1;
            }
            if let Some(entry) = change {
                out.push((key, entry));
            }
        }
        out.extend_from_slice(&old[i..]);
        out.shrink_to_fit();
        self.sorted = out;
    }

    fn len(&self) -> usize {
        self.len
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    digest: u64,
    from: u32,
    until: u32,
}

fn short_uid(uid: &DeviceUid) -> u64 {
    let bytes = uid.as_uuid().into_bytes();
    let mut head = [0u8; 8];
    head.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(head)
}

fn short_digest(digest: &ContentDigest) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(head)
}

impl Memo {
    fn shard(&self, key: u64) -> &Shard {
        &self.shards[(key >> 58) as usize % SHARDS]
    }

    fn shard_mut(&mut self, key: u64) -> &mut Shard {
        &mut self.shards[(key >> 58) as usize % SHARDS]
    }

    /// Devices remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }

    /// True when nothing is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the memo holds an entry for `uid`.
    #[must_use]
    pub fn contains(&self, uid: &DeviceUid) -> bool {
        let key = short_uid(uid);
        self.shard(key).get(key).is_some()
    }

    /// Remembers that `uid` is settled.
    pub fn insert(&mut self, uid: DeviceUid, settled: Settled) {
        let key = short_uid(&uid);
        let entry = Entry {
            digest: short_digest(&settled.digest),
            from: settled.from,
            until: settled.until,
        };
        self.shard_mut(key).set(key, Some(entry));
    }

    /// Forgets `uid`.
    pub fn remove(&mut self, uid: &DeviceUid) {
        let key = short_uid(uid);
        self.shard_mut(key).set(key, None);
    }

    /// True when the update with `key` seen at `at` changes nothing (by itself).
    #[must_use]
    pub fn covers(&self, key: &Key, at: DateTime<Utc>) -> bool {
        let uid = short_uid(&key.uid);
        let secs = at.timestamp();
        self.shard(uid).get(uid).is_some_and(|e| {
            e.digest == short_digest(&key.digest)
                && (i64::from(e.from)..i64::from(e.until)).contains(&secs)
        })
    }

    /// Forgets every device the outcome touched, then remembers the devices it settled.
    pub fn record(
        &mut self,
        outcome: &Outcome,
        settled: impl IntoIterator<Item = (DeviceUid, Settled)>,
    ) {
        for uid in touched(outcome) {
            self.remove(&uid);
        }
        for (uid, s) in settled {
            self.insert(uid, s);
        }
    }
}

/// Which updates of a batch to skip, given which ones the memo covers: a covered update is
/// skipped unless an update reconciled anyway carries its IP or one of its identifiers.
#[must_use]
pub fn plan_skips(batch: &[Observation], covered: &[bool]) -> Vec<bool> {
    let mut skip = covered.to_vec();
    if !skip.contains(&true) {
        return skip;
    }
    let keys: Vec<(IpAddr, Vec<Identifier>)> =
        batch.iter().map(|o| (o.ip, o.identifiers())).collect();
    loop {
        let mut ips: HashSet<IpAddr> = HashSet::new();
        let mut ids: BTreeSet<&Identifier> = BTreeSet::new();
        for (k, (ip, held)) in keys.iter().enumerate() {
            if !skip[k] {
                ips.insert(*ip);
                ids.extend(held);
            }
        }
        let mut demoted = false;
        for (k, (ip, held)) in keys.iter().enumerate() {
            if skip[k] && (ips.contains(ip) || held.iter().any(|id| ids.contains(id))) {
                skip[k] = false;
                demoted = true;
            }
        }
        if !demoted {
            return skip;
        }
    }
}

/// After reconciling the updates not skipped: un-skips every skipped update whose device
/// (`keys[k].uid`) the outcome touched. True when any was un-skipped: the caller must
/// reconcile the larger set again (from the same stored state).
pub fn demote_touched(skip: &mut [bool], keys: &[Key], outcome: &Outcome) -> bool {
    let touched = touched(outcome);
    let mut demoted = false;
    for (s, key) in skip.iter_mut().zip(keys) {
        if *s && touched.contains(&key.uid) {
            *s = false;
            demoted = true;
        }
    }
    demoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u32) -> Entry {
        Entry {
            digest: u64::from(n),
            from: n,
            until: n + 1,
        }
    }

    #[test]
    fn a_shard_answers_like_a_map_through_many_merges() {
        let mut shard = Shard::default();
        let mut model: HashMap<u64, Entry> = HashMap::new();
        // A deterministic mix of inserts, overwrites and removals over 5 000 keys.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..60_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = x % 5_000;
            if x.is_multiple_of(5) {
                shard.set(key, None);
                model.remove(&key);
            } else {
                shard.set(key, Some(entry(step)));
                model.insert(key, entry(step));
            }
        }
        assert!(shard.sorted.len() > 1_000, "changes were merged");
        assert_eq!(shard.len(), model.len());
        for key in 0..5_000 {
            assert_eq!(shard.get(key), model.get(&key).copied(), "key {key}");
        }
        assert!(shard.sorted.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
