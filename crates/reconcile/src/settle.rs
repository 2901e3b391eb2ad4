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

#[cfg(debug_assertions)]
use chrono::TimeDelta;
use chrono::{DateTime, Utc};
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
    // Serialised straight into the hash; plain strings, maps and options cannot fail.
    let mut hasher = Hashing(Sha256::new());
    let _ = serde_json::to_writer(&mut hasher, &content);
    let hash = hasher.0.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash[..16]);
    out
}

/// Feeds what is written to it into a SHA-256.
struct Hashing(Sha256);

impl std::io::Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
    out.extend(outcome.written_uids());
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
        Key::claimed(o, &o.identifiers())
    }

    /// The key of an update whose identifiers ([`Observation::identifiers`]) are at hand.
    #[must_use]
    pub fn claimed(o: &Observation, identifiers: &[Identifier]) -> Key {
        Key {
            uid: crate::uid::canonical_id(&o.partition, identifiers, o.ip),
            digest: content_digest(o),
        }
    }
}

/// What an update lays claim to: its IP and its identifiers ([`plan_skips_claims`]).
pub type Claim = (IpAddr, Vec<Identifier>);

/// The claim of an update.
#[must_use]
pub fn claim(o: &Observation) -> Claim {
    (o.ip, o.identifiers())
}

/// [`crate::required_lookups`] of updates whose claims and keys are at hand (in the same
/// order): the same lookups without extracting identifiers or hashing canonical ids again.
#[must_use]
pub fn required_lookups_claimed<'a>(
    claims: impl IntoIterator<Item = &'a Claim>,
    keys: impl IntoIterator<Item = &'a Key>,
) -> crate::state::Lookups {
    let mut lookups = crate::state::Lookups::default();
    for ((ip, ids), key) in claims.into_iter().zip(keys) {
        lookups.add(key.uid, *ip, ids.iter().cloned());
    }
    lookups
}

/// The settled devices of one (tenant, partition) scope, valid as long as nothing but the
/// owner of the memo writes the scope (the caller checks that).
///
/// Kept small (about 25 bytes a device, a million devices in about 25 MB): a device is keyed by the
/// first 8 bytes of its uid and holds the first 8 bytes of the digest. A shared key prefix can
/// only make an update miss (its digest is of content with the other device's identifiers,
/// which cannot equal its own), and a digest prefix is 64 bits of SHA-256 of the device's own
/// content. The entries are spread over [`SHARDS`] shards, each a sorted array (no hash-table
/// slack, 24 bytes an entry) plus a small table of changes merged into it once it holds a
/// sixteenth as many, and an index of where each bucket of about four keys starts (at most a
/// byte an entry), so that a lookup reads a cache line or two instead of binary-searching a
/// large array.
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
    /// Where each bucket of keys starts in `sorted` (plus its end): a bucket holds the keys
    /// whose `bits` bits after the shard's own are its number. A lookup searches one bucket
    /// (a few entries) instead of the whole array, whose steps would each miss the cache.
    index: Vec<u32>,
    /// Bits of the bucket number: about one bucket per four entries.
    bits: u32,
    /// Changes not merged yet: `None` removes.
    recent: HashMap<u64, Option<Entry>>,
    /// Entries held (of `sorted` and `recent` together).
    len: usize,
}

/// Bits of a key that pick its shard.
const SHARD_BITS: u32 = SHARDS.trailing_zeros();

impl Shard {
    fn bucket(&self, key: u64) -> usize {
        if self.bits == 0 {
            0
        } else {
            ((key << SHARD_BITS) >> (64 - self.bits)) as usize
        }
    }

    fn get(&self, key: u64) -> Option<Entry> {
        self.get_in(key, self.span(key))
    }

    /// Where in `sorted` the bucket of `key` lies.
    fn span(&self, key: u64) -> (usize, usize) {
        let b = self.bucket(key);
        match (self.index.get(b), self.index.get(b + 1)) {
            (Some(&s), Some(&e)) => (s as usize, e as usize),
            _ => (0, self.sorted.len()),
        }
    }

    /// [`Shard::get`] with the [`Shard::span`] of `key` already known.
    fn get_in(&self, key: u64, (start, end): (usize, usize)) -> Option<Entry> {
        if let Some(change) = self.recent.get(&key) {
            return *change;
        }
        let bucket = &self.sorted[start..end];
        bucket
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .map(|i| bucket[i].1)
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
        if self.recent.len() > self.merge_threshold() {
            self.merge(Vec::new());
        }
    }

    /// Changes kept apart before they are merged into the sorted array.
    fn merge_threshold(&self) -> usize {
        256 + self.sorted.len() / 16
    }

    /// Applies many changes (later ones win): one at a time when they are few, else merged
    /// into the sorted array in one pass.
    fn set_many(&mut self, changes: Vec<(u64, Option<Entry>)>) {
        if changes.len() <= self.merge_threshold() {
            for (key, entry) in changes {
                self.set(key, entry);
            }
        } else {
            self.merge(changes);
        }
    }

    /// Merges the pending changes, then `newer` (later ones win), into the sorted array and
    /// rebuilds the bucket index.
    fn merge(&mut self, newer: Vec<(u64, Option<Entry>)>) {
        let mut changes: Vec<(u64, Option<Entry>)> = self.recent.drain().collect();
        changes.extend(newer);
        // Stable: of equal keys the last change comes last, and wins below.
        changes.sort_by_key(|(k, _)| *k);
        let old = std::mem::take(&mut self.sorted);
        let mut out = Vec::with_capacity(old.len() + changes.len());
        let mut i = 0;
        let mut changes = changes.into_iter().peekable();
        while let Some((key, change)) = changes.next() {
            if changes.peek().is_some_and(|(next, _)| *next == key) {
                continue;
            }
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
        self.len = self.sorted.len();
        self.reindex();
    }

    fn reindex(&mut self) {
        let n = self.sorted.len();
        self.bits = if n < 64 {
            0
        } else {
            (usize::BITS - 1 - (n / 4).leading_zeros()).min(64 - SHARD_BITS)
        };
        self.index.clear();
        if self.bits == 0 {
            self.index.shrink_to_fit();
            return;
        }
        let buckets = 1usize << self.bits;
        self.index.reserve_exact(buckets + 1);
        let mut at = 0;
        for b in 0..buckets {
            while at < n && self.bucket(self.sorted[at].0) < b {
                at += 1;
            }
            self.index.push(at as u32);
        }
        self.index.push(n as u32);
        self.index.shrink_to_fit();
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

fn shard_of(key: u64) -> usize {
    (key >> (64 - SHARD_BITS)) as usize
}

impl Entry {
    fn of(settled: &Settled) -> Entry {
        Entry {
            digest: short_digest(&settled.digest),
            from: settled.from,
            until: settled.until,
        }
    }

    /// True when an update with `key` seen at `at` would change nothing in this device.
    fn covers(&self, key: &Key, at: DateTime<Utc>) -> bool {
        self.digest == short_digest(&key.digest)
            && (i64::from(self.from)..i64::from(self.until)).contains(&at.timestamp())
    }
}

impl Memo {
    fn shard(&self, key: u64) -> &Shard {
        &self.shards[shard_of(key)]
    }

    fn shard_mut(&mut self, key: u64) -> &mut Shard {
        &mut self.shards[shard_of(key)]
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
        self.shard_mut(key).set(key, Some(Entry::of(&settled)));
    }

    /// Remembers many settled devices (as [`Memo::insert`] one after the other), merging them
    /// into each shard in one pass when they are many.
    pub fn insert_many(&mut self, settled: impl IntoIterator<Item = (DeviceUid, Settled)>) {
        let mut changes: Vec<Vec<(u64, Option<Entry>)>> = vec![Vec::new(); SHARDS];
        for (uid, s) in settled {
            let key = short_uid(&uid);
            changes[shard_of(key)].push((key, Some(Entry::of(&s))));
        }
        for (shard, changes) in self.shards.iter_mut().zip(changes) {
            if !changes.is_empty() {
                shard.set_many(changes);
            }
        }
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
        self.shard(uid).get(uid).is_some_and(|e| e.covers(key, at))
    }

    /// [`Memo::covers`] for each update of a batch, given its key and time: looked up in key
    /// order, so that neighbouring lookups read nearby memory of the same shard.
    ///
    /// # Panics
    /// When `keys` and `times` differ in length.
    #[must_use]
    pub fn covers_all(&self, keys: &[Key], times: &[DateTime<Utc>]) -> Vec<bool> {
        assert_eq!(keys.len(), times.len(), "one time per key");
        let mut order: Vec<(u64, usize)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (short_uid(&k.uid), i))
            .collect();
        order.sort_unstable();
        let mut out = vec![false; keys.len()];
        // A group's bucket bounds are all read first, then the first entry of each bucket,
        // then the buckets are searched: the cache misses of a group overlap instead of each
        // waiting for the one before it.
        const GROUP: usize = 16;
        for group in order.chunks(GROUP) {
            let mut spans = [(0, 0); GROUP];
            for (span, &(uid, _)) in spans.iter_mut().zip(group) {
                *span = self.shard(uid).span(uid);
            }
            let mut firsts = [0u64; GROUP];
            for ((first, &(uid, _)), &(start, _)) in firsts.iter_mut().zip(group).zip(&spans) {
                *first = self.shard(uid).sorted.get(start).map_or(0, |(k, _)| *k);
            }
            std::hint::black_box(&firsts);
            for (&(uid, i), &span) in group.iter().zip(&spans) {
                out[i] = self
                    .shard(uid)
                    .get_in(uid, span)
                    .is_some_and(|e| e.covers(&keys[i], times[i]));
            }
        }
        out
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
        self.insert_many(settled);
    }
}

/// Which updates of a batch to skip, given which ones the memo covers: a covered update is
/// skipped unless an update reconciled anyway carries its IP or one of its identifiers.
#[must_use]
pub fn plan_skips(batch: &[Observation], covered: &[bool]) -> Vec<bool> {
    if !covered.contains(&true) {
        return covered.to_vec();
    }
    let claims: Vec<Claim> = batch.iter().map(claim).collect();
    plan_skips_claims(&claims, covered)
}

/// [`plan_skips`] with the batch's claims ([`claim`]) computed beforehand.
#[must_use]
pub fn plan_skips_claims(claims: &[Claim], covered: &[bool]) -> Vec<bool> {
    let mut skip = covered.to_vec();
    if !skip.contains(&true) {
        return skip;
    }
    loop {
        let mut ips: HashSet<IpAddr> = HashSet::new();
        let mut ids: BTreeSet<&Identifier> = BTreeSet::new();
        for (k, (ip, held)) in claims.iter().enumerate() {
            if !skip[k] {
                ips.insert(*ip);
                ids.extend(held);
            }
        }
        let mut demoted = false;
        for (k, (ip, held)) in claims.iter().enumerate() {
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

    /// A deterministic xorshift sequence.
    fn keys(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// Applies a deterministic mix of inserts, overwrites and removals over `distinct` keys
    /// (spread by `spread`) to a shard and a map, some one by one and some in bulk, and checks
    /// that they agree.
    fn agrees_with_a_map(distinct: u64, spread: impl Fn(u64) -> u64) {
        let mut shard = Shard::default();
        let mut model: HashMap<u64, Entry> = HashMap::new();
        let mut next = keys(0x9e37_79b9_7f4a_7c15);
        let mut step = 0u32;
        for round in 0..40 {
            let bulk = round % 3 == 0;
            let size = if bulk { 4_000 } else { 1_500 };
            let mut changes = Vec::new();
            for _ in 0..size {
                step += 1;
                let x = next();
                let key = spread(x % distinct);
                let change = (!x.is_multiple_of(5)).then(|| entry(step));
                match change {
                    Some(e) => model.insert(key, e),
                    None => model.remove(&key),
                };
                if bulk {
                    changes.push((key, change));
                } else {
                    shard.set(key, change);
                }
            }
            if bulk {
                shard.set_many(changes);
            }
            assert_eq!(shard.len(), model.len(), "round {round}");
        }
        assert!(shard.sorted.len() > 1_000, "changes were merged");
        assert!(shard.sorted.windows(2).all(|w| w[0].0 < w[1].0));
        for key in (0..distinct).map(&spread) {
            assert_eq!(shard.get(key), model.get(&key).copied(), "key {key}");
        }
    }

    #[test]
    fn a_shard_answers_like_a_map_through_many_merges() {
        // Small keys: every key in the first bucket.
        agrees_with_a_map(5_000, |k| k);
        // Keys spread over the shard's whole range: every bucket used.
        agrees_with_a_map(5_000, |k| {
            k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> SHARD_BITS
        });
    }

    #[test]
    fn the_bucket_index_bounds_every_bucket() {
        let mut shard = Shard::default();
        let mut next = keys(7);
        shard.set_many(
            (0..20_000)
                .map(|n| (next() >> SHARD_BITS, Some(entry(n))))
                .collect(),
        );
        assert!(
            shard.bits > 8,
            "about one bucket per four entries: {}",
            shard.bits
        );
        assert_eq!(shard.index.len(), (1 << shard.bits) + 1);
        for b in 0..(1usize << shard.bits) {
            let (start, end) = (shard.index[b] as usize, shard.index[b + 1] as usize);
            assert!(start <= end);
            assert!(
                shard.sorted[start..end]
                    .iter()
                    .all(|(k, _)| shard.bucket(*k) == b)
            );
        }
        assert_eq!(
            *shard.index.last().unwrap_or(&0) as usize,
            shard.sorted.len()
        );
    }

    #[test]
    fn many_inserts_at_once_equal_the_same_inserts_one_by_one() {
        let settled = |n: u8| {
            let mut digest = [0u8; 16];
            digest[0] = n;
            Settled {
                digest,
                from: u32::from(n),
                until: u32::from(n) + 10,
            }
        };
        let mut next = keys(11);
        let items: Vec<(DeviceUid, Settled)> = (0..30_000u32)
            .map(|n| {
                let bytes: [u8; 16] = [next().to_le_bytes(), next().to_le_bytes()]
                    .concat()
                    .try_into()
                    .unwrap_or_default();
                let uid = DeviceUid::from_uuid(uuid::Uuid::from_bytes(bytes));
                (uid, settled((n % 251) as u8))
            })
            .collect();
        // Repeated uids with other windows: the later one wins either way.
        let again = items[..1_000]
            .iter()
            .map(|(uid, s)| (*uid, settled(s.digest[0] ^ 1)));
        let items: Vec<_> = items.iter().copied().chain(again).collect();
        let last: HashMap<DeviceUid, Settled> = items.iter().copied().collect();
        let mut one = Memo::default();
        for (uid, s) in &items {
            one.insert(*uid, *s);
        }
        let mut many = Memo::default();
        many.insert_many(items.iter().copied());
        assert_eq!(many.len(), 30_000);
        assert_eq!(one.len(), many.len());
        for (uid, s) in &items {
            let key = Key {
                uid: *uid,
                digest: s.digest,
            };
            let current = last[uid] == *s;
            assert_eq!(one.covers(&key, at(s.from)), current);
            assert_eq!(many.covers(&key, at(s.from)), current);
        }
        // All at once, in the batch's order, at times inside and outside the windows.
        let keys: Vec<Key> = items
            .iter()
            .map(|(uid, s)| Key {
                uid: *uid,
                digest: s.digest,
            })
            .collect();
        let times: Vec<DateTime<Utc>> = items
            .iter()
            .enumerate()
            .map(|(i, (_, s))| at(if i % 3 == 0 { s.until } else { s.from }))
            .collect();
        let each: Vec<bool> = keys
            .iter()
            .zip(&times)
            .map(|(k, t)| many.covers(k, *t))
            .collect();
        assert_eq!(many.covers_all(&keys, &times), each);
        // With changes not merged yet (one insert at a time): looked up before the array.
        assert_eq!(one.covers_all(&keys, &times), each);
        assert!(each.contains(&true) && each.contains(&false));
    }

    fn at(secs: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(i64::from(secs), 0).unwrap_or_default()
    }
}
