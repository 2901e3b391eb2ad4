//! The stored state DIRE reconciles against: device rows and identifier rows of one
//! (tenant, partition) scope, and what to load for a batch.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sr_core::inventory::SweepHint;

use crate::identifier::Identifier;
use crate::observation::Observation;
use crate::outcome::Outcome;
use crate::uid::{DeviceUid, normalize_partition};

/// One canonical device row (tenant and partition are the scope, held by [`KnownState`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// `sr:` uid (primary key together with tenant and partition).
    pub uid: DeviceUid,
    /// Current IP; at most one device of a scope holds an IP.
    pub ip: Option<IpAddr>,
    /// Last reported MAC (display form; identifier rows hold every MAC the device owns).
    pub mac: Option<String>,
    /// Host name (never cleared by an update without one).
    pub hostname: Option<String>,
    /// Device type, from metadata `device_type` or `type`.
    pub device_type: Option<String>,
    /// Vendor, from metadata `vendor` or `manufacturer`.
    pub vendor: Option<String>,
    /// Model, from metadata `model`.
    pub model: Option<String>,
    /// Operating system, from metadata `os` or `operating_system`.
    pub os: Option<String>,
    /// The agent that sweeps this device (last reported).
    pub agent_id: Option<String>,
    /// Union of every source that reported the device.
    pub discovery_sources: BTreeSet<String>,
    /// Availability; only an update that states it changes it.
    pub is_available: Option<bool>,
    /// Earliest sighting.
    pub first_seen: DateTime<Utc>,
    /// Latest sighting, refreshed at the configured precision.
    pub last_seen: DateTime<Utc>,
    /// Merged metadata of every update (latest value per key).
    pub metadata: BTreeMap<String, String>,
    /// The latest sweep hint per (source, query label), sorted by that key (see
    /// [`crate::Observation::sweep_hint`]).
    #[serde(default)]
    pub sweep_hints: Vec<SweepHint>,
    /// When the stated values (typed columns, metadata keys, sweep hints) stated before
    /// `last_seen` were stated; every other value was stated at `last_seen` (see
    /// [`DeviceRecord::stamp`]). A value is replaced only by a newer statement of it, whichever
    /// source makes it. Kept in this form ([`DeviceRecord::compress`]) so that rows compare
    /// equal exactly when they state the same.
    #[serde(default)]
    pub stamps: Stamps,
}

impl DeviceRecord {
    /// An empty record first and last seen at `seen`.
    pub fn new(uid: DeviceUid, seen: DateTime<Utc>) -> Self {
        DeviceRecord {
            uid,
            ip: None,
            mac: None,
            hostname: None,
            device_type: None,
            vendor: None,
            model: None,
            os: None,
            agent_id: None,
            discovery_sources: BTreeSet::new(),
            is_available: None,
            first_seen: seen,
            last_seen: seen,
            metadata: BTreeMap::new(),
            sweep_hints: Vec::new(),
            stamps: Stamps::default(),
        }
    }

    /// When a value of the row was stated: its entry in `stamps`, else `last_seen`; `None`
    /// when the row has no such value.
    pub fn stamp(&self, key: &Stated) -> Option<DateTime<Utc>> {
        self.has(key)
            .then(|| self.stamps.get(key).unwrap_or(self.last_seen))
    }

    /// True when the row holds a value for `key`.
    pub fn has(&self, key: &Stated) -> bool {
        match key {
            Stated::IsAvailable => self.is_available.is_some(),
            Stated::Metadata(k) => self.metadata.contains_key(k),
            Stated::Hint(source, label) => self
                .sweep_hints
                .iter()
                .any(|h| h.source == *source && h.query_label == *label),
            column => self.column(column).is_some_and(Option::is_some),
        }
    }

    /// The text column `key` names (`None` for availability, metadata keys and hints).
    pub fn column(&self, key: &Stated) -> Option<&Option<String>> {
        Some(match key {
            Stated::Hostname => &self.hostname,
            Stated::Mac => &self.mac,
            Stated::AgentId => &self.agent_id,
            Stated::DeviceType => &self.device_type,
            Stated::Vendor => &self.vendor,
            Stated::Model => &self.model,
            Stated::Os => &self.os,
            Stated::IsAvailable | Stated::Metadata(_) | Stated::Hint(..) => return None,
        })
    }

    /// [`DeviceRecord::column`], to write.
    pub fn column_mut(&mut self, key: &Stated) -> Option<&mut Option<String>> {
        Some(match key {
            Stated::Hostname => &mut self.hostname,
            Stated::Mac => &mut self.mac,
            Stated::AgentId => &mut self.agent_id,
            Stated::DeviceType => &mut self.device_type,
            Stated::Vendor => &mut self.vendor,
            Stated::Model => &mut self.model,
            Stated::Os => &mut self.os,
            Stated::IsAvailable | Stated::Metadata(_) | Stated::Hint(..) => return None,
        })
    }

    /// Every value's stamp, `last_seen` included explicitly.
    pub fn expanded_stamps(&self) -> Stamps {
        self.stated()
            .into_iter()
            .map(|key| {
                let t = self.stamps.get(&key).unwrap_or(self.last_seen);
                (key, t)
            })
            .collect()
    }

    /// Brings `stamps` to its stored form: only values the row holds, stated before
    /// `last_seen`.
    pub fn compress(&mut self) {
        let mut stamps = std::mem::take(&mut self.stamps);
        stamps.0.retain(|k, t| *t < self.last_seen && self.has(k));
        self.stamps = stamps;
    }

    /// The keys of every value present in the row.
    pub fn stated(&self) -> Vec<Stated> {
        Stated::TYPED
            .into_iter()
            .filter(|k| self.has(k))
            .chain(self.metadata.keys().map(|k| Stated::Metadata(k.clone())))
            .chain(
                self.sweep_hints
                    .iter()
                    .map(|h| Stated::Hint(h.source.clone(), h.query_label.clone())),
            )
            .collect()
    }

    /// The oldest stamp of the row (`last_seen` when it has none older).
    pub fn oldest_stamp(&self) -> DateTime<Utc> {
        self.stamps.oldest(self.last_seen)
    }
    /// Display name: the host name, else the IP, else `None`.
    pub fn name(&self) -> Option<String> {
        self.hostname
            .clone()
            .or_else(|| self.ip.map(|ip| ip.to_string()))
    }
}

/// A value of a device row that updates state, each with its own time in [`Stamps`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stated {
    /// `hostname`.
    Hostname,
    /// `mac`.
    Mac,
    /// `agent_id`.
    AgentId,
    /// `device_type`.
    DeviceType,
    /// `vendor`.
    Vendor,
    /// `model`.
    Model,
    /// `os`.
    Os,
    /// `is_available`.
    IsAvailable,
    /// One metadata key.
    Metadata(String),
    /// The sweep hint of one (source, query label).
    Hint(String, Option<String>),
}

impl Stated {
    /// The typed values: the text columns ([`DeviceRecord::column`]) and availability.
    pub const TYPED: [Stated; 8] = [
        Stated::Hostname,
        Stated::Mac,
        Stated::AgentId,
        Stated::DeviceType,
        Stated::Vendor,
        Stated::Model,
        Stated::Os,
        Stated::IsAvailable,
    ];
}

/// The time each stated value of a device was last stated (at the configured precision: a
/// restatement of the same value moves its stamp once it is `last_seen_precision` newer or
/// when the row is written anyway).
///
/// A value is replaced only by a statement newer than its stamp (equal times: the greater
/// value), so the final row does not depend on the order in which updates arrive, whichever
/// source states what. Serialised as a list of `[key, time]` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamps(BTreeMap<Stated, DateTime<Utc>>);

impl Stamps {
    /// The stamp of a value.
    pub fn get(&self, key: &Stated) -> Option<DateTime<Utc>> {
        self.0.get(key).copied()
    }

    /// Sets the stamp of a value.
    pub fn set(&mut self, key: Stated, at: DateTime<Utc>) {
        self.0.insert(key, at);
    }

    /// Forgets the stamp of a value.
    pub fn remove(&mut self, key: &Stated) {
        self.0.remove(key);
    }

    /// Every stamp, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&Stated, &DateTime<Utc>)> {
        self.0.iter()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The oldest stamp of a row last seen at `last_seen` (`last_seen` when none is older).
    pub fn oldest(&self, last_seen: DateTime<Utc>) -> DateTime<Utc> {
        self.0.values().copied().fold(last_seen, DateTime::min)
    }
}

impl FromIterator<(Stated, DateTime<Utc>)> for Stamps {
    fn from_iter<I: IntoIterator<Item = (Stated, DateTime<Utc>)>>(iter: I) -> Self {
        Stamps(iter.into_iter().collect())
    }
}

impl Serialize for Stamps {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Stamps {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs: Vec<(Stated, DateTime<Utc>)> = Vec::deserialize(d)?;
        Ok(pairs.into_iter().collect())
    }
}

/// A column of [`DeviceRecord`], used to say which ones an update changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceField {
    /// `ip` (and hence possibly `name`).
    Ip,
    /// `mac`.
    Mac,
    /// `hostname` (and hence `name`).
    Hostname,
    /// `device_type`.
    DeviceType,
    /// `vendor`.
    Vendor,
    /// `model`.
    Model,
    /// `os`.
    Os,
    /// `agent_id`.
    AgentId,
    /// `discovery_sources`.
    DiscoverySources,
    /// `is_available`.
    IsAvailable,
    /// `first_seen`.
    FirstSeen,
    /// `last_seen`.
    LastSeen,
    /// `metadata`.
    Metadata,
    /// `sweep_hints`.
    SweepHints,
    /// `stamps` (only the time a value was stated moved).
    Stamps,
}

impl DeviceField {
    /// The fields whose values differ between two records of the same device.
    pub fn diff(old: &DeviceRecord, new: &DeviceRecord) -> BTreeSet<DeviceField> {
        let mut out = BTreeSet::new();
        let mut check = |differs: bool, f: DeviceField| {
            if differs {
                out.insert(f);
            }
        };
        check(old.ip != new.ip, DeviceField::Ip);
        check(old.mac != new.mac, DeviceField::Mac);
        check(old.hostname != new.hostname, DeviceField::Hostname);
        check(old.device_type != new.device_type, DeviceField::DeviceType);
        check(old.vendor != new.vendor, DeviceField::Vendor);
        check(old.model != new.model, DeviceField::Model);
        check(old.os != new.os, DeviceField::Os);
        check(old.agent_id != new.agent_id, DeviceField::AgentId);
        check(
            old.discovery_sources != new.discovery_sources,
            DeviceField::DiscoverySources,
        );
        check(
            old.is_available != new.is_available,
            DeviceField::IsAvailable,
        );
        check(old.first_seen != new.first_seen, DeviceField::FirstSeen);
        check(old.last_seen != new.last_seen, DeviceField::LastSeen);
        check(old.metadata != new.metadata, DeviceField::Metadata);
        check(old.sweep_hints != new.sweep_hints, DeviceField::SweepHints);
        check(old.stamps != new.stamps, DeviceField::Stamps);
        out
    }
}

/// The loaded state is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// An identifier row points at a device that was not loaded (load every device referenced by
    /// a loaded identifier row).
    #[error("identifier {identifier} points at device {uid}, which is not loaded")]
    DanglingIdentifier {
        /// The identifier.
        identifier: Identifier,
        /// The device it points at.
        uid: DeviceUid,
    },
}

/// What the service must load from Postgres before calling [`crate::reconcile`] for a batch.
///
/// Load, within the batch's (tenant, partition):
/// 1. identifier rows whose key is in `identifiers`;
/// 2. device rows whose uid is in `uids`, whose ip is in `ips`, or that a row of step 1 points at;
/// 3. **every** identifier row of every device loaded in step 2 (the conflict rule needs to know
///    all identifiers a device holds, and a merge re-points all of them).
///
/// Loading more (even the whole scope) gives the same [`Outcome`]; loading less does not.
/// [`KnownState::subset`] implements exactly this load against an in-memory state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookups {
    /// Identifier keys carried by the batch.
    pub identifiers: BTreeSet<Identifier>,
    /// IPs of the batch (their current holders matter for IP-only updates and IP churn).
    pub ips: BTreeSet<IpAddr>,
    /// Uids that may already exist: the canonical id each update would generate on its own.
    pub uids: BTreeSet<DeviceUid>,
}

impl Lookups {
    /// Keys to look up.
    #[must_use]
    pub fn len(&self) -> usize {
        self.identifiers.len() + self.ips.len() + self.uids.len()
    }

    /// True when there is nothing to look up.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the keys of one update: its canonical id, its IP and its identifiers.
    pub(crate) fn add(
        &mut self,
        uid: DeviceUid,
        ip: IpAddr,
        identifiers: impl IntoIterator<Item = Identifier>,
    ) {
        self.uids.insert(uid);
        self.ips.insert(ip);
        self.identifiers.extend(identifiers);
    }

    /// Adds every key of `other`.
    pub fn extend(&mut self, other: Lookups) {
        self.identifiers.extend(other.identifiers);
        self.ips.extend(other.ips);
        self.uids.extend(other.uids);
    }

    /// True when applying `outcome` cannot change what loading these keys finds
    /// ([`KnownState::subset`]), given `found`, what the load found before the outcome was
    /// applied: no device found and no uid looked up is one the outcome writes (inserts,
    /// updates, deletes, or gives or takes an identifier or a merge), no row it writes holds an
    /// IP looked up, and no identifier looked up is inserted or re-pointed.
    ///
    /// A load that ran while the outcome was being written, before its commit, found what it
    /// finds after the commit when this holds.
    #[must_use]
    pub fn unaffected_by(&self, outcome: &Outcome, found: &KnownState) -> bool {
        let mut written = outcome.written_uids();
        for m in &outcome.merges {
            written.extend([m.from, m.to]);
        }
        let ips = outcome
            .inserts
            .iter()
            .chain(outcome.updates.iter().map(|w| &w.record))
            .filter_map(|r| r.ip);
        found.devices.keys().all(|uid| !written.contains(uid))
            && self.uids.iter().all(|uid| !written.contains(uid))
            && ips.into_iter().all(|ip| !self.ips.contains(&ip))
            && self.identifiers.iter().all(|id| {
                !outcome.identifier_inserts.contains_key(id)
                    && !outcome.identifier_repoints.contains_key(id)
            })
    }
}

/// The keys to load for a batch (see [`Lookups`]).
pub fn required_lookups(batch: &[Observation]) -> Lookups {
    let mut lookups = Lookups::default();
    for obs in batch {
        let ids = obs.identifiers();
        let uid = crate::uid::canonical_id(&obs.partition, &ids, obs.ip);
        lookups.add(uid, obs.ip, ids);
    }
    lookups
}

/// Devices and identifiers of ONE (tenant, partition) scope, as loaded for a batch.
///
/// The caller scopes: it groups updates by (tenant, partition) and builds one `KnownState` per
/// group, so nothing can match across tenants or partitions. Indexes (identifiers held per
/// device, holders per IP) are maintained on every mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownState {
    partition: String,
    devices: BTreeMap<DeviceUid, DeviceRecord>,
    identifiers: BTreeMap<Identifier, DeviceUid>,
    held: BTreeMap<DeviceUid, BTreeSet<Identifier>>,
    ip_holders: BTreeMap<IpAddr, BTreeSet<DeviceUid>>,
}

impl KnownState {
    /// An empty state for a partition (empty = `default`).
    pub fn new(partition: &str) -> Self {
        KnownState {
            partition: normalize_partition(partition),
            devices: BTreeMap::new(),
            identifiers: BTreeMap::new(),
            held: BTreeMap::new(),
            ip_holders: BTreeMap::new(),
        }
    }

    /// Builds a state from loaded rows and checks it.
    ///
    /// # Errors
    /// [`StateError::DanglingIdentifier`] when an identifier row points at a device not given.
    pub fn from_rows(
        partition: &str,
        devices: impl IntoIterator<Item = DeviceRecord>,
        identifiers: impl IntoIterator<Item = (Identifier, DeviceUid)>,
    ) -> Result<Self, StateError> {
        let mut state = KnownState::new(partition);
        for d in devices {
            state.insert_device(d);
        }
        for (id, uid) in identifiers {
            state.insert_identifier(id, uid);
        }
        state.validate()?;
        Ok(state)
    }

    /// The (normalised) partition of this scope.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// Inserts or replaces a device row.
    pub fn insert_device(&mut self, record: DeviceRecord) {
        self.remove_device_row(&record.uid);
        if let Some(ip) = record.ip {
            self.ip_holders.entry(ip).or_default().insert(record.uid);
        }
        self.devices.insert(record.uid, record);
    }

    /// Inserts or re-points an identifier row (no check that the device is loaded yet; see
    /// [`KnownState::validate`]).
    pub fn insert_identifier(&mut self, identifier: Identifier, uid: DeviceUid) {
        if let Some(old) = self.identifiers.insert(identifier.clone(), uid)
            && let Some(set) = self.held.get_mut(&old)
        {
            set.remove(&identifier);
            if set.is_empty() {
                self.held.remove(&old);
            }
        }
        self.held.entry(uid).or_default().insert(identifier);
    }

    /// Checks that every identifier points at a loaded device.
    ///
    /// # Errors
    /// [`StateError::DanglingIdentifier`] for the first identifier that does not.
    pub fn validate(&self) -> Result<(), StateError> {
        for (id, uid) in &self.identifiers {
            if !self.devices.contains_key(uid) {
                return Err(StateError::DanglingIdentifier {
                    identifier: id.clone(),
                    uid: *uid,
                });
            }
        }
        Ok(())
    }

    /// All device rows, by uid.
    pub fn devices(&self) -> &BTreeMap<DeviceUid, DeviceRecord> {
        &self.devices
    }

    /// One device row.
    pub fn device(&self, uid: &DeviceUid) -> Option<&DeviceRecord> {
        self.devices.get(uid)
    }

    /// All identifier rows.
    pub fn identifiers(&self) -> &BTreeMap<Identifier, DeviceUid> {
        &self.identifiers
    }

    /// The device an identifier points at.
    pub fn owner(&self, identifier: &Identifier) -> Option<DeviceUid> {
        self.identifiers.get(identifier).copied()
    }

    /// The identifiers that point at a device.
    pub fn held_by(&self, uid: &DeviceUid) -> impl Iterator<Item = &Identifier> {
        self.held.get(uid).into_iter().flatten()
    }

    /// The devices whose `ip` is this address (normally zero or one).
    pub fn holders_of(&self, ip: &IpAddr) -> impl Iterator<Item = &DeviceUid> {
        self.ip_holders.get(ip).into_iter().flatten()
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True when no device is loaded.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The part of this state the service would load for `lookups` (the three steps documented
    /// on [`Lookups`]). Used by tests to prove a subset load decides like the full scope.
    pub fn subset(&self, lookups: &Lookups) -> KnownState {
        let mut uids: BTreeSet<DeviceUid> = lookups
            .uids
            .iter()
            .filter(|u| self.devices.contains_key(u))
            .copied()
            .collect();
        for ip in &lookups.ips {
            uids.extend(self.holders_of(ip).copied());
        }
        for id in &lookups.identifiers {
            uids.extend(self.owner(id));
        }
        let mut out = KnownState::new(&self.partition);
        for uid in &uids {
            if let Some(d) = self.devices.get(uid) {
                out.insert_device(d.clone());
            }
            for id in self.held_by(uid) {
                out.insert_identifier(id.clone(), *uid);
            }
        }
        out
    }

    /// Applies a decided [`Outcome`] the way the service writes it: device inserts and updates,
    /// identifier re-points and inserts, then deletion of merged-away devices.
    ///
    /// Applying the outcome of `reconcile(self, batch)` and reconciling the same batch again
    /// yields an outcome without writes.
    pub fn apply(&mut self, outcome: &Outcome) {
        for record in &outcome.inserts {
            self.insert_device(record.clone());
        }
        for write in &outcome.updates {
            self.insert_device(write.record.clone());
        }
        for (id, repoint) in &outcome.identifier_repoints {
            self.insert_identifier(id.clone(), repoint.to);
        }
        for (id, uid) in &outcome.identifier_inserts {
            self.insert_identifier(id.clone(), *uid);
        }
        for uid in &outcome.deletes {
            // Identifiers of a merged-away device were re-pointed above; any stragglers follow
            // their device to the merge winner so no identifier is left dangling.
            let target = outcome.merges.iter().find(|m| m.from == *uid).map(|m| m.to);
            let stragglers: Vec<Identifier> = self.held_by(uid).cloned().collect();
            for id in stragglers {
                match target {
                    Some(to) => self.insert_identifier(id, to),
                    None => {
                        self.identifiers.remove(&id);
                    }
                }
            }
            self.held.remove(uid);
            self.remove_device_row(uid);
        }
    }

    /// The identifiers each device holds once `outcome` is applied ([`KnownState::apply`]), for
    /// every surviving device the outcome writes a row of or changes the identifiers of, by
    /// uid (a device holding none has an empty set). Merged-away devices are left out.
    ///
    /// The service keeps this set on the device row, so a device's identifiers are read with
    /// its row instead of through an index on the identifier rows' owner.
    pub fn held_after<'a>(
        &'a self,
        outcome: &'a Outcome,
    ) -> BTreeMap<DeviceUid, BTreeSet<&'a Identifier>> {
        // Merged-away devices are among them until the end.
        let mut held: BTreeMap<DeviceUid, BTreeSet<&Identifier>> = outcome
            .written_uids()
            .into_iter()
            .map(|uid| (uid, self.held_by(&uid).collect()))
            .collect();
        for (id, r) in &outcome.identifier_repoints {
            if let Some(set) = held.get_mut(&r.from) {
                set.remove(id);
            }
            held.entry(r.to).or_default().insert(id);
        }
        for (id, uid) in &outcome.identifier_inserts {
            held.entry(*uid).or_default().insert(id);
        }
        for uid in &outcome.deletes {
            held.remove(uid);
        }
        held
    }

    fn remove_device_row(&mut self, uid: &DeviceUid) {
        if let Some(old) = self.devices.remove(uid)
            && let Some(ip) = old.ip
            && let Some(set) = self.ip_holders.get_mut(&ip)
        {
            set.remove(uid);
            if set.is_empty() {
                self.ip_holders.remove(&ip);
            }
        }
    }
}
